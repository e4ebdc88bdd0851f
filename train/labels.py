"""ABAW 2020 annotation files (docs/outputs-and-training.md) read into one per-frame label table per annotated person.

Layout of an annotation root::

    <root>/VA_Set/{Training_Set|Train_Set, Validation_Set}/<name>.txt    header "valence,arousal"
    <root>/EXPR_Set/...                                                   header "Neutral,Anger,...,Surprise"
    <root>/AU_Set/...                                                     header "AU1,AU2,...,AU25"

Line k after the header is frame k of the video. Unannotated frames carry −5 (valence, arousal) or −1
(expression, AU); in a :class:`LabelTable` they become NaN (valence/arousal) and −1 (expression, AU).
``<name>`` may end in ``_left``/``_right`` for a second annotated person of video ``<name minus suffix>``.

A malformed file is never skipped: the :class:`LabelError` names the file and the 1-based line number
(line 1 is the header). The same reader checks prediction files, where markers are not allowed.
"""

from __future__ import annotations

import pathlib
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from tsav_deploy.contract import ACTION_UNITS, EXPRESSIONS
from tsav_deploy.errors import LabelError

TASKS = ("VA", "EXPR", "AU")
TASK_FOLDERS = {"VA": "VA_Set", "EXPR": "EXPR_Set", "AU": "AU_Set"}
HEADERS = {"VA": "valence,arousal", "EXPR": ",".join(EXPRESSIONS), "AU": ",".join(ACTION_UNITS)}
COLUMNS = {"VA": 2, "EXPR": 1, "AU": len(ACTION_UNITS)}
SPLITS = ("train", "validation")
# ABAW 2020 shipped Training_Set, later releases Train_Set; both are accepted.
SPLIT_FOLDERS = {"train": ("Training_Set", "Train_Set"), "validation": ("Validation_Set",)}
VA_MISSING = -5.0
EXPR_MISSING = -1
AU_MISSING = -1
_MARKERS = {"VA": VA_MISSING, "EXPR": EXPR_MISSING, "AU": AU_MISSING}
PERSON_SUFFIXES = ("_left", "_right")
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})

_RANGE_TEXT = {
    "VA": "valence and arousal must lie in [-1, 1]",
    "EXPR": "the expression must be an integer 0-6",
    "AU": "each AU must be 0 or 1",
}


@dataclass
class LabelTable:
    """Labels of one annotated person in one split, aligned by frame: row k is frame k.

    Tasks with fewer lines than the longest task of this person are padded with missing labels.
    """

    name: str
    split: str
    va: np.ndarray  # [N, 2] float32, NaN = unannotated
    expr: np.ndarray  # [N] int64, -1 = unannotated
    au: np.ndarray  # [N, 8] int64, -1 = unannotated
    files: dict[str, pathlib.Path]  # task -> the annotation file it came from

    def __len__(self) -> int:
        return len(self.expr)

    @property
    def video_name(self) -> str:
        return video_name(self.name)

    @property
    def has_valence(self) -> np.ndarray:
        return ~np.isnan(self.va[:, 0])

    @property
    def has_arousal(self) -> np.ndarray:
        return ~np.isnan(self.va[:, 1])

    @property
    def has_va(self) -> np.ndarray:
        return self.has_valence & self.has_arousal

    @property
    def has_expr(self) -> np.ndarray:
        return self.expr != EXPR_MISSING

    @property
    def has_au(self) -> np.ndarray:
        # A frame with any unannotated AU counts as unannotated for the AU task (as the ABAW metric).
        return (self.au != AU_MISSING).all(axis=1)


