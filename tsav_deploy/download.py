"""Downloads that cannot go wrong quietly: one download path for published weights and model packs.

A file arrives under a temporary name (so an interrupted download never sits under the final name),
is checked for what it claims to be (a zip archive with intact members, or a PyTorch file) before
anyone trusts its hash, and anything refused is deleted at once: a server that answers 200 with an
HTML error page ends in one line and leaves nothing behind, so the next run simply downloads again.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import pathlib
import urllib.error
import urllib.request
import zipfile
from typing import Any

from tsav_deploy.atomic import atomic_path, is_stale_partial, write_text
from tsav_deploy.errors import TsavError


class DownloadError(TsavError):
    """A download failed or is not what it claims to be (nothing of it was kept)."""


def file_sha256(path: str | pathlib.Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: pathlib.Path, *, remedy: str, progress: bool = True) -> None:
    """Fetch ``url`` into ``dest`` with a progress bar, written under a temporary name and renamed.

    ``remedy`` ends the one-line error (what the user can do instead).
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    try:
        with atomic_path(dest) as tmp, urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                disable=not progress,
                transient=True,
            ) as bar:
                task = bar.add_task(f"downloading {dest.name}", total=total)
                while block := response.read(1 << 20):
                    out.write(block)
                    bar.advance(task, len(block))
            if total is not None and out.tell() != total:
                raise OSError(f"the connection closed after {out.tell()} of {total} bytes")
    except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"could not download {url} ({reason}); {remedy}") from None


def refuse(file: pathlib.Path, origin: str, claim: str, then: str, found: str | None = None) -> DownloadError:
    """Delete a file that is not ``claim`` and return the one-line error that says so.

    ``origin`` names where it came from (the URL of a fresh download, the path of a cached file);
    ``then`` says what happens now.
    """
    found = found or describe(file)
    file.unlink(missing_ok=True)
    return DownloadError(f"{origin}: {found}, not {claim}; {then}")


def describe(file: pathlib.Path) -> str:
    """A few words on what a refused file looks like (what the user would see opening it)."""
    size = file.stat().st_size
    if size == 0:
        return "an empty file"
    with open(file, "rb") as fh:
        head = fh.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")) or b"<html" in head:
        return f"an HTML page of {size} bytes (an error page?)"
    return f"{size} bytes of something else"


def archive_members(file: pathlib.Path, origin: str, then: str) -> list[str]:
    """The member names of a zip file whose every member passes its CRC check, else refuse it."""
    if not zipfile.is_zipfile(file):
        raise refuse(file, origin, "a zip archive", then)
    try:
        with zipfile.ZipFile(file) as zf:
            damaged = zf.testzip()
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
        raise refuse(file, origin, "a zip archive", then, found=f"a damaged zip archive ({exc})") from None
    if damaged is not None:
        raise refuse(
            file, origin, "an intact zip archive", then, found=f"a zip archive whose member {damaged} is damaged"
        )
    return [name for name in names if not name.startswith("__MACOSX") and not name.endswith("/")]


def read_record(path: pathlib.Path) -> dict[str, Any]:
    """The hashes recorded next to cached files (an unreadable record counts as none)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write_record(path: pathlib.Path, record: dict[str, Any]) -> None:
    write_text(path, json.dumps(record, indent=1, sort_keys=True))


def remove_partials(folder: pathlib.Path) -> list[pathlib.Path]:
    """Delete what a killed download left under its temporary name (atomic_path cleans up otherwise)."""
    if not folder.is_dir():
        return []
    leftovers = [p for p in folder.iterdir() if is_stale_partial(p)]
    for path in leftovers:
        path.unlink()
    return leftovers
