"""The ``tsav`` command: a thin Typer layer over the library.

Each command parses options, calls one library function and prints with rich. User errors
(``TsavError``) end as one red line and exit code 2; nothing else is caught, so a bug still shows
its traceback.
"""
from __future__ import annotations

import functools
import json
import pathlib
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import TsavError

app = typer.Typer(
    name="tsav",
    help="Two-stream aural-visual affect analysis (Kuhnke et al., ABAW 2020): train, export, annotate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
weights_app = typer.Typer(help="Published weights: list, download, locate.", no_args_is_help=True)
app.add_typer(weights_app, name="weights")

console = Console()
err_console = Console(stderr=True)


def user_errors(func):
    """Turn ``TsavError`` into one line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except TsavError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        console.print(f"tsav-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Two-stream aural-visual affect analysis: train, export, annotate."""


@app.command()
@user_errors
def info(
    checkpoint: str = typer.Argument(..., help="Checkpoint file or published name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Inspect a checkpoint: format, architecture, parameters, provenance, hash."""
    from .checkpoint import load_checkpoint
    from .weights import resolve

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
    from .weights import REGISTRY, cache_dir

    table = Table("name", "description", "cached", "licence")
    for entry in REGISTRY.values():
        cached = (cache_dir() / entry.name).exists()
        table.add_row(entry.name, entry.description, "yes" if cached else "no", entry.licence)
    console.print(table)
    console.print(f"cache: {cache_dir()} (set TSAV_HOME to move it)")


@weights_app.command("download")
@user_errors
def weights_download(name: str = typer.Argument(..., help="A name from `tsav weights list`.")) -> None:
    """Download (once) and verify published weights; prints the local path."""
    from .weights import resolve

    console.print(str(resolve(name)))


@app.command()
@user_errors
def export(
    checkpoint: Optional[str] = typer.Argument(None, help="Checkpoint file or published name."),
    out: pathlib.Path = typer.Option(pathlib.Path("export"), "--out", "-o", help="Output directory."),
    onnx: bool = typer.Option(False, "--onnx", help="visual.onnx, aural.onnx, fusion.onnx (default with --torchscript)."),
    torchscript: bool = typer.Option(False, "--torchscript", help="tsav.ts, the whole network (default with --onnx)."),
    trt: bool = typer.Option(False, "--trt", help="TensorRT engines built from the ONNX graphs (needs TensorRT 10 and a GPU)."),
    fp16: bool = typer.Option(False, "--fp16", help="FP16 TensorRT engines."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (13-20)."),
    max_batch: int = typer.Option(32, "--max-batch", help="Largest batch of the TensorRT optimisation profiles."),
    verify: Optional[pathlib.Path] = typer.Option(None, "--verify", help="Verify an export directory instead of exporting."),
) -> None:
    """Export a checkpoint to TorchScript / ONNX / TensorRT with verified parity, or verify an export."""
    if verify is not None:
        if checkpoint is not None:
            raise TsavError("give either CHECKPOINT (to export) or --verify DIR, not both")
        from .export import verify_export

        report = verify_export(verify)
        _print_parity(report)
        report.raise_for_failure()
        skipped = f"; {len(report.skipped)} check(s) skipped (see above)" if report.skipped else ""
        console.print(f"[green]{verify}: every file matches its manifest and every artifact checked is within tolerance{skipped}[/]")
        return
    if checkpoint is None:
        raise TsavError("missing CHECKPOINT (a file or a published name), or --verify DIR")
    from .export.exporter import DEFAULT_FORMATS, Exporter

    formats = [name for name, wanted in (("onnx", onnx), ("torchscript", torchscript), ("tensorrt", trt)) if wanted]
    exporter = Exporter(formats or DEFAULT_FORMATS, opset=opset, max_batch=max_batch, fp16=fp16)
    result = exporter(checkpoint, out)
    _print_parity(result.report)
    console.print(f"wrote {', '.join(result.files)} to {result.folder}")


def _print_parity(report) -> None:
    # The probability column matters only where a tolerance applies to it (FP16 engines).
    with_prob = any(row.probability_tolerance is not None for row in report.rows)
    columns = ["artifact", "output", "backend", "rel. error", "tol."] + (["prob. error"] if with_prob else []) + ["status"]
    table = Table(*columns, title=f"parity: {report.folder}")
    for row in report.rows:
        cells = [row.artifact, row.output, row.backend, "-" if row.max_error is None else f"{row.max_error:.1e}",
                 "-" if row.tolerance is None else f"{row.tolerance:.0e}"]
        if with_prob:
            cells.append("-" if row.probability_error is None else f"{row.probability_error:.1e}")
        table.add_row(*cells, {"ok": "[green]ok", "skipped": "[yellow]skipped"}.get(row.status, "[red]FAILED"))
    console.print(table)
    for row in report.rows:
        if row.detail:
            console.print(f"{row.status}: {row.artifact}: {row.detail}", highlight=False, soft_wrap=True)


@app.command()
@user_errors
def annotate(inputs: list[str] = typer.Argument(None, help="Video files, directories or globs.")) -> None:
    """Annotate videos with valence, arousal, expressions and action units."""
    raise TsavError("annotate is not available in this build yet (issue 5)")


@app.command()
@user_errors
def evaluate(
    predictions_dir: pathlib.Path = typer.Argument(..., help="ABAW predictions: VA_Set/, EXPR_Set/, AU_Set/ with <name>.txt."),
    labels_dir: pathlib.Path = typer.Argument(
        ..., help="ABAW annotation root (its */Validation_Set folders are scored) or a folder laid out like the predictions."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Score prediction files with the ABAW 2020 metrics (CCC; expression and AU F1, accuracy, criterion)."""
    from .train.evaluate import evaluate_predictions

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
def train() -> None:
    """Train TSAV on Aff-Wild2 with the paper's recipe."""
    raise TsavError("train is not available in this build yet (issue 6)")


if __name__ == "__main__":
    app()
