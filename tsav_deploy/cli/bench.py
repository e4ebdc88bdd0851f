"""``tsav bench``: the stages of one annotation timed (runs/bench.py), as a table or JSON."""

from __future__ import annotations

import json
import pathlib

import typer
from rich.table import Table

from tsav_deploy.cli.app import (
    PredictorOptions,
    app,
    console,
    err_console,
    user_errors,
    with_predictor_options,
)
from tsav_deploy.errors import TsavError


@app.command()
@user_errors
@with_predictor_options(leave_out=("au_threshold", "no_face"), model_needed=False, faces="dlib")
def bench(
    options: PredictorOptions,
    video: pathlib.Path = typer.Argument(
        ..., help="The video to time (docs/performance.md names the recordings its figures come from)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Frames/s of every stage and end to end, peak memory, and the network stages against the model-bound ceiling.

    Without --weights/--model only the frontend is measured (decode, faces, alignment+mask, clips, audio, mel).
    """
    from tsav_deploy.pipeline.offline import AnnotateOptions
    from tsav_deploy.runs.bench import bench_predictor, bench_video

    AnnotateOptions(person=options.person, stride=options.stride, batch_size=options.batch_size)  # before loading
    if not video.is_file():
        raise TsavError(f"{video}: no such file")
    predictor = bench_predictor(options)
    with err_console.status("benchmark") as status:
        report = bench_video(
            video, predictor, device=options.device, progress=lambda s: status.update(f"benchmark: {s}")
        )
    data = report.to_dict()
    if as_json:
        console.print_json(json.dumps(data))
        return
    _print_table(data, video.name, options.stride, options.batch_size)
    console.print(_ceiling_line(data), highlight=False)
    selection = predictor.engine.selection or predictor.engine.name
    console.print(
        f"engine: {selection}; faces: {data['face_backend']}; {data['threads']} threads; "
        f"peak RSS {data['peak_rss_mb']:.0f} MB",
        highlight=False,
    )


def _ceiling_line(data: dict) -> str:
    """How the ceiling was reached: its rate, the CPU's peak and the engines' measured rates."""
    ceiling = data["ceiling"]
    peak = ceiling["cpu_peak"]
    measured = ", ".join(f"{name} {rate:.0f}" for name, rate in ceiling["measured_gflops"].items())
    parts = [f"measured on the heaviest convolution: {measured}" if measured else ""]
    if peak:
        parts.insert(
            0,
            f"CPU peak {peak['gflops']:.0f} = {peak['cores']} cores x {peak['mhz']:.0f} MHz ({peak['clock']}) x "
            f"{peak['per_cycle']} per cycle ({peak['units']})",
        )
    unit = "GOP/s" if ceiling["precision"] == "int8" else "GFLOP/s"
    return (
        f"ceiling: {ceiling['fps']:.2f} frames/s = {ceiling['gflops']:.0f} {unit} ({ceiling['precision']}; the larger of "
        f"{'; '.join(p for p in parts if p)}) / {ceiling['gflop_per_frame']:.2f} GFLOP per frame ({ceiling['network']} network)"
    )


def _print_table(data: dict, name: str, stride: int, batch_size: int) -> None:
    """The stages' table: frames/s and seconds per stage; the network stages also their FLOP rate,
    their own ceiling and the share of it they reach (end to end: of the whole network's ceiling)."""
    table = Table(
        "stage",
        "frames/s",
        "seconds",
        "GFLOP/s",
        "ceiling frames/s",
        "x ceiling",
        title=f"{name}: {data['frames']} frames, stride {stride}, batch {batch_size}",
    )
    for name, stage in data["stages"].items():
        if stage["fps"] is None:  # the stage did not run on this video (e.g. no identity samples)
            table.add_row(name, "-", "0", "", "", "")
            continue
        network = "x_ceiling" in stage
        table.add_row(
            name,
            f"{stage['fps']:.1f}",
            f"{stage['seconds']:.2f}",
            str(stage["gflops"]) if network else "",
            f"{stage['ceiling_fps']:.1f}" if network else "",
            f"{stage['x_ceiling']:.2f}" if network else "",
        )
    table.add_row("[bold]frontend", f"{data['frontend']['fps']:.1f}", f"{data['frontend']['seconds']:.2f}", "", "", "")
    if "end_to_end" in data:
        e2e = data["end_to_end"]
        ceiling = data["ceiling"]["fps"]
        table.add_row(
            "[bold]end to end",
            f"{e2e['fps']:.2f}",
            f"{e2e['seconds']:.2f}",
            "",
            f"{ceiling:.1f}",
            f"{e2e['fraction_of_ceiling']:.2f}",
        )
    console.print(table)
