"""Video and audio decoding with PyAV (docs/preprocessing.md, the first stage of the data flow).

Three entry points:

- :func:`probe` reads what a file holds (size as displayed, frame rate, duration, rotation, audio).
- :func:`iter_frames` streams upright RGB frames with presentation times in seconds, relative to the
  first decoded frame. It holds one frame at a time, so memory does not grow with video length.
- :func:`read_audio` returns the first audio track as mono float32 at 44.1 kHz, aligned to the first
  video frame: sample 0 is that frame's time, as the authors' ``create_database.py`` aligned their
  WAVs (pad with silence when the audio starts later, trim when it starts earlier). The samples are
  those of the authors' 16-bit WAVs (``ffmpeg -ar 44100 -ac 1``), read as torchaudio reads them.

Everything the user can get wrong about a file (missing, empty, not media, no video, truncated)
raises :class:`~tsav_deploy.errors.MediaError` with one line, never an ``av.error`` traceback.
Damage found in the middle of a stream does not raise: what decodes is returned and the problem is
reported as a warning string (``FrameStream.warnings``, the second value of ``read_audio``), so a
batch annotation can list it per file and go on.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import av
import av.stream
import numpy as np
from av.video.reformatter import VideoReformatter

from .bounds import check_frame
from .constants import SAMPLE_RATE, WAVE_FORMAT
from .errors import MediaError

# Audio offsets up to this are routine (encoder delay and padding, a frame of offset): not worth a
# warning, and timestamps going back by less are overlapping pieces, not a reset of the stream.
_ROUTINE_OFFSET_S = 0.1
# Silence a file's audio track holds for gaps forward, in all (1 h: 318 MB of int16): gaps beyond it
# close up, as a reset does, so a clock jumping hours ahead costs no memory.
_MAX_GAP_SILENCE_S = 3600.0
# An audio track's buffer is allocated for at most this much at first (the declared length, an hour
# of int16: 318 MB) and grows by doubling as sound actually arrives.
_PREALLOCATE_S = 3600.0
# A live track: a piece this far past the held audio starts a new stretch (no silence held for the
# gap), and at most this much audio is held, ahead of the oldest frame still waiting (53 MB).
_LIVE_GAP_S = 5.0
LIVE_AUDIO_HOLD_S = 600.0
# Decoded video ending this much earlier than the container's declared duration means lost frames.
_TRUNCATION_NOTE_S = 0.5
# Audio is resampled in pieces of this many input samples when a whole waveform is given at once.
_RESAMPLE_CHUNK = 1 << 16
# What a header may declare before it is taken for damage: frames larger than 16K x 16K, rates above
# 1000 frames/s, durations beyond two days.
_MAX_FPS = 1000.0
_MAX_SECONDS = 48 * 3600.0


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` found. ``width``/``height`` are as displayed (after rotation)."""

    path: str
    width: int
    height: int
    fps: float  # average frame rate (frames per second)
    frame_count: int  # the container's count, or duration × fps; decoding may yield fewer
    duration_s: float  # video stream duration as the container reports it
    start_time_s: float  # container time of the first decoded frame (iter_frames' time 0)
    rotation: int  # degrees counter-clockwise applied to make frames upright: 0, 90, 180 or 270
    mirrored: bool  # and then flipped horizontally (rare; some front cameras)
    has_audio: bool
    audio_sample_rate: int | None
    video_codec: str
    audio_codec: str | None


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame: 0-based index in output order, time in seconds (frame 0 at 0.0), RGB."""

    index: int
    time: float
    rgb: np.ndarray  # H×W×3 uint8, C-contiguous, upright


# --- opening and error translation ----------------------------------------------------------------


def open_media(path: str | os.PathLike) -> av.container.InputContainer:
    """Open a file for reading, turning every way it can fail into one actionable line."""
    name = os.fspath(path)
    if not os.path.exists(name):
        raise MediaError(f"{name}: no such file; check the path")
    if os.path.isdir(name):
        raise MediaError(f"{name}: is a directory, not a video file")
    if os.path.getsize(name) == 0:
        raise MediaError(f"{name}: the file is empty (0 bytes); the download or copy failed")
    try:
        return av.open(name, metadata_errors="ignore")
    except PermissionError as error:
        raise MediaError(f"{name}: cannot be read (permission denied)") from error
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise MediaError(
            f"{name}: not a readable media file ({ffmpeg_reason(error)}); it may be truncated, "
            "still downloading, or not a video"
        ) from error


def ffmpeg_reason(error: BaseException) -> str:
    """FFmpeg's own short description of an error, without errno noise or file names."""
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return " ".join(str(text).split())


