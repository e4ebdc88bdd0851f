"""What `tsav train` shows and how it stops: plain progress lines when piped, validation tables with
whole headers, data loader workers capped to the cores in one line, and Ctrl-C leaving a state from which
``--resume`` ends with the weights of an uninterrupted run."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch
from rich.console import Console

from tsav_deploy.train.interrupt import Interrupted, StopRequest, resume_command, stop
from tsav_deploy.train.progress import LineProgress, cap_workers, validation_line, validation_table
from tsav_deploy.train.trainer import TrainConfig, train

STEPS = 8
OPTIONS = ["--arch", "reduced", "--steps", str(STEPS), "--batch", "8", "--micro-batch", "4", "--val-every", "4"]
OPTIONS += ["--val-stride", "16", "--patience", "0", "--device", "cpu"]
ROW = {"step": 6, "train_loss": 2.5, "ccc_valence": 0.1, "ccc_arousal": 0.2}
ROW |= {"expr_criterion": 0.3, "au_criterion": 0.4, "criterion": 0.25}


def test_workers_capped_to_the_cores():
    assert cap_workers(4, 2) == (2, "data loader: 2 worker processes, not 4: 2 CPU cores available")
    assert cap_workers(2, 2) == (2, None) and cap_workers(0, 1) == (0, None)


def test_piped_lines_every_few_steps_and_a_last_line():
    lines: list[str] = []
    progress = LineProgress(lines.append, every_s=3600)
    progress.start("validation", 0, 40, 16)
    for step in range(1, 41):
        progress.step(step, 1.0 / step)
    progress.finish()
    assert lines[0] == "validation: 40 steps of 16 clips"
    steps = [int(m.group(1)) for line in lines if (m := re.match(r"validation: step (\d+)/40 \(", line))]
    assert steps == [1, *range(2, 40, 2)]  # every 40/20 steps, the first one at once
    assert re.fullmatch(r"validation: step 2/40 \(5%\)  loss 0\.5000  [\d.]+ clips/s  ETA \d+:\d\d:\d\d", lines[2])
    assert re.fullmatch(
        r"validation: 40/40 steps, 40 in \d+:\d\d:\d\d \([\d.]+ clips/s\), last loss 0\.0250", lines[-1]
    )


def test_piped_lines_at_least_every_interval():
    lines: list[str] = []
    progress = LineProgress(lines.append, every_s=0.0, every_steps=1000)
    progress.start("final", 10, 3000, 320)
    for step in range(11, 15):
        progress.step(step, 1.0)
    assert [line.split(" (")[0] for line in lines[1:]] == [f"final: step {s}/3000" for s in range(11, 15)]


def test_validation_table_headers_whole_on_80_columns():
    out = io.StringIO()
    Console(file=out, width=80).print(validation_table(ROW, {"criterion": 0.3125}, improved=False))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    header = text.splitlines()[2]
    for name in ("step", "train loss", "CCC val", "CCC aro", "expr", "AU", "criterion", "best"):
        assert name in header, header
    assert text.splitlines()[4].split() == ["6", "2.5000", "0.1000", "0.2000", "0.3000", "0.4000", "0.2500", "0.3125"]
    line = validation_line(ROW, {}, improved=True)
    assert line.startswith("validation at step 6: train loss 2.5000  CCC val 0.1000") and line.endswith("(new best)")


def test_resume_command_repeats_the_arguments():
    argv = ["/venv/bin/tsav", "train", "ann dir", "--out", "r"]
    assert resume_command(argv) == "tsav train 'ann dir' --out r --resume"
    assert resume_command([*argv, "--resume"]) == "tsav train 'ann dir' --out r --resume"
    assert "--resume" in resume_command(["pytest", "tests"])


def test_stop_request_catches_sigterm_and_ends_with_its_status():
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest().watch() as request:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert request.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before
    with pytest.raises(SystemExit) as exited:
        stop(signal.SIGTERM, "stopped")
    assert exited.value.code == 143
    with pytest.raises(Interrupted):  # a KeyboardInterrupt: the command line exits 130
        stop(signal.SIGINT, "stopped")


def _interrupt_when(process: subprocess.Popen, pattern: str) -> list[str]:
    """Output lines until one matches ``pattern``, then SIGINT, then the rest."""
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if re.search(pattern, line):
            process.send_signal(signal.SIGINT)
            break
    lines += process.stdout.read().splitlines()
    process.wait(timeout=120)
    return lines


@pytest.mark.usefixtures("one_thread")
def test_ctrl_c_saves_a_state_that_resume_finishes_exactly(synth, cache, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "tsav_deploy.cli", "train", str(synth.annotations_dir), "--cache", str(cache)]
    command += ["--out", str(out), *OPTIONS, "--workers", "64"]
    # One torch thread, as in this process (one_thread): the same arithmetic, so the same weights.
    env = os.environ | {"OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = _interrupt_when(process, rf"validation: step [3-6]/{STEPS} ")
    print("\n".join(lines))
    assert process.returncode == 130, lines
    assert sum("worker processes, not 64" in line for line in lines) == 1
    assert not [line for line in lines if "Warning" in line or "Traceback" in line]
    (stopped,) = [line for line in lines if "continue with:" in line]
    assert stopped.startswith("SIGINT: stopped at step ") and f"state saved in {out / 'state.pt'}" in stopped
    state = torch.load(out / "state.pt", weights_only=True)
    assert 3 <= state["phase"]["step"] < STEPS

    resume = shlex.split(stopped.split("continue with: ")[1])
    assert resume[:2] == ["tsav", "train"] and resume[-1] == "--resume"
    done = subprocess.run(
        [sys.executable, "-m", "tsav_deploy.cli", *resume[1:]], capture_output=True, text=True, env=env, timeout=300
    )
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stdout + done.stderr
    assert f"validation: resumed at step {state['phase']['step']}" in done.stdout
    assert re.search(rf"validation: {STEPS}/{STEPS} steps, \d+ in ", done.stdout)

    whole = tmp_path / "whole"
    settings = dict(arch="reduced", steps=STEPS, batch=8, micro_batch=4, val_every=4, val_stride=16, patience=0)
    train(TrainConfig(annotations=synth.annotations_dir, cache=cache, out=whole, workers=0, device="cpu", **settings))
    mine, theirs = (torch.load(p / "state.pt", weights_only=True)["model"] for p in (out, whole))
    assert mine.keys() == theirs.keys()
    different = [k for k in mine if not torch.equal(mine[k], theirs[k])]
    assert not different, different
    losses = [[r["loss"] for r in json.loads((p / "curves.json").read_text())["train"]] for p in (out, whole)]
    assert losses[0] == losses[1] and len(losses[0]) == STEPS


def test_missing_kinetics_weights_name_the_train_option(monkeypatch, tmp_path):
    from tsav_deploy.artifacts import weights
    from tsav_deploy.download import DownloadError
    from tsav_deploy.train.trainer import build_model

    def offline(name, **_):
        raise DownloadError(f"{name}: no network; {weights.REMEDY}")

    monkeypatch.setattr(weights, "resolve", offline)
    config = TrainConfig(annotations=tmp_path, cache=tmp_path, out=tmp_path)
    with pytest.raises(DownloadError, match=r"pass --pretrained PATH \(or --pretrained none\)") as error:
        build_model(config)
    assert "--weights" not in str(error.value)
