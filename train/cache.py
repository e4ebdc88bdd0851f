"""The preprocess cache: what training needs of each video, compact and fast to read at random.

Layout (``tsav preprocess`` writes it, the training loader reads it)::

    CACHE/index.json                   format, preprocessing constants, face backend, one entry per video
    CACHE/videos/<stem>/times.npy      [N] float64  decoded frame times (s), frame 0 at 0.0
    CACHE/videos/<stem>/face.npy       [N] bool     the main person's face was found in frame k
    CACHE/videos/<stem>/rgb.bin        the authors' JPEG file (quality 95) of each aligned RGB crop, back to back
    CACHE/videos/<stem>/rgb.npy        [N + 1] int64 byte offsets into rgb.bin (empty span: no face)
    CACHE/videos/<stem>/mask.bin       the authors' grayscale JPEG file (quality 100) of each mask
    CACHE/videos/<stem>/mask.npy       [N + 1] int64 byte offsets into mask.bin
    CACHE/videos/<stem>/wave.npy       [S] int16    the audio track as the authors' 16-bit WAV holds it
    CACHE/videos/<stem>/entry.json     written last: its presence marks the video complete

The crops are the very bytes of the authors' files (:mod:`tsav_deploy.faces.crop`), decoded with the
same call as annotation decodes them, so a training clip is bit for bit the clip annotation feeds the
network for the same frame. The wave is exact too (the frontend's samples are 16-bit values): each
training sample's aural window is cut from it by the same rule as annotation's
(:class:`tsav_deploy.inputs.windows.SpecWindows`), at 88 kB per second of video.
"""

from __future__ import annotations

import json
import os
import pathlib
from dataclasses import dataclass

import numpy as np

from tsav_deploy.atomic import atomic_path, write_text
from tsav_deploy.contract import CROP_SIZE, preprocessing_dict, preprocessing_differences
from tsav_deploy.errors import TsavError
from tsav_deploy.faces import EncodedCrop

FORMAT = "tsav-deploy/preprocess-cache"
FORMAT_VERSION = 3  # 3: the authors' JPEG files of crop and mask
INDEX = "index.json"
ENTRY = "entry.json"
_CROP_PIXELS = CROP_SIZE * CROP_SIZE


class CacheError(TsavError):
    """A preprocess cache is missing, incomplete or was made with other preprocessing settings."""


def video_folder(cache: pathlib.Path, stem: str) -> pathlib.Path:
    return cache / "videos" / stem


