"""Writers for the ABAW challenge files and the per-frame table (docs/outputs-and-training.md), all atomic."""

from __future__ import annotations

import csv
import io
import json
import os
import pathlib
import sys
from collections.abc import Iterable
from typing import TextIO

import numpy as np

from tsav_deploy.atomic import create_new, partial_path, write_text
from tsav_deploy.contract import ACTION_UNITS, EXPRESSIONS
from tsav_deploy.errors import TsavError
from tsav_deploy.results.video import PersonResult, VideoResult

ABAW_TASKS = ("VA_Set", "EXPR_Set", "AU_Set")
ABAW_HEADERS = {
    "VA_Set": "valence,arousal",
    "EXPR_Set": ",".join(EXPRESSIONS),
    "AU_Set": ",".join(ACTION_UNITS),
}


def abaw_paths(out_dir: pathlib.Path, name: str) -> list[pathlib.Path]:
    return [out_dir / task / f"{name}.txt" for task in ABAW_TASKS]


def abaw_lines(person: PersonResult) -> dict[str, list[str]]:
    """The three challenge files' lines (header first), one line per decoded frame, in order."""
    p = person.predictions
    va = [f"{v:.3f},{a:.3f}" for v, a in zip(p.valence.tolist(), p.arousal.tolist())]
    expr = [str(e) for e in p.expression.tolist()]
    au = [",".join(map(str, row)) for row in p.au.tolist()]
    return {task: [ABAW_HEADERS[task], *lines] for task, lines in zip(ABAW_TASKS, (va, expr, au))}


def write_abaw(out_dir: pathlib.Path, result: VideoResult) -> list[pathlib.Path]:
    written = []
    for person in result.persons:
        name = result.name + person.suffix
        for (task, lines), path in zip(abaw_lines(person).items(), abaw_paths(out_dir, name)):
            written.append(write_text(path, "\n".join(lines) + "\n"))
    return written


TABLE_COLUMNS = (
    ["frame", "time", "person", "face_found", "track_id", "x1", "y1", "x2", "y2", "det_score", "valence", "arousal"]
    + [f"p_{e}" for e in EXPRESSIONS]
    + ["expression"]
    + [f"p_{au}" for au in ACTION_UNITS]
    + list(ACTION_UNITS)
)


# With landmarks: the 68 points of the face each row used, in source-frame pixels (OpenFace's and
# Py-Feat's names), two decimals, empty (NaN) without a face.
LANDMARK_COLUMNS = [f"x_{k}" for k in range(68)] + [f"y_{k}" for k in range(68)]


def table_columns(landmarks: bool = False) -> list[str]:
    return TABLE_COLUMNS + LANDMARK_COLUMNS * landmarks


def landmark_values(person: PersonResult) -> np.ndarray:
    """[N, 136] float64 x_0…x_67, y_0…y_67 per frame, rounded as the table writes them."""
    points = person.landmarks_or_nan().astype(np.float64)
    return np.round(np.concatenate([points[..., 0], points[..., 1]], axis=1), 2)


def table_rows(result: VideoResult, landmarks: bool = False):
    """Rows of the per-frame table (OpenFace FeatureExtraction style): frame-major, then person."""
    track_ids = [person.track_ids.tolist() for person in result.persons]
    points = [landmark_values(person) if landmarks else None for person in result.persons]
    for i, t in enumerate(result.times.tolist()):
        for person, ids, xy in zip(result.persons, track_ids, points):
            p = person.predictions
            found = bool(person.face_found[i])
            box = person.boxes[i].tolist() if found else ["", "", "", ""]
            yield [
                i,
                f"{t:.4f}",
                person.suffix.lstrip("_") or "main",
                int(found),
                ids[i],
                *(f"{b:.1f}" if b != "" else "" for b in box),
                f"{person.scores[i]:.3f}" if found else "",
                f"{p.valence[i]:.4f}",
                f"{p.arousal[i]:.4f}",
                *(f"{x:.4f}" for x in p.expression_probs[i]),
                EXPRESSIONS[p.expression[i]],
                *(f"{x:.4f}" for x in p.au_probs[i]),
                *(str(x) for x in p.au[i]),
                *([] if xy is None else ("" if np.isnan(v) else f"{v:.2f}" for v in xy[i])),
            ]


def write_table(path: pathlib.Path, result: VideoResult, landmarks: bool = False) -> pathlib.Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table_columns(landmarks))
    writer.writerows(table_rows(result, landmarks))
    return write_text(path, buffer.getvalue())


class JsonLines:
    """``--jsonl``: one JSON object a line, flushed at once, to stdout (``-``) or a file.

    The file is made at the first row and never before, so a source that fails to open costs no
    existing file; then an existing regular file is replaced atomically (a new file renamed over its
    name), while a pipe or a device is written as it is."""

    def __init__(self, target: str):
        self.target = target
        self._handle: TextIO | None = None
        if target != "-" and not pathlib.Path(target).parent.is_dir():
            raise TsavError(f"--jsonl {target}: no such folder {pathlib.Path(target).parent}; create it first")

    def write(self, rows: Iterable[dict]) -> None:
        if self._handle is None:
            self._handle = self._open()
        self._handle.writelines(json.dumps(row) + "\n" for row in rows)
        self._handle.flush()  # a reader of the file or pipe gets each frame at once

    def close(self) -> None:
        if self._handle is not None and self._handle is not sys.stdout:
            self._handle.close()

    def _open(self) -> TextIO:
        if self.target == "-":
            return sys.stdout
        path = pathlib.Path(self.target)
        try:
            if path.exists() and not path.is_file():  # a pipe or a device
                return open(path, "w", encoding="utf-8")
            tmp = partial_path(path)
            handle = os.fdopen(create_new(tmp, os.O_WRONLY), "w", encoding="utf-8")
            try:
                os.replace(tmp, path)
            except BaseException:
                handle.close()
                tmp.unlink(missing_ok=True)
                raise
            return handle
        except OSError as exc:
            raise TsavError(f"--jsonl {path}: cannot write ({exc.strerror or exc})") from None
