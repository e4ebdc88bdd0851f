"""Upright RGB frames with presentation times (docs/preprocessing.md, the first stage of the data
flow): :func:`iter_frames` streams them, relative to the first decoded frame, one frame at a time, so
memory does not grow with video length. Colours are decoded as the authors' OpenCV decoded them
(BT.601). Damage met in the middle of a stream does not raise: what decodes is returned and the
problem is a warning string (``FrameStream.warnings``), so a batch can list it per file and go on."""

from __future__ import annotations

import math
import os
from typing import Iterator

import av
import av.stream
import numpy as np
from av.video.reformatter import VideoReformatter

from tsav_deploy.bounds import check_frame
from tsav_deploy.errors import MediaError
from tsav_deploy.media.probe import (
    VideoFrame,
    decode_stream,
    open_media,
    orient,
    orientation,
    seconds_of,
    stream_rate,
    undecodable,
    video_stream,
)

# Audio offsets up to this are routine (encoder delay and padding, a frame of offset): not worth a
# warning, and timestamps going back by less are overlapping pieces, not a reset of the stream.
_ROUTINE_OFFSET_S = 0.1
# Decoded video ending this much earlier than the container's declared duration means lost frames.
_TRUNCATION_NOTE_S = 0.5


def _scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int] | None:
    """Coded size shrunk so the longer side is at most ``max_side`` (never enlarged), or None."""
    if max_side is None or max(width, height) <= max_side:
        return None
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


class RgbConverter:
    """Decoded pictures as RGB uint8, converted as the authors' decoder (OpenCV 4.x's
    ``VideoCapture``) converts them: the BT.601 matrix whatever the stream's colour tags say, the
    range implied by the pixel format. FFmpeg (and OpenCV from 4.13 on) follow a BT.709 tag
    instead, which moves tagged HD pictures by up to 9 levels. One per stream: its swscale context
    is kept from picture to picture (several times faster than a new one per picture)."""

    colorspace = "ITU601"

    def __init__(self) -> None:
        self._reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame, size: tuple[int, int] | None = None) -> np.ndarray:
        """``size`` (width, height): shrunk with area interpolation."""
        scale = {} if size is None else {"width": size[0], "height": size[1], "interpolation": "AREA"}
        return self._reformatter.reformat(frame, format="rgb24", src_colorspace=self.colorspace, **scale).to_ndarray()


class FrameStream:
    """Iterator over :class:`VideoFrame` returned by :func:`iter_frames`.

    The file is opened (and checked) when the stream is created, so a bad path fails at once.
    ``warnings`` collects one-line notes about damage met while decoding (read it after the loop).
    Use as a context manager, or exhaust it, to close the file.
    """

    def __init__(
        self, path: str | os.PathLike, max_side: int | None = None, first: int = 0, times: np.ndarray | None = None
    ):
        self.path = os.fspath(path)
        self._first, self._times = first, times
        self.warnings: list[str] = []
        self.frames_decoded = 0  # the decoder's work, frames before ``first`` included
        self._open_stream()
        self._max_side = max_side
        self._to_rgb = RgbConverter()
        self._frames = self._generate()

    def _open_stream(self) -> None:
        self._container = open_media(self.path)
        try:
            self._stream = video_stream(self._container, self.path)
        except MediaError:
            self._container.close()
            raise
        # Frame threading decodes several frames in parallel; AUTO picks frame or slice threads.
        self._stream.thread_type = "AUTO"

    def __iter__(self) -> FrameStream:
        return self

    def __next__(self) -> VideoFrame:
        return next(self._frames)

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._frames.close()
        self._container.close()

    def _generate(self) -> Iterator[VideoFrame]:
        first = self._first
        if first > 0 and self._times is not None and first < len(self._times):
            try:
                first = yield from self._from_keyframe(first)
            finally:
                self._container.close()
            if first is None:
                return
            self._open_stream()
        yield from self._from_start(first)

    def _rgb(self, frame: av.VideoFrame, signs, size) -> np.ndarray:
        check_frame(self.path, frame.width, frame.height)  # every frame: sizes can change mid-file
        return orient(self._to_rgb(frame, size), signs)

    def _from_keyframe(self, wanted: int) -> Iterator[VideoFrame]:
        """Frames from ``wanted`` on, decoded from the last keyframe before it. Each frame's time
        must be the whole decode's time (``times``) of the next index; where it is not (a timestamp
        reset or gap, a seek that lands late), the frames from the next one wanted on come from a
        decode from the start instead. Returns that index, or None when every frame is done."""
        container, stream, times = self._container, self._stream, self._times
        frames = decode_stream(container, stream, self.warnings, self.path)
        head = next(frames, None)  # frame 0: time 0 and the orientation, as a whole decode has them
        frames.close()
        if head is None or head.time is None:
            return wanted
        origin = head.time
        signs, size = orientation(head), _scaled_size(head.width, head.height, self._max_side)
        try:
            target = math.floor((origin + float(times[wanted])) / stream.time_base)
            container.seek(target, stream=stream, backward=True, any_frame=False)
        except (av.FFmpegError, ZeroDivisionError, TypeError):
            return wanted
        expected = None  # the index the next decoded frame must have
        for frame in decode_stream(container, stream, self.warnings, self.path):
            self.frames_decoded += 1
            time = None if frame.time is None else frame.time - origin
            if expected is None and not frame.key_frame:
                # A picture shown before the keyframe may refer to the group before it: not decoded
                # as a whole decode decodes it. Wait for the keyframe, unless the seek went past.
                if time is None or time >= times[wanted]:
                    return wanted
                continue
            index = -1 if time is None else int(np.searchsorted(times, time))
            known = 0 <= index < len(times) and times[index] == time
            if not known or index > wanted or index != (index if expected is None else expected):
                return wanted
            expected = index + 1
            if index >= wanted:
                yield VideoFrame(index=index, time=time, rgb=self._rgb(frame, signs, size))
                wanted = index + 1
        return None if wanted >= len(times) else wanted

    def _from_start(self, first: int) -> Iterator[VideoFrame]:
        stream = self._stream
        clock = FrameClock(1.0 / (stream_rate(stream) or 30.0))
        signs = size = None
        index = 0
        try:
            for frame in decode_stream(self._container, stream, self.warnings, self.path):
                self.frames_decoded += 1
                if index == 0:
                    signs = orientation(frame)
                    size = _scaled_size(frame.width, frame.height, self._max_side)
                time = clock.time_of(frame.time)
                if index >= first:
                    yield VideoFrame(index=index, time=time, rgb=self._rgb(frame, signs, size))
                index += 1
        finally:
            self._container.close()
        self.warnings += clock.notes(self.path)
        if index == 0:
            raise undecodable(self.path, self.warnings)
        declared = seconds_of(stream.duration, stream.time_base)
        if declared is not None and declared - clock.end > _TRUNCATION_NOTE_S:
            self.warnings.append(
                f"{self.path}: frames stop at {clock.previous:.2f} s of a declared "
                f"{declared:.2f} s; the file seems truncated"
            )


