"""``tsav export``: a checkpoint to TorchScript / ONNX / TensorRT, or an export verified."""

from __future__ import annotations

import json
import pathlib
from typing import Optional

import typer
from rich.table import Table

from tsav_deploy.cli.app import app, console, user_errors
from tsav_deploy.errors import TsavError


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
