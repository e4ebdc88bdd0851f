"""Overlay video: the input's frames with the face box, valence/arousal, expression and AU bars,
encoded with H.264 at the input's exact frame times, and the input's audio muxed back in."""

from __future__ import annotations

import contextlib
import pathlib
from fractions import Fraction

import av
import cv2
import numpy as np

from .atomic import atomic_path
from .constants import ACTION_UNITS, EXPRESSIONS
from .media import iter_frames, probe
from .results import VideoResult

TIME_BASE = Fraction(1, 90_000)  # MPEG's clock: exact for 23.976, 25, 29.97, 30 fps and VFR
BOX_COLOURS = ((0, 220, 0), (255, 160, 0), (0, 160, 255), (255, 0, 200))
# Audio codecs MP4 takes as they are; anything else is re-encoded to AAC.
MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac", "opus"}


def draw_panel(image: np.ndarray, result: VideoResult, index: int) -> None:
    """Draw every person's box and a panel of that person's predictions onto an RGB frame in place."""
    height, width = image.shape[:2]
    scale = max(0.35, min(width, height) / 720)
    thick = max(1, round(scale * 2))
    panel_w, row_h = int(230 * scale), int(18 * scale)
    for k, person in enumerate(result.persons):
        colour = BOX_COLOURS[k % len(BOX_COLOURS)]
        x0 = 4 + k * (panel_w + 6)
        if x0 + panel_w > width:
            break
        p = person.predictions
        if person.face_found[index]:
            x1, y1, x2, y2 = (int(round(v)) for v in person.boxes[index])
            cv2.rectangle(image, (x1, y1), (x2, y2), colour, thick)
        rows = 2 + len(EXPRESSIONS) + len(ACTION_UNITS)
        overlay = image[4 : 4 + rows * row_h + 4, x0 : x0 + panel_w]
        overlay[:] = (overlay * 0.45).astype(np.uint8)  # darken behind the text for legibility
        y = 4 + row_h
        label = f"V {p.valence[index]:+.2f}  A {p.arousal[index]:+.2f}" + (
            "" if person.face_found[index] else "  (no face)"
        )
        cv2.putText(image, label, (x0 + 3, y - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale, colour, 1, cv2.LINE_AA)
        y += row_h
        bars = [(e, p.expression_probs[index, i], i == p.expression[index]) for i, e in enumerate(EXPRESSIONS)]
        bars += [(au, p.au_probs[index, i], bool(p.au[index, i])) for i, au in enumerate(ACTION_UNITS)]
        for name, value, chosen in bars:
            text_w = int(78 * scale)
            bar_w = int((panel_w - text_w - 8) * float(value))
            fill = colour if chosen else (170, 170, 170)
            cv2.rectangle(image, (x0 + text_w, y - row_h + 4), (x0 + text_w + bar_w, y - 3), fill, -1)
            cv2.putText(
                image, name, (x0 + 3, y - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.38 * scale, (255, 255, 255), 1, cv2.LINE_AA
            )
            y += row_h


def write_overlay(path: pathlib.Path, video: pathlib.Path, result: VideoResult, *, crf: int = 23) -> pathlib.Path:
    """Re-decode ``video`` and write the annotated copy; frame count and times equal the input's.

    A third decode of the video (and a second read of its audio, copied untouched where MP4 takes
    the codec): holding the frames from pass 2 instead would cost memory in proportion to the video.
    """
    info = result.video_info or probe(video)
    with contextlib.ExitStack() as files:  # every container closed on every path, errors included
        tmp = files.enter_context(atomic_path(path))
        out = files.enter_context(av.open(str(tmp), "w"))
        audio = files.enter_context(_AudioCopier(out, video, info.start_time_s)) if info.has_audio else None
        stream = None
        with iter_frames(video) as frames:
            for frame in frames:
                rgb = np.ascontiguousarray(frame.rgb)
                if stream is None:
                    stream = _video_stream(out, rgb.shape, info.fps, crf)
                draw_panel(rgb, result, frame.index)
                rgb = _even(rgb)
                vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                vf.pts, vf.time_base = round(frame.time / TIME_BASE), TIME_BASE
                if audio is not None:
                    audio.mux_until(frame.time)
                out.mux(stream.encode(vf))
        out.mux(stream.encode(None))
        if audio is not None:
            audio.mux_until(float("inf"))
            audio.flush()
    return path


def _video_stream(out: av.container.OutputContainer, shape: tuple, fps: float, crf: int):
    stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001) if fps > 0 else 30)
    stream.height, stream.width = shape[0] + shape[0] % 2, shape[1] + shape[1] % 2
    stream.pix_fmt = "yuv420p"
    stream.time_base = TIME_BASE
    stream.codec_context.time_base = TIME_BASE
    # VFR-safe: frames keep their own pts (no duplication or dropping to a nominal rate).
    stream.options = {"crf": str(crf), "preset": "veryfast", "tune": "film"}
    return stream


def _even(rgb: np.ndarray) -> np.ndarray:
    """yuv420p needs even sizes: repeat the last row/column of odd-sized frames."""
    pad_h, pad_w = rgb.shape[0] % 2, rgb.shape[1] % 2
    return np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge") if pad_h or pad_w else rgb


class _AudioCopier:
    """Interleaves the input's first audio track into the output, shifted so that time 0 is the
    first video frame (as ``iter_frames`` times are); packets are copied untouched where MP4 takes the
    codec, otherwise decoded and re-encoded to AAC."""

    def __init__(self, out: av.container.OutputContainer, video: pathlib.Path, start_s: float):
        self._in = av.open(str(video))
        try:
            self._start_streams(out)
        except BaseException:
            self._in.close()
            raise
        self._out, self._start = out, start_s
        self._packets = self._in.demux(self._src)
        self._pending = None

    def _start_streams(self, out: av.container.OutputContainer) -> None:
        src = self._in.streams.audio[0]
        self._copy = src.codec_context.codec.canonical_name in MP4_AUDIO
        if self._copy:
            self._stream = out.add_stream_from_template(src)
        else:
            self._stream = out.add_stream("aac", rate=src.codec_context.sample_rate or 44_100)
        self._src = src

    def mux_until(self, t: float) -> None:
        """Mux every audio packet that starts before video time ``t``."""
        while True:
            packet = self._pending or self._next_packet()
            self._pending = None
            if packet is None:
                return
            if packet.pts is None:
                continue
            when = float(packet.pts * packet.time_base) - self._start
            if when > t:
                self._pending = packet
                return
            if when < 0:  # audio before the first video frame has no picture to go with
                continue
            self._mux(packet)

    def _next_packet(self) -> av.Packet | None:
        """The next audio packet; damage that stops demuxing ends the audio there, as it ends the
        aural input (media.read_audio), instead of failing the overlay."""
        try:
            return next(self._packets, None)
        except av.FFmpegError:
            self._packets = iter(())
            return None

    def _mux(self, packet: av.Packet) -> None:
        shift = round(self._start / packet.time_base)
        if self._copy:
            packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            packet.stream = self._stream
            self._out.mux(packet)
            return
        for frame in packet.decode():
            frame.pts = None  # let the encoder count samples from 0
            self._out.mux(self._stream.encode(frame))

    def flush(self) -> None:
        """Drain the re-encoder (a copied stream has nothing held back)."""
        if not self._copy:
            self._out.mux(self._stream.encode(None))

    def __enter__(self) -> _AudioCopier:
        return self

    def __exit__(self, *exc) -> None:
        self._in.close()
