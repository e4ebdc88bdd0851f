"""The synthetic dataset and its preprocess cache, made once per test session and shared by the
training test files (each wraps these in a session fixture)."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Iterator

import torch

from tsav_deploy.train.preprocess import preprocess
from tsav_deploy.train.synthetic import SyntheticDataset, make_dataset

_made: dict[str, object] = {}
VIDEOS, SECONDS = 6, 4.0


@contextlib.contextmanager
def single_thread_torch() -> Iterator[None]:
    # The test machines have 2 shared cores: OpenMP threads spinning against other processes make the
    # small CPU network several times slower than one thread.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def synthetic_dataset(tmp_path_factory) -> SyntheticDataset:
    if "dataset" not in _made:
        _made["dataset"] = make_dataset(tmp_path_factory.mktemp("synthetic"), videos=VIDEOS, seconds=SECONDS, seed=0)
    return _made["dataset"]


def synthetic_cache(tmp_path_factory) -> pathlib.Path:
    if "cache" not in _made:
        dataset = synthetic_dataset(tmp_path_factory)
        cache = tmp_path_factory.mktemp("cache")
        report = preprocess(dataset.videos_dir, cache, faces="dlib", detector="hog", workers=1)
        assert not report.failed, report.failed
        _made["cache"] = cache
    return _made["cache"]
