"""Turning the network's 17 logits into predictions, in one place for every writer and engine.

Columns 0–6 are expression logits (softmax, argmax), 7–8 valence/arousal regressed directly and
clipped to [-1, 1], 9–16 action-unit logits (sigmoid, then a threshold on the probability).
The authors' writer rounded the clipped *raw* AU output, i.e. thresholded the logit at 0.5; that is
a probability threshold of sigmoid(0.5) = 0.6225 (``AUTHORS_AU_THRESHOLD``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tsav_deploy.contract import AU_SLICE, EXPR_SLICE, N_OUTPUTS, VA_SLICE

DEFAULT_AU_THRESHOLD = 0.5
AUTHORS_AU_THRESHOLD = 1.0 / (1.0 + math.exp(-0.5))


@dataclass
class Predictions:
    """Per-row predictions for N frames (numpy arrays, row i = frame i)."""

    expression_probs: np.ndarray  # [N, 7] float32
    expression: np.ndarray  # [N] int64, 0..6
    valence: np.ndarray  # [N] float32 in [-1, 1]
    arousal: np.ndarray  # [N] float32 in [-1, 1]
    au_probs: np.ndarray  # [N, 8] float32
    au: np.ndarray  # [N, 8] int64, 0/1

    def __len__(self) -> int:
        return len(self.expression)


def decode(logits, au_threshold: float = DEFAULT_AU_THRESHOLD) -> Predictions:
    """Decode logits ``[N, 17]`` (numpy or torch) into :class:`Predictions`."""
    if not 0.0 < au_threshold < 1.0:
        raise ValueError(f"au_threshold must be a probability strictly between 0 and 1, got {au_threshold}")
    x = np.asarray(logits.detach().cpu().numpy() if hasattr(logits, "detach") else logits, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != N_OUTPUTS:
        raise ValueError(f"logits must have shape [N, {N_OUTPUTS}], got {list(x.shape)}")
    expr = x[:, EXPR_SLICE]
    expr = np.exp(expr - expr.max(axis=1, keepdims=True))
    expr /= expr.sum(axis=1, keepdims=True)
    va = np.clip(x[:, VA_SLICE], -1.0, 1.0)
    au_probs = 1.0 / (1.0 + np.exp(-x[:, AU_SLICE]))
    return Predictions(
        expression_probs=expr.astype(np.float32),
        expression=expr.argmax(axis=1).astype(np.int64),
        valence=va[:, 0].astype(np.float32),
        arousal=va[:, 1].astype(np.float32),
        au_probs=au_probs.astype(np.float32),
        au=(au_probs >= au_threshold).astype(np.int64),
    )
