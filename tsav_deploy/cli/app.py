"""The ``tsav`` Typer app, its consoles, the one-line handling of user errors, and the options
several commands share.

Each command (one module per group beside this one) parses options, calls one library object and
prints with rich. User errors (``TsavError``) end as one red line and exit code 2; nothing else is
caught, so a bug still shows its traceback.
"""

from __future__ import annotations

import functools
import pathlib
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from tsav_deploy import __version__
from tsav_deploy.api.options import PREDICTOR_OPTIONS, PredictorOptions
from tsav_deploy.errors import TsavError, shown

app = typer.Typer(
    name="tsav",
    help="Two-stream aural-visual affect analysis (Kuhnke et al., ABAW 2020): train, export, annotate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help (click's): whole sentences wrapped to the terminal, flags without a type column.
    rich_markup_mode=None,
)


def _console(stderr: bool = False) -> Console:
    """A console for stdout or stderr. Piped or redirected there is no terminal width to fit, so
    nothing is wrapped or cut: paths, notes and table cells reach the file whole."""
    terminal = Console(stderr=stderr)
    return terminal if terminal.is_terminal else Console(stderr=stderr, width=10_000, soft_wrap=True)


console = _console()
err_console = _console(stderr=True)


def predictor_option(name: str, help: str | None = None) -> Any:
    """The CLI option of the Predictor's option ``name``: its flags and help from the declaration
    (api/options.py), so each command spells it the same."""
    declared = PREDICTOR_OPTIONS[name]
    return typer.Option(*declared.metadata["flags"], help=help or declared.metadata["help"])


def default(name: str) -> Any:
    """The declared default of the Predictor's option ``name``."""
    return PREDICTOR_OPTIONS[name].default


def declared(values: dict[str, Any]) -> dict[str, Any]:
    """The Predictor's options among a command's parameters (its ``locals()``), by their declared
    names: a command passes on every option it offers, none can be left out of the call."""
    return {name: values[name] for name in PREDICTOR_OPTIONS if name in values}


Weights = Annotated[Optional[str], predictor_option("weights")]
ExportDir = Annotated[Optional[pathlib.Path], predictor_option("model")]
EngineName = Annotated[str, predictor_option("engine")]
Device = Annotated[str, predictor_option("device")]
FaceBackendName = Annotated[str, predictor_option("faces")]
Detector = Annotated[Optional[str], predictor_option("detector")]
Person = Annotated[str, predictor_option("person")]
Stride = Annotated[int, predictor_option("stride")]
BatchSize = Annotated[int, predictor_option("batch_size")]
AuThreshold = Annotated[float, predictor_option("au_threshold")]
NoFace = Annotated[str, predictor_option("no_face")]

NO_WEIGHTS = (
    "no model given: pass --weights CHECKPOINT (a .pth.tar from the authors, a tsav checkpoint, or a "
    "published name such as tnt-sub1: see `tsav weights list`) or --model EXPORT_DIR (from `tsav export`)"
)


def predictor_options(**values: Any) -> PredictorOptions:
    """The Predictor's options from a command's, with the CLI's own lines for a missing or a
    doubled model."""
    if values.get("weights") and values.get("model"):
        raise TsavError("pass either --weights or --model, not both")
    if not (values.get("weights") or values.get("model")):
        raise TsavError(NO_WEIGHTS)
    return PredictorOptions(**values)


def error_line(line: str) -> None:
    """One red error line on stderr."""
    err_console.print(f"[bold red]error:[/] {escape(shown(line))}", highlight=False, soft_wrap=True)


def warn_output_failures(info: dict) -> None:
    """One warning line per optional output (plot, overlay, report) that could not be written."""
    for line in info.get("output_failures", []):
        err_console.print(f"[yellow]warning:[/] {escape(shown(line))}", highlight=False, soft_wrap=True)


def user_errors(func):
    """Turn ``TsavError`` into one line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except TsavError as exc:
            error_line(str(exc))
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
