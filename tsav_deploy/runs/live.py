"""A live run: what ``tsav live`` does, from Python.

``LiveRun(source, options, jsonl=..., out=..., overlay_out=...)`` checks everything it can before
the model loads (the source's form, the name, the outputs), then yields each frame as soon as it is
final, after writing it to the JSONL file, the overlay stream and the recording for ``--out``.
``finish()`` writes the ``--out`` folder (ABAW files, table, plot, summary.json) from what
arrived and returns a :class:`LiveResult`; ``run()`` does both.

A source that cannot be opened raises its one-line :class:`~tsav_deploy.errors.TsavError` before
the first frame. Anything that fails after it (the source mid-stream, an output) is a
:class:`~tsav_deploy.failures.Failure` in ``failures``, and what was made so far is kept.
"""

from __future__ import annotations

import contextlib
import datetime
import pathlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from tsav_deploy.api import Annotation, Predictor, PredictorOptions
from tsav_deploy.errors import TsavError
from tsav_deploy.failures import Failure, describe_failure
from tsav_deploy.media.sources import parse_source
from tsav_deploy.outputs.overlay import OverlayStream, check_overlay_target
from tsav_deploy.outputs.records import check_output_folder, output_name, write_summary
from tsav_deploy.outputs.writers import JsonLines
from tsav_deploy.pipeline.offline import provenance
from tsav_deploy.pipeline.recording import LiveRecording, frame_result, live_rows
from tsav_deploy.pipeline.stream import MAX_LOOKAHEAD_S, LiveFrame, LiveOptions


@dataclass
class LiveResult:
    """How a live run ended: its summary, every failure, the stream as one Annotation (with
    ``out``), and whether the ``out`` folder was written."""

    summary: dict
    failures: list[Failure] = field(default_factory=list)
    annotation: Annotation | None = None
    written: bool = False

    @property
    def ok(self) -> bool:
        return not self.failures


