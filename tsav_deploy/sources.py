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

from .errors import MediaError, TsavError
from .media import (
    VideoFrame,
    _FrameClock,
    _mono,
    _mono_resampler,
    _open,
    _orient,
    _orientation,
    _reason,
    _stream_rate,
    _video_stream,
)

# Schemes PyAV (FFmpeg) opens as network input.
NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "rtp", "tcp", "http", "https")
# Platform -> (libavdevice input, how camera N is named there).
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
        if not number.isdigit():
            raise TsavError(f"{name}: a webcam is webcam or webcam:N with N a camera number (0, 1, …)")
        device, pattern = _webcam_input()
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


class LiveSource:
    """Reads a :class:`SourceSpec` in a thread; iterate over it for :class:`Arrival` and
    :class:`AudioPiece` items until the stream ends. ``realtime``: a file is played at its own
    rate (as a camera delivers), and like a live source it drops what the consumer cannot take.
    Use as a context manager: leaving it stops the reader."""

    def __init__(self, spec: SourceSpec, *, realtime: bool = False, queued_frames: int = 64):
        self.spec = spec
        self.paced = spec.live or realtime
        self.realtime = realtime and not spec.live
        self.dropped = 0  # video frames the consumer could not take in time
        self.received = 0  # video frames decoded
        self.warnings: list[str] = []
        self.has_audio = False
        self._queue: queue.Queue = queue.Queue()
        self._slots = threading.Semaphore(queued_frames)  # bounds the video frames in the queue
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="tsav-live-source", daemon=True)

    def __enter__(self) -> LiveSource:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading (an FFmpeg read in progress ends at its timeout at the latest)."""
        self._stop.set()
        self._thread.join(timeout=READ_TIMEOUT_S + 1)

    @property
    def backlog(self) -> int:
        """Video frames decoded and not yet taken."""
        return sum(isinstance(item, Arrival) for item in list(self._queue.queue))

    def __iter__(self) -> Iterator[Arrival | AudioPiece]:
        while True:
            try:
                item = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                # Asked to stop, with nothing left to hand over: the reader may still be blocked in
                # FFmpeg (a listening socket, a silent stream) until its timeout; it need not be waited for.
                if self._stop.is_set() or not self._thread.is_alive():
                    return
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, Arrival):
                self._slots.release()
            yield item

    # --- the reader thread ---------------------------------------------------------------------

    def _open(self) -> av.container.InputContainer:
        spec = self.spec
        if not spec.live:
            return _open(spec.url)
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
                f"{spec.name}: cannot open ({_reason(error)}); check the address, that the sender or camera "
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
            self.warnings.append(f"{self.spec.name}: the stream broke off ({_reason(error)}); what arrived is kept")
        except BaseException as error:  # a bug of ours: handed to the consumer, which raises it
            self._queue.put(error)
        self._queue.put(_END)

    def _demux(self, container: av.container.InputContainer) -> None:
        video = _video_stream(container, self.spec.name)
        video.thread_type = "AUTO" if not self.paced else "SLICE"  # frame threads add a frame of delay each
        audio = container.streams.audio[0] if container.streams.audio else None
        self.has_audio = audio is not None
        if audio is None:
            self.warnings.append(f"{self.spec.name}: has no audio track; the aural stream gets silence")
        clock = _FrameClock(1.0 / (_stream_rate(video) or 30.0))
        resampler, source_format = None, None
        signs = origin = started = None
        streams = [video] + ([audio] if audio is not None else [])
        for packet in container.demux(streams):
            if self._stop.is_set():
                return
            try:
                frames = packet.decode()
            except av.FFmpegError:
                continue  # a damaged packet costs its frames, as in a file
            for frame in frames:
                if isinstance(frame, av.AudioFrame):
                    signature = (frame.format.name, frame.layout.name, frame.sample_rate)
                    if signature != source_format:
                        resampler, source_format = _mono_resampler(), signature
                    for piece in resampler.resample(frame):
                        self._pace(started, piece.time, origin)
                        self._queue.put(AudioPiece(piece.time, _mono(piece, pcm16=True)))
                    continue
                if started is None:
                    signs = _orientation(frame)
                    origin = frame.time if frame.time is not None else 0.0
                    started = time.monotonic()
                t = clock.time_of(frame.time)
                self._pace(started, None if frame.time is None else frame.time, origin)
                rgb = _orient(frame.to_ndarray(format="rgb24"), signs)
                self._put_frame(Arrival(VideoFrame(self.received, t, rgb), time.monotonic(), origin))
                self.received += 1
        self.warnings += clock.notes(self.spec.name)

    def _pace(self, started: float | None, seconds: float | None, origin: float | None) -> None:
        """``realtime``: wait until the item's time comes, counted from the first frame."""
        if not self.realtime or started is None or seconds is None:
            return
        delay = started + (seconds - origin) - time.monotonic()
        if delay > 0:
            self._stop.wait(delay)

    def _put_frame(self, arrival: Arrival) -> None:
        if self.paced:
            if not self._slots.acquire(blocking=False):
                self.dropped += 1
                return
        else:
            while not self._slots.acquire(timeout=_POLL_S):
                if self._stop.is_set():
                    return
        self._queue.put(arrival)
