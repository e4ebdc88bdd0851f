"""Throughput and latency of `tsav serve` with 1, 4 and 16 concurrent clients against `tsav annotate`
of the same videos back to back, in one run on one machine (a benchmark).

    python scripts/bench_serve.py VIDEO --weights CKPT [--requests 16] [--clients 1 4 16] [--options '...']

``tsav annotate`` runs as a user runs it (one process over REQUESTS copies of VIDEO, start-up and
model loading included), before and after the service's runs (the load of a shared machine drifts).
Between them, one `tsav serve --ray local` (its start-up not counted) answers
REQUESTS uploads of VIDEO at each client count, each client sending its next upload as soon as its
last is answered (tsav_deploy.client.annotate). Printed: one JSON line per run (wall time, frames/s
over all requests, latency p50/p95 per request), the network batches the service formed (callers
per run), the CPU (`lscpu`) and the load average before and after.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

from tsav_deploy.client import annotate


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    found = re.search(r"Model name:\s*(.+)", out)
    return found.group(1).strip() if found else "unknown"


def load() -> str:
    return " ".join(pathlib.Path("/proc/loadavg").read_text().split()[:3])


def cli_back_to_back(
    video: pathlib.Path, requests: int, model: list[str], extra: list[str], folder: pathlib.Path
) -> float:
    links = folder / "videos"
    links.mkdir(parents=True)
    for k in range(requests):  # copies: tsav annotate takes a file once however it is named (links too)
        shutil.copyfile(video, links / f"v{k:03d}{video.suffix}")
    command = [sys.executable, "-m", "tsav_deploy.cli", "annotate", str(links), *model, *extra]
    command += ["--out", str(folder / "out"), "--no-plot"]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def start_service(model: list[str], extra: list[str], folder: pathlib.Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(folder / "serve.log", "w")
    command = [sys.executable, "-m", "tsav_deploy.cli", "serve", *model, *extra, "--port", str(port)]
    process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError((folder / "serve.log").read_text())
        try:
            urllib.request.urlopen(url + "/readyz", timeout=5)
            return process, url
        except OSError:
            time.sleep(1)
    raise TimeoutError("the service did not become ready")


def clients(url: str, video: pathlib.Path, requests: int, n: int) -> tuple[float, list[float], int]:
    def one(_: int) -> tuple[float, int]:
        started = time.perf_counter()
        table = annotate(url, video)
        return time.perf_counter() - started, len(table)

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(one, range(requests)))
    return time.perf_counter() - started, [a[0] for a in answers], sum(a[1] for a in answers)


def callers_per_run(url: str) -> dict:
    """Network runs so far and the callers' batches they joined (both streams)."""
    text = urllib.request.urlopen(url + "/metrics").read().decode()
    total = {
        name: sum(float(v) for v in re.findall(rf"^tsav_network_batch_callers_{name}\{{[^}}]*\}} (\S+)$", text, re.M))
        for name in ("sum", "count")
    }
    return {"runs": total["count"], "callers": total["sum"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("video", type=pathlib.Path)
    parser.add_argument("--weights")
    parser.add_argument("--model")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--options", default="", help="options for both commands, e.g. --faces dlib --detector hog")
    args = parser.parse_args()
    model = ["--weights", args.weights] if args.weights else ["--model", args.model]
    print(
        json.dumps({"cpu": cpu_model(), "cores": os.cpu_count(), "load_before": load(), "video": str(args.video)}),
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        folder = pathlib.Path(tmp)
        # Before and after the service: on a shared machine the load drifts, and the two bracket it.
        cli_walls = [cli_back_to_back(args.video, args.requests, model, args.options.split(), folder / "before")]
        process, url = start_service(model, args.options.split(), folder)
        try:
            frames, before = 0, callers_per_run(url)
            for n in args.clients:
                wall, latencies, frames = clients(url, args.video, args.requests, n)
                p50, p95 = np.percentile(latencies, [50, 95])
                after = callers_per_run(url)
                runs = after["runs"] - before["runs"]
                row = {"run": f"tsav serve, {n} clients", "requests": args.requests, "wall_s": round(wall, 1)}
                row |= {
                    "frames_per_s": round(frames / wall, 2),
                    "latency_p50_s": round(p50, 2),
                    "latency_p95_s": round(p95, 2),
                }
                row |= {
                    "network_runs": runs,
                    "mean_callers_per_run": round((after["callers"] - before["callers"]) / runs, 2),
                }
                print(json.dumps(row), flush=True)
                before = after
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=300)
        cli_walls.append(cli_back_to_back(args.video, args.requests, model, args.options.split(), folder / "after"))
        for when, wall in zip(("before", "after"), cli_walls):
            row = {"run": f"tsav annotate, back to back, {when}", "requests": args.requests, "wall_s": round(wall, 1)}
            print(
                json.dumps(
                    row | {"frames_per_s": round(frames / wall, 2), "frames_per_request": frames // args.requests}
                )
            )
    print(json.dumps({"load_after": load()}))


if __name__ == "__main__":
    main()