def video_stream(container: av.container.InputContainer, name: str) -> av.video.stream.VideoStream:
    """The first real video stream; cover art in audio files (attached pictures) does not count."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    raise MediaError(f"{name}: has no video stream (audio-only or data file); tsav needs a video")


def _packets(container, stream, warnings: list[str], what: str):
    """Demux ``stream``, ending with ``None`` (decoder flush) even when demuxing fails midway."""
    demuxer = container.demux(stream)
    while True:
        try:
            packet = next(demuxer)
        except StopIteration:
            break
        except av.FFmpegError as error:
            warnings.append(
                f"{what}: reading stopped early ({ffmpeg_reason(error)}); the file is truncated or "
                "damaged, the rest was skipped"
            )
            break
        if packet.size:  # PyAV ends demuxing with empty flush packets; we flush once below
            yield packet
    yield None


def _decode(container, stream, warnings: list[str], what: str):
    """Decode every packet that can be decoded; skip and count the ones that cannot."""
    skipped = damaged = 0
    for packet in _packets(container, stream, warnings, what):
        try:
            frames = stream.codec_context.decode(packet)
        except av.FFmpegError:
            skipped += 1
            continue
        for frame in frames:
            if frame.time_base is None:  # frames drained by the final flush come without one
                frame.time_base = stream.time_base
            damaged += frame.is_corrupt
            yield frame
    if skipped:
        warnings.append(f"{what}: {skipped} damaged packet(s) could not be decoded; skipped")
    if damaged:
        warnings.append(f"{what}: {damaged} frame(s) decoded with errors concealed by the decoder")


# --- orientation ----------------------------------------------------------------------------------


def orientation(frame: av.VideoFrame) -> tuple[int, int, int, int] | None:
    """Signs (a, b, c, d) of the display matrix's 2×2 part, or None when there is none.

    libavutil/display.h: a source pixel (p, q) is shown at (a·p + c·q, b·p + d·q). Phone cameras
    store sensor-oriented pictures plus this matrix; players apply it, so we do. Only the signs
    matter for multiples of 90° with optional mirroring (all eight EXIF orientations).
    """
    try:
        data = frame.side_data["DISPLAYMATRIX"]
    except (KeyError, IndexError):
        return None
    except ValueError:
        # PyAV builds an enum of every side-data type a frame carries and fails on one newer than
        # itself (JPEG's EXIF is type 31 in FFmpeg 7); its own rotation reader skips unknown types.
        return _signs_of_angle(frame)
    m = np.frombuffer(bytes(data), dtype=np.int32)
    if len(m) < 9:
        return None
    one = 1 << 16  # 16.16 fixed point
    signs = tuple(int(np.sign(v)) if abs(int(v)) > one // 2 else 0 for v in m[[0, 1, 3, 4]])
    a, b, c, d = signs
    axis_aligned = (a and d and not b and not c) or (b and c and not a and not d)
    return signs if axis_aligned else None


def _signs_of_angle(frame: av.VideoFrame) -> tuple[int, int, int, int] | None:
    """Orientation signs from PyAV's rotation angle alone (no mirroring), or None when the angle is
    absent, undefined (a singular matrix) or not a multiple of 90 degrees."""
    try:
        angle = float(frame.rotation)
    except (ValueError, OverflowError, TypeError):
        return None
    quarter = round(angle / 90)
    if not math.isfinite(angle) or abs(angle - 90 * quarter) > 1 or quarter % 4 == 0:
        return None
    cos, sin = ((1, 0), (0, 1), (-1, 0), (0, -1))[quarter % 4]
    return cos, -sin, sin, cos


def orient(rgb: np.ndarray, signs: tuple[int, int, int, int] | None) -> np.ndarray:
    """Apply the display matrix (as numpy views) and return a C-contiguous array."""
    if signs is not None:
        a, b, c, d = signs
        if a == 0:  # quarter turn: displayed row follows source column, displayed column source row
            rgb = rgb.transpose(1, 0, 2)
            if b < 0:
                rgb = rgb[::-1]
            if c < 0:
                rgb = rgb[:, ::-1]
        else:
            if d < 0:
                rgb = rgb[::-1]
            if a < 0:
                rgb = rgb[:, ::-1]
    return np.ascontiguousarray(rgb)


def _rotation_degrees(signs: tuple[int, int, int, int] | None) -> tuple[int, bool]:
    """(counter-clockwise rotation 0/90/180/270, mirrored) of an orientation.

    A mirrored matrix (negative determinant) is read as a rotation followed by a horizontal flip,
    the convention of PyAV's ``set_display_rotation(degrees, hflip=True)``.
    """
    if signs is None:
        return 0, False
    a, b, c, d = signs
    mirrored = a * d - b * c < 0
    if mirrored:
        a = -a  # undo the flip, which negates the horizontal output coordinate
    return int(round(math.degrees(math.atan2(-b, a)))) % 360, mirrored


# --- probing --------------------------------------------------------------------------------------


def _seconds(value, time_base) -> float | None:
    return None if value is None or time_base is None else float(value * time_base)


def _plausible(value: float | None, limit: float) -> float | None:
    """``value`` where it is a finite, positive number up to ``limit``; None for what a damaged or
    odd header declares instead (negative durations, rates of 90,000 frames/s)."""
    return value if value is not None and math.isfinite(value) and 0 < value <= limit else None


def stream_rate(stream: av.video.stream.VideoStream) -> float | None:
    """The stream's average (else guessed) frame rate, where the container gives a plausible one."""
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate:
            fps = _plausible(float(rate), _MAX_FPS)
            if fps is not None:
                return fps
    return None


