"""The ``tsav`` Typer app, its consoles, the one-line handling of user errors, and the options
several commands share.

Each command (one module per group beside this one) parses options, calls one library object and
prints with rich. User errors (``TsavError``) end as one red line and exit code 2; nothing else is
caught, so a bug still shows its traceback.
"""

from __future__ import annotations

import functools
import inspect
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


# Each of the Predictor's options as a typed CLI parameter, in the declaration's order
# (test_library_runs holds every command's flags against the declaration).
PREDICTOR_PARAMETERS: dict[str, Any] = {
    "weights": Annotated[Optional[str], predictor_option("weights")],
    "model": Annotated[Optional[pathlib.Path], predictor_option("model")],
    "engine": Annotated[str, predictor_option("engine")],
    "device": Annotated[str, predictor_option("device")],
    "faces": Annotated[str, predictor_option("faces")],
    "detector": Annotated[Optional[str], predictor_option("detector")],
    "person": Annotated[str, predictor_option("person")],
    "stride": Annotated[int, predictor_option("stride")],
    "batch_size": Annotated[int, predictor_option("batch_size")],
    "au_threshold": Annotated[float, predictor_option("au_threshold")],
    "no_face": Annotated[str, predictor_option("no_face")],
}
# `tsav preprocess` finds faces with the Predictor's face options.
FaceBackendName = PREDICTOR_PARAMETERS["faces"]
Detector = PREDICTOR_PARAMETERS["detector"]

NO_WEIGHTS = (
    "no model given: pass --weights CHECKPOINT (a .pth.tar from the authors, a tsav checkpoint, or a "
    "published name such as tnt-sub1: see `tsav weights list`) or --model EXPORT_DIR (from `tsav export`)"
)


def predictor_options(values: dict[str, Any], model_needed: bool = True) -> PredictorOptions:
    """The Predictor's options from a command's, with the CLI's own lines for a doubled model and,
    where the command needs one, a missing model."""
    if values.get("weights") and values.get("model"):
        raise TsavError("pass either --weights or --model, not both")
    if model_needed and not (values.get("weights") or values.get("model")):
        raise TsavError(NO_WEIGHTS)
    return PredictorOptions(**values)


def with_predictor_options(leave_out: tuple[str, ...] = (), model_needed: bool = True, **defaults: Any):
    """A command that offers the Predictor's options (all but ``leave_out``; ``defaults`` where the
    command's differ from the declaration) as flags, after its arguments, and receives them as one
    ``options: PredictorOptions``. Every command spells, documents and passes them on alike."""
    names = [name for name in PREDICTOR_OPTIONS if name not in leave_out]

    def wrap(command):
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "options"]
        arguments = [p for p in own if isinstance(p.default, typer.models.ArgumentInfo)]
        offered = [
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, annotation=PREDICTOR_PARAMETERS[name],
                default=defaults.get(name, PREDICTOR_OPTIONS[name].default),
            )
            for name in names
        ]  # fmt: skip
        rest = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own if p not in arguments]

        @functools.wraps(command)
        def wrapper(**values: Any):
            chosen = {name: values.pop(name) for name in names}
            return command(options=predictor_options(chosen, model_needed), **values)

        wrapper.__signature__ = inspect.Signature([*arguments, *offered, *rest])
        return wrapper

    return wrap


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
