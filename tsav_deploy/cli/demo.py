"""``tsav demo``: the whole chain offline on synthetic data."""

from __future__ import annotations

import pathlib

import typer

from tsav_deploy.cli.app import app, console, user_errors


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
        f"annotations: {result.annotations}/{{VA_Set,EXPR_Set,AU_Set}}/{name}.txt, {name}.csv, {name}.png, "
        f"{name}.overlay.mp4, {name}.html, index.html, summary.json",
        highlight=False,
    )
    console.print(
        "for real predictions: the authors' weights, fetched once where there is a network "
        "(tsav weights download tnt-sub1) or copied here (TSAV416k.pth.tar), then "
        "tsav annotate VIDEO --weights tnt-sub1 --overlay --report",
        highlight=False,
    )
