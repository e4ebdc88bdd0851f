"""What a media file holds, read with PyAV: :func:`probe` (size as displayed, frame rate, duration,
rotation, audio), the container helpers the decoders share, and one-line errors for what the user
can get wrong about a file (missing, empty, not media, no video, truncated): a
:class:`~tsav_deploy.errors.MediaError`, never an ``av.error`` traceback."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import av
import av.stream
import numpy as np

from tsav_deploy.bounds import check_frame
from tsav_deploy.errors import MediaError

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


def decode_stream(container, stream, warnings: list[str], what: str):
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


def seconds_of(value, time_base) -> float | None:
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
    for frame in decode_stream(container, stream, warnings, name):
        return frame
    raise undecodable(name, warnings)


def undecodable(name: str, warnings: list[str]) -> MediaError:
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
        duration = _plausible(seconds_of(stream.duration, stream.time_base), _MAX_SECONDS)
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
