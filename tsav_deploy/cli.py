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
) -> None:
    """Export a checkpoint to TorchScript / ONNX / TensorRT with verified parity."""
    raise TsavError("export is not available in this build yet (issue 3)")


@app.command()
@user_errors
def annotate(inputs: list[str] = typer.Argument(None, help="Video files, directories or globs.")) -> None:
    """Annotate videos with valence, arousal, expressions and action units."""
    raise TsavError("annotate is not available in this build yet (issue 5)")


@app.command()
@user_errors
def train() -> None:
    """Train TSAV on Aff-Wild2 with the paper's recipe."""
    raise TsavError("train is not available in this build yet (issue 6)")


if __name__ == "__main__":
    app()