def read_task_file(
    path: str | pathlib.Path, task: str, *, markers: bool = True, keep_out_of_range: bool = False
) -> np.ndarray:
    """Read one ABAW file of ``task`` ("VA", "EXPR" or "AU").

    Returns VA ``[N, 2]`` float32 (−5 → NaN), EXPR ``[N]`` int64, AU ``[N, 8]`` int64.
    ``markers=False`` reads a prediction file: no unannotated markers allowed.
    ``keep_out_of_range=True`` keeps numeric values outside the task's range (the filter then drops
    those frames and counts them) instead of rejecting the file.
    """
    path = pathlib.Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise LabelError(f"{path}: not a text file") from None
    if not lines:
        raise LabelError(f"{path}, line 1: empty file, expected the header {HEADERS[task]!r}")
    header = ",".join(field.strip() for field in lines[0].split(","))
    if header != HEADERS[task]:
        raise LabelError(f"{path}, line 1: header must be {HEADERS[task]!r} for {TASK_FOLDERS[task]}, got {lines[0]!r}")
    rows = lines[1:]
    if not rows:
        raise LabelError(f"{path}: the header is not followed by any frame")
    values = _parse_rows(path, rows, COLUMNS[task])
    _check_range(path, rows, task, values, markers=markers, keep_out_of_range=keep_out_of_range)
    if task == "VA":
        va = values.astype(np.float32)
        if markers:
            va[values == VA_MISSING] = np.nan
        return va
    ints = values.astype(np.int64)
    return ints[:, 0] if task == "EXPR" else ints


def _where(path: pathlib.Path, row: int) -> str:
    return f"{path}, line {row + 2}"  # +1 for the header, +1 for 1-based numbering


def _parse_rows(path: pathlib.Path, rows: list[str], width: int) -> np.ndarray:
    fields = [row.split(",") for row in rows]
    for i, parts in enumerate(fields):
        if len(parts) != width:
            raise LabelError(
                f"{_where(path, i)}: expected {width} comma-separated value(s), got {len(parts)}: {rows[i]!r}"
            )
    try:
        values = np.array(fields, dtype=np.float64)
    except ValueError:
        # The fast whole-file conversion failed; repeat it row by row (same parser) to name the line.
        for i, parts in enumerate(fields):
            try:
                np.array(parts, dtype=np.float64)
            except ValueError:
                raise LabelError(f"{_where(path, i)}: not a number: {rows[i]!r}") from None
        raise
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        i = int(np.argmin(finite))
        raise LabelError(f"{_where(path, i)}: not a finite number: {rows[i]!r}")
    return values


def _check_range(
    path: pathlib.Path, rows: list[str], task: str, values: np.ndarray, *, markers: bool, keep_out_of_range: bool
) -> None:
    expectation = f"{_RANGE_TEXT[task]} (or be {_MARKERS[task]:g} for unannotated)" if markers else _RANGE_TEXT[task]
    if task != "VA":
        integral = (values == np.round(values)).all(axis=1)
        if not integral.all():
            i = int(np.argmin(integral))
            raise LabelError(f"{_where(path, i)}: {expectation}, got {rows[i]!r}")
    if keep_out_of_range:
        return
    valid = in_range(task, values)
    if markers:
        valid |= values == _MARKERS[task]
    ok = valid.all(axis=1)
    if not ok.all():
        i = int(np.argmin(ok))
        raise LabelError(f"{_where(path, i)}: {expectation}, got {rows[i]!r}")


def in_range(task: str, values: np.ndarray) -> np.ndarray:
    """Element-wise: is each value a valid label of ``task`` (markers and NaN are not)?"""
    if task == "VA":
        return np.abs(values) <= 1.0
    if task == "EXPR":
        return (values >= 0) & (values < len(EXPRESSIONS))
    return (values == 0) | (values == 1)


def label_files(folder: pathlib.Path) -> list[pathlib.Path]:
    """The ``*.txt`` files of one task/split folder, by name (other files, e.g. .DS_Store, are ignored)."""
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() == ".txt" and p.is_file() and not p.name.startswith(".")
    )


