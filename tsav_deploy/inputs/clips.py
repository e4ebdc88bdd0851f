"""Visual-stream input: which frames make a clip, and the clip tensor (docs/preprocessing.md).

A clip is taken by frame index, as the authors' ``Aff2CompDataset.__getitem__`` takes it at every
frame rate: the clip of frame i holds frames i − 42, i − 36, …, i (every 6th decoded frame, oldest
first). Aff-Wild2 mixes 24, 25, 30 and 60 fps videos, and the network saw index-based clips on all
of them, so a 25 fps clip spans 1.68 s and a 60 fps clip 0.7 s. A position before frame 0 is a
black frame (None), as is a frame without the person's face (the crop store has none).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from tsav_deploy.contract import CLIP_FRAMES, CLIP_MEAN, CLIP_SHAPE, CLIP_STD, CLIP_STEP_FRAMES, CROP_SIZE

_CROP_SHAPE = (CROP_SIZE, CROP_SIZE, len(CLIP_MEAN))
# Frames from the oldest clip position to the target frame (42).
CLIP_SPAN_FRAMES = (CLIP_FRAMES - 1) * CLIP_STEP_FRAMES


def _lut() -> np.ndarray:
    """``[4, 256]`` float32: channel c's normalized value for every uint8 value.

    The same float32 operations, in the same order, as the authors' NumpyToTensor + Normalize
    (x / 255, − mean, / std), so the table is bit-identical to their arithmetic.
    """
    values = np.arange(256, dtype=np.float32) / np.float32(255)
    mean = np.asarray(CLIP_MEAN, dtype=np.float32)[:, None]
    std = np.asarray(CLIP_STD, dtype=np.float32)[:, None]
    return (values[None, :] - mean) / std


_LUT = _lut()


def clip_frame_indices(target_index: int) -> list[int | None]:
    """Indices of the 8 decoded frames forming the clip of frame ``target_index``, oldest first:
    ``i − 42, i − 36, …, i`` (the authors' ``_range``); None marks a position before frame 0."""
    if target_index < 0:
        raise IndexError(f"target_index {target_index} is negative")
    first = target_index - CLIP_SPAN_FRAMES
    return [None if k < 0 else k for k in range(first, target_index + 1, CLIP_STEP_FRAMES)]


def first_clip_frame(target_index: int) -> int:
    """The earliest frame that the clips of frame ``target_index`` and of every later frame can
    hold. Pushing frames into a :class:`ClipAssembler` from there on gives those clips exactly."""
    return max(0, target_index - CLIP_SPAN_FRAMES)


def normalize_clip(frames: np.ndarray | Sequence[np.ndarray | None]) -> np.ndarray:
    """``[4, 8, 112, 112]`` float32 clip from 8 crops (uint8 ``[112, 112, 4]`` RGB + mask, or None
    for black) given as an ``[8, 112, 112, 4]`` array or a sequence: (x / 255 − mean) / std per
    channel, channels first."""
    if len(frames) != CLIP_FRAMES:
        raise ValueError(f"a clip has {CLIP_FRAMES} frames, got {len(frames)}")
    out = np.empty(CLIP_SHAPE, dtype=np.float32)
    for k, crop in enumerate(frames):
        _normalize_into(crop, out[:, k])
    return out


def _normalize_into(crop: np.ndarray | None, out: np.ndarray) -> None:
    """Write one normalized crop, channels first, into ``out`` ``[4, 112, 112]``."""
    if crop is None:
        out[...] = _LUT[:, 0, None, None]
        return
    crop = np.asarray(crop)
    if crop.shape != _CROP_SHAPE or crop.dtype != np.uint8:
        raise ValueError(f"expected a uint8 crop {_CROP_SHAPE}, got {crop.dtype} {crop.shape}")
    for channel in range(len(CLIP_MEAN)):
        np.take(_LUT[channel], crop[..., channel], out=out[channel])


class ClipFrames:
    """Which frames make the clip of each frame, as frames arrive in order (the rule above).

    :meth:`push` takes the next frame's index (a stream that drops frames leaves gaps, and dropped
    frames are black where a clip would hold them) and returns the indices of the 8 frames of its
    clip (None: before frame 0), oldest first. Frames before :attr:`oldest` are never chosen again.
    """

    def __init__(self) -> None:
        self.oldest = 0  # the first frame a later clip can still choose
        self._last: int | None = None

    def push(self, index: int) -> list[int | None]:
        if self._last is not None and index <= self._last:
            raise ValueError(f"frame indices must increase: {index} after {self._last}")
        self._last = index
        self.oldest = first_clip_frame(index)
        return clip_frame_indices(index)


def fill_clip(chosen: Sequence[int | None], crop_of: Callable[[int], np.ndarray | None], out: np.ndarray) -> bool:
    """Write the clip of the frames ``chosen`` (from :meth:`ClipFrames.push`) into ``out``
    ``[4, 8, 112, 112]``; ``crop_of(number)`` gives a frame's normalized crop ``[4, 112, 112]``, or
    None where the frame has none. Returns whether the clip is the black clip (no crop at all)."""
    black = True
    for k, number in enumerate(chosen):
        crop = None if number is None else crop_of(number)
        if crop is None:
            _normalize_into(None, out[:, k])
        else:
            out[:, k] = crop
            black = False
    return black


def normalized_crop(crop: np.ndarray) -> np.ndarray:
    """One crop (uint8 ``[112, 112, 4]``) normalized, channels first: ``[4, 112, 112]`` float32."""
    out = np.empty(CLIP_SHAPE[:1] + CLIP_SHAPE[2:], dtype=np.float32)
    _normalize_into(crop, out)
    return out


class ClipAssembler:
    """Builds the clip of each frame of one person as frames arrive, normalizing every crop once.

    Feed every decoded frame in order with :meth:`push` (its index and its crop, or None when the
    frame has no face); the returned clip is the one for that frame, identical to ``normalize_clip`` of the crops
    that :func:`clip_frame_indices` picks. Since a clip only looks back, it is complete as soon as
    its own frame arrives. Only the crops of the last 43 frames are held.
    """

    def __init__(self) -> None:
        self._frames = ClipFrames()
        self._crops: dict[int, np.ndarray] = {}  # normalized crops by frame index
        self.black = False  # the last clip is the black clip (no face in any of its 8 frames)

    @property
    def buffered_frames(self) -> int:
        """How many crops are held (the memory bound: 43 frames)."""
        return len(self._crops)

    def push(self, index: int, crop: np.ndarray | None, out: np.ndarray | None = None) -> np.ndarray:
        """Add frame ``index``; return its clip ``[4, 8, 112, 112]`` (written into ``out`` if given,
        e.g. a slot of a preallocated batch). ``black`` then says whether it is the black clip."""
        chosen = self._frames.push(index)
        if crop is not None:
            self._crops[index] = normalized_crop(crop)
        for old in [n for n in self._crops if n < self._frames.oldest]:
            del self._crops[old]
        if out is None:
            out = np.empty(CLIP_SHAPE, dtype=np.float32)
        self.black = fill_clip(chosen, self._crops.get, out)
        return out
