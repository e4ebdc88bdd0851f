"""``tsav live``: a live run (runs/live.py) with a status line, Ctrl-C handling and its closing
lines."""

from __future__ import annotations

import contextlib
import pathlib
import threading
import time
from collections import deque
from typing import Annotated, Optional

import typer
from rich.markup import escape

from tsav_deploy.cli.app import (
    PredictorOptions,
    app,
    err_console,
    error_line,
    user_errors,
    warn_output_failures,
    with_predictor_options,
)
from tsav_deploy.errors import shown

AudioLookahead = Annotated[
    float,
    typer.Option(
        "--audio-lookahead",
        help="Seconds of audio after a frame its window waits for, 0-5 (5: the model's own window; less hears silence in the rest).",
    ),
]
Jsonl = Annotated[
    Optional[str],
    typer.Option(
        "--jsonl",
        help="Write one JSON object per frame and person as soon as it is final to this file (- for stdout).",
    ),
]
LiveOut = Annotated[
    Optional[pathlib.Path],
    typer.Option(
        "--out", "-o", help="When the stream ends, write the ABAW files, the table, the plot and summary.json here."
    ),
]
Name = Annotated[
    Optional[str],
    typer.Option("--name", help="The stream's name in --out (default: the file's name, else live-<UTC time>)."),
]
OverlayOut = Annotated[
    Optional[str],
    typer.Option("--overlay-out", help="Write the overlay as it is made: an MP4 file or an rtmp/rtsp/srt/udp/tcp URL."),
]
Realtime = Annotated[
    bool,
    typer.Option(
        "--realtime",
        help="Play a file at its own rate, as a camera would (without it a file is read as fast as the engine allows).",
    ),
]


@app.command()
@user_errors
@with_predictor_options(model_needed=False)  # the source is checked first; the Predictor asks for a model
def live(
    options: PredictorOptions,
    source: str = typer.Argument(
        ...,
        help="A file, webcam[:N], /dev/videoN, or a stream URL (rtsp, rtmp, srt, udp, tcp, http; tcp://HOST:PORT?listen=1 waits for a sender).",
    ),
    audio_lookahead: AudioLookahead = 5.0,
    jsonl: Jsonl = None,
    out: LiveOut = None,
    name: Name = None,
    overlay_out: OverlayOut = None,
    realtime: Realtime = False,
) -> None:
    """Annotate a webcam, a network stream or a file as it arrives, each frame as soon as its audio window is there.

    Ctrl-C (or the stream's end) makes every pending frame final and closes the files; a second
    Ctrl-C stops at once.
    """
    from tsav_deploy.runs.live import LiveRun

    stop = threading.Event()
    run = LiveRun(
        source,
        options,
        audio_lookahead=audio_lookahead,
        jsonl=jsonl,
        out=out,
        name=name,
        overlay_out=overlay_out,
        realtime=realtime,
        stop=stop,
    )
    err_console.print(run.predictor.describe(), highlight=False)
    if audio_lookahead < 5.0:
        err_console.print(
            f"note: --audio-lookahead {audio_lookahead:g}: each window hears silence after {audio_lookahead:g} s "
            "(the model was trained on 5 s); predictions differ from `tsav annotate`",
            highlight=False,
        )
    with _graceful_interrupt(stop), LiveStatus() as status:
        for frame in run:
            status.update(frame, run.frames)
    shown_failures = _print_failures(run.failures, 0)
    print_summary(run.summary())
    result = run.finish()
    if result.annotation is not None:
        warn_output_failures(result.annotation.info)
    _print_failures(result.failures, shown_failures)
    if result.written:
        err_console.print(
            escape(shown(f"results in {out}/ (VA_Set, EXPR_Set, AU_Set, {run.name}.csv, {run.name}.png)")),
            highlight=False,
        )
    if not result.ok:
        raise typer.Exit(1)


def _print_failures(failures: list, start: int) -> int:
    """Print ``failures[start:]``, each one error line (and its traceback where it is a bug of
    ours); returns how many are printed in all."""
    for failure in failures[start:]:
        error_line(failure.line)
        if failure.traceback:
            err_console.print(failure.traceback, highlight=False, markup=False)
    return len(failures)


@contextlib.contextmanager
def _graceful_interrupt(stop: threading.Event):
    """The first Ctrl-C (or SIGTERM) sets ``stop``, so the stream ends as if it had ended; a second
    Ctrl-C raises KeyboardInterrupt as usual."""
    import signal

    def first(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        err_console.print("stopping: making the pending frames final (Ctrl-C again to stop at once)", highlight=False)

    previous = {sig: signal.signal(sig, first) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class LiveStatus:
    """The console's status line: frames, frames per second, latency, the current stride, drops."""

    def __init__(self) -> None:
        from rich.live import Live

        self.frames = 0
        self._recent: deque[tuple[float, float]] = deque()  # (when, latency) over the last seconds
        self._live = Live(console=err_console, transient=True, refresh_per_second=2)

    def __enter__(self) -> LiveStatus:
        self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._live.__exit__(*exc)

    def update(self, frame, source) -> None:
        now = time.monotonic()
        self.frames += 1
        self._recent.append((now, frame.latency_s))
        while self._recent[0][0] < now - 5:
            self._recent.popleft()
        span = now - self._recent[0][0]
        fps = (len(self._recent) - 1) / span if span > 0 else 0.0
        recent = sorted(latency for _, latency in self._recent)
        dropped = source.dropped
        self._live.update(
            f"{self.frames} frames · {fps:.1f} frames/s · latency {recent[len(recent) // 2]:.2f} s · "
            f"stride {frame.stride}" + (f" · {dropped} dropped" if dropped else "")
        )


def print_summary(info: dict) -> None:
    """The run's closing lines: the source's warnings, then frames, latency, strides and drops."""
    for warning in info["warnings"]:
        err_console.print(f"warning: {escape(shown(warning))}", highlight=False)
    strides = ", ".join(f"{k} ({v} frames)" for k, v in info["strides"].items())
    err_console.print(
        f"{info['frames_predicted']} frames in {info['wall_s']:.1f} s; latency median {info['latency_s']['median']:.2f} s, "
        f"95th percentile {info['latency_s']['p95']:.2f} s; stride {strides or '-'}"
        + (
            f"; {info['dropped_frames']} frames dropped (the machine fell behind the source)"
            if info["dropped_frames"]
            else ""
        ),
        highlight=False,
    )
