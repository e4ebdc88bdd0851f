"""Published weights: a small registry, a cache directory and one download path for all of them.

The authors' models come as zip archives holding a ``.pth.tar``; torchvision's Kinetics-400 and
ImageNet backbones (training initialisation) are plain ``.pth`` files. A file is downloaded once into
``$TSAV_HOME`` (default ``~/.cache/tsav-deploy``) through :mod:`tsav_deploy.download` and checked for
what it claims to be (a zip archive holding a checkpoint, or a PyTorch file) before its SHA-256 is
checked against the registry where the hash is published, otherwise recorded (trust on first use).
The checkpoint extracted from an archive gets its own recorded hash. Every use verifies the file it
returns; whatever fails is removed with a one-line error, so the next run repairs the cache by itself.
``--weights PATH`` never touches the network.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import zipfile
from dataclasses import dataclass

from tsav_deploy.atomic import atomic_path, locked, plain_name
from tsav_deploy.download import (
    DownloadError,
    archive_members,
    download,
    file_sha256,
    read_record,
    refuse,
    remove_partials,
    write_record,
)
from tsav_deploy.errors import CheckpointError

RECORD = "sha256.json"


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


# What ends every download error: the user can always fetch the file another way.
REMEDY = "try again later, or download it by hand and pass --weights PATH"
NEXT_USE = "its next use downloads it again"


def fetch(entry: Published, *, progress: bool = True, root: pathlib.Path | None = None) -> pathlib.Path:
    """The verified checkpoint file for ``entry``, downloaded and extracted when the cache lacks it."""
    folder = (root or cache_dir()) / entry.name
    with locked(_lock_path(folder)):
        return _settle(entry, folder, allow_download=True, progress=progress, notes=[])


def is_cached(entry: Published, root: pathlib.Path | None = None) -> bool:
    """Whether a checked copy of ``entry`` is in the cache (a cheap look: :func:`fetch` verifies it)."""
    folder = (root or cache_dir()) / entry.name
    record = _record(entry, folder)
    name = (record.get("checkpoint") or {}).get("name") if entry.member_suffixes else _file_name(entry)
    return "sha256" in record and bool(name) and (folder / name).is_file()


def verify(root: pathlib.Path | None = None) -> list[str]:
    """Re-check every cached published file (never downloading): one line per cached entry saying
    what was verified, repaired or removed. A removed file is downloaded again by its next use."""
    lines = []
    for entry in REGISTRY.values():
        folder = (root or cache_dir()) / entry.name
        if not folder.is_dir() or not any(folder.iterdir()):
            continue
        with locked(_lock_path(folder)):
            notes = [f"removed the unfinished download {p.name}" for p in remove_partials(folder)]
            source = folder / _file_name(entry)
            if source.exists():  # checked even where the extracted checkpoint alone would do
                try:
                    _check(entry, source, _record(entry, folder), folder / RECORD, new=False)
                except DownloadError as exc:
                    notes.append(str(exc))
            try:
                notes.append(f"{_settle(entry, folder, allow_download=False, progress=False, notes=notes)} verified")
            except DownloadError as exc:
                notes.append(str(exc))
        lines.append(f"{entry.name}: {'; '.join(notes)}")
    return lines


def _settle(
    entry: Published, folder: pathlib.Path, *, allow_download: bool, progress: bool, notes: list[str]
) -> pathlib.Path:
    record_path = folder / RECORD
    record = _record(entry, folder)
    if entry.member_suffixes and (checkpoint := _recorded_checkpoint(folder, record, notes)) is not None:
        return checkpoint
    source = folder / _file_name(entry)
    if source.exists():
        record["sha256"] = _check(entry, source, record, record_path, new=False)
    elif allow_download:
        record["sha256"] = _download(entry, folder, source, record, progress)
    else:
        raise DownloadError(f"nothing verified is cached; `tsav weights download {entry.name}` fetches it")
    if not entry.member_suffixes:
        write_record(record_path, record)
        return source
    checkpoint = _extract(source, folder, entry.member_suffixes)
    record["checkpoint"] = {"name": checkpoint.name, "sha256": file_sha256(checkpoint)}
    write_record(record_path, record)
    notes.append(f"extracted {checkpoint.name} from the verified {source.name}")
    return checkpoint


def _download(entry: Published, folder: pathlib.Path, source: pathlib.Path, record: dict, progress: bool) -> str:
    """Download and check ``source``; a failure leaves no folder it made (an empty folder in the
    cache would read as a download in progress or a broken entry)."""
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        download(entry.url, source, remedy=REMEDY, progress=progress)
        return _check(entry, source, record, folder / RECORD, new=True)
    except BaseException:
        if made:
            with contextlib.suppress(OSError):  # not empty: something else is in it, keep it
                folder.rmdir()
        raise


def _lock_path(folder: pathlib.Path) -> pathlib.Path:
    return folder.with_name(f".{folder.name}.lock")  # beside the folder, which stays the cached files only


def _file_name(entry: Published) -> str:
    return entry.url.rsplit("/", 1)[-1]


def _record(entry: Published, folder: pathlib.Path) -> dict:
    """The hashes recorded for ``entry`` (a record made for another URL says nothing about this one).

    A record is data anyone with write access to the cache can edit: a field of the wrong form is
    dropped (the file it would vouch for is checked as if never seen), and the checkpoint it names
    must be a plain file name in ``folder``, so no record can point a check (or a removal) elsewhere."""
    record = read_record(folder / RECORD)
    if record.get("url") != entry.url:
        return {"url": entry.url}
    kept: dict = {"url": entry.url}
    if _is_sha256(record.get("sha256")):
        kept["sha256"] = record["sha256"]
    known = record.get("checkpoint")
    if (
        entry.member_suffixes
        and isinstance(known, dict)
        and plain_name(known.get("name")) is not None
        and known["name"].endswith(entry.member_suffixes)
        and _is_sha256(known.get("sha256"))
    ):
        kept["checkpoint"] = {"name": known["name"], "sha256": known["sha256"]}
    return kept


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _recorded_checkpoint(folder: pathlib.Path, record: dict, notes: list[str]) -> pathlib.Path | None:
    """The extracted checkpoint when it still matches the hash recorded at its extraction."""
    known = record.get("checkpoint") or {}
    path = folder / str(known.get("name", ""))
    if not known or not path.is_file():
        return None
    if file_sha256(path) == known.get("sha256"):
        return path
    path.unlink()
    notes.append(f"removed {path.name} (it no longer matched the SHA-256 recorded at its extraction)")
    return None


def _check(entry: Published, file: pathlib.Path, record: dict, record_path: pathlib.Path, *, new: bool) -> str:
    """The SHA-256 of ``file`` when it is what it claims to be and matches the published or recorded
    hash; otherwise delete it and raise. A download's content is checked before its hash, so a
    server's error page is never recorded as the trusted file and is named for what it is."""
    origin, then = (entry.url, f"nothing was kept: {REMEDY}") if new else (str(file), "removed it: " + NEXT_USE)
    if new:
        _check_content(entry, file, origin, then)
    digest = file_sha256(file)
    expected = entry.sha256 or record.get("sha256")
    if (expected is None or digest == expected) and digest.startswith(entry.sha256_prefix or ""):
        # A cached file never checked before, or an archive about to be extracted (a record can
        # predate these checks), must also be what it claims to be.
        if not new and (record.get("sha256") is None or entry.member_suffixes):
            try:
                _check_content(entry, file, origin, then)
            except DownloadError:
                record_path.unlink(missing_ok=True)  # it vouched for a file that is not what it claims
                raise
        return digest
    file.unlink()
    if entry.sha256 or entry.sha256_prefix:
        wanted = f"the published {(entry.sha256 or entry.sha256_prefix)[:16]}…"
    else:
        wanted = f"{expected[:16]}… recorded at its first download"
        if new:
            then = f"nothing was kept: if the publisher replaced the file, delete {record_path} to accept the new one"
    raise DownloadError(f"{origin}: SHA-256 {digest[:16]}… is not {wanted}; {then}")


def _check_content(entry: Published, file: pathlib.Path, origin: str, then: str) -> None:
    if entry.member_suffixes:
        names = archive_members(file, origin, then)
        if not any(name.endswith(entry.member_suffixes) for name in names):
            claim = f"a zip archive holding a checkpoint ({', '.join(entry.member_suffixes)})"
            raise refuse(file, origin, claim, then, found=f"a zip archive of {len(names)} other files")
        return
    import torch

    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception:  # whatever torch raises for a file that is not one of its own
        raise refuse(file, origin, "a PyTorch weight file", then) from None
    if not isinstance(state, dict):
        raise refuse(
            file, origin, "a PyTorch weight file", then, found=f"a PyTorch file holding a {type(state).__name__}"
        )


def _extract(archive: pathlib.Path, folder: pathlib.Path, suffixes: tuple[str, ...]) -> pathlib.Path:
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.namelist() if m.endswith(suffixes) and not m.startswith("__MACOSX")]
        member = sorted(members, key=lambda m: (suffixes.index(next(s for s in suffixes if m.endswith(s))), m))[0]
        target = folder / pathlib.PurePosixPath(member).name
        with atomic_path(target) as tmp, zf.open(member) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return target