def _first_frame(container, stream, name: str) -> av.VideoFrame:
    warnings: list[str] = []
    for frame in _decode(container, stream, warnings, name):
        return frame
    raise _undecodable(name, warnings)


def _undecodable(name: str, warnings: list[str]) -> MediaError:
    detail = f" ({warnings[0].removeprefix(f'{name}: ')})" if warnings else ""
    return MediaError(f"{name}: no video frame could be decoded{detail}; the file is damaged")


def probe(path: str | os.PathLike) -> VideoInfo:
    """Describe a video file (decodes its first frame only, for the rotation and start time)."""
    name = os.fspath(path)
    with open_media(name) as container:
        stream = video_stream(container, name)
        audio = container.streams.audio[0] if container.streams.audio else None
        first = _first_frame(container, stream, name)
        signs = orientation(first)
        rotation, mirrored = _rotation_degrees(signs)
        width, height = first.width, first.height
        check_frame(name, width, height)
        if rotation in (90, 270):
            width, height = height, width
        duration = _plausible(_seconds(stream.duration, stream.time_base), _MAX_SECONDS)
        if duration is None and container.duration is not None:
            duration = _plausible(container.duration / av.time_base, _MAX_SECONDS)
        fps = stream_rate(stream) or 0.0
        if not fps and stream.frames and duration:
            fps = _plausible(stream.frames / duration, _MAX_FPS) or 0.0
        if duration is None:
            duration = stream.frames / fps if stream.frames and fps else 0.0
        frame_count = max(stream.frames, 0) or int(round(duration * fps))
        return VideoInfo(
            path=name,
            width=width,
            height=height,
            fps=fps,
            frame_count=frame_count,
            duration_s=duration,
            start_time_s=first.time if first.time is not None else 0.0,
            rotation=rotation,
            mirrored=mirrored,
            has_audio=audio is not None,
            audio_sample_rate=audio.codec_context.sample_rate if audio is not None else None,
            video_codec=stream.codec_context.name,
            audio_codec=audio.codec_context.name if audio is not None else None,
        )


