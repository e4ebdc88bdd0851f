"""Data parallel training (torch.distributed, gloo on CPU) gives the loss curve of one process on the
same global batch, and ``--resume`` continues a run exactly."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import torch.multiprocessing as mp

from tsav_deploy.train.dataset import StepSchedule
from tsav_deploy.train.trainer import TrainConfig, train

from helpers.synthetic_data import single_thread_torch

STEPS = 3


pytestmark = pytest.mark.usefixtures("one_thread")


def _config(synth, cache, out, **overrides) -> TrainConfig:
    settings = dict(
        annotations=synth.annotations_dir,
        cache=cache,
        out=out,
        arch="reduced",
        steps=STEPS,
        batch=8,
        micro_batch=4,
        val_every=STEPS,
        val_stride=16,
        workers=0,
        patience=0,
        device="cpu",
    )
    return TrainConfig(**(settings | overrides))


def _losses(out) -> np.ndarray:
    rows = json.loads((out / "curves.json").read_text())["train"]
    return np.array([[r["loss"], r["expression"], r["valence"], r["arousal"], r["au"]] for r in rows])


def _worker(rank: int, world: int, port: int, config: TrainConfig) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world)
    )
    with single_thread_torch():
        train(config)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def single_run(synth, cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    train(_config(synth, cache, out))
    return out


def test_schedule_shards_micro_batches_over_ranks():
    one = StepSchedule(50, 16, 4, seed=1)
    two = [StepSchedule(50, 16, 4, seed=1, rank=r, world=2) for r in range(2)]
    for step in range(5):  # crosses an epoch boundary (50 samples, 16 per step)
        everything = one.micro_batches(step)
        assert two[0].micro_batches(step) == everything[0::2] and two[1].micro_batches(step) == everything[1::2]
    rows = np.concatenate([one.step_rows(s) for s in range(4)])[:50]
    assert sorted(rows.tolist()) == list(range(50))  # one epoch visits every sample once
    with pytest.raises(ValueError, match="multiple of"):
        StepSchedule(50, 12, 4, world=2)


def test_two_processes_match_one(synth, cache, single_run, tmp_path):
    out = tmp_path / "ddp"
    mp.spawn(_worker, args=(2, _free_port(), _config(synth, cache, out)), nprocs=2, join=True)
    single, double = _losses(single_run), _losses(out)
    difference = np.abs(single - double).max()
    print(f"max loss difference, 2 processes vs 1: {difference:.2e}")
    assert single.shape == (STEPS, 5) and difference < 1e-5
    assert json.loads((out / "config.json").read_text())["processes"] == 2


def test_resume_continues_exactly(synth, cache, single_run, tmp_path):
    out = tmp_path / "resumed"
    train(_config(synth, cache, out, steps=STEPS - 1, val_every=1))
    train(_config(synth, cache, out, resume=True))
    np.testing.assert_allclose(_losses(out), _losses(single_run), rtol=0, atol=1e-6)
