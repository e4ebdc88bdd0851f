"""The paper's label filter (docs/outputs-and-training.md): frames whose labels contradict each other are dropped.

Rules, each evaluated on its own so a frame may break more than one (the per-rule counts can then sum
to more than the frames removed):

- ``out_of_range``: a present label outside its range (valence/arousal beyond [-1, 1], an expression
  other than 0–6, an AU other than 0/1). Only tables read with ``keep_out_of_range=True`` hold such
  values; by default the reader rejects the file instead.
- ``happy_negative_valence``: Happiness with valence < 0.
- ``sad_positive_valence``: Sadness with valence > 0.
- ``neutral_high_intensity``: Neutral with sqrt(v² + a²) > 0.5 (needs both valence and arousal).

A rule that needs a label the frame lacks does not fire: an expression-only frame is kept (it may get
a pseudo valence later).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tsav_deploy.contract import EXPRESSIONS
from tsav_deploy.train.labels import AU_MISSING, LabelTable, in_range

FILTER_RULES = ("out_of_range", "happy_negative_valence", "sad_positive_valence", "neutral_high_intensity")
NEUTRAL_MAX_INTENSITY = 0.5
# Labels are stored as float32, so (0.3, 0.4) reads as slightly more than 0.5; this slack keeps frames
# whose written intensity is exactly 0.5 (the rule is "> 0.5").
INTENSITY_SLACK = 1e-6
NEUTRAL = EXPRESSIONS.index("Neutral")
HAPPINESS = EXPRESSIONS.index("Happiness")
SADNESS = EXPRESSIONS.index("Sadness")


@dataclass(frozen=True)
class FilterResult:
    keep: np.ndarray  # [N] bool: the frame survives every rule
    removed: dict[str, int]  # rule -> frames that break it

    @property
    def total_removed(self) -> int:
        return int((~self.keep).sum())


def rule_violations(table: LabelTable) -> dict[str, np.ndarray]:
    """``{rule: [N] bool}``: which frames break each rule."""
    valence, arousal = table.va[:, 0], table.va[:, 1]
    with np.errstate(invalid="ignore"):  # NaN (unannotated) compares False, which is what we want
        va_out = (table.has_valence & ~in_range("VA", valence)) | (table.has_arousal & ~in_range("VA", arousal))
        expr_out = table.has_expr & ~in_range("EXPR", table.expr)
        au_out = ((table.au != AU_MISSING) & ~in_range("AU", table.au)).any(axis=1)
        intensity = np.sqrt(valence.astype(np.float64) ** 2 + arousal.astype(np.float64) ** 2)
        return {
            "out_of_range": va_out | expr_out | au_out,
            "happy_negative_valence": (table.expr == HAPPINESS) & (valence < 0),
            "sad_positive_valence": (table.expr == SADNESS) & (valence > 0),
            "neutral_high_intensity": (table.expr == NEUTRAL) & (intensity > NEUTRAL_MAX_INTENSITY + INTENSITY_SLACK),
        }


def filter_frames(table: LabelTable) -> FilterResult:
    """Apply all rules to one table: the frames to keep and how many frames each rule removes."""
    violations = rule_violations(table)
    dropped = np.zeros(len(table), dtype=bool)
    for mask in violations.values():
        dropped |= mask
    return FilterResult(keep=~dropped, removed={rule: int(violations[rule].sum()) for rule in FILTER_RULES})
