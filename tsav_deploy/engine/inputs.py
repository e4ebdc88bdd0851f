"""What the user named on the command line, as a list of video files."""

from __future__ import annotations

import glob
import os
import pathlib
from collections.abc import Iterable

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
    ``(input, one-line problem)`` for each input that names nothing."""
    videos: list[pathlib.Path] = []
    problems: list[tuple[pathlib.Path, str]] = []
    for text in inputs:
        path = pathlib.Path(text).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
            if not found:
                problems.append((path, f"{path}: no video files in this folder"))
            videos += found
        elif path.exists():
            videos.append(path)
        elif glob.has_magic(text):
            found = sorted(
                pathlib.Path(p)
                for p in glob.glob(os.path.expanduser(text), recursive=True)
                if pathlib.Path(p).is_file()
            )
            if not found:
                problems.append((path, f"{text}: the pattern matches no file"))
            videos += found
        else:
            problems.append((path, f"{path}: no such file or folder"))
    unique = list(dict.fromkeys(p.resolve() for p in videos))
    return unique, problems