def _save_npy(path: pathlib.Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


def _pcm16(wave: np.ndarray) -> np.ndarray:
    if wave.dtype != np.int16:
        raise TypeError(f"the cache stores the frontend's int16 samples (frontend.audio_track), not {wave.dtype}")
    return wave


class VideoCacheWriter:
    """Collects one video's crops frame by frame, then writes the video's folder (entry.json last)."""

    def __init__(self, folder: pathlib.Path):
        self.folder = folder
        self.times: list[float] = []
        self.face: list[bool] = []
        self._files: dict[str, list[bytes]] = {"rgb": [], "mask": []}
        self._offsets: dict[str, list[int]] = {"rgb": [0], "mask": [0]}

    def add(self, time: float, crop: EncodedCrop | None) -> None:
        """The next frame: its time and its clip frame's two JPEG files, or None (no face)."""
        self.times.append(float(time))
        self.face.append(crop is not None)
        for name in ("rgb", "mask"):
            data = b"" if crop is None else getattr(crop, name)
            self._files[name].append(data)
            self._offsets[name].append(self._offsets[name][-1] + len(data))

    def finish(self, wave: np.ndarray, entry: dict) -> dict:
        """Write every file, then ``entry.json`` (``entry`` plus frame counts and bytes); returns it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for name, files in self._files.items():
            with atomic_path(self.folder / f"{name}.bin") as tmp:
                tmp.write_bytes(b"".join(files))
        arrays = {
            "times": np.asarray(self.times, np.float64),
            "face": np.asarray(self.face, bool),
            **{name: np.asarray(offsets, np.int64) for name, offsets in self._offsets.items()},
            "wave": _pcm16(wave),
        }
        for name, array in arrays.items():
            _save_npy(self.folder / f"{name}.npy", array)
        size = sum(path.stat().st_size for path in self.folder.iterdir() if path.name != ENTRY)
        entry = dict(entry, frames=len(self.times), faces=int(sum(self.face)), bytes=size)
        write_text(self.folder / ENTRY, json.dumps(entry, indent=1))
        return entry


class CachedVideo:
    """Random access to one cached video (files are memory-mapped; open one per worker process)."""

    def __init__(self, folder: pathlib.Path):
        self.folder = folder
        self.name = folder.name
        # Plain ndarray views of the maps: slicing np.memmap objects costs more than decoding a mask.
        load = lambda name: np.load(folder / f"{name}.npy", mmap_mode="r").view(np.ndarray)  # noqa: E731
        self.times = np.array(load("times"))  # small and read on every clip: keep in memory
        self.face_found = np.array(load("face"))
        self._offsets = {name: np.array(load(name)) for name in ("rgb", "mask")}
        has_faces = self._offsets["rgb"][-1] > 0  # an empty file cannot be mapped
        self._files = {
            name: np.memmap(folder / f"{name}.bin", dtype=np.uint8, mode="r").view(np.ndarray) if has_faces else None
            for name in ("rgb", "mask")
        }
        self.wave = load("wave")  # int16, memory-mapped: a window reads 10 s of it

    def __len__(self) -> int:
        return len(self.times)

    def _file(self, name: str, index: int) -> bytes:
        start, end = self._offsets[name][index], self._offsets[name][index + 1]
        return self._files[name][start:end].tobytes()

    def read_into(self, index: int, crop: np.ndarray) -> bool:
        """Decode frame ``index``'s clip frame into ``crop`` uint8 [112, 112, 4] (RGB + mask); False
        (nothing written) when the frame has no face."""
        if not self.face_found[index]:
            return False
        EncodedCrop(self._file("rgb", index), self._file("mask", index)).decode(out=crop)
        return True

    def crop(self, index: int) -> np.ndarray | None:
        """Frame ``index``'s uint8 [112, 112, 4] RGB + mask crop, or None without a face."""
        crop = np.empty((CROP_SIZE, CROP_SIZE, 4), np.uint8)
        return crop if self.read_into(index, crop) else None


@dataclass
class CacheIndex:
    root: pathlib.Path
    videos: dict[str, dict]  # stem -> entry
    faces: str  # the face backend that made the crops

    def open(self, stem: str) -> CachedVideo:
        return CachedVideo(video_folder(self.root, stem))

    @property
    def frames(self) -> int:
        return sum(entry["frames"] for entry in self.videos.values())

    @property
    def bytes(self) -> int:
        return sum(entry["bytes"] for entry in self.videos.values())


def read_entry(cache: pathlib.Path, stem: str) -> dict | None:
    """A finished video's entry, or None when it was not (completely) preprocessed."""
    path = video_folder(cache, stem) / ENTRY
    return json.loads(path.read_text()) if path.exists() else None


def write_index(cache: pathlib.Path, entries: dict[str, dict], faces: str) -> pathlib.Path:
    index = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "preprocessing": preprocessing_dict(),
        "faces": faces,
        "videos": dict(sorted(entries.items())),
    }
    return write_text(cache / INDEX, json.dumps(index, indent=1))


def check_compatible(cache: pathlib.Path, faces: str) -> None:
    """Refuse to resume (or train from) a cache made with other preprocessing constants or backend."""
    path = cache / INDEX
    if not path.exists():
        return
    index = _read_index(path)
    if faces != index.get("faces"):
        raise CacheError(
            f"{path}: made with the {index.get('faces')} face backend, not {faces}; use a new --out folder"
        )


def open_cache(cache: str | os.PathLike) -> CacheIndex:
    """Read ``index.json`` and check that its constants are this version's."""
    cache = pathlib.Path(cache)
    path = cache / INDEX
    if not path.exists():
        raise CacheError(f"{cache}: no {INDEX}; run `tsav preprocess VIDEOS_DIR --out {cache}` first")
    index = _read_index(path)
    return CacheIndex(root=cache, videos=index["videos"], faces=index["faces"])


def _read_index(path: pathlib.Path) -> dict:
    """The index, refused in one line when this version cannot train from it."""
    try:
        index = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CacheError(f"{path}: not valid JSON ({exc}); preprocess again into a new folder") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise CacheError(f"{path}: not a tsav-deploy preprocess cache")
    differences = preprocessing_differences(index.get("preprocessing"))
    if differences or index.get("format_version") != FORMAT_VERSION:
        what = (
            differences[0]
            if differences
            else f"format version {index.get('format_version')}, this version reads {FORMAT_VERSION}"
        )
        raise CacheError(
            f"{path}: made with other preprocessing than this version's ({what}); preprocess again into a new folder"
        )
    return index
