"""Benchmark the training loader: augmented clips (+ aural windows, pseudo labels, collation) per second
per CPU core, read from a preprocess cache. Clips leave the loader as uint8 crops and are normalized on
the training device; the time that normalization takes on a CPU is reported separately.

    python scripts/bench_loader.py --cache CACHE --annotations ANNOTATIONS [--clips 2000] [--workers 0]

Without ``--cache`` a synthetic dataset is generated and preprocessed in a temporary folder first.
With ``--workers 0`` everything runs in this process on one thread, so clips per CPU-second is the
per-core figure; with ``--workers N`` the wall-clock rate of N loader processes is reported too.
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile
import time

import cv2
import torch

from tsav_deploy.train.cache import open_cache
from tsav_deploy.train.dataset import (
    ClipDataset,
    StepSchedule,
    build_samples,
    fit_histograms,
    normalization_table,
    normalize_batch,
)
from tsav_deploy.train.labels import read_annotations
from tsav_deploy.train.trainer import _loader, _StepBatches


def synthetic_cache(folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    from tsav_deploy.train.preprocess import preprocess
    from tsav_deploy.train.synthetic import make_dataset

    dataset = make_dataset(folder / "synthetic", videos=4, seconds=4.0, validation=1)
    preprocess(dataset.videos_dir, folder / "cache", faces="dlib")
    return folder / "cache", dataset.annotations_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=pathlib.Path)
    parser.add_argument("--annotations", type=pathlib.Path)
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if args.cache is None:
            args.cache, args.annotations = synthetic_cache(pathlib.Path(tmp))
        cache = open_cache(args.cache)
        tables = read_annotations(args.annotations)["train"]
        histograms = fit_histograms(tables, cache)
        samples = build_samples(tables, cache, training=True, histograms=histograms)
        dataset = ClipDataset(cache, samples, histograms=histograms)
        schedule = StepSchedule(len(samples), args.batch, args.batch)
        steps = max(1, args.clips // args.batch)
        next(iter(_loader(dataset, _StepBatches(schedule, 0, 1), 0, torch.device("cpu"))))  # warm: open the memory maps
        loader = _loader(dataset, _StepBatches(schedule, 1, steps + 1), args.workers, torch.device("cpu"))
        wall, cpu = time.perf_counter(), time.process_time()
        batches = list(loader)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        clips = sum(len(batch["crops"]) for batch in batches)
        table = normalization_table()
        normalize = time.process_time()
        for batch in batches:
            normalize_batch(batch["crops"], table)
        normalize = time.process_time() - normalize
    print(
        f"{clips} augmented clips from {args.cache} ({len(samples)} samples), batch {args.batch}, workers {args.workers}"
    )
    print(f"wall: {clips / wall:.0f} clips/s")
    if args.workers == 0:
        print(f"per CPU core: {clips / cpu:.0f} clips per CPU-second (this process's CPU time)")
    else:
        print(f"per loader process: {clips / wall / args.workers:.0f} clips/s")
    print(
        f"normalizing those clips on this CPU (done on the training device): {clips / normalize:.0f} clips per CPU-second"
    )


if __name__ == "__main__":
    main()
