"""Published weights: a small registry, a cache directory and one download path for all of them.

The authors' models come as zip archives holding a ``.pth.tar``; torchvision's Kinetics-400 and
ImageNet backbones (training initialisation) are plain ``.pth`` files. A file is downloaded once with
a progress bar into ``$TSAV_HOME`` (default ``~/.cache/tsav-deploy``), written under a temporary name
and renamed, and its SHA-256 is checked: against the registry where the hash is published, otherwise
against the hash recorded at the first download (trust on first use), so a later corrupted or
swapped file is caught. ``--weights PATH`` never touches the network.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass

from .atomic import atomic_path
from .checkpoint import file_sha256
from .errors import CheckpointError


@dataclass(frozen=True)
class Published:
    name: str
    url: str
    description: str
    sha256: str | None = None  # None: recorded on first download, verified afterwards
    sha256_prefix: str | None = None  # torchvision names files <name>-<first 8 hex of sha256>.pth
    member_suffixes: tuple[str, ...] = ()  # for archives: which member is the checkpoint
    licence: str = ""


REGISTRY: dict[str, Published] = {
    p.name: p
    for p in (
        Published(
            "tnt-sub1",
            "https://www.tnt.uni-hannover.de/project/affwild2/aff2model_tnt.zip",
            "Authors' ABAW 2020 submission 1 (TSAV, Aff-Wild2)",
            member_suffixes=(".pth.tar", ".pth", ".pt"),
            licence="MIT (github.com/kuhnkeF/ABAW2020TNT); trained on Aff-Wild2, whose licence restricts use to research",
        ),
        Published(
            "tnt-sub4",
            "https://www.tnt.uni-hannover.de/project/affwild2/aff2model_tntsub4.zip",
            "Authors' ABAW 2020 submission 4 (TSAV, Aff-Wild2 train + validation)",
            member_suffixes=(".pth.tar", ".pth", ".pt"),
            licence="MIT (github.com/kuhnkeF/ABAW2020TNT); trained on Aff-Wild2, whose licence restricts use to research",
        ),
        Published(
            "r2plus1d_18-kinetics400",
            "https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth",
            "torchvision R(2+1)D-18, Kinetics-400 (visual stream initialisation)",
            sha256_prefix="91a641e6",
            licence="BSD-3-Clause (torchvision); Kinetics-400 terms apply",
        ),
        Published(
            "resnet18-imagenet",
            "https://download.pytorch.org/models/resnet18-f37072fd.pth",
            "torchvision ResNet-18, ImageNet-1k (optional aural stream initialisation)",
            sha256_prefix="f37072fd",
            licence="BSD-3-Clause (torchvision); ImageNet terms apply",
        ),
    )
}


def cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("TSAV_HOME") or pathlib.Path.home() / ".cache" / "tsav-deploy")


def resolve(name_or_path: str | os.PathLike, *, progress: bool = True) -> pathlib.Path:
    """A local checkpoint path as given, or the cached file of a published name (downloaded if needed)."""
    text = os.fspath(name_or_path)
    if text in REGISTRY:
        return fetch(REGISTRY[text], progress=progress)
    path = pathlib.Path(text).expanduser()
    if not path.exists() and not any(sep in text for sep in ("/", "\\", ".")):
        known = ", ".join(REGISTRY)
        raise CheckpointError(f"{text}: neither a file nor a published name (known: {known})")
    return path


def fetch(entry: Published, *, progress: bool = True, root: pathlib.Path | None = None) -> pathlib.Path:
    """The cached checkpoint file for ``entry``, downloading and extracting it on first use."""
    folder = (root or cache_dir()) / entry.name
    folder.mkdir(parents=True, exist_ok=True)
    download = folder / entry.url.rsplit("/", 1)[-1]
    record = folder / "sha256.json"
    if not download.exists():
        _download(entry.url, download, progress=progress)
        _verify(entry, download, record, first=True)
    else:
        _verify(entry, download, record, first=False)
    if zipfile.is_zipfile(download) and entry.member_suffixes:
        return _extract(download, folder, entry.member_suffixes)
    return download


def _download(url: str, dest: pathlib.Path, *, progress: bool) -> None:
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
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CheckpointError(
            f"could not download {url} ({reason}); download it by hand and pass --weights PATH"
        ) from None


def _verify(entry: Published, file: pathlib.Path, record: pathlib.Path, *, first: bool) -> None:
    digest = file_sha256(file)
    expected = entry.sha256
    if expected is None and record.exists():
        expected = json.loads(record.read_text()).get("sha256")
    bad = (expected is not None and digest != expected) or (
        entry.sha256_prefix is not None and not digest.startswith(entry.sha256_prefix)
    )
    if bad:
        if first:
            file.unlink(missing_ok=True)
        raise CheckpointError(
            f"{file}: checksum mismatch (sha256 {digest[:16]}…, expected {(expected or entry.sha256_prefix)[:16]}…); "
            f"delete {file.parent} and download again"
        )
    if first or not record.exists():
        record.write_text(json.dumps({"url": entry.url, "sha256": digest}, indent=1))


def _extract(archive: pathlib.Path, folder: pathlib.Path, suffixes: tuple[str, ...]) -> pathlib.Path:
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.namelist() if m.endswith(suffixes) and not m.startswith("__MACOSX")]
        if not members:
            raise CheckpointError(f"{archive}: the archive holds no checkpoint ({', '.join(suffixes)})")
        member = sorted(members, key=lambda m: (suffixes.index(next(s for s in suffixes if m.endswith(s))), m))[0]
        target = folder / pathlib.PurePosixPath(member).name
        if not target.exists():
            with atomic_path(target) as tmp, zf.open(member) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return target