class LiveRun:
    """One live source annotated into any of a JSONL file, an overlay stream and an output folder."""

    def __init__(
        self,
        source: str,
        predictor: Predictor | PredictorOptions,
        *,
        audio_lookahead: float = MAX_LOOKAHEAD_S,
        jsonl: str | None = None,
        out: pathlib.Path | None = None,
        name: str | None = None,
        overlay_out: str | None = None,
        realtime: bool = False,
        stop: threading.Event | None = None,
    ):
        self.source, self.spec = source, parse_source(source)
        self.out, self.jsonl, self.overlay_out = out, jsonl, overlay_out
        self.audio_lookahead = audio_lookahead
        _check_outputs(name, audio_lookahead, jsonl, out, overlay_out)
        self.predictor = predictor if isinstance(predictor, Predictor) else Predictor.from_options(predictor)
        self.name = name or (pathlib.Path(self.spec.url).stem if not self.spec.live else _live_name())
        self.stop = stop or threading.Event()
        self.frames = self.predictor.stream_frames(
            source, audio_lookahead=audio_lookahead, realtime=realtime, stop=self.stop, keep_pictures=bool(overlay_out)
        )
        options = self.predictor.options
        self._recording = LiveRecording(self.name, options.au_threshold, options.no_face) if out is not None else None
        self.failures: list[Failure] = []
        self._where: object = source
        self._latencies: list[float] = []
        self._strides: dict[int, int] = {}
        self._started = time.monotonic()

    def __iter__(self) -> Iterator[LiveFrame]:
        self._where = self.source  # what was being done when something failed
        try:
            with contextlib.ExitStack() as files:
                lines = files.enter_context(contextlib.closing(JsonLines(self.jsonl))) if self.jsonl else None
                overlay = files.enter_context(OverlayStream(self.overlay_out)) if self.overlay_out else None
                for frame in self.frames:
                    self._write(frame, lines, overlay)
                    yield frame
                    self._where = self.source
                self._where = self.overlay_out or self.source  # closing: the overlay's last frames, its rename
                if overlay is not None:
                    overlay.write_audio(self.frames.audio_tail())
        except KeyboardInterrupt:
            raise
        except TsavError as exc:
            if not self._latencies:
                raise  # the source could not be opened: its one line
            self.failures.append(_failure(self._where, exc))
        except Exception as exc:  # an output or the source failed mid-stream: what was made is kept
            self.failures.append(_failure(self._where, exc))
        if not (self._latencies or self.failures or self.stop.is_set()):  # ended before its first picture
            line = (
                f"{self.source}: the source ended without a frame to annotate (it sent no decodable picture); "
                "check the sender or the file"
            )
            self.failures.append(Failure(line))

    def _write(self, frame: LiveFrame, lines: JsonLines | None, overlay: OverlayStream | None) -> None:
        """Write ``frame`` everywhere it goes, ``_where`` naming the output being written."""
        options = self.predictor.options
        self._latencies.append(frame.latency_s)
        self._strides[frame.stride] = self._strides.get(frame.stride, 0) + 1
        if lines is not None:
            self._where = self.jsonl
            lines.write(live_rows(frame, options.au_threshold, options.no_face))
        if self._recording is not None:
            self._recording.add(frame)
        if overlay is not None:
            self._where = self.overlay_out
            overlay.write(
                frame.rgb, frame.time, frame_result(frame, options.au_threshold, options.no_face), frame.audio
            )

    def summary(self) -> dict:
        """Frames, latency (median, 95th percentile), strides, drops, wall time and the source's
        warnings, as the run's closing lines and summary.json give them."""
        latencies = np.asarray(self._latencies) if self._latencies else np.zeros(1)
        return {
            "frames_predicted": len(self._latencies),
            "dropped_frames": self.frames.dropped,
            "latency_s": {
                "median": round(float(np.median(latencies)), 3),
                "p95": round(float(np.percentile(latencies, 95)), 3),
            },
            "strides": {str(k): v for k, v in sorted(self._strides.items())},
            "wall_s": round(time.monotonic() - self._started, 3),
            "warnings": self.frames.warnings,
        }

    def finish(self) -> LiveResult:
        """Write the ``out`` folder from what arrived (nothing where no frame did)."""
        result = LiveResult(self.summary(), self.failures)
        if self._recording is None or not self._recording.frames:
            return result
        options = self.predictor.options
        info = {"source": self.source, "people": self.frames.people.count, "audio_lookahead": self.audio_lookahead}
        info |= provenance(self.predictor.engine, self.predictor.face_backend) | {"stride": options.stride}
        info |= {"au_threshold": options.au_threshold} | result.summary
        try:
            video = self.spec.url if not self.spec.live else self.name
            result.annotation = Annotation(
                pathlib.Path(video), self._recording.result(info, self.frames.source.dropped_frames)
            )
            result.annotation.save(self.out)
            write_summary(self.out)
            result.written = True
        except Exception as exc:
            result.failures.append(_failure(self.out, exc))
        return result

    def run(self) -> LiveResult:
        """The whole stream, then :meth:`finish`."""
        for _ in self:
            pass
        return self.finish()


def _check_outputs(
    name: str | None, audio_lookahead: float, jsonl: str | None, out: pathlib.Path | None, overlay_out: str | None
) -> None:
    """What can be wrong with a run's options, each one line, before anything loads or opens."""
    if name is not None:
        output_name(name, "--name")
    LiveOptions(audio_lookahead=audio_lookahead)
    if not (jsonl or out or overlay_out):
        raise TsavError(
            "nothing to write: give --jsonl PATH (or - for stdout), --out DIR and/or --overlay-out FILE|URL"
        )
    if overlay_out:
        check_overlay_target(overlay_out)
    if out is not None:
        check_output_folder(out)


def _failure(where, exc: Exception) -> Failure:
    """One line for an output or source of a live run that failed (with the traceback where it is
    a bug of ours)."""
    import av

    if isinstance(exc, av.FFmpegError):  # an overlay stream whose receiver went away, a full disk
        reason = " ".join(str(getattr(exc, "strerror", None) or exc).split())
        return Failure(f"{where}: writing failed ({reason}); check the receiver, or the disk")
    return describe_failure(str(where), exc)


def _live_name() -> str:
    return "live-" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
