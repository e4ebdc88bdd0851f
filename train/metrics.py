"""ABAW 2020 metrics in numpy (docs/outputs-and-training.md), computed over every annotated frame given at once.

- Valence/arousal: concordance correlation coefficient (population moments), each over the frames where
  that label is present (NaN = unannotated); the criterion is their mean.
- Expression: 0.67 · macro-F1 + 0.33 · accuracy over frames with an expression (−1 = unannotated). The
  macro average runs over all 7 classes; a class absent from both truth and prediction scores F1 = 0
  (scikit-learn's ``f1_score(labels=range(7), average="macro", zero_division=0)``).
- AU: 0.5 · mean F1 over the 8 AUs + 0.5 · accuracy over all AU entries, over frames whose 8 AUs are all
  annotated (a frame with any −1 is left out); F1 of an AU that is never positive in truth or prediction
  is 0.

A metric over no annotated frames, or a CCC whose denominator is 0, is NaN.
"""

from __future__ import annotations

import numpy as np

from tsav_deploy.contract import EXPRESSIONS

EXPR_F1_WEIGHT = 0.67
AU_F1_WEIGHT = 0.5


def ccc(prediction: np.ndarray, target: np.ndarray) -> float:
    """Concordance correlation coefficient 2·cov / (var_p + var_t + (mean_p − mean_t)²)."""
    p, t = np.asarray(prediction, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if len(p) == 0:
        return float("nan")
    p_mean, t_mean = p.mean(), t.mean()
    covariance = np.mean((p - p_mean) * (t - t_mean))
    denominator = p.var() + t.var() + (p_mean - t_mean) ** 2
    return float(2.0 * covariance / denominator) if denominator > 0 else float("nan")


def f1_per_column(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Binary F1 = 2·TP / (2·TP + FP + FN) of each column of boolean ``[N, K]`` arrays (0 where undefined)."""
    tp = (prediction & target).sum(axis=0)
    fp = (prediction & ~target).sum(axis=0)
    fn = (~prediction & target).sum(axis=0)
    denominator = 2 * tp + fp + fn
    return np.divide(2.0 * tp, denominator, out=np.zeros(len(tp)), where=denominator > 0)


def va_scores(prediction: np.ndarray, target: np.ndarray) -> dict[str, float | int]:
    """CCC of valence and arousal and their mean; ``prediction``/``target`` are ``[N, 2]``."""
    prediction, target = np.asarray(prediction, dtype=np.float64), np.asarray(target, dtype=np.float64)
    present = ~np.isnan(target)
    valence = ccc(prediction[present[:, 0], 0], target[present[:, 0], 0])
    arousal = ccc(prediction[present[:, 1], 1], target[present[:, 1], 1])
    return {
        "ccc_valence": valence,
        "ccc_arousal": arousal,
        "ccc_mean": (valence + arousal) / 2.0,
        "frames_valence": int(present[:, 0].sum()),
        "frames_arousal": int(present[:, 1].sum()),
    }


def _criterion(f1: float, accuracy: float, f1_weight: float, frames: int) -> dict[str, float | int]:
    return {
        "f1": f1,
        "accuracy": accuracy,
        "criterion": f1_weight * f1 + (1.0 - f1_weight) * accuracy,
        "frames": frames,
    }


def expression_scores(prediction: np.ndarray, target: np.ndarray) -> dict[str, float | int]:
    """Macro-F1 over the 7 expressions, accuracy and the criterion 0.67·F1 + 0.33·accuracy."""
    prediction, target = np.asarray(prediction), np.asarray(target)
    present = target >= 0
    if not present.any():
        return _criterion(float("nan"), float("nan"), EXPR_F1_WEIGHT, 0)
    prediction, target = prediction[present], target[present]
    classes = np.arange(len(EXPRESSIONS))
    f1 = f1_per_column(prediction[:, None] == classes, target[:, None] == classes).mean()
    return _criterion(float(f1), float(np.mean(prediction == target)), EXPR_F1_WEIGHT, int(present.sum()))


def au_scores(prediction: np.ndarray, target: np.ndarray) -> dict[str, float | int]:
    """Mean F1 over the 8 AUs, accuracy over all entries and the criterion 0.5·F1 + 0.5·accuracy."""
    prediction, target = np.asarray(prediction), np.asarray(target)
    present = (target >= 0).all(axis=1)
    if not present.any():
        return _criterion(float("nan"), float("nan"), AU_F1_WEIGHT, 0)
    prediction, target = prediction[present] == 1, target[present] == 1
    f1 = f1_per_column(prediction, target).mean()
    return _criterion(float(f1), float(np.mean(prediction == target)), AU_F1_WEIGHT, int(present.sum()))
