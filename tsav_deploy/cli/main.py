"""The ``tsav`` command: a thin Typer layer over the library.

Each command parses options, calls one library function and prints with rich. User errors
(``TsavError``) end as one red line and exit code 2; nothing else is caught, so a bug still shows
its traceback.
"""

from __future__ import annotations

import contextlib
import functools
import json
import pathlib
import threading
import time
from collections import deque
from typing import Annotated, Optional

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tsav_deploy import __version__
from tsav_deploy.errors import TsavError, shown

app = typer.Typer(
    name="tsav",
    help="Two-stream aural-visual affect analysis (Kuhnke et al., ABAW 2020): train, export, annotate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
weights_app = typer.Typer(help="Published weights: list, download, verify.", no_args_is_help=True)
app.add_typer(weights_app, name="weights")

# Options that several commands share, declared once so their names and help stay the same.
Weights = Annotated[Optional[str], typer.Option("--weights", "-w", help="Checkpoint path or published name.")]
ExportDir = Annotated[Optional[pathlib.Path], typer.Option("--model", "-m", help="Export directory (tsav export).")]
EngineName = Annotated[
    str,
    typer.Option(
        "--engine", help="auto | torch | torchscript | onnx | onnx-int8 | openvino | openvino-int8 | tensorrt."
    ),
]
Device = Annotated[str, typer.Option("--device", help="cpu | cuda[:N].")]
FaceBackendName = Annotated[
    str,
    typer.Option(
        "--faces",
        help="auto (insightface if its model pack is on disk, else dlib) | insightface | dlib (offline: dlib "
        "landmarks and identities, --detector's faces).",
    ),
]
Detector = Annotated[
    Optional[str],
    typer.Option(
        "--detector",
        help="dlib detector: mtcnn (the default; faces from 24 px at any resolution: recall 1.00 on the labelled "
        "frames, face pass ~30 frames/s at 360p on 2 cores), hog+cnn (recall 0.94, ~13 frames/s: ~1.2 s per shot "
        "and per lost face), hog (fastest, ~60 frames/s; recall 0.79, faces from ~80 px of a 640 px frame), cnn. "
        "Figures: docs/faces.md.",
    ),
]
Person = Annotated[str, typer.Option("--person", help="main (the person seen in most frames) | all.")]
Stride = Annotated[
    int,
    typer.Option("--stride", help="Run the network every K-th frame, interpolate between (1 = exact; at most 300)."),
]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Frames per network batch (1-256).")]
AuThreshold = Annotated[
    float,
    typer.Option(
        "--au-threshold", help="AU probability threshold, strictly between 0 and 1 (0.6225 = the authors' writer)."
    ),
]

console = Console()
err_console = Console(stderr=True)


def user_errors(func):
    """Turn ``TsavError`` into one line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except TsavError as exc:
            err_console.print(f"[bold red]error:[/] {escape(shown(str(exc)))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        console.print(f"tsav-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Two-stream aural-visual affect analysis: train, export, annotate."""


@app.command()
@user_errors
def info(
    checkpoint: str = typer.Argument(..., help="Checkpoint file or published name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Inspect a checkpoint: format, architecture, parameters, provenance, hash."""
    from tsav_deploy.artifacts.checkpoint import load_checkpoint
    from tsav_deploy.artifacts.weights import resolve

    ckpt = load_checkpoint(resolve(checkpoint))
    model = ckpt.build_model()
    summary = {
        "path": str(ckpt.path),
        "format": ckpt.kind,
        "sha256": ckpt.sha256,
        "parameters": sum(p.numel() for p in model.parameters()),
        "architecture": "paper" if ckpt.config.is_paper else f"reduced {ckpt.config.to_dict()}",
        "provenance": ckpt.provenance,
    }
    if as_json:
        console.print_json(json.dumps(summary, default=str))
        return
    table = Table(show_header=False, box=None)
    for key, value in summary.items():
        table.add_row(f"[bold]{key}", json.dumps(value, default=str) if isinstance(value, dict) else str(value))
    console.print(table)


@weights_app.command("list")
def weights_list() -> None:
    """Published weights this tool can download, and whether they are cached."""
    from tsav_deploy.artifacts.weights import REGISTRY, cache_dir, is_cached

    table = Table("name", "description", "cached", "licence")
    for entry in REGISTRY.values():
        table.add_row(entry.name, entry.description, "yes" if is_cached(entry) else "no", entry.licence)
    console.print(table)
    console.print(f"cache: {cache_dir()} (set TSAV_HOME to move it)")


@weights_app.command("download")
@user_errors
def weights_download(name: str = typer.Argument(..., help="A name from `tsav weights list`.")) -> None:
    """Download (once) and verify published weights; prints the local path."""
    from tsav_deploy.artifacts.weights import resolve

    console.print(str(resolve(name)))


@weights_app.command("verify")
@user_errors
def weights_verify() -> None:
    """Re-check every cached download (published weights, insightface's pack) without downloading:
    says what was verified, repaired or removed; a removed file is downloaded again by its next use."""
    from tsav_deploy.artifacts.weights import cache_dir, verify
    from tsav_deploy.faces import insightface_pack

    lines = [*verify(), *filter(None, [insightface_pack.verify()])]
    for line in lines:
        console.print(escape(shown(line)), highlight=False, soft_wrap=True)
    if not lines:
        console.print(f"nothing cached in {cache_dir()} or {insightface_pack.pack_dir().parent}")


@app.command()
@user_errors
def export(
    checkpoint: Optional[str] = typer.Argument(None, help="Checkpoint file or published name."),
    out: pathlib.Path = typer.Option(pathlib.Path("export"), "--out", "-o", help="Output directory."),
    onnx: bool = typer.Option(
        False, "--onnx", help="visual.onnx, aural.onnx, fusion.onnx (default with --torchscript)."
    ),
    torchscript: bool = typer.Option(False, "--torchscript", help="tsav.ts, the whole network (default with --onnx)."),
    trt: bool = typer.Option(
        False, "--trt", help="TensorRT engines built from the ONNX graphs (needs TensorRT 10 and a GPU)."
    ),
    fp16: bool = typer.Option(False, "--fp16", help="FP16 TensorRT engines."),
    int8: bool = typer.Option(
        False, "--int8", help="Also int8 visual/aural ONNX graphs (engine onnx-int8), calibrated on --calibrate videos."
    ),
    calibrate: list[pathlib.Path] = typer.Option(
        [], "--calibrate", help="With --int8: a real recording to calibrate on (repeat for several)."
    ),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (13-20)."),
    max_batch: int = typer.Option(32, "--max-batch", help="Largest batch of the TensorRT optimisation profiles."),
    verify: Optional[pathlib.Path] = typer.Option(
        None, "--verify", help="Verify an export directory instead of exporting."
    ),
) -> None:
    """Export a checkpoint to TorchScript / ONNX / TensorRT with verified parity, or verify an export."""
    if verify is not None:
        if checkpoint is not None:
            raise TsavError("give either CHECKPOINT (to export) or --verify DIR, not both")
        from tsav_deploy.export import verify_export

        report = verify_export(verify)
        _print_parity(report)
        report.raise_for_failure()
        skipped = f"; {len(report.skipped)} check(s) skipped (see above)" if report.skipped else ""
        console.print(
            f"[green]{verify}: every file matches its manifest and every artifact checked is within tolerance{skipped}[/]"
        )
        return
    if checkpoint is None:
        raise TsavError("missing CHECKPOINT (a file or a published name), or --verify DIR")
    from tsav_deploy.export.exporter import DEFAULT_FORMATS, Exporter

    formats = [name for name, wanted in (("onnx", onnx), ("torchscript", torchscript), ("tensorrt", trt)) if wanted]
    exporter = Exporter(
        formats or DEFAULT_FORMATS, opset=opset, max_batch=max_batch, fp16=fp16, int8=int8, calibration=calibrate
    )
    result = exporter(checkpoint, out)
    _print_parity(result.report)
    if int8:
        record = result.manifest["int8"]
        console.print(
            f"int8 vs float32 on {record['agreement']['samples']} held-out real inputs: {json.dumps(record['agreement'])}",
            highlight=False,
        )
    console.print(f"wrote {', '.join(result.files)} to {result.folder}")


def _print_parity(report) -> None:
    # The probability column matters only where a tolerance applies to it (FP16 engines).
    with_prob = any(row.probability_tolerance is not None for row in report.rows)
    columns = (
        ["artifact", "output", "backend", "rel. error", "tol."] + (["prob. error"] if with_prob else []) + ["status"]
    )
    table = Table(*columns, title=f"parity: {report.folder}")
    for row in report.rows:
        cells = [
            row.artifact,
            row.output,
            row.backend,
            "-" if row.max_error is None else f"{row.max_error:.1e}",
            "-" if row.tolerance is None else f"{row.tolerance:.0e}",
        ]
        if with_prob:
            cells.append("-" if row.probability_error is None else f"{row.probability_error:.1e}")
        table.add_row(*cells, {"ok": "[green]ok", "skipped": "[yellow]skipped"}.get(row.status, "[red]FAILED"))
    console.print(table)
    for row in report.rows:
        if row.detail:
            console.print(f"{row.status}: {row.artifact}: {row.detail}", highlight=False, soft_wrap=True)


TABLE_FILES = {"csv": "<name>.csv", "parquet": "<name>.parquet", "both": "<name>.csv and .parquet"}
NO_WEIGHTS = (
    "no model given: pass --weights CHECKPOINT (a .pth.tar from the authors, a tsav checkpoint, or a "
    "published name such as tnt-sub1: see `tsav weights list`) or --model EXPORT_DIR (from `tsav export`)"
)


@app.command()
@user_errors
def annotate(
    inputs: list[str] = typer.Argument(..., help="Video files, directories or globs."),
    weights: Weights = None,
    model: ExportDir = None,
    engine_name: EngineName = "auto",
    device: Device = "cpu",
    faces: FaceBackendName = "auto",
    detector: Detector = None,
    person: Person = "main",
    out: pathlib.Path = typer.Option(pathlib.Path("tsav_out"), "--out", "-o", help="Output directory."),
    overlay: bool = typer.Option(False, "--overlay", help="Also write <name>.overlay.mp4."),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Write <name>.png, a timeline plot."),
    table_format: str = typer.Option("csv", "--table", help="Per-frame table: csv | parquet | both."),
    landmarks: bool = typer.Option(
        False, "--landmarks", help="Add the 68 landmarks of each row's face to the table (x_0..x_67, y_0..y_67)."
    ),
    stride: Stride = 1,
    batch_size: BatchSize = 8,
    au_threshold: AuThreshold = 0.5,
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo videos whose outputs are complete."),
    html_report: bool = typer.Option(
        False, "--report", help="Also write <name>.html, an interactive report, and index.html (see tsav report)."
    ),
    isolate: bool = typer.Option(
        False,
        "--isolate",
        help="Annotate in a supervised worker process: a native crash (FFmpeg, dlib) costs its video, not the run.",
    ),
    ray_address: Optional[str] = typer.Option(
        None, "--ray", help="Run on Ray: local (started for the run), auto, HOST:PORT or ray://HOST:PORT."
    ),
    workers: Optional[int] = typer.Option(
        None, "--workers", help="With --ray: actors, each with the model loaded once (default 2)."
    ),
    cpus_per_worker: Optional[float] = typer.Option(
        None, "--cpus-per-worker", help="With --ray: CPUs each actor asks for (default 1)."
    ),
    gpus_per_worker: Optional[float] = typer.Option(
        None, "--gpus-per-worker", help="With --ray: GPUs each actor asks for, fractions share one (default 0)."
    ),
    split_seconds: Optional[float] = typer.Option(
        None,
        "--split-seconds",
        help="With --ray: cut longer videos into ranges of this length for several actors (default: from the videos' length and --workers).",
    ),
) -> None:
    """Annotate videos with valence, arousal, expressions and action units (ABAW files, table, plot, overlay).

    Each video that fails costs one error line and the run goes on; the exit code is 1 when any
    video failed, 0 when every one is done (or was done before).
    """
    from tsav_deploy.api import Predictor
    from tsav_deploy.api.annotation import TABLE_FORMATS
    from tsav_deploy.failures import describe_failure
    from tsav_deploy.outputs.records import OutputOptions, write_summary
    from tsav_deploy.runs.batch import Batch
    from tsav_deploy.runs.isolated import IsolatedPredictor
    from tsav_deploy.runs.pages import write_folder_index
    from tsav_deploy.runs.videos import expand_inputs

    if table_format not in TABLE_FORMATS:
        raise TsavError(f"--table must be one of {', '.join(TABLE_FORMATS)}, not {table_format!r}")
    if weights and model:
        raise TsavError("pass either --weights or --model, not both")
    if not (weights or model):
        raise TsavError(NO_WEIGHTS)
    outputs = OutputOptions(
        overlay=overlay, plot=plot, overwrite=overwrite, table=table_format, report=html_report, landmarks=landmarks
    )
    videos, problems = expand_inputs(inputs)
    predictor_options = dict(
        weights=weights,
        model=model,
        engine=engine_name,
        device=device,
        faces=faces,
        detector=detector,
        person=person,
        stride=stride,
        batch_size=batch_size,
        au_threshold=au_threshold,
    )
    ray_options = dict(
        workers=workers, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker, split_seconds=split_seconds
    )
    ray_options = {k: v for k, v in ray_options.items() if v is not None}
    if ray_address is None and ray_options:
        raise TsavError(
            "--workers, --cpus-per-worker, --gpus-per-worker and --split-seconds go with --ray ADDRESS (e.g. --ray local)"
        )
    if ray_address is not None and isolate:
        raise TsavError("--isolate and --ray do not go together: Ray's actors already are processes of their own")
    if ray_address is not None:
        from tsav_deploy.runs.cluster import ClusterOptions, RayAnnotator

        predictor = RayAnnotator(predictor_options, ClusterOptions(ray_address, **ray_options))
        bars = ClusterBar(len(videos))
    else:
        predictor = (IsolatedPredictor if isolate else Predictor)(**predictor_options)
        bars = VideoBars()
    err_console.print(predictor.describe(), highlight=False)
    batch = Batch(out, outputs)  # an output folder that cannot be written fails here, in one line
    report = BatchReport()
    for video, message in problems:
        report.failed(video, message)
    try:
        with bars:
            for outcome in batch.run(
                videos, lambda todo: predictor.predict_many(todo, progress=bars.advance), on_start=bars.start
            ):
                report.show(outcome)
    finally:  # also on Ctrl-C: the worker process, or the actors and a Ray of our own, end with the run
        if not isinstance(predictor, Predictor):
            predictor.close()
    try:
        write_summary(out)
    except OSError as exc:
        report.failed(out / "summary.json", describe_failure(out / "summary.json", exc).line)
    if html_report:
        try:
            write_folder_index(out)
        except OSError as exc:
            report.failed(out / "index.html", describe_failure(out / "index.html", exc).line)
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
        err_console.print(f"[bold red]error:[/] {escape(shown(message))}", highlight=False, soft_wrap=True)

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
        _warn_output_failures(info)
        frames, wall = info.get("frames", 0), info.get("wall_s", 0)
        found = ", ".join(str(v) for v in info.get("faces_found", {}).values())
        self.table.add_row(
            escape(shown(annotation.video.name)),
            "[green]done",
            str(frames),
            found,
            str(wall),
            f"{frames / wall:.1f}" if wall else "",
            escape(shown("; ".join(info.get("warnings", []))[:60])),
        )


def _warn_output_failures(info: dict) -> None:
    """One warning line per optional output (plot, overlay, report) that could not be written."""
    for line in info.get("output_failures", []):
        err_console.print(f"[yellow]warning:[/] {escape(shown(line))}", highlight=False, soft_wrap=True)


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


@app.command()
@user_errors
def live(
    source: str = typer.Argument(
        ...,
        help="A file, webcam[:N], /dev/videoN, or a stream URL (rtsp, rtmp, srt, udp, tcp, http; tcp://HOST:PORT?listen=1 waits for a sender).",
    ),
    weights: Weights = None,
    model: ExportDir = None,
    engine_name: EngineName = "auto",
    device: Device = "cpu",
    faces: FaceBackendName = "auto",
    detector: Detector = None,
    person: Person = "main",
    stride: Stride = 1,
    batch_size: BatchSize = 8,
    au_threshold: AuThreshold = 0.5,
    audio_lookahead: float = typer.Option(
        5.0,
        "--audio-lookahead",
        help="Seconds of audio after a frame its window waits for, 0-5 (5: the model's own window; less hears silence in the rest).",
    ),
    jsonl: Optional[str] = typer.Option(
        None,
        "--jsonl",
        help="Write one JSON object per frame and person as soon as it is final to this file (- for stdout).",
    ),
    out: Optional[pathlib.Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="When the stream ends, write the ABAW files, the table, the plot and summary.json here.",
    ),
    name: Optional[str] = typer.Option(
        None, "--name", help="The stream's name in --out (default: the file's name, else live-<UTC time>)."
    ),
    overlay_out: Optional[str] = typer.Option(
        None, "--overlay-out", help="Write the overlay as it is made: an MP4 file or an rtmp/rtsp/srt/udp/tcp URL."
    ),
    realtime: bool = typer.Option(
        False,
        "--realtime",
        help="Play a file at its own rate, as a camera would (without it a file is read as fast as the engine allows).",
    ),
) -> None:
    """Annotate a webcam, a network stream or a file as it arrives, each frame as soon as its audio window is there.

    Ctrl-C (or the stream's end) makes every pending frame final and closes the files; a second
    Ctrl-C stops at once.
    """
    from tsav_deploy.api import Annotation, Predictor
    from tsav_deploy.media.sources import parse_source
    from tsav_deploy.outputs.overlay import OverlayStream, check_overlay_target
    from tsav_deploy.outputs.records import check_output_folder, output_name, write_summary
    from tsav_deploy.outputs.writers import JsonLines
    from tsav_deploy.pipeline.offline import provenance
    from tsav_deploy.pipeline.recording import LiveRecording, frame_result, live_rows
    from tsav_deploy.pipeline.stream import LiveOptions

    spec = parse_source(source)
    if name is not None:
        output_name(name, "--name")
    LiveOptions(audio_lookahead=audio_lookahead)  # checked before the model loads
    if not (jsonl or out or overlay_out):
        raise TsavError(
            "nothing to write: give --jsonl PATH (or - for stdout), --out DIR and/or --overlay-out FILE|URL"
        )
    if overlay_out:
        check_overlay_target(overlay_out)
    if out is not None:
        check_output_folder(out)
    lines = JsonLines(jsonl) if jsonl else None  # its file is made at the first row
    predictor = Predictor(
        weights,
        model,
        engine=engine_name,
        device=device,
        faces=faces,
        detector=detector,
        person=person,
        stride=stride,
        batch_size=batch_size,
        au_threshold=au_threshold,
    )
    err_console.print(predictor.describe(), highlight=False)
    if audio_lookahead < 5.0:
        err_console.print(
            f"note: --audio-lookahead {audio_lookahead:g}: each window hears silence after {audio_lookahead:g} s "
            "(the model was trained on 5 s); predictions differ from `tsav annotate`",
            highlight=False,
        )
    stream_name = name or (pathlib.Path(spec.url).stem if not spec.live else _live_name())
    recording = LiveRecording(stream_name, au_threshold) if out else None
    stop = threading.Event()
    status = LiveStatus()
    frames = predictor.stream_frames(
        source, audio_lookahead=audio_lookahead, realtime=realtime, stop=stop, keep_pictures=bool(overlay_out)
    )
    failed, where = False, source  # ``where``: what was being done when something failed
    try:
        with contextlib.ExitStack() as files, _graceful_interrupt(stop), status:
            if lines is not None:
                files.enter_context(contextlib.closing(lines))
            overlay = files.enter_context(OverlayStream(overlay_out)) if overlay_out else None
            for frame in frames:
                if lines is not None:
                    where = jsonl
                    lines.write(live_rows(frame, au_threshold))
                if recording is not None:
                    recording.add(frame)
                if overlay is not None:
                    where = overlay_out
                    overlay.write(frame.rgb, frame.time, frame_result(frame, au_threshold))
                status.update(frame, frames)
                where = source
            where = overlay_out or source  # closing: the overlay's last frames and its rename
    except KeyboardInterrupt:
        raise
    except TsavError as exc:
        if not status.frames:
            raise  # the source could not be opened: one line, exit 2 (user_errors)
        failed = _live_failure(where, exc)
    except Exception as exc:  # an output or the source failed mid-stream: what was made is kept
        failed = _live_failure(where, exc)
    status.print_summary(frames)
    if not (status.frames or failed or stop.is_set()):  # ended by itself before its first picture
        line = f"{source}: the source ended without a frame to annotate (it sent no decodable picture); check the sender or the file"
        failed = _live_failure(source, TsavError(line))
    if recording is not None and recording.frames:
        made_by = {**provenance(predictor.engine, predictor.face_backend), "stride": stride}
        info = {"source": source, "people": frames.people.count, "audio_lookahead": audio_lookahead}
        info |= made_by | {"au_threshold": au_threshold} | status.summary(frames)
        try:
            video = spec.url if not spec.live else stream_name
            annotation = Annotation(pathlib.Path(video), recording.result(info, frames.source.dropped_frames))
            annotation.save(out)
            _warn_output_failures(annotation.info)
            write_summary(out)
        except Exception as exc:
            failed = _live_failure(out, exc)
        else:
            err_console.print(
                escape(shown(f"results in {out}/ (VA_Set, EXPR_Set, AU_Set, {stream_name}.csv, {stream_name}.png)")),
                highlight=False,
            )
    if failed:
        raise typer.Exit(1)


def _live_failure(where, exc: Exception) -> bool:
    """Print one error line for an output of a live run that failed (the traceback too where it
    is a bug of ours); True, for the exit code."""
    import av

    from tsav_deploy.failures import describe_failure

    if isinstance(exc, av.FFmpegError):  # an overlay stream whose receiver went away, a full disk
        reason = " ".join(str(getattr(exc, "strerror", None) or exc).split())
        line, trace = f"{where}: writing failed ({reason}); check the receiver, or the disk", None
    else:
        failure = describe_failure(str(where), exc)
        line, trace = failure.line, failure.traceback
    err_console.print(f"[bold red]error:[/] {escape(shown(line))}", highlight=False, soft_wrap=True)
    if trace:
        err_console.print(trace, highlight=False, markup=False)
    return True


def _live_name() -> str:
    import datetime

    return "live-" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")


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
        self.latencies: list[float] = []
        self.strides: dict[int, int] = {}
        self.started = time.monotonic()
        self._recent: deque[tuple[float, float]] = deque()  # (when, latency) over the last seconds
        self._stride = 0
        self._live = Live(console=err_console, transient=True, refresh_per_second=2)

    def __enter__(self) -> LiveStatus:
        self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._live.__exit__(*exc)

    def update(self, frame, source) -> None:
        now = time.monotonic()
        self.frames += 1
        self.latencies.append(frame.latency_s)
        self.strides[frame.stride] = self.strides.get(frame.stride, 0) + 1
        self._stride = frame.stride
        self._recent.append((now, frame.latency_s))
        while self._recent[0][0] < now - 5:
            self._recent.popleft()
        span = now - self._recent[0][0]
        fps = (len(self._recent) - 1) / span if span > 0 else 0.0
        recent = sorted(latency for _, latency in self._recent)
        dropped = source.dropped
        self._live.update(
            f"{self.frames} frames · {fps:.1f} frames/s · latency {recent[len(recent) // 2]:.2f} s · "
            f"stride {self._stride}" + (f" · {dropped} dropped" if dropped else "")
        )

    def summary(self, source) -> dict:
        latencies = np.asarray(self.latencies) if self.latencies else np.zeros(1)
        return {
            "frames_predicted": self.frames,
            "dropped_frames": source.dropped,
            "latency_s": {
                "median": round(float(np.median(latencies)), 3),
                "p95": round(float(np.percentile(latencies, 95)), 3),
            },
            "strides": {str(k): v for k, v in sorted(self.strides.items())},
            "wall_s": round(time.monotonic() - self.started, 3),
            "warnings": source.warnings,
        }

    def print_summary(self, source) -> None:
        info = self.summary(source)
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


@app.command()
@user_errors
def report(
    out_dir: pathlib.Path = typer.Argument(..., help="An output folder of `tsav annotate` (its --out)."),
) -> None:
    """Interactive HTML reports of finished outputs: <name>.html per video and index.html over the folder.

    A video that cannot get a report costs one error line and the others go on; the exit code is 1
    when any video failed.
    """
    from tsav_deploy.runs.pages import write_reports

    pages, problems = write_reports(out_dir)
    for problem in problems:
        err_console.print(f"[bold red]error:[/] {escape(shown(problem))}", highlight=False, soft_wrap=True)
    if not pages:
        raise TsavError(f"{out_dir}: no report could be made (see above)")
    console.print(
        escape(shown(f"wrote {len(pages)} report(s) and index.html to {out_dir}/; open {out_dir / 'index.html'}")),
        highlight=False,
    )
    if problems:
        raise typer.Exit(1)


@app.command()
@user_errors
def bench(
    video: pathlib.Path = typer.Argument(
        ..., help="A video (the issue's benchmark: ../shared/media/pexels_woman_silent_audio.mp4)."
    ),
    weights: Weights = None,
    model: ExportDir = None,
    engine_name: EngineName = "auto",
    device: Device = "cpu",
    faces: FaceBackendName = "dlib",
    detector: Detector = None,
    person: Person = "main",
    stride: Stride = 1,
    batch_size: BatchSize = 8,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Frames/s of every stage and end to end, peak memory, and the model-bound ceiling measured in the same run.

    Without --weights/--model only the frontend is measured (decode, faces, alignment+mask, clips, audio, mel).
    """
    from tsav_deploy.faces import get_backend
    from tsav_deploy.pipeline.offline import AnnotateOptions
    from tsav_deploy.runs.bench import bench_video
    from tsav_deploy.runtime import Engine

    if weights and model:
        raise TsavError("pass either --weights or --model, not both")
    options = AnnotateOptions(person=person, stride=stride, batch_size=batch_size)  # checked before loading
    if not video.is_file():
        raise TsavError(f"{video}: no such file")
    engine = Engine.load(model or weights, engine=engine_name, device=device) if (model or weights) else None
    face_backend = get_backend(faces, detector=detector)
    with err_console.status("benchmark") as status:
        report = bench_video(
            video, face_backend, engine, options, device=device, progress=lambda s: status.update(f"benchmark: {s}")
        )
    data = report.to_dict()
    if as_json:
        console.print_json(json.dumps(data))
        return
    ceiling = data["ceiling"]
    table = Table(
        "stage",
        "frames/s",
        "x ceiling",
        "seconds",
        "GFLOP/s",
        "of matmul",
        title=f"{video.name}: {data['frames']} frames, stride {stride}, batch {batch_size}",
    )
    for name, stage in data["stages"].items():
        if stage["fps"] is None:  # the stage did not run on this video (e.g. no identity samples)
            table.add_row(name, "-", "-", "0", "", "")
            continue
        table.add_row(
            name,
            f"{stage['fps']:.1f}",
            f"{stage['x_ceiling']:.2f}",
            f"{stage['seconds']:.2f}",
            str(stage.get("gflops", "")),
            f"{stage['fraction_of_matmul']:.0%}" if "fraction_of_matmul" in stage else "",
        )
    table.add_row(
        "[bold]frontend",
        f"{data['frontend']['fps']:.1f}",
        f"{data['frontend']['fps'] / ceiling['fps']:.2f}",
        f"{data['frontend']['seconds']:.2f}",
        "",
        "",
    )
    if "end_to_end" in data:
        e2e = data["end_to_end"]
        table.add_row(
            "[bold]end to end",
            f"{e2e['fps']:.2f}",
            f"{e2e['fraction_of_ceiling']:.2f}",
            f"{e2e['seconds']:.2f}",
            "",
            "",
        )
    console.print(table)
    selection = "none (frontend only)" if engine is None else engine.selection or engine.name
    console.print(
        f"ceiling: {ceiling['fps']:.2f} frames/s = {max(ceiling['matmul_gflops']):.0f} GFLOP/s ({ceiling['precision']} matmul, "
        f"{data['threads']} threads) / {ceiling['gflop_per_frame']:.2f} GFLOP per frame ({ceiling['network']} network); "
        f"engine: {selection}; faces: {data['face_backend']}; peak RSS {data['peak_rss_mb']:.0f} MB",
        highlight=False,
    )


@app.command()
@user_errors
def demo(
    out: pathlib.Path = typer.Option(
        pathlib.Path("tsav_demo"), "--out", "-o", help="Folder for everything the demo makes."
    ),
    steps: int = typer.Option(16, "--steps", min=1, help="Training steps of the toy model."),
) -> None:
    """The whole chain offline: synthetic data → preprocess → train a toy model → export → annotate with overlay."""
    from tsav_deploy.runs.demo import run_demo

    console.print(
        "[bold yellow]tsav demo[/]: everything below uses a toy model trained on synthetic data; "
        "its predictions mean nothing about real people.",
        highlight=False,
    )
    result = run_demo(out, steps=steps, say=lambda line: console.print(line, highlight=False))
    name = result.video.stem
    console.print(f"[green]done.[/] toy checkpoint {result.checkpoint}, ONNX export {result.export}", highlight=False)
    console.print(
        f"annotations: {result.annotations}/{{VA_Set,EXPR_Set,AU_Set}}/{name}.txt, {name}.csv, {name}.png, {name}.overlay.mp4, {name}.html",
        highlight=False,
    )
    console.print(
        "for real predictions: tsav annotate VIDEO --weights TSAV416k.pth.tar (or --weights tnt-sub1) --overlay",
        highlight=False,
    )


@app.command()
@user_errors
def evaluate(
    predictions_dir: pathlib.Path = typer.Argument(
        ..., help="ABAW predictions: VA_Set/, EXPR_Set/, AU_Set/ with <name>.txt."
    ),
    labels_dir: pathlib.Path = typer.Argument(
        ...,
        help="ABAW annotation root (its */Validation_Set folders are scored) or a folder laid out like the predictions.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Score prediction files with the ABAW 2020 metrics (CCC; expression and AU F1, accuracy, criterion)."""
    from tsav_deploy.train.evaluate import evaluate_predictions

    scores = evaluate_predictions(predictions_dir, labels_dir)
    if as_json:
        console.print_json(json.dumps(scores))
        return
    table = Table("task", "metric", "value")
    for task, values in scores.items():
        for metric, value in values.items():
            shown = "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)
            table.add_row(task, metric, shown)
    console.print(table)


@app.command()
@user_errors
def preprocess(
    videos_dir: pathlib.Path = typer.Argument(
        ..., help="Folder of videos (searched recursively, e.g. Aff-Wild2's batch folders)."
    ),
    out: pathlib.Path = typer.Option(..., "--out", "-o", help="Cache folder; run again to resume an interrupted run."),
    faces: FaceBackendName = "auto",
    detector: Detector = None,
    workers: int = typer.Option(1, "--workers", "-j", help="Videos processed in parallel (processes)."),
) -> None:
    """Run the shared frontend over every video once and cache aligned crops, masks and mel power for training."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from tsav_deploy.train.preprocess import preprocess as run_preprocess

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    ) as bar:
        task = bar.add_task("preprocessing", total=None)

        def on_video(stem: str, status: str, total: int) -> None:
            bar.update(task, total=total, advance=1, description=f"{status} {stem}")

        report = run_preprocess(videos_dir, out, faces=faces, detector=detector, workers=workers, on_video=on_video)
    table = Table(show_header=False, box=None)
    for key, value in (
        ("cache", str(report.cache)),
        (
            "videos",
            f"{len(report.processed)} processed, {len(report.skipped)} already done, {len(report.failed)} failed",
        ),
        ("frames", f"{report.frames} ({sum(e['faces'] for e in report.entries.values())} with a face)"),
        ("size", f"{report.bytes / 1e6:.1f} MB, {report.bytes_per_frame / 1e3:.2f} kB per frame"),
    ):
        table.add_row(f"[bold]{key}", value)
    console.print(table)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    for stem, reason in report.failed.items():
        err_console.print(f"[red]failed:[/] {reason}", highlight=False, soft_wrap=True)
    if report.failed:
        raise TsavError(
            f"{len(report.failed)} video(s) could not be preprocessed (listed above); fix or remove them and run again"
        )


@app.command()
@user_errors
def train(
    annotations: pathlib.Path = typer.Argument(
        ..., help="ABAW annotation root (VA_Set/, EXPR_Set/, AU_Set/ with train and validation folders)."
    ),
    cache: Optional[pathlib.Path] = typer.Option(
        None, "--cache", help="Preprocess cache (tsav preprocess VIDEOS --out CACHE)."
    ),
    out: pathlib.Path = typer.Option(
        pathlib.Path("runs/tsav"), "--out", "-o", help="Run folder: checkpoints, curves, state for --resume."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only read the labels and print their statistics."),
    as_json: bool = typer.Option(False, "--json", help="With --dry-run: print JSON."),
    videos: Optional[pathlib.Path] = typer.Option(
        None, "--videos", help="With --dry-run: also list annotations without a video here."
    ),
    arch: str = typer.Option(
        "paper", "--arch", help="paper (42.5 M parameters) or reduced (narrow, for CPU tests and demos)."
    ),
    pretrained: str = typer.Option(
        "auto",
        "--pretrained",
        help="Visual stream init: a weights name or file, 'none'; auto = Kinetics-400 for the paper network.",
    ),
    steps: int = typer.Option(3000, "--steps", help="Most training steps."),
    batch: int = typer.Option(320, "--batch", help="Clips per step (over all processes)."),
    micro_batch: int = typer.Option(
        32, "--micro-batch", help="Clips per forward pass; gradients accumulate to --batch."
    ),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
    val_every: int = typer.Option(100, "--val-every", help="Validate every N steps."),
    val_stride: int = typer.Option(1, "--val-stride", help="Score every N-th annotated validation frame."),
    patience: int = typer.Option(10, "--patience", help="Stop after N validations without improvement (0: never)."),
    pseudo: list[str] = typer.Option(
        ["valence"], "--pseudo", help="Pseudo labels: valence, arousal, expression (repeat the option)."
    ),
    final: bool = typer.Option(
        False, "--final", help="Then train on train + validation for 1.25x the best step count (final.pt)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last saved state."),
    workers: int = typer.Option(4, "--workers", "-j", help="Data loader processes (per training process)."),
    amp: str = typer.Option("auto", "--amp", help="Mixed precision on GPU: auto, bf16, fp16, off."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Train TSAV with the paper's recipe on a preprocess cache (multi-GPU: torchrun --nproc_per_node N -m tsav_deploy.cli train ...)."""
    if dry_run:
        from tsav_deploy.train.statistics import label_statistics

        stats = label_statistics(annotations, videos, pseudo=pseudo)
        if as_json:
            console.print_json(json.dumps(stats))
            return
        table = Table("split", "annotations", "frames", "labelled", "removed", "pseudo")
        for split, values in stats["splits"].items():
            table.add_row(
                split,
                str(values["annotations"]),
                str(values["frames"]),
                *(", ".join(f"{k} {v}" for k, v in values[key].items()) for key in ("labelled", "removed", "pseudo")),
            )
        console.print(table)
        for path in stats.get("videos", {}).get("missing", []):
            console.print(f"[yellow]no video for[/] {path}", highlight=False)
        return
    if cache is None:
        raise TsavError("missing --cache CACHE (made by `tsav preprocess VIDEOS_DIR --out CACHE`), or use --dry-run")
    from tsav_deploy.train.trainer import TrainConfig
    from tsav_deploy.train.trainer import train as run_training

    config = TrainConfig(
        annotations=annotations,
        cache=cache,
        out=out,
        arch=arch,
        pretrained=pretrained,
        steps=steps,
        batch=batch,
        micro_batch=micro_batch,
        lr=lr,
        val_every=val_every,
        val_stride=val_stride,
        patience=patience,
        pseudo=tuple(pseudo),
        final=final,
        resume=resume,
        workers=workers,
        amp=amp,
        device=device,
        seed=seed,
    )
    result = run_training(config, log=lambda text: console.print(text, highlight=False, soft_wrap=True))
    console.print(
        f"best step {result.best_step}: criterion {result.best_scores.get('criterion', float('nan')):.4f} -> {result.best_checkpoint}"
    )
    if result.final_checkpoint is not None:
        console.print(f"final model (train + validation) -> {result.final_checkpoint}")


def _print_validation(row: dict, best: dict, improved: bool) -> None:
    columns = ("step", "train_loss", "ccc_valence", "ccc_arousal", "expr_criterion", "au_criterion", "criterion")
    table = Table(*columns, "best", title="validation")
    table.add_row(
        *(str(row[c]) if c == "step" else f"{row[c]:.4f}" for c in columns),
        "[green]new best" if improved else f"{best.get('criterion', float('nan')):.4f}",
    )
    console.print(table)
