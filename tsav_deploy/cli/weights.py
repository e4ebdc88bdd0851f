"""``tsav info`` and ``tsav weights``: checkpoints and published weights."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from tsav_deploy.cli.app import app, console, user_errors
from tsav_deploy.errors import shown

weights_app = typer.Typer(help="Published weights: list, download, verify.", no_args_is_help=True)
app.add_typer(weights_app, name="weights")


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
