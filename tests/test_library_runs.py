"""What `tsav annotate` and `tsav live --out` do is the library's: a batch run (runs/batch.py) and a
live run (runs/live.py) from Python leave the very folder the command leaves; and each command's
Predictor options are the declared ones (api/options.py)."""

from __future__ import annotations

import inspect
import json
import pathlib

import click
import pytest
import typer.main
from typer.testing import CliRunner

from tsav_deploy.api import Predictor, PredictorOptions
from tsav_deploy.api.options import PREDICTOR_OPTIONS
from tsav_deploy.cli import app
from tsav_deploy.outputs.records import OutputOptions
from tsav_deploy.runs.batch import Batch, open_predictor
from tsav_deploy.runs.live import LiveRun

# Fields whose values are the time a run took, not what it made.
TIMING = {"wall_s", "timings_s", "latency_s", "created", "finished", "started", "time_s", "seconds"}


def without_timing(value):
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def files_of(out: pathlib.Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}


def check_same_folder(cli: pathlib.Path, python: pathlib.Path, name: str) -> None:
    """Same files; same bytes for the ABAW files and tables; summary.json equal but for timing
    fields and the folder's own path."""
    assert files_of(cli) == files_of(python)
    assert "summary.json" in files_of(cli)
    for path in [f"{task}/{name}.txt" for task in ("VA_Set", "EXPR_Set", "AU_Set")] + [f"{name}.csv"]:
        assert (cli / path).read_bytes() == (python / path).read_bytes(), path
    summaries = [
        without_timing(json.loads((out / "summary.json").read_text().replace(str(out), "OUT"))) for out in (cli, python)
    ]
    assert summaries[0] == summaries[1]


def test_a_python_batch_run_leaves_the_folder_tsav_annotate_leaves(media_dir, small_checkpoint, tmp_path):
    video = media_dir / "webcam_man_mp3.mp4"
    cli, python = tmp_path / "cli" / "results", tmp_path / "python" / "results"  # one name: pages show it
    args = ["--weights", str(small_checkpoint), "--faces", "dlib", "--detector", "hog", "--report"]
    result = CliRunner().invoke(app, ["annotate", str(video), *args, "--out", str(cli)])
    assert result.exit_code == 0, result.output

    options = PredictorOptions(weights=str(small_checkpoint), faces="dlib", detector="hog")
    with open_predictor(options) as predictor:
        outcomes = list(Batch(python, OutputOptions(report=True)).annotate([video], predictor))
    assert [o.status for o in outcomes] == ["done"]

    check_same_folder(cli, python, video.stem)
    assert "index.html" in files_of(python)
    pages = [(out / "index.html").read_text().replace(str(out), "OUT") for out in (cli, python)]
    assert pages[0] == pages[1]


def test_a_python_live_run_leaves_the_folder_tsav_live_out_leaves(media_dir, small_export, tmp_path):
    video = media_dir / "webcam_man_mp3.mp4"
    cli, python = tmp_path / "cli" / "results", tmp_path / "python" / "results"  # one name: pages show it
    args = ["--model", str(small_export), "--faces", "dlib", "--detector", "hog"]
    result = CliRunner().invoke(app, ["live", str(video), *args, "--out", str(cli)])
    assert result.exit_code == 0, result.output

    options = PredictorOptions(model=str(small_export), faces="dlib", detector="hog")
    live = LiveRun(str(video), options, out=python).run()
    assert live.ok and live.written and live.summary["frames_predicted"] > 0

    check_same_folder(cli, python, video.stem)


# --- the options, declared once ---------------------------------------------------------------------

# What a command deliberately does otherwise than the declaration: `tsav bench` times the stages and
# writes no table, so the options that only shape the table's values are not its.
EXCEPTIONS = {"bench": {"au_threshold": "absent", "no_face": "absent", "faces": "dlib"}}


def _params(command: str) -> dict[str, click.Parameter]:
    group = typer.main.get_command(app)
    return {opt: param for param in group.commands[command].params for opt in param.opts}


@pytest.mark.parametrize("command", ["annotate", "live", "bench", "serve"])
def test_each_command_offers_every_declared_predictor_option(command):
    params = _params(command)
    exceptions = EXCEPTIONS.get(command, {})
    for name, declared in PREDICTOR_OPTIONS.items():
        flag = declared.metadata["flags"][0]
        if exceptions.get(name) == "absent":
            assert flag not in params, (command, flag)
            continue
        assert flag in params, f"tsav {command} lacks {flag}"
        param = params[flag]
        assert tuple(param.opts) == declared.metadata["flags"], (command, name)
        assert param.name == name, (command, name)  # the command passes its options on by these names
        assert param.help == declared.metadata["help"], (command, name)
        assert param.default == exceptions.get(name, declared.default), (command, name)


def test_the_predictor_signature_is_the_declaration():
    parameters = inspect.signature(Predictor).parameters
    assert list(parameters) == list(PREDICTOR_OPTIONS)
    for name, declared in PREDICTOR_OPTIONS.items():
        assert parameters[name].default == declared.default, name
