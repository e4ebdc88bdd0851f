"""Writers for the ABAW challenge files and the per-frame table (README "Formats"), all atomic."""

from __future__ import annotations

import json
import os
import pathlib
import sys
from collections.abc import Iterable
from typing import TextIO

from tsav_deploy.atomic import atomic_path, create_new, partial_path, write_text
from tsav_deploy.contract import ACTION_UNITS, EXPRESSIONS
from tsav_deploy.errors import TsavError
from tsav_deploy.results.table import csv_text, frame_table
from tsav_deploy.results.video_result import PersonResult, VideoResult

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


def write_table(path: pathlib.Path, result: VideoResult, landmarks: bool = False) -> pathlib.Path:
    """The per-frame table as CSV (``results/table.py`` defines it), written atomically."""
    return write_text(path, csv_text(result, landmarks))


def write_parquet(path: pathlib.Path, result: VideoResult, landmarks: bool = False) -> pathlib.Path:
    """The per-frame table as Parquet (pyarrow), with the DataFrame's dtypes, written atomically."""
    with atomic_path(path) as tmp:
        frame_table(result, landmarks).to_parquet(tmp, engine="pyarrow", index=False)
    return path


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