# --- video frames ---------------------------------------------------------------------------------


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
        frames = _decode(container, stream, self.warnings, self.path)
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
        for frame in _decode(container, stream, self.warnings, self.path):
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
            for frame in _decode(self._container, stream, self.warnings, self.path):
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
            raise _undecodable(self.path, self.warnings)
        declared = _seconds(stream.duration, stream.time_base)
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


class _AlignedTrack:
    """A silent mono 44.1 kHz track, sample 0 at the first video frame, that decoded pieces are
    written into at their own timestamps.

    Placing pieces by timestamp (instead of concatenating them) aligns audio to video, cuts what
    lies before the first frame, and keeps gaps in a damaged stream silent instead of shifting
    everything after them. A timestamp that jumps back by more than ``_ROUTINE_OFFSET_S`` is a reset
    (as for video frames): the piece continues where the previous one ended and later pieces keep
    that shift. Silence for gaps forward is held up to ``_MAX_GAP_SILENCE_S`` in all: a gap beyond
    what is left of it is closed up the same way, so a clock that jumps hours ahead costs no memory.
    With a fixed length, samples beyond it are dropped; otherwise the track grows.
    """

    def __init__(self, origin_s: float, length: int | None, capacity: int = SAMPLE_RATE, dtype=np.float32):
        self._origin = origin_s * SAMPLE_RATE  # container time of sample 0, in samples
        self._fixed = length
        # A growing track starts at `capacity` (the stream's declared length): growing by doubling
        # and copying out at the end would hold up to three copies of an hour of audio at once.
        self._data = np.zeros(length if length is not None else max(1, capacity), dtype=dtype)
        self._shift = 0
        self._cursor: int | None = None  # where the previous piece ended
        self._gap_left = int(_MAX_GAP_SILENCE_S * SAMPLE_RATE)
        self.first: int | None = None  # where the first piece started (negative: cut)
        self.end = 0  # end of the samples written
        self.resets = 0
        self.jumps = 0  # gaps forward closed up

    def add(self, seconds: float | None, samples: np.ndarray) -> None:
        position = (self._cursor or 0) if seconds is None else self._placed(seconds)
        if self.first is None:
            self.first = position
        self._cursor = position + len(samples)
        self._write(position, samples)

    def _placed(self, seconds: float) -> int:
        position = int(round(seconds * SAMPLE_RATE - self._origin)) + self._shift
        if self._cursor is None:
            return position
        gap = position - self._cursor
        if -gap > _ROUTINE_OFFSET_S * SAMPLE_RATE:
            self.resets += 1
        elif gap > self._gap_left and self._fixed is None:
            self.jumps += 1
        else:
            self._gap_left -= max(0, gap)
            return position
        self._shift -= gap
        return self._cursor

    def _write(self, position: int, samples: np.ndarray) -> None:
        if position < 0:
            samples = samples[-position:]
            position = 0
        stop = position + len(samples)
        if self._fixed is not None:
            stop = min(stop, self._fixed)
        elif stop > len(self._data):
            grown = np.zeros(max(stop, 2 * len(self._data)), dtype=self._data.dtype)
            grown[: self.end] = self._data[: self.end]
            self._data = grown
        if stop > position:
            self._data[position:stop] = samples[: stop - position]
            self.end = max(self.end, stop)

    def result(self) -> np.ndarray:
        return self._data if self._fixed is not None else self._data[: self.end]


