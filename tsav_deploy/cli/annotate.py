"""``tsav annotate``: videos into an output folder (runs/batch.py), with progress bars and a
closing table."""

from __future__ import annotations

import pathlib
import time
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from tsav_deploy.cli.app import (
    PredictorOptions,
    app,
    console,
    err_console,
    error_line,
    user_errors,
    warn_output_failures,
    with_predictor_options,
)
from tsav_deploy.errors import TsavError, shown
from tsav_deploy.failures import Failure

TABLE_FILES = {"csv": "<name>.csv", "parquet": "<name>.parquet", "both": "<name>.csv and .parquet"}


Landmarks = Annotated[
    bool,
    typer.Option("--landmarks", help="Add the 68 landmarks of each row's face to the table (x_0..x_67, y_0..y_67)."),
]
HtmlReport = Annotated[
    bool,
    typer.Option("--report", help="Also write <name>.html, an interactive report, and index.html (see tsav report)."),
]
Isolate = Annotated[
    bool,
    typer.Option(
        "--isolate",
        help="Annotate in a supervised worker process: a native crash (FFmpeg, dlib) costs its video, not the run.",
    ),
]
RayAddress = Annotated[
    Optional[str],
    typer.Option("--ray", help="Run on Ray: local (started for the run), auto, HOST:PORT or ray://HOST:PORT."),
]
Workers = Annotated[
    Optional[int], typer.Option("--workers", help="With --ray: actors, each with the model loaded once (default 2).")
]
CpusPerWorker = Annotated[
    Optional[float], typer.Option("--cpus-per-worker", help="With --ray: CPUs each actor asks for (default 1).")
]
GpusPerWorker = Annotated[
    Optional[float],
    typer.Option("--gpus-per-worker", help="With --ray: GPUs each actor asks for, fractions share one (default 0)."),
]
SplitSeconds = Annotated[
    Optional[float],
    typer.Option(
        "--split-seconds",
        help="With --ray: cut longer videos into ranges of this length for several actors (default: from the videos' length and --workers).",
    ),
]


@app.command()
@user_errors
@with_predictor_options()
def annotate(
    options: PredictorOptions,
    inputs: list[str] = typer.Argument(..., help="Video files, directories or globs."),
    out: pathlib.Path = typer.Option(pathlib.Path("tsav_out"), "--out", "-o", help="Output directory."),
    overlay: bool = typer.Option(False, "--overlay", help="Also write <name>.overlay.mp4."),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Write <name>.png, a timeline plot."),
    table_format: str = typer.Option("csv", "--table", help="Per-frame table: csv | parquet | both."),
    landmarks: Landmarks = False,
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo videos whose outputs are complete."),
    html_report: HtmlReport = False,
    isolate: Isolate = False,
    ray_address: RayAddress = None,
    workers: Workers = None,
    cpus_per_worker: CpusPerWorker = None,
    gpus_per_worker: GpusPerWorker = None,
    split_seconds: SplitSeconds = None,
) -> None:
    """Annotate videos with valence, arousal, expressions and action units (ABAW files, table, plot, overlay).

    Each video that fails costs one error line and the run goes on; the exit code is 1 when any
    video failed, 0 when every one is done (or was done before).
    """
    from tsav_deploy.api.annotation import TABLE_FORMATS
    from tsav_deploy.outputs.records import OutputOptions
    from tsav_deploy.runs.batch import Batch, check_predictor, open_predictor
    from tsav_deploy.runs.videos import expand_inputs

    if table_format not in TABLE_FORMATS:
        raise TsavError(f"--table must be one of {', '.join(TABLE_FORMATS)}, not {table_format!r}")
    outputs = OutputOptions(
        overlay=overlay, plot=plot, overwrite=overwrite, table=table_format, report=html_report, landmarks=landmarks
    )
    ray_options = dict(
        workers=workers, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker, split_seconds=split_seconds
    )
    # Options, inputs and the output folder are checked before the model loads (a typo costs no
    # wait) and before the folder is made.
    check_predictor(options, isolate=isolate, ray=ray_address, ray_options=ray_options)
    videos, problems = expand_inputs(inputs)
    report = BatchReport()
    if not videos:  # nothing to annotate: no model loaded, no folder made
        for video, message in problems:
            report.failed(video, message)
        raise typer.Exit(1)
    batch = Batch(out, outputs)  # an output folder that cannot be written fails here, in one line
    for video, message in problems:
        report.show(batch.failed(video, Failure(message)))  # recorded: summary.json lists it
    with open_predictor(options, isolate=isolate, ray=ray_address, ray_options=ray_options) as predictor:
        bars = _progress(len(videos), ray_address is not None)
        err_console.print(predictor.describe(), highlight=False)
        with bars:
            for outcome in batch.annotate(videos, predictor, on_start=bars.start, progress=bars.advance):
                report.show(outcome)
    console.print(report.table)
    console.print(
        f"results in {escape(shown(str(out)))}/ (VA_Set, EXPR_Set, AU_Set, {TABLE_FILES[table_format]}"
        + (", <name>.html, index.html" if html_report else "")
        + ", summary.json)"
        + (f"; {report.failures} of {report.count} failed" if report.failures else ""),
        highlight=False,
    )
    if report.failures:
        raise typer.Exit(1)