class FrameClock:
    """Turns frames' presentation times (container seconds, or None) into strictly increasing
    times from 0, which the aural windows and the outputs rely on.

    A frame without a timestamp is placed one nominal frame interval after the previous one. A
    timestamp that jumps backwards (a spliced or reset stream, a muxer bug) is placed likewise and
    the same shift is kept for the frames after it, so a reset does not disturb the rest.
    """

    def __init__(self, step: float):
        self.step = step
        self.previous: float | None = None
        self._origin: float | None = None  # container time of time 0
        self._missing = self._jumps = 0

    @property
    def end(self) -> float:
        """Where the last frame ends (nominally)."""
        return (self.previous or 0.0) + self.step

    def time_of(self, seconds: float | None) -> float:
        nominal = 0.0 if self.previous is None else self.previous + self.step
        if seconds is None:
            self._missing += 1
            time = nominal
        else:
            if self._origin is None:
                self._origin = seconds - nominal
            time = seconds - self._origin
            if self.previous is not None and time <= self.previous:
                self._origin -= nominal - time
                time = nominal
                self._jumps += 1
        self.previous = time
        return time

    def notes(self, name: str) -> list[str]:
        notes = []
        if self._missing:
            notes.append(
                f"{name}: {self._missing} frame(s) had no timestamp; their times were extrapolated "
                "at the nominal frame rate"
            )
        if self._jumps:
            notes.append(
                f"{name}: timestamps jumped backwards {self._jumps} time(s) (spliced or reset "
                "stream); later frames were shifted so that time keeps increasing"
            )
        return notes


def iter_frames(
    path: str | os.PathLike, *, max_side: int | None = None, first: int = 0, times: np.ndarray | None = None
) -> FrameStream:
    """Stream the video's frames upright as RGB uint8 with times in seconds (frame 0 at 0.0).

    ``max_side`` shrinks frames (area interpolation, aspect kept) so their longer side is at most
    that many pixels; useful for fast face detection. ``first``: start at that frame, with the
    index, time and pixels a whole decode gives it. With ``times`` (every frame's time in a whole
    decode, e.g. from an earlier pass) decoding starts at the keyframe before it, and a frame counts
    only where its time is the next index's; a container gives no frame indices, so without
    ``times``, or where the times disagree, the frames before ``first`` are decoded (not converted).
    Raises MediaError for unusable files; damage in the middle of a stream ends up in the returned
    stream's ``warnings``.
    """
    return FrameStream(path, max_side, first, times)


# --- audio ----------------------------------------------------------------------------------------
