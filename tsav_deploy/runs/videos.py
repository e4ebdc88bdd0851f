"""What the user named on the command line, as a list of video files."""

from __future__ import annotations

import glob
import os
import pathlib
from collections.abc import Iterable

from tsav_deploy.atomic import is_partial
from tsav_deploy.outputs.records import RECORDS, read_record

VIDEO_SUFFIXES = {
    ".mp4",
    ".mov",
    ".avi",
    ".mkv",
    ".webm",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".flv",
    ".3gp",
    ".ts",
    ".mts",
}


def expand_inputs(inputs: Iterable[str]) -> tuple[list[pathlib.Path], list[tuple[pathlib.Path, str]]]:
    """Files, directories (their videos, recursively) and globs, in order and without repeats; and
    ``(input, one-line problem)`` for each input that names nothing. What folders and globs find of
    the tool's own outputs (a file a record in its folder lists, such as an overlay, or a temporary
    file) is never an input; a file named on its own is taken as given."""
    videos: list[pathlib.Path] = []
    problems: list[tuple[pathlib.Path, str]] = []
    outputs = _OwnOutputs()
    for text in inputs:
        path = pathlib.Path(text).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
            found = [p for p in found if p not in outputs]
            if not found:
                problems.append((path, f"{path}: no video files in this folder"))
            videos += found
        elif path.exists():
            videos.append(path)
        elif glob.has_magic(text):
            found = sorted(
                pathlib.Path(p)
                for p in glob.glob(os.path.expanduser(text), recursive=True)
                if pathlib.Path(p).is_file() and pathlib.Path(p) not in outputs
            )
            if not found:
                problems.append((path, f"{text}: the pattern matches no file"))
            videos += found
        else:
            problems.append((path, f"{path}: no such file or folder"))
    unique = list(dict.fromkeys(p.resolve() for p in videos))
    return unique, problems


class _OwnOutputs:
    """``path in outputs``: whether ``path`` is a file the tool wrote (listed by a record of the
    output folder it lies in) or a temporary file of the tool."""

    def __init__(self) -> None:
        self._listed: dict[pathlib.Path, set[str]] = {}

    def __contains__(self, path: pathlib.Path) -> bool:
        folder = path.parent
        if folder not in self._listed:
            names = [p.stem for p in (folder / RECORDS).glob("*.json")] if (folder / RECORDS).is_dir() else []
            records = [read_record(folder, name) for name in names]
            self._listed[folder] = {f for record in records if record is not None for f in record["outputs"]}
        return path.name in self._listed[folder] or is_partial(path)
