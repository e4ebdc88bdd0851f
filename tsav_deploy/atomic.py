"""Write-then-rename, so an interrupted run (crash, Ctrl-C, full disk) never leaves a half-written
file under a final name, and a rerun can trust that every final name is complete."""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Iterator

PARTIAL_SUFFIX = ".partial"


def partial_path(path: pathlib.Path) -> pathlib.Path:
    """The temporary name used while ``path`` is being written: same folder, so the rename is atomic;
    the process id in it keeps two runs writing the same file (a shared summary) apart."""
    return path.with_name(f"{path.name}{PARTIAL_SUFFIX}-{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a temporary path to write; on success rename it to ``path``, on any error delete it.

    The temporary name keeps the final suffix (``x.partial.mp4``) because some writers (PyAV,
    matplotlib) choose the format from it.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return pathlib.Path(path)
