"""Write-then-rename, so an interrupted run (crash, Ctrl-C, full disk) never leaves a half-written
file under a final name, and a rerun can trust that every final name is complete."""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
from collections.abc import Iterator

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs that share files there may repeat work
    fcntl = None

PARTIAL_SUFFIX = ".partial"


def writer_alive(partial: pathlib.Path) -> bool:
    """Whether the process that writes ``partial`` (a :func:`partial_path`) still runs on this
    machine; False for our own process, where nothing else writes it."""
    pid = partial.name.rpartition(f"{PARTIAL_SUFFIX}-")[2].partition(".")[0]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


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


def try_lock(path: pathlib.Path, *, wait: bool) -> int | None:
    """An exclusive lock on the file ``path`` (created if needed) between processes: a descriptor
    for :func:`unlock`, or None where another process holds it and ``wait`` is false. The kernel
    drops the lock of a killed process by itself."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError as error:
            if error.errno in (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK):
                return fd  # a filesystem without locks (Lustre without -o flock): as on Windows
            os.close(fd)
            raise
        except BaseException:  # Ctrl-C while waiting
            os.close(fd)
            raise
        # The holder before us removes the file when it is done: if it did so between our open and
        # our lock, we hold a lock on a removed file and must lock the file that is there now.
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def unlock(path: pathlib.Path, fd: int) -> None:
    """Give up a :func:`try_lock` and remove its file (no lock file outlives its holder). Removed
    before it is closed, so that nobody locks it in between (see try_lock); Windows, which keeps an
    open file, gets it closed first."""
    if fcntl is None:
        os.close(fd)
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
    if fcntl is not None:
        os.close(fd)


@contextlib.contextmanager
def locked(path: pathlib.Path) -> Iterator[None]:
    """:func:`try_lock`, waiting for it, around a block."""
    fd = try_lock(path, wait=True)
    assert fd is not None  # a waiting lock is always granted
    try:
        yield
    finally:
        unlock(path, fd)
