"""Score ABAW prediction folders against annotations with the ABAW 2020 metrics (``tsav evaluate``).

Predictions: ``PREDICTIONS/VA_Set/<name>.txt``, ``PREDICTIONS/EXPR_Set/<name>.txt``,
``PREDICTIONS/AU_Set/<name>.txt`` (docs/outputs-and-training.md); every task folder present is scored.

Labels, either layout:

- the ABAW annotation root: ``LABELS/VA_Set/Validation_Set/<name>.txt`` (the validation split is scored);
- a folder laid out like the predictions: ``LABELS/VA_Set/<name>.txt``.

Every labelled video needs a prediction file with exactly as many frame lines; prediction files without
labels (e.g. the whole dataset annotated, the validation split scored) are ignored. Per task, the metrics
run over all frames of all labelled videos together, as the challenge did.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

from tsav_deploy.errors import LabelError
from tsav_deploy.train.labels import SPLIT_FOLDERS, TASK_FOLDERS, TASKS, label_files, read_task_file
from tsav_deploy.train.metrics import au_scores, expression_scores, va_scores

_SCORERS = {"VA": va_scores, "EXPR": expression_scores, "AU": au_scores}


def label_folder(labels_dir: pathlib.Path, task: str) -> pathlib.Path:
    """``LABELS/<task>/Validation_Set`` where it exists, else ``LABELS/<task>``."""
    task_dir = labels_dir / TASK_FOLDERS[task]
    (validation,) = SPLIT_FOLDERS["validation"]
    if (task_dir / validation).is_dir():
        return task_dir / validation
    if task_dir.is_dir():
        return task_dir
    raise LabelError(
        f"{labels_dir}: no labels for {TASK_FOLDERS[task]} (expected {task_dir / validation} or {task_dir})"
    )


def evaluate_task(predictions: pathlib.Path, labels: pathlib.Path, task: str) -> dict[str, float | int | None]:
    """Scores of one task: every label file in ``labels`` against its namesake in ``predictions``."""
    files = label_files(labels)
    if not files:
        raise LabelError(f"{labels}: no label files (*.txt)")
    missing = [path.name for path in files if not (predictions / path.name).is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise LabelError(f"{predictions}: missing prediction file {missing[0]}{more} for the labels in {labels}")
    predicted, annotated = [], []
    for label_path in files:
        prediction_path = predictions / label_path.name
        target = read_task_file(label_path, task)
        prediction = read_task_file(prediction_path, task, markers=False)
        if len(prediction) != len(target):
            raise LabelError(f"{prediction_path}: {len(prediction)} frame lines, but {label_path} has {len(target)}")
        predicted.append(prediction)
        annotated.append(target)
    scores = _SCORERS[task](np.concatenate(predicted), np.concatenate(annotated))
    # NaN (no annotated frame, undefined CCC) becomes None so that the result is valid JSON.
    return {key: None if isinstance(value, float) and math.isnan(value) else value for key, value in scores.items()} | {
        "videos": len(files)
    }


def evaluate_predictions(predictions_dir: str | pathlib.Path, labels_dir: str | pathlib.Path) -> dict[str, dict]:
    """``{task: scores}`` for every task folder (VA_Set, EXPR_Set, AU_Set) in ``predictions_dir``."""
    predictions_dir, labels_dir = pathlib.Path(predictions_dir), pathlib.Path(labels_dir)
    for folder in (predictions_dir, labels_dir):
        if not folder.is_dir():
            raise LabelError(f"{folder}: folder not found")
    tasks = [task for task in TASKS if (predictions_dir / TASK_FOLDERS[task]).is_dir()]
    if not tasks:
        raise LabelError(f"{predictions_dir}: no VA_Set, EXPR_Set or AU_Set folder of predictions")
    return {
        task: evaluate_task(predictions_dir / TASK_FOLDERS[task], label_folder(labels_dir, task), task)
        for task in tasks
    }
