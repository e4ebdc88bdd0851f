"""``tsav report``: HTML reports over a finished output folder."""

from __future__ import annotations

import pathlib

import typer
from rich.markup import escape

from tsav_deploy.cli.app import app, console, err_console, user_errors
from tsav_deploy.errors import TsavError, shown


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
