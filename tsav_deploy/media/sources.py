"""Live sources for ``tsav live``: a file, a webcam or a network stream, read as it arrives.

A :class:`LiveSource` decodes in a thread of its own and hands the consumer, in arrival order,
:class:`Arrival` (one upright RGB frame, numbered and timed as :func:`~tsav_deploy.media.iter_frames`
numbers and times a file's frames, with the wall-clock time it arrived) and :class:`AudioPiece` (mono
44.1 kHz 16-bit samples resampled as :func:`~tsav_deploy.media.read_audio` resamples them, at their
container time). The queue between them is bounded: a file is read only as fast as the consumer takes
it (nothing is dropped), while a camera or a network stream cannot wait, so a video frame that finds
the queue full is dropped and counted (audio is never dropped: it is small and every window needs it).
"""

from __future__ import annotations

import os
import pathlib
import queue
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import av
import numpy as np

from tsav_deploy.bounds import check_frame
from tsav_deploy.errors import MediaError, TsavError
from tsav_deploy.media.audio import MonoResampling, mono_samples
from tsav_deploy.media.frames import FrameClock, RgbConverter
from tsav_deploy.media.probe import (
    VideoFrame,
    ffmpeg_reason,
    open_media,
    orient,
    orientation,
    stream_rate,
    video_stream,
)

# Schemes PyAV (FFmpeg) opens as network input.
NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "rtp", "tcp", "http", "https")
# Platform -> (libavdevice input, how camera N is named there; DirectShow takes the camera's name).
WEBCAM_INPUTS = {
    "linux": ("v4l2", "/dev/video{}"),
    "darwin": ("avfoundation", "{}:none"),
    "win32": ("dshow", "video={}"),
}
OPEN_TIMEOUT_S = 60.0  # a listening socket waits this long for its sender; a camera to start
READ_TIMEOUT_S = 10.0  # a stream silent this long has dropped
_POLL_S = 0.1


@dataclass(frozen=True)
class SourceSpec:
    """Where ``tsav live`` reads from: what to open and how, and whether it runs in real time."""

    name: str  # as the user gave it
    url: str  # what FFmpeg opens
    format: str | None = None  # a libavdevice input (v4l2, avfoundation, dshow) or None
    options: dict = field(default_factory=dict)
    live: bool = True  # a camera or a stream (frames cannot wait); False for a file


def parse_source(source: str | os.PathLike) -> SourceSpec:
    """The :class:`SourceSpec` of a file path, ``webcam``, ``webcam:N``, ``/dev/videoN`` or URL; a
    one-line ``TsavError`` for anything else."""
    name = os.fspath(source)
    if name == "webcam" or name.startswith("webcam:"):
        number = name.partition(":")[2] or "0"
        device, pattern = _webcam_input()
        if device == "dshow" and (number.isdigit() or not name.startswith("webcam:")):
            raise TsavError(
                f"{name}: DirectShow names its cameras: give webcam:NAME "
                "(`ffmpeg -list_devices true -f dshow -i dummy` lists them)"
            )
        if device != "dshow" and not number.isdigit():
            raise TsavError(f"{name}: a webcam is webcam or webcam:N with N a camera number (0, 1, …)")
        url = pattern.format(number)
        if device == "v4l2" and not os.path.exists(url):
            raise MediaError(f"{name}: no camera at {url}; list cameras with `ls /dev/video*`")
        return SourceSpec(name, url, device, {"framerate": "30"} if device != "v4l2" else {})
    if name.startswith("/dev/video"):
        if not os.path.exists(name):
            raise MediaError(f"{name}: no such camera device; list cameras with `ls /dev/video*`")
        return SourceSpec(name, name, "v4l2")
    scheme = urlsplit(name).scheme.lower()
    if scheme in NETWORK_SCHEMES:
        return SourceSpec(name, name)
    if "://" in name:
        raise TsavError(f"{name}: unknown stream scheme {scheme!r}; use one of {', '.join(NETWORK_SCHEMES)}")
    path = pathlib.Path(name).expanduser()
    if not path.exists():
        raise MediaError(f"{name}: no such file, and not webcam[:N], /dev/videoN or a stream URL")
    return SourceSpec(name, str(path), live=False)


