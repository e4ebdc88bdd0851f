"""The figures' colours and time axis: every series has a colour of its own that stays apart under
simulated colour blindness, and the timeline PNG puts one time on one pixel column in all panels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tsav_deploy.contract import EXPRESSIONS
from tsav_deploy.outputs.palette import AROUSAL_COLOUR, EXPRESSION_COLOURS, VALENCE_COLOUR

from helpers.synthetic_annotation import synthetic_result

# Machado, Oliveira and Fernandes (2009), severity 1.0, on linear RGB: an independent model of how
# protanopes and deuteranopes see a colour.
CVD = {
    "normal": np.eye(3),
    "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]]),
}  # fmt: skip


def _linear(hex_colour: str) -> np.ndarray:
    srgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]) / 255
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def _lab(linear: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of a linear RGB colour."""
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


SERIES = {"valence": VALENCE_COLOUR, "arousal": AROUSAL_COLOUR, **dict(zip(EXPRESSIONS, EXPRESSION_COLOURS))}


def test_every_series_has_its_own_colour():
    assert len(EXPRESSION_COLOURS) == len(EXPRESSIONS)
    assert len({c.lower() for c in SERIES.values()}) == len(SERIES)


@pytest.mark.parametrize("vision", list(CVD))
def test_no_two_series_look_alike_under_colour_blindness(vision):
    """Every pair of series at least 10 CIE76 units apart (2.3 is a just-noticeable difference)."""
    seen = {name: _lab(np.clip(CVD[vision] @ _linear(c), 0, 1)) for name, c in SERIES.items()}
    closest = min((float(np.linalg.norm(seen[a] - seen[b])), a, b) for a, b in itertools.combinations(seen, 2))
    assert closest[0] >= 10, closest


def test_a_time_falls_on_one_pixel_column_in_every_panel():
    import matplotlib.pyplot as plt

    from tsav_deploy.outputs.plot import timeline_figure

    result = synthetic_result("clip", np.arange(300) / 30)
    fig = timeline_figure(result)
    try:
        fig.canvas.draw()
        panels = fig.axes[:3]  # valence/arousal, expressions, action units (the colour bar is last)
        for t in (0.0, 3.3, 9.9):
            columns = [ax.transData.transform((t, 0.5))[0] for ax in panels]
            assert max(columns) - min(columns) < 0.5, (t, columns)
        extents = [ax.get_window_extent() for ax in panels]
        assert max(e.x1 for e in extents) - min(e.x1 for e in extents) < 0.5
    finally:
        plt.close(fig)
