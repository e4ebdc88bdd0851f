"""The preprocess cache: what training needs of each video, compact and fast to read at random.

Layout (``tsav preprocess`` writes it, the training loader reads it)::

    CACHE/index.json                   format, preprocessing constants, face backend, one entry per video
    CACHE/videos/<stem>/times.npy      [N] float64  decoded frame times (s), frame 0 at 0.0
    CACHE/videos/<stem>/face.npy       [N] bool     the main person's face was found in frame k
    CACHE/videos/<stem>/rgb.bin        JPEG (quality 95) of each aligned 112×112 RGB crop, back to back
    CACHE/videos/<stem>/rgb.npy        [N + 1] int64 byte offsets into rgb.bin (empty span: no face)
    CACHE/videos/<stem>/mask_pixels.npy  uint16 flat pixel index of every non-zero mask pixel, frame by frame
    CACHE/videos/<stem>/mask_values.npy  uint8 the value of each of those pixels
    CACHE/videos/<stem>/mask.npy       [N + 1] int64 offsets into the two mask arrays
    CACHE/videos/<stem>/wave.npy       [S] int16    the audio track as the authors' 16-bit WAV holds it
    CACHE/videos/<stem>/entry.json     written last: its presence marks the video complete

The RGB crop is lossy (JPEG, ~1 gray level); the mask is exact: it is a few hundred pixels of 1-pixel
lines, so storing its non-zero pixels is smaller and faster to decode than any image codec. The wave
is exact too (the frontend's samples are 16-bit values): each training sample's aural window is cut
from it by the same rule as annotation's (:class:`tsav_deploy.audio.SpecWindows`), at 88 kB per
second of video.
"""

from __future__ import annotations

import json
import os
import pathlib
from dataclasses import dataclass

import cv2
import numpy as np

from tsav_deploy.atomic import atomic_path, write_text
from tsav_deploy.constants import CROP_SIZE, preprocessing_dict, preprocessing_differences
from tsav_deploy.errors import TsavError

FORMAT = "tsav-deploy/preprocess-cache"
FORMAT_VERSION = 2  # 2: the wave instead of a whole-track mel
INDEX = "index.json"
ENTRY = "entry.json"
JPEG_QUALITY = 95
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
        self._jpeg: list[bytes] = []
        self._rgb_offsets = [0]
        self._mask_pixels: list[np.ndarray] = []
        self._mask_values: list[np.ndarray] = []
        self._mask_offsets = [0]

    def add(self, time: float, crop: np.ndarray | None) -> None:
        """The next frame: its time and the uint8 [112, 112, 4] RGB + mask crop, or None (no face)."""
        self.times.append(float(time))
        self.face.append(crop is not None)
        if crop is not None:
            ok, jpeg = cv2.imencode(
                ".jpg", np.ascontiguousarray(crop[..., 2::-1]), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
            )
            if not ok:
                raise RuntimeError("JPEG encoding of a 112×112 crop failed")
            self._jpeg.append(jpeg.tobytes())
            mask = crop[..., 3].reshape(-1)
            pixels = np.flatnonzero(mask).astype(np.uint16)
            self._mask_pixels.append(pixels)
            self._mask_values.append(mask[pixels])
        self._rgb_offsets.append(self._rgb_offsets[-1] + (len(self._jpeg[-1]) if crop is not None else 0))
        self._mask_offsets.append(self._mask_offsets[-1] + (len(self._mask_pixels[-1]) if crop is not None else 0))

    def finish(self, wave: np.ndarray, entry: dict) -> dict:
        """Write every file, then ``entry.json`` (``entry`` plus frame counts and bytes); returns it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / "rgb.bin") as tmp:
            tmp.write_bytes(b"".join(self._jpeg))
        arrays = {
            "times": np.asarray(self.times, np.float64),
            "face": np.asarray(self.face, bool),
            "rgb": np.asarray(self._rgb_offsets, np.int64),
            "mask_pixels": np.concatenate([np.zeros(0, np.uint16), *self._mask_pixels]),
            "mask_values": np.concatenate([np.zeros(0, np.uint8), *self._mask_values]),
            "mask": np.asarray(self._mask_offsets, np.int64),
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
        self._rgb_offsets = np.array(load("rgb"))
        self._mask_offsets = np.array(load("mask"))
        self._mask_pixels = load("mask_pixels")
        self._mask_values = load("mask_values")
        has_faces = self._rgb_offsets[-1] > 0  # an empty file cannot be mapped
        self._rgb = np.memmap(folder / "rgb.bin", dtype=np.uint8, mode="r").view(np.ndarray) if has_faces else None
        self.wave = load("wave")  # int16, memory-mapped: a window reads 10 s of it

    def __len__(self) -> int:
        return len(self.times)

    def read_into(self, index: int, rgb: np.ndarray, mask: np.ndarray) -> bool:
        """Decode frame ``index`` into ``rgb`` uint8 [112, 112, 3] and ``mask`` uint8 [112, 112]
        (both C-contiguous); False (nothing written) when the frame has no face."""
        if not self.face_found[index]:
            return False
        start, end = self._rgb_offsets[index], self._rgb_offsets[index + 1]
        rgb[...] = cv2.imdecode(self._rgb[start:end], cv2.IMREAD_COLOR_RGB)
        start, end = self._mask_offsets[index], self._mask_offsets[index + 1]
        plane = mask.reshape(-1)
        plane[:] = 0
        plane[self._mask_pixels[start:end]] = self._mask_values[start:end]
        return True

    def crop(self, index: int) -> np.ndarray | None:
        """Frame ``index``'s uint8 [112, 112, 4] RGB + mask crop, or None without a face."""
        rgb = np.empty((CROP_SIZE, CROP_SIZE, 3), np.uint8)
        mask = np.empty((CROP_SIZE, CROP_SIZE), np.uint8)
        return np.dstack([rgb, mask]) if self.read_into(index, rgb, mask) else None


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
        "jpeg_quality": JPEG_QUALITY,
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
