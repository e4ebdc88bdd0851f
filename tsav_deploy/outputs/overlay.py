"""Overlay video: the input's frames with the face box, valence/arousal, expression and AU bars,
encoded with H.264 at the input's exact frame times, and the input's audio muxed back in."""

from __future__ import annotations

import contextlib
import pathlib
import sys
from dataclasses import dataclass
from fractions import Fraction
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import av
import cv2
import numpy as np

from tsav_deploy.atomic import atomic_path
from tsav_deploy.contract import ACTION_UNITS, EXPRESSIONS, SAMPLE_RATE
from tsav_deploy.errors import TsavError
from tsav_deploy.media.frames import iter_frames
from tsav_deploy.media.probe import probe
from tsav_deploy.results.table import AUDIO_ONLY
from tsav_deploy.results.video_result import VideoResult

TIME_BASE = Fraction(1, 90_000)  # MPEG's clock: exact for 23.976, 25, 29.97, 30 fps and VFR
BOX_COLOURS = ((0, 220, 0), (255, 160, 0), (0, 160, 255), (255, 0, 200))
# A live overlay moves its panel once a face has stayed under it this many frames in a row (about a
# quarter of a second), to the corner faces covered least lately: each frame's face area weighs
# less by this factor per frame (half in about 20 frames).
LIVE_SETTLE_FRAMES = 8
LIVE_DECAY = 0.965
# Audio codecs MP4 takes as they are; anything else is re-encoded to AAC.
MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac", "opus"}


FONT = cv2.FONT_HERSHEY_SIMPLEX
CAP_HEIGHT_AT_SCALE_1 = 20  # pixels of a capital letter in FONT at font scale 1
# The panel's text: capitals 1/40 of the frame's short side, never under 10 pixels, so that it reads
# the same from 240p to 4K; every other size of the panel is measured in text heights.
TEXT_FRACTION, MIN_TEXT_PX = 40, 10


@dataclass(frozen=True)
class PanelLayout:
    """Sizes in pixels of one person's panel: a header row (valence, arousal), then the
    expressions and the AUs side by side, one per row, each a label and a probability bar."""

    text: float  # capital height
    font: float  # OpenCV font scale
    thick: int
    row: int
    labels: tuple[int, int]  # label widths of the expression and the AU column
    bar: int
    pad: int

    def column(self, c: int) -> int:
        """Left edge of column ``c`` (0: expressions, 1: AUs, 2: the panel's right edge)."""
        return self.pad + sum(label + self.bar + self.pad for label in self.labels[:c])

    @property
    def width(self) -> int:
        return self.column(2)

    @property
    def height(self) -> int:
        return self.pad + self.row * (1 + max(len(EXPRESSIONS), len(ACTION_UNITS)))


def panel_layout(width: int, height: int) -> PanelLayout:
    text = max(MIN_TEXT_PX, min(width, height) / TEXT_FRACTION)
    font = text / CAP_HEIGHT_AT_SCALE_1
    thick = max(1, round(text / 14))
    pad = max(2, round(text * 0.4))
    labels = tuple(
        max(cv2.getTextSize(n, FONT, font, thick)[0][0] for n in names) + pad for names in (EXPRESSIONS, ACTION_UNITS)
    )
    return PanelLayout(text, font, thick, round(text * 1.75), labels, round(text * 4), pad)


CORNERS = ("top left", "top right", "bottom left", "bottom right")