def _webcam_input() -> tuple[str, str]:
    for platform, device in WEBCAM_INPUTS.items():
        if sys.platform.startswith(platform):
            return device
    raise TsavError(f"webcams are read through v4l2, avfoundation or dshow; none exists on {sys.platform}")


@dataclass(frozen=True)
class Arrival:
    """A decoded video frame and when it arrived (``time.monotonic()`` seconds); ``origin_s`` is the
    container time of frame 0 (where the audio's sample 0 lies)."""

    frame: VideoFrame
    arrived: float
    origin_s: float


@dataclass(frozen=True)
class AudioPiece:
    seconds: float | None  # container time of the first sample
    samples: np.ndarray  # int16 mono 44.1 kHz


_END = object()
# The queue between the reader and the pipeline holds at most this many bytes of pictures, each frame
# counted at its own size (a stream that switches to larger frames queues fewer of them): about 8 s
# of 640x360, 1.3 s of 1080p at 30 fps, enough to ride out a network burst or a slow stretch.
_QUEUE_BYTES = 256 << 20


class ByteBudget:
    """The bytes of pictures a queue may hold: a frame is let in only where its own bytes fit (any
    frame fits an empty queue); taking it out gives them back. ``peak``: the most ever held."""

    def __init__(self, limit: int):
        self.limit, self.held, self.peak = limit, 0, 0
        self._changed = threading.Condition()

    def take(self, size: int, *, timeout: float) -> bool:
        with self._changed:
            if not self._fits(size) and timeout > 0:
                self._changed.wait(timeout)
            if not self._fits(size):
                return False
            self.held += size
            self.peak = max(self.peak, self.held)
            return True

    def give(self, size: int) -> None:
        with self._changed:
            self.held -= size
            self._changed.notify_all()

    def _fits(self, size: int) -> bool:
        return self.held == 0 or self.held + size <= self.limit


