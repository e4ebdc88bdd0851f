"""The colours of every figure (timeline PNG, HTML report, overlay), defined once.

Okabe and Ito's palette ("Color Universal Design", 2008), made to stay apart for the common forms
of colour blindness: no two of the nine series share a colour (valence and arousal lines, the seven
expressions' areas), and ``tests/test_palette.py`` checks their distances under simulated
protanopia and deuteranopia. Action-unit probabilities use viridis, a perceptually uniform map that
reads the same in grey and to colour-blind eyes.
"""

from __future__ import annotations

VALENCE_COLOUR = "#000000"  # black
AROUSAL_COLOUR = "#56B4E9"  # sky blue
# Neutral, Anger, Disgust, Fear, Happiness, Sadness, Surprise (contract.EXPRESSIONS' order).
EXPRESSION_COLOURS = ("#CCCCCC", "#D55E00", "#009E73", "#CC79A7", "#F0E442", "#0072B2", "#E69F00")
AU_COLOURMAP = "viridis"
