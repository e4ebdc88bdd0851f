"""Pseudo labels from joint (valence, arousal) histograms per expression (docs/outputs-and-training.md).

For each of the 7 expressions, a 20 × 20 histogram over [-1, 1]² (bins 0.1 wide: fine enough to follow
the shape of the annotation, coarse enough that the rarest expression still fills it) counts the
training frames that carry both a valence/arousal pair and an expression, after filtering. Bin edges and
the edge rule are numpy's ``histogram2d``: bins are [a, b) except the last, which is [a, b].

- Expression-only frame: (v, a) is drawn from that expression's histogram (a bin with probability
  n / Σn, then uniformly inside the bin), anew every time the frame is used; the caller passes a seeded
  ``numpy.random.Generator``. An expression with an empty histogram gives no pseudo label.
- VA-only frame: soft expression label p_i = n_i(v, a) / Σ_j n_j(v, a) in the bin of (v, a). A bin that
  no expression reached gives no soft label: the frame keeps no expression target.

The paper's default uses pseudo valence only (pseudo arousal and expression hurt, Table II).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from tsav_deploy.contract import EXPRESSIONS
from tsav_deploy.errors import CheckpointError, TsavError
from tsav_deploy.train.labels import EXPR_MISSING, LabelTable, in_range

PSEUDO_KINDS = ("valence", "arousal", "expression")
DEFAULT_PSEUDO = ("valence",)
HISTOGRAM_BINS = 20
VA_RANGE = (-1.0, 1.0)
VA_COLUMNS = {"valence": 0, "arousal": 1}


def check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    """Validate pseudo-label kinds; returns them in canonical order."""
    kinds = tuple(kinds)
    unknown = sorted(set(kinds) - set(PSEUDO_KINDS))
    if unknown:
        raise TsavError(f"unknown pseudo-label kind {', '.join(unknown)}; choose from {', '.join(PSEUDO_KINDS)}")
    return tuple(kind for kind in PSEUDO_KINDS if kind in kinds)


def _valid_va(va: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return in_range("VA", va).all(axis=1)  # NaN (unannotated) is not in range


def _valid_expr(expr: np.ndarray) -> np.ndarray:
    return in_range("EXPR", expr)


@dataclass
class VAHistograms:
    """Joint (valence, arousal) histogram per expression: ``counts[expression, valence_bin, arousal_bin]``."""

    counts: np.ndarray  # [7, bins, bins] int64

    @property
    def bins(self) -> int:
        return self.counts.shape[1]

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(*VA_RANGE, self.bins + 1)

    @classmethod
    def fit(cls, va: np.ndarray, expr: np.ndarray, bins: int = HISTOGRAM_BINS) -> VAHistograms:
        """Count the frames of ``va [N, 2]`` / ``expr [N]`` that have both labels (others are skipped).

        Pass kept frames only: a present label out of range is an error here, the filter drops it.
        """
        va, expr = np.asarray(va, dtype=np.float64), np.asarray(expr)
        both = ~np.isnan(va).any(axis=1) & (expr >= 0)
        if not (_valid_va(va[both]).all() and _valid_expr(expr[both]).all()):
            raise ValueError("labels out of range: fit the histograms on filtered frames")
        histograms = cls(np.zeros((len(EXPRESSIONS), bins, bins), dtype=np.int64))
        v_bin, a_bin = histograms.bin_index(va[both])
        np.add.at(histograms.counts, (expr[both], v_bin, a_bin), 1)
        return histograms

    @classmethod
    def from_tables(
        cls, tables: Iterable[LabelTable], keeps: Iterable[np.ndarray], bins: int = HISTOGRAM_BINS
    ) -> VAHistograms:
        """Fit on the kept frames (``keeps``: one mask per table, from the filter) of several tables."""
        pairs = list(zip(tables, keeps, strict=True))
        va = np.concatenate([np.zeros((0, 2))] + [table.va[keep] for table, keep in pairs])
        expr = np.concatenate([np.zeros(0, np.int64)] + [table.expr[keep] for table, keep in pairs])
        return cls.fit(va, expr, bins)

    def bin_index(self, va: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Valence and arousal bin of each row of ``va [N, 2]``, all values in [-1, 1] (numpy's edge rule)."""
        edges = self.edges
        index = np.searchsorted(edges, np.asarray(va, dtype=np.float64), side="right") - 1
        index[index == self.bins] = self.bins - 1  # the right edge 1.0 belongs to the last bin
        return index[:, 0], index[:, 1]

    def can_sample(self, expr: np.ndarray) -> np.ndarray:
        """Rows whose expression has a non-empty histogram, so (v, a) can be drawn for them."""
        expr = np.asarray(expr)
        valid = _valid_expr(expr)
        filled = self.counts.sum(axis=(1, 2)) > 0
        return valid & filled[np.where(valid, expr, 0)]

    def sample(self, expr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Draw (v, a) ``[N, 2]`` for each row's expression; NaN where :meth:`can_sample` is False."""
        expr = np.asarray(expr)
        drawn = np.full((len(expr), 2), np.nan)
        possible = self.can_sample(expr)
        edges = self.edges
        flat = self.counts.reshape(len(EXPRESSIONS), -1)
        for e in np.unique(expr[possible]):
            rows = np.flatnonzero(possible & (expr == e))
            cells = rng.choice(flat.shape[1], size=len(rows), p=flat[e] / flat[e].sum())
            bins = np.stack(np.divmod(cells, self.bins), axis=1)  # [rows, (valence bin, arousal bin)]
            drawn[rows] = edges[bins] + rng.random((len(rows), 2)) * (edges[bins + 1] - edges[bins])
        return drawn

    def soft_expression(self, va: np.ndarray) -> np.ndarray:
        """p_i = n_i(v, a) / Σ_j n_j(v, a) per row ``[N, 7]``; NaN rows where there is no soft label."""
        va = np.asarray(va, dtype=np.float64)
        probs = np.full((len(va), len(EXPRESSIONS)), np.nan)
        valid = _valid_va(va)
        v_bin, a_bin = self.bin_index(va[valid])
        counts = self.counts[:, v_bin, a_bin].T.astype(np.float64)  # [rows, 7]
        total = counts.sum(axis=1, keepdims=True)
        rows = np.flatnonzero(valid)
        reached = total[:, 0] > 0
        probs[rows[reached]] = counts[reached] / total[reached]
        return probs

    def to_dict(self) -> dict:
        """Plain JSON-able data (lists of ints) for the checkpoint."""
        return {
            "bins": self.bins,
            "range": list(VA_RANGE),
            "expressions": list(EXPRESSIONS),
            "counts": self.counts.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> VAHistograms:
        try:
            counts = np.asarray(data["counts"], dtype=np.int64)
            bins = int(data["bins"])
            layout_ok = list(data["expressions"]) == list(EXPRESSIONS) and list(data["range"]) == list(VA_RANGE)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"pseudo-label histograms are malformed ({exc!r})") from None
        if not layout_ok or counts.shape != (len(EXPRESSIONS), bins, bins) or (counts < 0).any():
            raise CheckpointError(
                "pseudo-label histograms do not match the expected layout (7 expressions × bins × bins over [-1, 1]²)"
            )
        return cls(counts)


def pseudo_label_masks(
    va: np.ndarray, expr: np.ndarray, histograms: VAHistograms, kinds: Iterable[str] = DEFAULT_PSEUDO
) -> dict[str, np.ndarray]:
    """``{kind: [N] bool}``: the frames that receive a pseudo label of each requested kind."""
    va, expr = np.asarray(va), np.asarray(expr)
    masks = {}
    kinds = check_kinds(kinds)
    drawable = histograms.can_sample(expr)
    for kind, column in VA_COLUMNS.items():
        if kind in kinds:
            masks[kind] = drawable & np.isnan(va[:, column])
    if "expression" in kinds:
        masks["expression"] = (expr == EXPR_MISSING) & ~np.isnan(histograms.soft_expression(va)[:, 0])
    return masks


def pseudo_targets(
    va: np.ndarray,
    expr: np.ndarray,
    histograms: VAHistograms,
    rng: np.random.Generator,
    kinds: Iterable[str] = DEFAULT_PSEUDO,
) -> tuple[np.ndarray, np.ndarray]:
    """Training targets for a batch of frames, pseudo labels filled in (valence/arousal drawn anew).

    Returns ``va [N, 2]`` float32 (NaN = no target) and expression probabilities ``[N, 7]`` float32
    (one-hot for annotated frames, soft for pseudo-labelled ones, NaN rows = no target); both are what
    :func:`tsav_deploy.train.losses.tsav_loss` takes.
    """
    va, expr = np.asarray(va, dtype=np.float32), np.asarray(expr)
    masks = pseudo_label_masks(va, expr, histograms, kinds)
    va_target = va.copy()
    drawn_kinds = [kind for kind in VA_COLUMNS if kind in masks]
    if drawn_kinds:
        # One joint draw per frame, only for frames that need it, so valence and arousal stay paired.
        needs_draw = np.logical_or.reduce([masks[kind] for kind in drawn_kinds])
        drawn = histograms.sample(np.where(needs_draw, expr, EXPR_MISSING), rng)
        for kind in drawn_kinds:
            va_target[masks[kind], VA_COLUMNS[kind]] = drawn[masks[kind], VA_COLUMNS[kind]]
    expr_target = np.full((len(expr), len(EXPRESSIONS)), np.nan, dtype=np.float32)
    annotated = _valid_expr(expr)
    expr_target[annotated] = np.eye(len(EXPRESSIONS), dtype=np.float32)[expr[annotated]]
    if "expression" in masks:
        expr_target[masks["expression"]] = histograms.soft_expression(va[masks["expression"]])
    return va_target, expr_target