class BatchReport:
    """One error line per failed video as it happens, and the closing table; a row that cannot be
    shown (a bug of ours) costs that row, not the batch."""

    def __init__(self) -> None:
        self.table = Table("video", "status", "frames", "faces", "s", "frames/s", "note")
        self.failures = self.count = 0

    def failed(self, video: pathlib.Path, message: str) -> None:
        self.count += 1
        self.failures += 1
        self.table.add_row(escape(shown(video.name)), "[red]failed", "", "", "", "", "see error above")
        error_line(message)

    def show(self, outcome) -> None:
        try:
            self._show(outcome)
        except Exception as exc:
            line = shown(f"{outcome.video}: cannot show its row ({exc!r})")
            err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False)

    def _show(self, outcome) -> None:
        if outcome.status == "failed":
            self.failed(outcome.video, outcome.error)
            return
        self.count += 1
        if outcome.status == "skipped":
            frames = (outcome.record or {}).get("frames", "")
            self.table.add_row(
                escape(shown(outcome.video.name)),
                "[cyan]skipped",
                str(frames),
                "",
                "",
                "",
                "outputs complete (use --overwrite to redo)",
            )
            return
        annotation = outcome.annotation
        info = {**annotation.result.info, **annotation.info}
        warn_output_failures(info)
        frames, wall = info.get("frames", 0), info.get("wall_s", 0)
        found = ", ".join(str(v) for v in info.get("faces_found", {}).values())
        self.table.add_row(
            escape(shown(annotation.video.name)),
            "[green]done",
            str(frames),
            found,
            str(wall),
            f"{frames / wall:.1f}" if wall else "",
            escape(shown("; ".join(info.get("warnings", [])))),
        )


class VideoBars:
    """Two bars (faces, network) for the video being annotated, sized by its declared frame count;
    ``start`` and ``advance`` run inside the batch's guarded region of that video."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
        )
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> VideoBars:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def start(self, video: pathlib.Path) -> None:
        for task in self.tasks.values():
            self.bar.remove_task(task)
        self.tasks = {
            stage: self.bar.add_task(f"{escape(shown(video.name))} {stage}", total=None, rate="")
            for stage in ("faces", "network")
        }

    def advance(self, stage: str, n: int) -> None:
        if stage == "frames":  # the video's declared frame count: size the bars
            for task in self.tasks.values():
                self.bar.update(task, total=n or None)
            return
        self.bar.advance(self.tasks[stage], n)
        speed = next(t.speed for t in self.bar.tasks if t.id == self.tasks[stage])
        if speed:
            self.bar.update(self.tasks[stage], rate=f"{speed:.1f} frames/s")


class ClusterBar(VideoBars):
    """With --ray: one bar over all videos (frames done of all, each counted in both passes; speed
    in video frames per second; time left; workers alive)."""

    def __init__(self, videos: int) -> None:
        super().__init__()
        self.videos = videos

    def start(self, video: pathlib.Path) -> None:
        pass  # videos run side by side: the bar is over all of them

    def advance(self, status) -> None:
        if "all" not in self.tasks:
            self.tasks["all"] = self.bar.add_task(f"{self.videos} videos", total=status.frames_total or None, rate="")
        task = self.tasks["all"]
        self.bar.update(task, completed=status.frames_done)
        speed = next(t.speed for t in self.bar.tasks if t.id == task) or 0.0
        self.bar.update(task, rate=f"{speed / 2:.1f} frames/s, {status.workers_alive} workers alive")


class ProgressLines:
    """Progress where there is no terminal to redraw a bar on (a pipe, a log file): a plain line
    per video and stage when it starts, then about every ``EVERY_S`` seconds and when it ends."""

    EVERY_S = 10.0

    def __init__(self) -> None:
        self.video, self.total, self.done = "", 0, {}
        self._said = 0.0

    def __enter__(self) -> ProgressLines:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def start(self, video: pathlib.Path) -> None:
        self.video, self.total, self.done = shown(video.name), 0, {}
        self._say(f"{self.video}: started")

    def advance(self, stage: str, n: int) -> None:
        if stage == "frames":
            self.total = n
            return
        self.done[stage] = self.done.get(stage, 0) + n
        finished = bool(self.total) and self.done[stage] >= self.total
        if finished or time.monotonic() - self._said >= self.EVERY_S:
            of = f" of {self.total}" if self.total else ""
            self._say(f"{self.video}: {stage} {self.done[stage]}{of} frames")

    def _say(self, line: str) -> None:
        self._said = time.monotonic()
        err_console.print(escape(line), highlight=False, soft_wrap=True)


class ClusterLines(ProgressLines):
    """With --ray and no terminal: a line about every ``EVERY_S`` seconds over all videos."""

    def __init__(self, videos: int) -> None:
        super().__init__()
        self.videos = videos

    def start(self, video: pathlib.Path) -> None:
        pass  # videos run side by side: the lines are over all of them

    def advance(self, status) -> None:
        if time.monotonic() - self._said >= self.EVERY_S:
            self._say(
                f"{self.videos} videos: {status.frames_done} of {status.frames_total} frames in both passes, "
                f"{status.workers_alive} workers alive"
            )


def _progress(videos: int, ray: bool):
    """Bars on a terminal, plain lines otherwise."""
    if err_console.is_terminal:
        return ClusterBar(videos) if ray else VideoBars()
    return ClusterLines(videos) if ray else ProgressLines()