class _Stretch:
    """Samples held from ``start`` on, contiguous; capacity beyond ``length`` reads as silence."""

    def __init__(self, start: int):
        self.start, self.length = start, 0
        self.data = np.zeros(0, dtype=np.int16)

    @property
    def stop(self) -> int:
        return self.start + self.length

    def cut_before(self, position: int) -> None:
        cut = min(position - self.start, self.length)
        if cut > 0:
            kept = self.length - cut
            self.data[:kept] = self.data[cut : self.length]
            self.data[kept : self.length] = 0  # a gap written later must read as silence
            self.start, self.length = self.start + cut, kept


class LiveTrack(_AlignedTrack):
    """The audio of a live source as it arrives: an :class:`_AlignedTrack` (int16, sample 0 at the
    first video frame) that keeps only the samples from :meth:`discard_before`'s mark on, so memory
    stays bounded however long the stream runs.

    What it holds is a list of stretches: a piece more than ``_LIVE_GAP_S`` past the held audio
    starts a new one, so a jump of the stream's clock (hours ahead) holds no silence, and the
    alignment to the video stays by timestamp. At most ``LIVE_AUDIO_HOLD_S`` seconds are held in all
    (audio arriving that far ahead of the video): samples beyond are dropped and counted in
    ``dropped``.

    Slicing takes absolute sample positions; samples not yet received read as silence. While the
    stream runs, ``len()`` is unbounded (the track's end is not known; a window reaching past what
    arrived sees silence there); after :meth:`finish` it is the track's real length, as
    :func:`read_audio` would give. ``final`` is where samples stop being final: a late piece may
    still overlap the last ``_ROUTINE_OFFSET_S`` before the end.
    """

    def __init__(self, origin_s: float):
        super().__init__(origin_s, None, capacity=1, dtype=np.int16)
        self._gap_left = np.iinfo(np.int64).max  # gaps cost nothing here: never closed up
        self._stretches: list[_Stretch] = []
        self._base = 0  # samples before it were discarded
        self.finished = False
        self.dropped = 0

    def __len__(self) -> int:
        return self.end if self.finished else np.iinfo(np.int64).max // 2

    @property
    def final(self) -> int:
        return self.end if self.finished else max(0, self.end - int(_ROUTINE_OFFSET_S * SAMPLE_RATE))

    @property
    def nbytes(self) -> int:
        """Bytes of sample memory held."""
        return sum(stretch.data.nbytes for stretch in self._stretches)

    def finish(self) -> None:
        self.finished = True

    def discard_before(self, position: int) -> None:
        """Forget samples before ``position`` (no window will read them again)."""
        self._base = max(self._base, min(position, self.end))
        for stretch in self._stretches:
            stretch.cut_before(self._base)
        self._stretches = [s for s in self._stretches if s.length or s is self._stretches[-1]]

    def __getitem__(self, where: slice) -> np.ndarray:
        start, stop = where.start or 0, where.stop
        if start < self._base:
            raise IndexError(f"samples before {self._base} were discarded (asked for {start})")
        out = np.zeros(max(0, stop - start), dtype=np.int16)
        for stretch in self._stretches:
            low, high = max(start, stretch.start), min(stop, stretch.stop)
            if low < high:
                out[low - start : high - start] = stretch.data[low - stretch.start : high - stretch.start]
        return out

    def _write(self, position: int, samples: np.ndarray) -> None:
        last = self._stretch_at(position)
        if position < last.start:  # the part before lies in the silence before the stretch
            samples, position = samples[last.start - position :], last.start
        held = sum(s.length for s in self._stretches) - last.length
        room = int(LIVE_AUDIO_HOLD_S * SAMPLE_RATE) - held - (position - last.start)
        if len(samples) > room:
            self.dropped += len(samples) - max(room, 0)
            samples = samples[: max(room, 0)]
        if not len(samples):
            return
        stop = position + len(samples)
        if stop - last.start > len(last.data):
            wanted = max(stop - last.start, 2 * len(last.data), 16 * SAMPLE_RATE)
            grown = np.zeros(min(wanted, room + position - last.start), np.int16)
            grown[: last.length] = last.data[: last.length]
            last.data = grown
        last.data[position - last.start : stop - last.start] = samples
        last.length = max(last.length, stop - last.start)
        self.end = max(self.end, stop)

    def _stretch_at(self, position: int) -> _Stretch:
        position = max(position, self._base)
        if not self._stretches or position > self._stretches[-1].stop + _LIVE_GAP_S * SAMPLE_RATE:
            if self._stretches and not self._stretches[-1].length:
                self._stretches.pop()
            self._stretches.append(_Stretch(position))
        return self._stretches[-1]


