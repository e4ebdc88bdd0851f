"""Visual-stream input: which frames make a clip, and the clip tensor (docs/preprocessing.md).

The model was trained on 30 fps video with clips of frames i−42, i−36, …, i (every 6th frame,
0.2 s apart). Other frame rates keep the timing, not the frame offsets: clip frame k (k = 0..7) is
the decoded frame nearest to t_i − (7 − k) · 0.2 s.

Rules fixed here (and tested):

- Only frames 0..i are candidates: every clip time is ≤ t_i, so no later frame can be nearer.
- Ties (a clip time exactly halfway between two frames, within 1 µs, e.g. at 12.5 fps) go to the
  later frame, like rounding a fractional frame position half up: the more recent picture.
- A clip time more than half a frame interval before frame 0 is a black frame (None). "Frame
  interval" is the median interval between frames 0..i: the nominal interval for constant-rate
  video, robust to the odd long or short gap of variable-rate video, and decided only by frames
  that have already arrived, so :class:`ClipAssembler` can reproduce it while streaming. With a
  single frame there is no interval and every earlier clip position is black.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Sequence

import numpy as np

from .constants import CLIP_FRAMES, CLIP_MEAN, CLIP_SHAPE, CLIP_STD, CLIP_STEP_S, CROP_SIZE

_TIE_S = 1e-6  # clip times this close to halfway between two frames count as ties
_CROP_SHAPE = (CROP_SIZE, CROP_SIZE, len(CLIP_MEAN))
# Seconds from the oldest clip position to the target frame (1.4 s).
_CLIP_SPAN_S = (CLIP_FRAMES - 1) * CLIP_STEP_S


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


def _clip_times(target_time: float) -> list[float]:
    return [target_time - (CLIP_FRAMES - 1 - k) * CLIP_STEP_S for k in range(CLIP_FRAMES)]


def _half_interval(times: np.ndarray) -> float:
    """Half the median frame interval of ``times``; 0 when there is only one frame."""
    return float(np.median(np.diff(times))) / 2 if len(times) > 1 else 0.0


def _select(times: np.ndarray, first_time: float, half_interval: float) -> list[int | None]:
    """Positions in ``times`` (ascending, the target last) chosen for each clip slot.

    ``times`` need only reach back to the frame nearest the oldest clip position; ``first_time`` is
    the time of the video's frame 0 and ``half_interval`` its half frame interval (see module doc).
    """
    chosen: list[int | None] = []
    for clip_time in _clip_times(float(times[-1])):
        if clip_time < first_time - half_interval:
            chosen.append(None)
            continue
        later = int(np.searchsorted(times, clip_time))  # first frame at or after clip_time
        if later == 0:
            chosen.append(0)
        elif clip_time - times[later - 1] < times[later] - clip_time - _TIE_S:
            chosen.append(later - 1)
        else:
            chosen.append(later)
    return chosen


def _needs_start_rule(target_time: float, first_time: float) -> bool:
    """Whether the oldest clip position lies before frame 0 (only then can a slot be black)."""
    return target_time - _CLIP_SPAN_S < first_time


def clip_frame_indices(frame_times: Sequence[float], target_index: int) -> list[int | None]:
    """Indices of the 8 decoded frames forming the clip of frame ``target_index``, oldest first.

    ``frame_times`` are the decoded frames' times in seconds, strictly increasing (only entries
    ``0..target_index`` are used). ``None`` marks a black frame (before the start of the video).
    For 30 fps constant-rate video this gives i−42, i−36, …, i (the authors' indexing).
    """
    all_times = np.asarray(frame_times, dtype=np.float64)
    if not 0 <= target_index < len(all_times):
        raise IndexError(f"target_index {target_index} outside 0..{len(all_times) - 1}")
    times = all_times[: target_index + 1]
    half = _half_interval(times) if _needs_start_rule(times[-1], times[0]) else 0.0
    return _select(times, float(times[0]), half)


def first_clip_frame(frame_times: np.ndarray, target_index: int) -> int:
    """The earliest frame that the clips of frame ``target_index`` and of every later frame can
    choose: the last frame at or before the oldest clip position (frame 0 when that lies before it).
    Pushing frames into a :class:`ClipAssembler` from there on gives those clips exactly."""
    oldest = float(frame_times[target_index]) - _CLIP_SPAN_S
    return max(0, int(np.searchsorted(frame_times, oldest, side="right")) - 1)


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
    """Which frames make the clip of each frame, as frames arrive in order (the rules above).

    Frames are numbered by arrival (0, 1, …). :meth:`push` takes the next frame's time and returns
    the numbers of the 8 frames of its clip (None: black), oldest first. Only frames that a later
    clip can still choose are kept: about the last 1.4 s plus one frame (and the times of the first
    1.4 s for the start-of-video rule); :attr:`oldest` is the first of them.
    """

    def __init__(self) -> None:
        self._times: deque[float] = deque()
        self.oldest = 0  # number of the first frame in ``_times``
        self.count = 0  # frames pushed
        self._first_time: float | None = None
        self._start_times: list[float] | None = []  # frame times while the start rule may apply

    def push(self, time: float) -> list[int | None]:
        if self._times and time <= self._times[-1]:
            raise ValueError(f"frame times must increase: {time} after {self._times[-1]}")
        self._times.append(time)
        self.count += 1
        if self._first_time is None:
            self._first_time = time
        half = 0.0
        if self._start_times is not None:
            if _needs_start_rule(time, self._first_time):
                self._start_times.append(time)
                half = _half_interval(np.asarray(self._start_times))
            else:
                self._start_times = None  # times only grow: the rule never applies again
        # A frame is never chosen again once the frame after it lies at or before the oldest clip
        # position of this clip (every later clip position is later still, ties go to the later).
        oldest = time - _CLIP_SPAN_S
        while len(self._times) > 1 and self._times[1] <= oldest:
            self._times.popleft()
            self.oldest += 1
        times = np.fromiter(self._times, dtype=np.float64, count=len(self._times))
        return [None if k is None else self.oldest + k for k in _select(times, self._first_time, half)]


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

    Feed every decoded frame in order with :meth:`push` (its time and its crop, or None when the
    frame has no face); the returned clip is the one for that frame, identical to
    ``normalize_clip`` of the crops that :func:`clip_frame_indices` picks. Since a clip only looks
    back, it is complete as soon as its own frame arrives. Only the crops :class:`ClipFrames` keeps
    are held (about the last 1.4 s plus one frame).
    """

    def __init__(self) -> None:
        self._frames = ClipFrames()
        self._crops: dict[int, np.ndarray] = {}  # normalized crops by frame number
        self.black = False  # the last clip is the black clip (no face in any of its 8 frames)

    @property
    def buffered_frames(self) -> int:
        """How many frames are held (the memory bound: ~1.4 s of frames plus one)."""
        return self._frames.count - self._frames.oldest

    def push(self, time: float, crop: np.ndarray | None, out: np.ndarray | None = None) -> np.ndarray:
        """Add the next frame; return its clip ``[4, 8, 112, 112]`` (written into ``out`` if given,
        e.g. a slot of a preallocated batch). ``black`` then says whether it is the black clip."""
        number = self._frames.count
        chosen = self._frames.push(time)
        if crop is not None:
            self._crops[number] = normalized_crop(crop)
        for old in [n for n in self._crops if n < self._frames.oldest]:
            del self._crops[old]
        if out is None:
            out = np.empty(CLIP_SHAPE, dtype=np.float32)
        self.black = fill_clip(chosen, self._crops.get, out)
        return out