def annotation_folders(root: str | pathlib.Path) -> dict[tuple[str, str], pathlib.Path]:
    """``{(task, split): folder}`` for every task/split folder present under an annotation root."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise LabelError(f"{root}: annotation folder not found")
    folders = {}
    task_dirs = {task: root / TASK_FOLDERS[task] for task in TASKS if (root / TASK_FOLDERS[task]).is_dir()}
    if not task_dirs:
        raise LabelError(f"{root}: no VA_Set, EXPR_Set or AU_Set folder (expected the ABAW annotation root)")
    for task, task_dir in task_dirs.items():
        for split, names in SPLIT_FOLDERS.items():
            present = [task_dir / name for name in names if (task_dir / name).is_dir()]
            if len(present) > 1:
                raise LabelError(f"{task_dir}: both {present[0].name} and {present[1].name}; keep one")
            if present:
                folders[task, split] = present[0]
        if not any(key[0] == task for key in folders):
            raise LabelError(f"{task_dir}: no Training_Set, Train_Set or Validation_Set folder")
    return folders


def read_annotations(root: str | pathlib.Path, *, keep_out_of_range: bool = False) -> dict[str, dict[str, LabelTable]]:
    """Read an ABAW annotation root into ``{split: {name: LabelTable}}`` for splits "train", "validation".

    A person annotated for a task in the training split and for another task in the validation split
    gets one table per split, so validation labels never leak into training.
    """
    folders = annotation_folders(root)
    annotations: dict[str, dict[str, LabelTable]] = {}
    for split in SPLITS:
        parts: dict[str, dict[str, tuple[pathlib.Path, np.ndarray]]] = defaultdict(dict)
        for task in TASKS:
            if (task, split) in folders:
                for path in label_files(folders[task, split]):
                    parts[path.stem][task] = (path, read_task_file(path, task, keep_out_of_range=keep_out_of_range))
        annotations[split] = {name: _align(name, split, parts[name]) for name in sorted(parts)}
    return annotations


def _align(name: str, split: str, parts: dict[str, tuple[pathlib.Path, np.ndarray]]) -> LabelTable:
    n = max(len(values) for _, values in parts.values())
    arrays = {
        "VA": np.full((n, 2), np.nan, np.float32),
        "EXPR": np.full(n, EXPR_MISSING, np.int64),
        "AU": np.full((n, len(ACTION_UNITS)), AU_MISSING, np.int64),
    }
    for task, (_, values) in parts.items():
        arrays[task][: len(values)] = values
    files = {task: path for task, (path, _) in parts.items()}
    return LabelTable(name=name, split=split, va=arrays["VA"], expr=arrays["EXPR"], au=arrays["AU"], files=files)


# --- annotation name -> video file ------------------------------------------------------------------


def video_name(annotation_name: str) -> str:
    """The video an annotation belongs to: ``_left``/``_right`` (a second person) removed."""
    for suffix in PERSON_SUFFIXES:
        if annotation_name.endswith(suffix):
            return annotation_name[: -len(suffix)]
    return annotation_name


def find_videos(videos_dir: str | pathlib.Path) -> dict[str, pathlib.Path]:
    """``{stem: path}`` of the video files anywhere under ``videos_dir`` (Aff-Wild2 ships batch folders)."""
    videos_dir = pathlib.Path(videos_dir)
    if not videos_dir.is_dir():
        raise LabelError(f"{videos_dir}: video folder not found")
    videos: dict[str, pathlib.Path] = {}
    for path in sorted(videos_dir.rglob("*")):
        if path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file():
            if path.stem in videos:
                raise LabelError(f"two videos named {path.stem!r}: {videos[path.stem]} and {path}; keep one")
            videos[path.stem] = path
    return videos


@dataclass
class VideoMatch:
    """Which video file each annotated person belongs to, and the annotation files left without one."""

    videos: dict[str, pathlib.Path]  # annotation name -> video file
    missing: list[pathlib.Path]  # annotation files whose video was not found

    def raise_if_missing(self) -> None:
        if self.missing:
            more = f" (and {len(self.missing) - 1} more annotation files)" if len(self.missing) > 1 else ""
            raise LabelError(f"{self.missing[0]}: no video {video_name(self.missing[0].stem)}.* found{more}")


def match_videos(annotations: dict[str, dict[str, LabelTable]], videos_dir: str | pathlib.Path) -> VideoMatch:
    """Map every annotated name to ``<name>.<ext>`` or, failing that, ``<name without _left/_right>.<ext>``."""
    found = find_videos(videos_dir)
    videos: dict[str, pathlib.Path] = {}
    missing: list[pathlib.Path] = []
    for tables in annotations.values():
        for name, table in tables.items():
            video = found.get(name) or found.get(table.video_name)
            if video is None:
                missing.extend(table.files.values())
            else:
                videos[name] = video
    return VideoMatch(videos=videos, missing=sorted(missing))