def _strip(width: int, height: int, lay: PanelLayout, people: int, corner: str) -> tuple[int, int, int, int]:
    """The rectangle (x1, y1, x2, y2) the panels of ``people`` people take in ``corner``."""
    shown = max(1, min(people, (width - lay.pad) // (lay.width + lay.pad)))
    w, h = shown * (lay.width + lay.pad) + lay.pad, lay.height + 2 * lay.pad
    x1 = 0 if corner.endswith("left") else width - w
    y1 = 0 if corner.startswith("top") else height - h
    return x1, y1, x1 + w, y1 + h


def corner_costs(result: VideoResult, frames: slice | list[int], width: int, height: int) -> np.ndarray:
    """For each of ``CORNERS``, the face area (pixels, summed over ``frames`` and people) the
    panels would cover there."""
    lay = panel_layout(width, height)
    costs = np.zeros(len(CORNERS))
    for person in result.persons:
        boxes = person.boxes[frames][person.face_found[frames]].astype(np.float64)
        if not len(boxes):
            continue
        for c, corner in enumerate(CORNERS):
            x1, y1, x2, y2 = _strip(width, height, lay, len(result.persons), corner)
            w = np.clip(np.minimum(boxes[:, 2], x2) - np.maximum(boxes[:, 0], x1), 0, None)
            h = np.clip(np.minimum(boxes[:, 3], y2) - np.maximum(boxes[:, 1], y1), 0, None)
            costs[c] += float((w * h).sum())
    return costs


def best_corner(result: VideoResult, width: int, height: int) -> str:
    """Where the panels cover the least face over the whole video: one place for the whole video,
    so the panel never jumps (the top left where all are equal)."""
    return CORNERS[int(np.argmin(corner_costs(result, slice(None), width, height)))]


def draw_panel(image: np.ndarray, result: VideoResult, index: int, corner: str = "top left") -> None:
    """Draw every person's box and a panel of that person's predictions onto an RGB frame in place
    (panels side by side from ``corner``, as many as fit). Without a face the panel is dimmed and
    labelled "audio only": its values rest on the audio (under ``no_face`` "nan" none are shown)."""
    height, width = image.shape[:2]
    lay = panel_layout(width, height)
    strip_x, strip_y, _, _ = _strip(width, height, lay, len(result.persons), corner)
    for k, person in enumerate(result.persons):
        colour = BOX_COLOURS[k % len(BOX_COLOURS)]
        x0, y0 = strip_x + lay.pad + k * (lay.width + lay.pad), strip_y + lay.pad
        if x0 + lay.width > width:
            break
        found = bool(person.face_found[index])
        if found:
            x1, y1, x2, y2 = (int(round(v)) for v in person.boxes[index])
            cv2.rectangle(image, (x1, y1), (x2, y2), colour, max(1, round(lay.text / 6)))
        region = image[y0 : y0 + lay.height, x0 : x0 + lay.width]
        # Darkened behind the text for legibility; further without a face, where all is dimmed.
        region[:] = (region * (0.4 if found else 0.4 * AUDIO_ONLY_DIM)).astype(np.uint8)
        _panel_text(image, lay, (x0, y0), person.predictions, index, colour, found, result.no_face == "keep")


# Without a face the panel's values, bars and background keep this share of their brightness.
AUDIO_ONLY_DIM = 0.45
AUDIO_ONLY_LABEL = AUDIO_ONLY  # the table's modality of a row without a face


def _panel_text(image, lay: PanelLayout, origin, p, index: int, colour, found: bool, keep: bool) -> None:
    """The panel's header (valence, arousal; "audio only" without a face) and its rows of bars."""
    x0, y0 = origin
    dim = 1.0 if found else AUDIO_ONLY_DIM
    colour, label_colour = _scaled(colour, dim), _scaled((255, 255, 255), dim)

    def baseline(row: int) -> int:  # text centred in its row
        return round(y0 + row * lay.row + (lay.row + lay.text) / 2)

    values = f"V {p.valence[index]:+.2f}  A {p.arousal[index]:+.2f}"
    x = x0 + lay.pad
    if not found:  # the label at full strength: the one thing on the panel that is not dimmed
        cv2.putText(image, AUDIO_ONLY_LABEL, (x, baseline(0)), FONT, lay.font, (255, 255, 255), lay.thick, cv2.LINE_AA)
        x += cv2.getTextSize(AUDIO_ONLY_LABEL + " ", FONT, lay.font, lay.thick)[0][0]
        values = f"V{p.valence[index]:+.2f} A{p.arousal[index]:+.2f}"  # beside the label, in the panel's width
    if found or keep:
        cv2.putText(image, values, (x, baseline(0)), FONT, lay.font, colour, lay.thick, cv2.LINE_AA)
    cells = [[(e, p.expression_probs[index, i], i == p.expression[index]) for i, e in enumerate(EXPRESSIONS)]]
    cells.append([(au, p.au_probs[index, i], bool(p.au[index, i])) for i, au in enumerate(ACTION_UNITS)])
    for c, column in enumerate(cells):
        x = x0 + lay.column(c)
        for row, (name, value, chosen) in enumerate(column, start=1):
            y = baseline(row)
            cv2.putText(image, name, (x, y), FONT, lay.font, label_colour, lay.thick, cv2.LINE_AA)
            top, left = round(y - lay.text), x + lay.labels[c]
            cv2.rectangle(image, (left, top), (left + lay.bar, y), _scaled((70, 70, 70), dim), -1)
            if found or keep:
                fill = colour if chosen else _scaled((190, 190, 190), dim)
                cv2.rectangle(image, (left, top), (left + round(lay.bar * float(value)), y), fill, -1)


def _scaled(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(round(v * factor) for v in colour)


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
        stream = corner = None
        with iter_frames(video) as frames:
            for frame in frames:
                rgb = np.ascontiguousarray(frame.rgb)
                if stream is None:
                    stream = _video_stream(out, rgb.shape, info.fps, crf)
                    corner = best_corner(result, rgb.shape[1], rgb.shape[0])
                draw_panel(rgb, result, frame.index, corner)
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
            self._encoder = AacTrack(out, src.codec_context.sample_rate or 44_100)
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
            self._mux(packet, when)

    def _next_packet(self) -> av.Packet | None:
        """The next audio packet; damage that stops demuxing ends the audio there, as it ends the
        aural input (media.read_audio), instead of failing the overlay."""
        try:
            return next(self._packets, None)
        except av.FFmpegError:
            self._packets = iter(())
            return None

    def _mux(self, packet: av.Packet, when: float) -> None:
        shift = round(self._start / packet.time_base)
        if self._copy:
            packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            packet.stream = self._stream
            self._out.mux(packet)
            return
        for frame in packet.decode():
            self._encoder.encode(frame, when)  # the first packet kept starts where it lies

    def flush(self) -> None:
        """Drain the re-encoder (a copied stream has nothing held back)."""
        if not self._copy:
            self._encoder.flush()

    def __enter__(self) -> _AudioCopier:
        return self

    def __exit__(self, *exc) -> None:
        self._in.close()


class AacTrack:
    """An AAC track of ``out`` fed decoded audio whose samples lie end to end, from time 0 or from
    where the first frame is said to start. Each frame's pts counts the samples before it: with
    timestamps the encoder's priming (1024 samples) goes into the file as a delay the player skips
    (MP4's edit list), where without them it would delay the sound by 23 ms."""

    def __init__(self, out: av.container.OutputContainer, rate: int, layout: str | None = None):
        self._out = out
        self._stream = out.add_stream("aac", rate=rate, **({"layout": layout} if layout else {}))
        self._seconds: Fraction | None = None

    def encode(self, frame: av.AudioFrame, start_s: float = 0.0) -> None:
        """Encode ``frame`` after those before; ``start_s``: where the first frame starts (seconds
        from the first video frame), ignored after it."""
        if self._seconds is None:
            self._seconds = Fraction(round(start_s * frame.sample_rate), frame.sample_rate)
        rate = frame.sample_rate
        frame.pts, frame.time_base = round(self._seconds * rate), Fraction(1, rate)
        self._seconds += Fraction(frame.samples, rate)
        self._out.mux(self._stream.encode(frame))

    def encode_mono(self, samples: np.ndarray) -> None:
        """Encode int16 mono samples at ``SAMPLE_RATE`` (a live track's), following those before."""
        if len(samples):
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            self.encode(frame)

    def flush(self) -> None:
        self._out.mux(self._stream.encode(None))


# Stream URLs the overlay can be sent to, and the container each scheme carries.
STREAM_FORMATS = {"rtmp": "flv", "rtmps": "flv", "rtsp": "rtsp", "srt": "mpegts", "udp": "mpegts", "tcp": "mpegts"}


class OverlayStream:
    """The overlay of a live stream, frame by frame as predictions become final: to a file (H.264
    MP4, under its final name only once the stream ends) or a stream URL (``rtmp://`` as FLV,
    ``rtsp://`` as RTSP, ``srt://``, ``udp://`` and ``tcp://`` as MPEG-TS; H.264 tuned for low
    latency). Where the first frame comes with audio (a source with an audio track), the overlay
    carries it as mono AAC, its samples end to end from time 0 (the first frame's), so each frame's
    sound plays at its time; every container above carries it (RTSP as a second RTP stream)."""

    def __init__(self, target: str, *, crf: int = 23):
        self.target, self.crf = target, crf
        scheme = check_overlay_target(target)
        self._files = contextlib.ExitStack()
        try:
            if scheme:
                out = av.open(_with_timeouts(target), "w", format=STREAM_FORMATS[scheme])
            else:
                tmp = self._files.enter_context(atomic_path(pathlib.Path(target)))
                out = av.open(str(tmp), "w", format="mp4")
            self._out = self._files.enter_context(out)
        except BaseException:
            self._files.__exit__(*sys.exc_info())
            raise
        self._live = bool(scheme)
        self._stream = None
        self._audio: AacTrack | None = None
        self._last_pts = -1
        self._corner, self._covered, self._under = CORNERS[0], np.zeros(len(CORNERS)), 0

    def _place(self, result: VideoResult, width: int, height: int) -> str:
        """The panel's corner for this frame. It stays until a face has been under it for
        ``LIVE_SETTLE_FRAMES`` frames in a row (a face passing by does not move it), then goes to
        the corner faces covered least lately (face area, each frame's weight decaying)."""
        covered = corner_costs(result, [0], width, height)
        self._covered = self._covered * LIVE_DECAY + covered
        self._under = self._under + 1 if covered[CORNERS.index(self._corner)] > 0 else 0
        if self._under >= LIVE_SETTLE_FRAMES:
            self._corner, self._under = CORNERS[int(np.argmin(self._covered))], 0
        return self._corner

    def write(self, rgb: np.ndarray, time: float, result: VideoResult, audio: np.ndarray | None = None) -> None:
        """Draw frame 0 of ``result`` onto ``rgb`` (the frame's picture, at ``time`` seconds) and
        encode it, the panel in a corner away from the faces. ``audio``: the sound that came with the
        frame (int16 mono at ``SAMPLE_RATE``, following the samples given before; None for a source
        without audio, decided at the first frame)."""
        rgb = np.array(rgb)  # drawn on a copy: the caller's picture stays as it was
        if self._stream is None:
            self._stream = _video_stream(self._out, rgb.shape, 30.0, self.crf)  # nominal: frames keep their times
            if self._live:
                self._stream.options = {**self._stream.options, "tune": "zerolatency"}
            if audio is not None:  # every stream is added before the first packet (the header)
                self._audio = AacTrack(self._out, SAMPLE_RATE, "mono")
        if audio is not None:
            self.write_audio(audio)  # the sound up to this frame's time goes out before its picture
        draw_panel(rgb, result, 0, self._place(result, rgb.shape[1], rgb.shape[0]))
        vf = av.VideoFrame.from_ndarray(_even(rgb), format="rgb24")
        vf.pts, vf.time_base = max(self._last_pts + 1, round(time / TIME_BASE)), TIME_BASE
        self._last_pts = vf.pts
        self._out.mux(self._stream.encode(vf))

    def write_audio(self, samples: np.ndarray | None) -> None:
        """More of the sound (as ``write``'s ``audio``), such as what follows the last frame; nothing
        where the overlay has no audio track."""
        if self._audio is not None and samples is not None:
            self._audio.encode_mono(samples)

    def __enter__(self) -> OverlayStream:
        return self

    def __exit__(self, *exc) -> None:
        """Drain the encoders and close: a file gets its final name here, or none after an error or
        when no frame came."""
        if exc[0] is None and self._stream is None:
            exc = (_NoFrames, _NoFrames(), None)
        if exc[0] is not None:
            self._files.__exit__(*exc)  # the temporary file goes with it
            return
        with self._files:
            self._out.mux(self._stream.encode(None))
            if self._audio is not None:
                self._audio.flush()


class _NoFrames(Exception):
    """The stream ended before its first frame: there is no overlay to keep."""


def _with_timeouts(url: str) -> str:
    """A ``tcp://`` target that waits for its receiver at most 60 s and for a stalled one at most
    10 s (FFmpeg's defaults wait forever, holding Python's lock, so Ctrl-C could not end the run);
    the URL's own values win. Other protocols keep FFmpeg's behaviour."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "tcp":
        return url
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.setdefault("timeout", "10000000")  # microseconds, each socket read or write
    if query.get("listen") not in (None, "0"):
        query.setdefault("listen_timeout", "60000")  # milliseconds, waiting for the receiver
    return urlunsplit(parts._replace(query=urlencode(query)))


def check_overlay_target(target: str) -> str:
    """The scheme of an overlay stream URL ("" for a file), or a one-line ``TsavError``."""
    scheme = target.partition("://")[0].lower() if "://" in target else ""
    if scheme and scheme not in STREAM_FORMATS:
        raise TsavError(
            f"{target}: cannot send an overlay to {scheme}://; give a file or a {', '.join(STREAM_FORMATS)} URL"
        )
    return scheme
