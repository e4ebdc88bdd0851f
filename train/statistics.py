"""Label statistics for ``tsav train --dry-run``: what the filter and the pseudo labels do to the data.

Per split: annotated frames per task (as read, before filtering), frames with both a valence/arousal
pair and an expression, frames removed per filter rule, and frames given a pseudo label per requested
kind (among kept frames). The histograms are fitted on the kept training frames only; the validation
split's filter and pseudo-label counts are what training on it would see (the final train + validation
mode) — evaluation always scores every annotated frame.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterable

from tsav_deploy.contract import EXPRESSIONS
from tsav_deploy.train.filtering import FILTER_RULES, FilterResult, filter_frames
from tsav_deploy.train.labels import LabelTable, match_videos, read_annotations
from tsav_deploy.train.pseudo_labels import (
    DEFAULT_PSEUDO,
    HISTOGRAM_BINS,
    VAHistograms,
    check_kinds,
    pseudo_label_masks,
)


def split_statistics(
    tables: list[LabelTable], results: list[FilterResult], histograms: VAHistograms, kinds: tuple[str, ...]
) -> dict:
    """The counts of one split (see the module docstring)."""
    labelled = {"valence": 0, "arousal": 0, "expression": 0, "au": 0, "va_and_expression": 0}
    removed = dict.fromkeys(FILTER_RULES, 0) | {"total": 0}
    pseudo = dict.fromkeys(kinds, 0)
    for table, result in zip(tables, results, strict=True):
        for key, mask in (
            ("valence", table.has_valence),
            ("arousal", table.has_arousal),
            ("expression", table.has_expr),
            ("au", table.has_au),
            ("va_and_expression", table.has_va & table.has_expr),
        ):
            labelled[key] += int(mask.sum())
        for rule, count in result.removed.items():
            removed[rule] += count
        removed["total"] += result.total_removed
        masks = pseudo_label_masks(table.va[result.keep], table.expr[result.keep], histograms, kinds)
        for kind, mask in masks.items():
            pseudo[kind] += int(mask.sum())
    return {
        "annotations": len(tables),  # annotated people: a video with _left and _right counts twice
        "frames": sum(len(table) for table in tables),
        "labelled": labelled,
        "removed": removed,
        "pseudo": pseudo,
    }


def label_statistics(
    annotation_root: str | pathlib.Path,
    videos_dir: str | pathlib.Path | None = None,
    *,
    pseudo: Iterable[str] = DEFAULT_PSEUDO,
    bins: int = HISTOGRAM_BINS,
    keep_out_of_range: bool = False,
) -> dict:
    """Read an ABAW annotation root and count labels, filtered frames and pseudo labels per split.

    With ``videos_dir``, also the annotation files whose video is missing (reported, not raised: a dry
    run shows everything at once). JSON-able.
    """
    kinds = check_kinds(pseudo)
    annotations = read_annotations(annotation_root, keep_out_of_range=keep_out_of_range)
    results = {split: [filter_frames(table) for table in tables.values()] for split, tables in annotations.items()}
    train_tables = list(annotations["train"].values())
    histograms = VAHistograms.from_tables(train_tables, [result.keep for result in results["train"]], bins)
    stats = {
        "annotation_root": str(annotation_root),
        "pseudo_kinds": list(kinds),
        "histograms": {
            "bins": histograms.bins,
            "frames_per_expression": dict(zip(EXPRESSIONS, histograms.counts.sum(axis=(1, 2)).tolist())),
        },
        "splits": {
            split: split_statistics(list(tables.values()), results[split], histograms, kinds)
            for split, tables in annotations.items()
        },
    }
    if videos_dir is not None:
        match = match_videos(annotations, videos_dir)
        stats["videos"] = {
            "dir": str(videos_dir),
            "matched": len(match.videos),
            "missing": [str(path) for path in match.missing],
        }
    return stats
