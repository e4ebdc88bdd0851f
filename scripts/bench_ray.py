"""Throughput of `tsav annotate --ray local --workers N` against a plain run, in one run (a benchmark).

    python scripts/bench_ray.py EXPORT_DIR VIDEO... [--workers 2] [--short VIDEO] [--repeat 1]

Runs the CLI as a user does (a process each, start-up and model loading included), alternating a
plain run and a Ray run over all VIDEOs into fresh output folders, and prints each run's wall time,
the ratio plain / Ray (above 1: Ray is faster), and whether the files are identical. With
``--short``, the same for that one video with one worker: Ray's overhead (start, actor, transfers).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import pathlib
import subprocess
import sys
import tempfile
import time


def annotate(export: str, videos: list[str], out: pathlib.Path, extra: list[str]) -> float:
    command = [sys.executable, "-m", "tsav_deploy.cli", "annotate", *videos, "--model", export, "--out", str(out)]
    command += ["--faces", "dlib", "--no-plot", *extra]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def same_files(a: pathlib.Path, b: pathlib.Path) -> bool:
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.suffix in (".txt", ".csv"))
    return bool(names) and all(filecmp.cmp(a / n, b / n, shallow=False) for n in names)


def compare(export: str, videos: list[str], workers: int, repeat: int, folder: pathlib.Path, label: str) -> None:
    for k in range(repeat):
        plain_out, ray_out = folder / f"{label}-plain-{k}", folder / f"{label}-ray-{k}"
        plain = annotate(export, videos, plain_out, [])
        ray = annotate(export, videos, ray_out, ["--ray", "local", "--workers", str(workers)])
        print(
            json.dumps(
                {
                    "videos": len(videos),
                    "workers": workers,
                    "plain_s": round(plain, 1),
                    "ray_s": round(ray, 1),
                    "plain_over_ray": round(plain / ray, 2),
                    "identical_files": same_files(plain_out, ray_out),
                }
            ),
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("export_dir")
    parser.add_argument("videos", nargs="+")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--short")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        compare(args.export_dir, args.videos, args.workers, args.repeat, folder, "all")
        if args.short:
            compare(args.export_dir, [args.short], 1, args.repeat, folder, "short")


if __name__ == "__main__":
    main()