def mono_resampler(sample_format: str = WAVE_FORMAT) -> av.AudioResampler:
    # libswresample, as `ffmpeg -i VIDEO -ar 44100 -ac 1 out.wav` in the authors' create_database.py:
    # the same anti-aliasing filter and, with 16-bit output as the WAV they trained on, the same
    # downmix (stereo -> (L + R) / 2; libswresample only scales the 1/sqrt 2 matrix down to unit
    # gain for integer output) and the same rounding to 16 bits.
    return av.AudioResampler(format=sample_format, layout="mono", rate=SAMPLE_RATE)


def mono_samples(frame: av.AudioFrame, pcm16: bool = False) -> np.ndarray:
    samples = frame.to_ndarray().reshape(-1)  # packed mono: shape (1, samples)
    if samples.dtype == np.int16 and not pcm16:
        return samples.astype(np.float32) / np.float32(32768)  # as torchaudio.load reads a 16-bit WAV
    return samples


class MonoResampling:
    """Decoded audio frames -> mono 44.1 kHz frames, timestamps kept, as ``read_audio`` resamples.

    A resampler is set up for one input format; streams that change sample rate or channel layout
    midway (spliced broadcasts, HE-AAC switching) get a fresh one from that frame on, after the old
    one's buffered tail. Call :meth:`flush` after the last frame for the final tail.
    """

    def __init__(self) -> None:
        self._resampler: av.AudioResampler | None = None
        self._source: tuple | None = None

    def resample(self, frame: av.AudioFrame) -> list[av.AudioFrame]:
        out: list[av.AudioFrame] = []
        signature = (frame.format.name, frame.layout.name, frame.sample_rate)
        if signature != self._source:
            out += self.flush()
            self._resampler, self._source = mono_resampler(), signature
        return out + self._resampler.resample(frame)

    def flush(self) -> list[av.AudioFrame]:
        return self._resampler.resample(None) if self._resampler is not None else []


def _resampled(container, warnings: list[str], what: str) -> Iterator[av.AudioFrame]:
    """The first audio stream decoded and resampled to mono 44.1 kHz (:class:`MonoResampling`)."""
    resampling = MonoResampling()
    for frame in _decode(container, container.streams.audio[0], warnings, what):
        yield from resampling.resample(frame)
    yield from resampling.flush()


