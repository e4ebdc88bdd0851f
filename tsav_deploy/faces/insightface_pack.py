"""insightface's ``buffalo_l`` model pack: where it lives, fetched and checked against upstream's
published SHA-256s, and fetched again when only half of it is there.

insightface 2.1 downloads ``buffalo_l.zip`` from its ``model-zoo`` GitHub release (versions before
it from ``v0.7``) into ``<root>/models/``, extracts it into ``<root>/models/buffalo_l`` and leaves the
289 MB zip beside it; it only asks whether that folder exists, so an interrupted extraction stays
broken. Here the archive comes through :mod:`tsav_deploy.download` from the URL the installed
insightface uses, is checked (a zip with intact members and the models this project loads; its
SHA-256 where upstream publishes one), extracted file by file, and then removed.

Upstream publishes SHA-256s (deepinsight/insightface, ``server/backend/insightface_server/models/
packages.py``) for the ``v0.7`` archive and for two of the models loaded here: the detector
``det_10g.onnx`` and the ArcFace ``w600k_r50.onnx``. The landmark model ``1k3d68.onnx`` has none (nor
have ``2d106det.onnx`` and ``genderage.onnx``, which insightface's loader opens and discards): their
hashes are recorded when they are extracted (or first seen in a pack copied by hand) and verified
on every later use.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tsav_deploy.atomic import atomic_path, locked, partial_path
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
from tsav_deploy.errors import TsavError
from tsav_deploy.faces.face import FaceBackendError

PACK = "buffalo_l"
FILES = ("det_10g.onnx", "1k3d68.onnx", "w600k_r50.onnx")  # the models the backend uses
PUBLISHED_SHA256 = {
    "det_10g.onnx": "5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91",
    "w600k_r50.onnx": "4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43",
}
V07_URL = f"https://github.com/deepinsight/insightface/releases/download/v0.7/{PACK}.zip"
# Only the v0.7 release asset has a published hash; other releases are checked file by file.
ARCHIVE_SHA256 = {V07_URL: "80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f"}
RECORD = "tsav-deploy.sha256.json"  # not *.onnx and not manifest.json, so insightface's loader ignores it
REMEDY = "try again later, copy the pack there by hand, or use --faces dlib"


@dataclass(frozen=True)
class PackSource:
    """Where the pack's archive comes from and the hashes it must meet."""

    url: str
    archive_sha256: str | None = None
    file_sha256: dict[str, str] = field(default_factory=dict)


def upstream_source() -> PackSource:
    """The release URL the installed insightface downloads from, with upstream's published hashes."""
    from insightface.utils import storage

    if hasattr(storage, "model_zoo_download_url"):
        url = storage.model_zoo_download_url(f"{PACK}.zip")
    else:
        url = f"{storage.BASE_REPO_URL}/{PACK}.zip"
    return PackSource(url, ARCHIVE_SHA256.get(url), dict(PUBLISHED_SHA256))


def default_root() -> Path:
    """insightface's cache root: ``$INSIGHTFACE_HOME`` or ``~/.insightface``."""
    return Path(os.environ.get("INSIGHTFACE_HOME") or "~/.insightface").expanduser()


def _root(root: str | os.PathLike | None) -> Path:
    return Path(root).expanduser() if root is not None else default_root()


def pack_dir(root: str | os.PathLike | None = None) -> Path:
    """Where the pack lives under a cache root (default :func:`default_root`)."""
    return _root(root) / "models" / PACK


def archive_path(root: str | os.PathLike | None = None) -> Path:
    """Where insightface (and this module, while extracting) keeps the downloaded zip."""
    return _root(root) / "models" / f"{PACK}.zip"


def is_available(root: str | os.PathLike | None = None) -> bool:
    """True when the pack's models are on disk (a cheap look for ``--faces auto``: never downloads
    or hashes; :func:`ensure` verifies them before they are loaded)."""
    folder = pack_dir(root)
    return all((folder / name).is_file() and (folder / name).stat().st_size > 0 for name in FILES)


def ensure(
    root: str | os.PathLike | None = None,
    *,
    download_missing: bool = True,
    progress: bool = True,
    source: PackSource | None = None,
) -> Path:
    """The pack folder with every model verified; a missing, short or altered model is removed and
    the pack fetched again (from insightface's zip where it is intact, else downloaded when
    ``download_missing``), and insightface's leftover zip is removed."""
    with locked(_lock_path(root)):
        _remove_partials(root)
        return _settle(root, source or upstream_source(), download_missing=download_missing, progress=progress)


