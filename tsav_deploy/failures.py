"""Why a video failed, in one line: what is wrong and what to do.

Every failure met while one video is annotated (probe, both passes, writers, overlay, plot, record)
ends here, so a batch reports it and goes on. Errors of the user's input (``TsavError``) already
carry their line; the machine's own limits (a full disk, a file that vanished, memory) are put into
words; anything else is a bug of ours, reported as such with its traceback kept for a log file.
"""

from __future__ import annotations

import errno
import os
import traceback
from dataclasses import dataclass

import av

from tsav_deploy.errors import TsavError, shown


@dataclass(frozen=True)
class Failure:
    line: str  # what is wrong and what to do, naming the file
    traceback: str | None = None  # kept only for bugs (unexpected exceptions)


def describe_failure(video: str | os.PathLike, exc: BaseException) -> Failure:
    """One line for ``exc`` raised while annotating ``video``, in the visible form of names
    (``errors.shown``: no control character or undecodable byte reaches a console, log or summary)."""
    failure = _describe(os.fspath(video), exc)
    return Failure(shown(failure.line), failure.traceback)


def _describe(name: str, exc: BaseException) -> Failure:
    if isinstance(exc, TsavError):
        return Failure(str(exc))
    machine = _machine_line(name, exc) if isinstance(exc, OSError) else None
    if machine is not None:  # also where PyAV raised it while writing (av.error.OSError)
        return Failure(machine)
    if isinstance(exc, av.FFmpegError):  # before MemoryError: FFmpeg says ENOMEM for absurd sizes in damaged data
        reason = " ".join(str(getattr(exc, "strerror", None) or exc).split())
        return Failure(f"{name}: FFmpeg could not process it ({reason}); the file is damaged or in an unusual format")
    if isinstance(exc, MemoryError):
        return Failure(f"{name}: ran out of memory; close other programs or lower --batch-size, then run again")
    if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda's, a RuntimeError (torch not imported here)
        return Failure(f"{name}: the GPU ran out of memory; lower --batch-size or free the GPU, then run again")
    if isinstance(exc, OSError):
        return Failure(f"{name}: {exc.strerror or exc}{_where(name, exc)}")
    detail = " ".join(str(exc).split())[:200]
    return Failure(
        f"{name}: unexpected internal error ({type(exc).__name__}{': ' + detail if detail else ''}); "
        "this is a bug in tsav-deploy, please report it with the traceback",
        "".join(traceback.format_exception(exc)),
    )


def machine_limit(exc: BaseException) -> bool:
    """Whether ``exc`` is one of the machine's own limits (a full disk, permissions, a file that
    disappeared), which no output can step around."""
    return isinstance(exc, OSError) and _machine_line("", exc) is not None


def _where(name: str, exc: OSError) -> str:
    return f" ({exc.filename})" if exc.filename and os.fspath(exc.filename) != name else ""


def _machine_line(name: str, exc: OSError) -> str | None:
    """The line for the machine's own limits (disk, permissions, files that vanish), else None."""
    where = _where(name, exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{name}: the disk is full{where}; free space (or choose another --out) and run again"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{name}: permission denied{where}; check the file's and the output folder's permissions"
    if exc.errno == errno.ENOENT:
        return f"{name}: a file disappeared while it was in use{where}; check that nothing else moves or deletes it"
    return None
