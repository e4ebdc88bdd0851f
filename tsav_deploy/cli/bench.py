"""``tsav bench``: the stages of one annotation timed (runs/bench.py), as a table or JSON."""

from __future__ import annotations

import json
import pathlib

import typer
from rich.table import Table

from tsav_deploy.cli.app import (
    BatchSize,
    Detector,
    Device,
    EngineName,
    ExportDir,
    FaceBackendName,
    Person,
    Stride,
    Weights,
    app,
    console,
    declared,
    default,
    err_console,
    user_errors,
)
from tsav_deploy.errors import TsavError


@app.command()
@user_errors
def bench(
    video: pathlib.Path = typer.Argument(
        ..., help="The video to time (docs/performance.md names the recordings its figures come from)."
    ),
    weights: Weights = default("weights"),
    model: ExportDir = default("model"),
    engine: EngineName = default("engine"),
    device: Device = default("device"),
    faces: FaceBackendName = "dlib",
    detector: Detector = default("detector"),
    person: Person = default("person"),
    stride: Stride = default("stride"),
    batch_size: BatchSize = default("batch_size"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Frames/s of every stage and end to end, peak memory, and the model-bound ceiling measured in the same run.

    Without --weights/--model only the frontend is measured (decode, faces, alignment+mask, clips, audio, mel).
    """
    from tsav_deploy.api import PredictorOptions
    from tsav_deploy.pipeline.offline import AnnotateOptions
    from tsav_deploy.runs.bench import bench_predictor, bench_video

    if weights and model:
        raise TsavError("pass either --weights or --model, not both")
    AnnotateOptions(person=person, stride=stride, batch_size=batch_size)  # checked before loading
    if not video.is_file():
        raise TsavError(f"{video}: no such file")
    options = PredictorOptions(**declared(locals()))
    predictor = bench_predictor(options)
    with err_console.status("benchmark") as status:
        report = bench_video(video, predictor, device=device, progress=lambda s: status.update(f"benchmark: {s}"))
    data = report.to_dict()
    if as_json:
        console.print_json(json.dumps(data))
        return
    _print_table(data, video.name, stride, batch_size)
    ceiling = data["ceiling"]
    selection = predictor.engine.selection or predictor.engine.name
    console.print(
        f"ceiling: {ceiling['fps']:.2f} frames/s = {max(ceiling['matmul_gflops']):.0f} GFLOP/s ({ceiling['precision']} matmul, "
        f"{data['threads']} threads) / {ceiling['gflop_per_frame']:.2f} GFLOP per frame ({ceiling['network']} network); "
        f"engine: {selection}; faces: {data['face_backend']}; peak RSS {data['peak_rss_mb']:.0f} MB",
        highlight=False,
    )


def _print_table(data: dict, name: str, stride: int, batch_size: int) -> None:
    """The stages' table: frames/s, multiple of the ceiling, seconds and matmul share per stage."""
    ceiling = data["ceiling"]
    table = Table(
        "stage",
        "frames/s",
        "x ceiling",
        "seconds",
        "GFLOP/s",
        "of matmul",
        title=f"{name}: {data['frames']} frames, stride {stride}, batch {batch_size}",
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
