"""The paper's training losses (docs/outputs-and-training.md), masked for missing labels.

Each task's loss covers only the samples of the mini-batch labelled for it and is divided by their
number; the total is the plain sum. A task with no labelled sample contributes exactly 0 (still part of
the autograd graph, so ``backward`` works and gives zero, never NaN, gradients).

- Expression: cross-entropy against a probability vector (one-hot, or soft from a pseudo label).
- AU: binary cross-entropy with logits, averaged over the 8 AUs of each labelled frame (a frame with any
  unannotated AU is left out, as in the metric).
- Valence, arousal: 1 − CCC over the labelled samples. CCC is a batch statistic, already normalised;
  it needs at least two labelled samples and is 0 below that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tsav_deploy.contract import AU_SLICE, EXPR_SLICE, EXPRESSIONS, VA_SLICE

CCC_EPS = 1e-8  # keeps 1 − CCC finite when predictions and targets are all constant


def expression_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits [B, 7]``; ``target`` is class indices ``[B]`` (−1 = unlabelled) or
    probabilities ``[B, 7]`` (a NaN row = unlabelled)."""
    if target.dtype.is_floating_point:
        labelled = ~torch.isnan(target).any(dim=1)
        probs = target[labelled]
    else:
        labelled = target >= 0
        probs = F.one_hot(target[labelled], len(EXPRESSIONS)).to(logits.dtype)
    log_probs = F.log_softmax(logits[labelled], dim=1)
    return -(probs * log_probs).sum() / labelled.sum().clamp(min=1)


def au_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of ``logits [B, 8]`` against 0/1 ``target [B, 8]`` (−1 = unannotated)."""
    labelled = (target >= 0).all(dim=1)
    per_entry = F.binary_cross_entropy_with_logits(
        logits[labelled], target[labelled].to(logits.dtype), reduction="none"
    )
    return per_entry.mean(dim=1).sum() / labelled.sum().clamp(min=1)


def ccc_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − CCC of ``prediction [B]`` against ``target [B]`` (NaN = unlabelled); 0 below two samples."""
    labelled = ~torch.isnan(target)
    p, t = prediction[labelled], target[labelled].to(prediction.dtype)
    if len(p) < 2:
        return p.sum() * 0.0
    p_mean, t_mean = p.mean(), t.mean()
    covariance = ((p - p_mean) * (t - t_mean)).mean()
    denominator = p.var(unbiased=False) + t.var(unbiased=False) + (p_mean - t_mean) ** 2 + CCC_EPS
    return 1.0 - 2.0 * covariance / denominator


def tsav_loss(
    logits: torch.Tensor, *, expression: torch.Tensor, va: torch.Tensor, au: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The summed loss for network outputs ``[B, 17]`` and its parts.

    ``expression``: ``[B]`` indices or ``[B, 7]`` probabilities; ``va``: ``[B, 2]`` with NaN for missing;
    ``au``: ``[B, 8]`` with −1 for missing (what :func:`~tsav_deploy.train.pseudo_labels.pseudo_targets`
    and the label tables provide).
    """
    va_out = logits[:, VA_SLICE]
    parts = {
        "expression": expression_loss(logits[:, EXPR_SLICE], expression),
        "valence": ccc_loss(va_out[:, 0], va[:, 0]),
        "arousal": ccc_loss(va_out[:, 1], va[:, 1]),
        "au": au_loss(logits[:, AU_SLICE], au),
    }
    return sum(parts.values()), parts