def _settle(root: str | os.PathLike | None, source: PackSource, *, download_missing: bool, progress: bool) -> Path:
    folder, archive = pack_dir(root), archive_path(root)
    problems = check_files(folder, source)
    if problems:
        if archive.exists():
            try:  # insightface's zip, if intact, saves the download
                _check_archive(archive, source)
            except DownloadError:
                pass  # it was removed: fetched below like a missing one
        if not archive.exists():
            if not download_missing:
                where = (
                    f"in {folder} is incomplete ({'; '.join(problems)})" if folder.exists() else f"is not in {folder}"
                )
                raise FaceBackendError(
                    f"the insightface model pack {PACK} {where}; use --faces dlib, or --faces insightface with "
                    "a network connection to download it"
                )
            download(source.url, archive, remedy=REMEDY, progress=progress)
            _check_archive(archive, source)
        _extract(archive, folder, source)
    archive.unlink(missing_ok=True)
    return folder


def _lock_path(root: str | os.PathLike | None) -> Path:
    return archive_path(root).with_name(f".{PACK}.lock")


def _remove_partials(root: str | os.PathLike | None) -> list[Path]:
    """What a killed download or extraction left under temporary names (insightface's loader would
    open a ``*.partial.onnx``); only this module's own names, the models folder is insightface's."""
    leftovers = remove_partials(pack_dir(root))
    archive = partial_path(archive_path(root))
    if archive.is_file():
        archive.unlink()
        leftovers.append(archive)
    return leftovers


def check_files(folder: Path, source: PackSource) -> list[str]:
    """What is wrong with the pack's models (removing every file that fails); an empty list when the
    models this project uses are there and every model file matches its published or recorded hash."""
    record_path = folder / RECORD
    recorded = read_record(record_path)
    present = sorted(p.name for p in folder.glob("*.onnx")) if folder.is_dir() else []
    problems = [f"{name} is missing" for name in FILES if name not in present]
    for name in present:
        digest = file_sha256(folder / name)
        expected = source.file_sha256.get(name) or recorded.get(name)
        if expected is None:  # a pack copied by hand: trust on first use for files without a published hash
            recorded[name] = digest
        elif digest != expected:
            (folder / name).unlink()
            kind = "published" if name in source.file_sha256 else "recorded"
            problems.append(f"{name} did not match its {kind} SHA-256 (removed)")
    if present and not problems:
        write_record(record_path, recorded)
    return problems


def _check_archive(archive: Path, source: PackSource) -> None:
    then = f"nothing was kept: {REMEDY}"
    names = {PurePosixPath(name).name for name in archive_members(archive, source.url, then)}
    missing = [name for name in FILES if name not in names]
    if missing:
        raise refuse(archive, source.url, f"the {PACK} pack", then, found=f"a zip archive without {', '.join(missing)}")
    if source.archive_sha256 is not None and (digest := file_sha256(archive)) != source.archive_sha256:
        archive.unlink()
        raise DownloadError(
            f"{source.url}: SHA-256 {digest[:16]}… is not the published {source.archive_sha256[:16]}…; {then}"
        )


def _extract(archive: Path, folder: Path, source: PackSource) -> None:
    """Every model of the archive into ``folder`` (insightface's own layout, so insightface itself can
    still use the folder), each written under a temporary name and checked; all or nothing."""
    recorded: dict[str, str] = {}
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            name = PurePosixPath(member).name
            if not name.endswith(".onnx") or member.startswith("__MACOSX"):
                continue
            target = folder / name
            with atomic_path(target) as tmp, zf.open(member) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            recorded[name] = file_sha256(target)
            expected = source.file_sha256.get(name)
            if expected is not None and recorded[name] != expected:
                for extracted in recorded:
                    (folder / extracted).unlink()
                archive.unlink()
                raise FaceBackendError(
                    f"{source.url}: its {name} has SHA-256 {recorded[name][:16]}…, not the published "
                    f"{expected[:16]}…; nothing of it was kept: {REMEDY}"
                )
    write_record(folder / RECORD, recorded)


def verify(root: str | os.PathLike | None = None, source: PackSource | None = None) -> str | None:
    """One line on the pack under ``root`` after re-checking it without downloading (``None`` when
    there is no pack and no leftover zip)."""
    folder, archive = pack_dir(root), archive_path(root)
    if not folder.is_dir() and not archive.exists():
        return None
    source = source or upstream_source()
    had_archive = archive.exists()
    with locked(_lock_path(root)):
        notes = [f"removed the unfinished download {p.name}" for p in _remove_partials(root)]
        problems = check_files(folder, source)
        notes += problems
        try:
            _settle(root, source, download_missing=False, progress=False)
        except TsavError as exc:
            notes.append(str(exc))
        else:
            if problems:
                notes.append(f"extracted again from insightface's {archive.name}")
            notes.append(f"{folder} verified")
    if had_archive and not archive.exists():
        notes.append(f"removed insightface's leftover {archive.name}")
    return f"insightface {PACK}: {'; '.join(notes)}"
