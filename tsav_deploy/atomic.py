"""Write-then-rename, so an interrupted run (crash, Ctrl-C, full disk) never leaves a half-written
file under a final name, and a rerun can trust that every final name is complete.

Also the one place where the tool's own files are made and recognised: a temporary or lock file is
created new (``O_EXCL | O_NOFOLLOW``), so a link planted at its name never sends a write elsewhere;
names that come from data (records, manifests, options) are confined to their folder
(:func:`plain_name`, :func:`confined`) before anything is written or deleted there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import re
import stat
from collections.abc import Iterator

from tsav_deploy.errors import TsavError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs that share files there may repeat work
    fcntl = None

PARTIAL_SUFFIX = ".partial"
_PARTIAL_NAME = re.compile(re.escape(PARTIAL_SUFFIX) + r"(-\d+)?(\.|$)")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # Windows has no symbolic links to follow by accident


def plain_name(name: object) -> str | None:
    """``name`` when it is one plain file name (a string, no folder part, not ``.`` or ``..``), else
    None: what a record, a manifest or an option may name inside a folder of ours."""
    if not isinstance(name, str) or name in ("", ".", "..") or "\0" in name:
        return None
    return None if any(sep in name for sep in ("/", os.sep, os.altsep or "/")) else name


def confined(folder: pathlib.Path, relative: object) -> pathlib.Path | None:
    """``folder / relative`` when ``relative`` is a relative path of plain names (``VA_Set/x.txt``)
    that stays in ``folder`` even through links on the way, else None."""
    if not isinstance(relative, str) or not relative:
        return None
    parts = relative.split("/")
    if any(plain_name(part) is None for part in parts):
        return None
    path = folder.joinpath(*parts)
    root, parent = folder.resolve(), path.parent.resolve()
    return path if parent == root or root in parent.parents else None


def is_partial(path: pathlib.Path) -> bool:
    """Whether ``path`` is named as a temporary file of the tool (:func:`partial_path`)."""
    return _PARTIAL_NAME.search(path.name) is not None and not path.is_dir()


def is_stale_partial(path: pathlib.Path) -> bool:
    """Whether ``path`` is a temporary file whose writer is gone: the only temporary files a run
    removes."""
    return is_partial(path) and not writer_alive(path)


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
    os.close(create_new(tmp, os.O_WRONLY))
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def create_new(path: pathlib.Path, flags: int, *, replace_stale: bool = True) -> int:
    """A descriptor of a file of ours created new at ``path`` (``O_CREAT | O_EXCL | O_NOFOLLOW``):
    whatever sits there is never written through. A regular file left by a process that had our id
    before is replaced where ``replace_stale``; a link or anything else there is refused in one line."""
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666)
    except FileExistsError:
        there = os.lstat(path)
        if not replace_stale or not stat.S_ISREG(there.st_mode):
            raise _not_ours(path, there) from None
        path.unlink()
        return os.open(path, flags | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666)


def _not_ours(path: pathlib.Path, there: os.stat_result) -> TsavError:
    kind = "a symbolic link" if stat.S_ISLNK(there.st_mode) else "something that is not a file"
    return TsavError(f"{path}: {kind} where tsav-deploy writes a file of its own; remove it and run again")


def append_text(path: pathlib.Path, text: str) -> None:
    """Append to a log file of ours, never through a link planted at its name."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, 0o666)
    except OSError:
        if path.is_symlink():
            raise _not_ours(path, os.lstat(path)) from None
        raise
    with os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace") as file:
        file.write(text)


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
        fd = _open_lock(path)
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


def _open_lock(path: pathlib.Path) -> int:
    """The lock file, created or opened, never through a link planted at its name."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP or path.is_symlink():
            raise _not_ours(path, os.lstat(path)) from None
        raise


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
