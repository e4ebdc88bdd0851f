"""``tsav evaluate``, ``tsav preprocess`` and ``tsav train``: scoring, the training cache, training."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Optional

import typer
from rich.table import Table

from tsav_deploy.cli.app import Detector, FaceBackendName, app, console, default, err_console, user_errors
from tsav_deploy.errors import TsavError


@app.command()
@user_errors
def evaluate(
    predictions_dir: pathlib.Path = typer.Argument(
        ..., help="ABAW predictions: VA_Set/, EXPR_Set/, AU_Set/ with <name>.txt."
    ),
    labels_dir: pathlib.Path = typer.Argument(
        ...,
        help="ABAW annotation root (its */Validation_Set folders are scored) or a folder laid out like the predictions.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Score prediction files with the ABAW 2020 metrics (CCC; expression and AU F1, accuracy, criterion)."""
    from tsav_deploy.train.evaluate import evaluate_predictions

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
def preprocess(
    videos_dir: pathlib.Path = typer.Argument(
        ..., help="Folder of videos (searched recursively, e.g. Aff-Wild2's batch folders)."
    ),
    out: pathlib.Path = typer.Option(..., "--out", "-o", help="Cache folder; run again to resume an interrupted run."),
    faces: FaceBackendName = default("faces"),
    detector: Detector = default("detector"),
    workers: int = typer.Option(1, "--workers", "-j", help="Videos processed in parallel (processes)."),
) -> None:
    """Run the shared frontend over every video once and cache aligned crops, masks and mel power for training."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from tsav_deploy.train.preprocess import preprocess as run_preprocess

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    ) as bar:
        task = bar.add_task("preprocessing", total=None)

        def on_video(stem: str, status: str, total: int) -> None:
            bar.update(task, total=total, advance=1, description=f"{status} {stem}")

        report = run_preprocess(videos_dir, out, faces=faces, detector=detector, workers=workers, on_video=on_video)
    table = Table(show_header=False, box=None)
    for key, value in (
        ("cache", str(report.cache)),
        (
            "videos",
            f"{len(report.processed)} processed, {len(report.skipped)} already done, {len(report.failed)} failed",
        ),
        ("frames", f"{report.frames} ({sum(e['faces'] for e in report.entries.values())} with a face)"),
        ("size", f"{report.bytes / 1e6:.1f} MB, {report.bytes_per_frame / 1e3:.2f} kB per frame"),
    ):
        table.add_row(f"[bold]{key}", value)
    console.print(table)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    for stem, reason in report.failed.items():
        err_console.print(f"[red]failed:[/] {reason}", highlight=False, soft_wrap=True)
    if report.failed:
        raise TsavError(
            f"{len(report.failed)} video(s) could not be preprocessed (listed above); fix or remove them and run again"
        )


@app.command()
@user_errors
def train(
    annotations: pathlib.Path = typer.Argument(
        ..., help="ABAW annotation root (VA_Set/, EXPR_Set/, AU_Set/ with train and validation folders)."
    ),
    cache: Optional[pathlib.Path] = typer.Option(
        None, "--cache", help="Preprocess cache (tsav preprocess VIDEOS --out CACHE)."
    ),
    out: pathlib.Path = typer.Option(
        pathlib.Path("runs/tsav"), "--out", "-o", help="Run folder: checkpoints, curves, state for --resume."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only read the labels and print their statistics."),
    as_json: bool = typer.Option(False, "--json", help="With --dry-run: print JSON."),
    videos: Optional[pathlib.Path] = typer.Option(
        None, "--videos", help="With --dry-run: also list annotations without a video here."
    ),
    arch: str = typer.Option(
        "paper", "--arch", help="paper (42.5 M parameters) or reduced (narrow, for CPU tests and demos)."
    ),
    pretrained: str = typer.Option(
        "auto",
        "--pretrained",
        help="Visual stream init: a weights name or file, 'none'; auto = Kinetics-400 for the paper network.",
    ),
    steps: int = typer.Option(3000, "--steps", help="Most training steps."),
    batch: int = typer.Option(320, "--batch", help="Clips per step (over all processes)."),
    micro_batch: int = typer.Option(
        32, "--micro-batch", help="Clips per forward pass; gradients accumulate to --batch."
    ),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
    val_every: int = typer.Option(100, "--val-every", help="Validate every N steps."),
    val_stride: int = typer.Option(1, "--val-stride", help="Score every N-th annotated validation frame."),
    patience: int = typer.Option(10, "--patience", help="Stop after N validations without improvement (0: never)."),
    pseudo: list[str] = typer.Option(
        ["valence"], "--pseudo", help="Pseudo labels: valence, arousal, expression (repeat the option)."
    ),
    final: bool = typer.Option(
        False, "--final", help="Then train on train + validation for 1.25x the best step count (final.pt)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last saved state."),
    workers: int = typer.Option(4, "--workers", "-j", help="Data loader processes (per training process)."),
    amp: str = typer.Option("auto", "--amp", help="Mixed precision on GPU: auto, bf16, fp16, off."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    seed: int = typer.Option(
        0, "--seed", help="Seed of initialisation, sampling and data order (same seed, same run)."
    ),
    save_every_s: float = typer.Option(
        600.0, "--save-every", help="Seconds between saved states for --resume (also saved on Ctrl-C and SIGTERM)."
    ),
) -> None:
    """Train TSAV with the paper's recipe on a preprocess cache (multi-GPU: torchrun --nproc_per_node N -m tsav_deploy.cli train ...)."""
    if dry_run:
        _print_label_statistics(annotations, videos, pseudo, as_json)
        return
    if cache is None:
        raise TsavError("missing --cache CACHE (made by `tsav preprocess VIDEOS_DIR --out CACHE`), or use --dry-run")
    from tsav_deploy.train.trainer import TrainConfig
    from tsav_deploy.train.trainer import train as run_training

    given = dict(locals())
    config = TrainConfig(
        **{f.name: given[f.name] for f in dataclasses.fields(TrainConfig) if f.name in given}
        | {"pseudo": tuple(pseudo)}
    )
    result = run_training(config, log=lambda text: console.print(text, highlight=False, soft_wrap=True))
    console.print(
        f"best step {result.best_step}: criterion {result.best_scores.get('criterion', float('nan')):.4f} -> {result.best_checkpoint}"
    )
    if result.final_checkpoint is not None:
        console.print(f"final model (train + validation) -> {result.final_checkpoint}")


def _print_label_statistics(
    annotations: pathlib.Path, videos: pathlib.Path | None, pseudo: list[str], as_json: bool
) -> None:
    from tsav_deploy.train.statistics import label_statistics

    stats = label_statistics(annotations, videos, pseudo=pseudo)
    if as_json:
        console.print_json(json.dumps(stats))
        return
    table = Table("split", "annotations", "frames", "labelled", "removed", "pseudo")
    for split, values in stats["splits"].items():
        table.add_row(
            split,
            str(values["annotations"]),
            str(values["frames"]),
            *(", ".join(f"{k} {v}" for k, v in values[key].items()) for key in ("labelled", "removed", "pseudo")),
        )
    console.print(table)
    for path in stats.get("videos", {}).get("missing", []):
        console.print(f"[yellow]no video for[/] {path}", highlight=False)