class LiveSource:
    """Reads a :class:`SourceSpec` in a thread; iterate over it for :class:`Arrival` and
    :class:`AudioPiece` items until the stream ends. ``realtime``: a file is played at its own
    rate (as a camera delivers), and like a live source it drops what the consumer cannot take.
    ``dropped_frames`` lists ``(index, time)`` of the frames dropped. Use as a context manager:
    leaving it stops the reader."""

    def __init__(self, spec: SourceSpec, *, realtime: bool = False):
        self.spec = spec
        self.paced = spec.live or realtime
        self.realtime = realtime and not spec.live
        self.dropped_frames: list[tuple[int, float]] = []  # frames the consumer could not take in time
        self.received = 0  # video frames decoded
        self.warnings: list[str] = []
        self.has_audio = False
        self._queue: queue.Queue = queue.Queue()
        self.budget = ByteBudget(_QUEUE_BYTES)  # the pictures queued, in bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="tsav-live-source", daemon=True)

    @property
    def dropped(self) -> int:
        return len(self.dropped_frames)

    def __enter__(self) -> LiveSource:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading. A reader blocked in FFmpeg (a socket waiting for its sender, a silent
        stream) ends at its timeout; it is a daemon thread and is not waited for that long."""
        self._stop.set()
        self._thread.join(timeout=1.0)

    @property
    def backlog(self) -> int:
        """Video frames decoded and not yet taken."""
        return sum(isinstance(item, Arrival) for item in list(self._queue.queue))

    def __iter__(self) -> Iterator[Arrival | AudioPiece]:
        while True:
            try:
                item = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                if self._stop.is_set():
                    return  # asked to stop, and nothing is left to hand over
                if self._thread.is_alive():
                    continue
                try:  # the reader's last items (it always ends with _END) may have come just now
                    item = self._queue.get_nowait()
                except queue.Empty:
                    return
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, Arrival):
                self.budget.give(item.frame.rgb.nbytes)
            yield item

    # --- the reader thread ---------------------------------------------------------------------

    def _open(self) -> av.container.InputContainer:
        spec = self.spec
        if not spec.live:
            return open_media(spec.url)
        try:
            return av.open(
                spec.url,
                format=spec.format,
                options=spec.options,
                timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S),
                metadata_errors="ignore",
            )
        except (av.FFmpegError, OSError) as error:
            raise MediaError(
                f"{spec.name}: cannot open ({ffmpeg_reason(error)}); check the address, that the sender or camera "
                "is running, and for a listening URL that the port is free"
            ) from error

    def _read(self) -> None:
        try:
            with self._open() as container:
                self._demux(container)
        except MediaError as error:
            self._queue.put(error)
        except av.FFmpegError as error:
            # Whatever arrived stays valid: a stream that breaks off ends the run as its end would.
            self.warnings.append(
                f"{self.spec.name}: the stream broke off ({ffmpeg_reason(error)}); what arrived is kept"
            )
        except BaseException as error:  # a bug of ours: handed to the consumer, which raises it
            self._queue.put(error)
        self._queue.put(_END)

    def _demux(self, container: av.container.InputContainer) -> None:
        video = video_stream(container, self.spec.name)
        video.thread_type = "AUTO" if not self.paced else "SLICE"  # frame threads add a frame of delay each
        audio = container.streams.audio[0] if container.streams.audio else None
        self.has_audio = audio is not None
        if audio is None:
            self.warnings.append(f"{self.spec.name}: has no audio track; the aural stream gets silence")
        clock = FrameClock(1.0 / (stream_rate(video) or 30.0))
        resampling = MonoResampling()
        self._signs = self._origin = self._started = None
        self._to_rgb = RgbConverter()
        streams = [video] + ([audio] if audio is not None else [])
        try:
            for packet in container.demux(streams):
                if self._stop.is_set():
                    return
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    continue  # a damaged packet costs its frames, as in a file
                for frame in frames:
                    if isinstance(frame, av.AudioFrame):
                        self._put_audio(resampling.resample(frame))
                    else:
                        self._put_picture(frame, clock)
        finally:  # also where the stream broke off: the resampler's last samples belong to it
            self._put_audio(resampling.flush())
            self.warnings += clock.notes(self.spec.name)

    def _put_audio(self, pieces: list[av.AudioFrame]) -> None:
        for piece in pieces:
            self._pace(piece.time)
            self._queue.put(AudioPiece(piece.time, mono_samples(piece, pcm16=True)))

    def _put_picture(self, frame: av.VideoFrame, clock: FrameClock) -> None:
        if self._started is None:  # the first frame: orientation, time 0, the queue's size
            self._signs = orientation(frame)
            self._origin = frame.time if frame.time is not None else 0.0
            self._started = time.monotonic()
        check_frame(self.spec.url, frame.width, frame.height)  # every frame: a stream may switch sizes
        size = frame.width * frame.height * 3
        t = clock.time_of(frame.time)
        self._pace(frame.time)
        index = self.received
        self.received += 1
        if self.paced and not self.budget.take(size, timeout=0):
            self.dropped_frames.append((index, t))
            return
        while not self.paced and not self.budget.take(size, timeout=_POLL_S):
            if self._stop.is_set():
                return
        rgb = orient(self._to_rgb(frame), self._signs)
        self._queue.put(Arrival(VideoFrame(index, t, rgb), time.monotonic(), self._origin))

    def _pace(self, seconds: float | None) -> None:
        """``realtime``: wait until an item's time comes, counted from the first frame."""
        if not self.realtime or self._started is None or seconds is None:
            return
        delay = self._started + (seconds - self._origin) - time.monotonic()
        if delay > 0:
            self._stop.wait(delay)