def read_audio(
    path: str | os.PathLike, *, duration_s: float | None = None, pcm16: bool = False, info: VideoInfo | None = None
) -> tuple[np.ndarray, list[str]]:
    """The first audio track as mono float32 at 44.1 kHz, sample 0 at the first video frame
    (``pcm16``: the int16 samples themselves, half the memory; float32 is ``int16 / 32768``).

    With ``duration_s`` the result has exactly ``round(duration_s * 44100)`` samples (silence
    appended or the tail cut); without it, it runs to the end of the audio. A file without audio
    gives silence (of the video's duration when none is given) and a warning. ``info``: the file's
    :func:`probe` result where the caller has it (a video is probed once). Returns the samples and a
    list of one-line warnings.
    """
    info = info or probe(path)  # validates the file and gives the first video frame's time
    name = info.path
    warnings: list[str] = []
    dtype = np.int16 if pcm16 else np.float32
    if duration_s is None and not info.has_audio:
        duration_s = info.duration_s
    length = None if duration_s is None else max(0, int(round(duration_s * SAMPLE_RATE)))
    if not info.has_audio:
        warnings.append(f"{name}: has no audio track; the aural stream gets silence")
        return _AlignedTrack(info.start_time_s, length, dtype=dtype).result(), warnings
    with open_media(name) as container:
        track = _AlignedTrack(info.start_time_s, length, _declared_samples(container.streams.audio[0], info), dtype)
        for piece in _resampled(container, warnings, f"{name} (audio)"):
            track.add(piece.time, mono_samples(piece, pcm16))
    warnings += _alignment_notes(name, track, length)
    return track.result(), warnings


def _declared_samples(stream: av.audio.stream.AudioStream, info: VideoInfo) -> int:
    """The audio stream's length at 44.1 kHz as the container declares it (else the video's), plus
    a second: enough that reading it rarely grows the buffer. A declaration is only a hint (a
    jumping clock declares hours that hold no sound): at most ``_PREALLOCATE_S`` is taken at once."""
    declared = _seconds(stream.duration, stream.time_base) if stream.duration else None
    seconds = declared if declared and declared > 0 else info.duration_s
    return int(min(max(seconds, 0.0), _PREALLOCATE_S) * SAMPLE_RATE) + SAMPLE_RATE


def _alignment_notes(name: str, track: _AlignedTrack, length: int | None) -> list[str]:
    """One-line notes on how far the audio had to be shifted, padded or reset."""
    if track.first is None:
        return [f"{name}: the audio track holds no decodable sound; using silence"]
    notes = []
    limit = _ROUTINE_OFFSET_S * SAMPLE_RATE
    if track.first > limit:
        notes.append(
            f"{name}: audio starts {track.first / SAMPLE_RATE:.2f} s after the first video frame; padded with silence"
        )
    elif track.first < -limit:
        notes.append(
            f"{name}: audio starts {-track.first / SAMPLE_RATE:.2f} s before the first video frame; that part was cut"
        )
    if length is not None and length - track.end > limit:
        notes.append(
            f"{name}: audio ends {(length - track.end) / SAMPLE_RATE:.2f} s before the video; padded with silence"
        )
    if track.resets:
        notes.append(
            f"{name}: audio timestamps jumped backwards {track.resets} time(s) (spliced or reset "
            "stream); later audio was shifted to follow on"
        )
    if track.jumps:
        notes.append(
            f"{name}: audio timestamps jumped forwards {track.jumps} time(s) past {_MAX_GAP_SILENCE_S / 3600:g} h "
            "of silence in all; later audio was shifted to follow on"
        )
    return notes


def resample_audio(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float32 samples at ``sample_rate`` -> 44.1 kHz with the same resampler as read_audio."""
    wave = np.ascontiguousarray(wave, dtype=np.float32).reshape(-1)
    if sample_rate == SAMPLE_RATE:
        return wave
    resampler = mono_resampler("flt")  # a float wave stays float: only the rate changes
    time_base = Fraction(1, sample_rate)
    pieces = []
    for start in range(0, len(wave), _RESAMPLE_CHUNK):
        frame = av.AudioFrame.from_ndarray(wave[None, start : start + _RESAMPLE_CHUNK], format="flt", layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = start
        frame.time_base = time_base
        pieces += [mono_samples(piece) for piece in resampler.resample(frame)]
    pieces += [mono_samples(piece) for piece in resampler.resample(None)]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
