"""Agreement of fast annotation paths with full-rate float32 (issue 7's fast-mode criterion; a benchmark).

    python scripts/bench_agreement.py EXPORT_DIR VIDEO... [--stride 4 --stride 8] [--int8] [--runtime onnx]

Annotates each video once at full rate with the float32 engine of ``--runtime`` (openvino or onnx;
the reference), then with every ``--stride`` (and, with ``--int8``, that runtime's int8 engine at
full rate and at every stride), and prints per
video and pooled over all frames: valence/arousal CCC, expression argmax agreement and AU decision
agreement with the reference, and each run's wall time. Faces are found once per video (pass 1 does
not depend on the engine or the stride), so only the network part differs between runs.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from tsav_deploy.export.int8 import agreement
from tsav_deploy.faces import get_backend
from tsav_deploy.pipeline.offline import AnnotateOptions, find_people, predict_people
from tsav_deploy.runtime import Engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir")
    parser.add_argument("videos", nargs="+")
    parser.add_argument("--stride", type=int, action="append", default=[])
    parser.add_argument("--int8", action="store_true")
    parser.add_argument("--runtime", choices=("openvino", "onnx"), default="openvino")
    args = parser.parse_args()

    engines = {"fp32": Engine.load(args.export_dir, engine=args.runtime)}
    if args.int8:
        engines["int8"] = Engine.load(args.export_dir, engine=f"{args.runtime}-int8")
    runs = [("fp32", s) for s in args.stride] + [("int8", s) for s in [1, *args.stride] if args.int8]
    backend = get_backend("dlib")
    logits: dict[tuple[str, int], list[np.ndarray]] = {run: [] for run in [("fp32", 1), *runs]}
    seconds: dict[tuple[str, int], float] = dict.fromkeys(logits, 0.0)
    for video in args.videos:
        people = find_people(video, backend, AnnotateOptions())
        for precision, stride in logits:
            start = time.perf_counter()
            out, _ = predict_people(video, people, engines[precision], AnnotateOptions(stride=stride))
            seconds[(precision, stride)] += time.perf_counter() - start
            logits[(precision, stride)].append(out[0])
        reference = logits[("fp32", 1)][-1]
        for run in runs:
            print(json.dumps({"video": video, "run": run, **agreement(reference, logits[run][-1])}))
    reference = np.concatenate(logits[("fp32", 1)])
    for run in [("fp32", 1), *runs]:
        frames_per_s = len(reference) / seconds[run]
        print(
            json.dumps(
                {
                    "pooled": run,
                    "frames": len(reference),
                    "network_pass_s": round(seconds[run], 2),
                    "network_pass_fps": round(frames_per_s, 2),
                    **agreement(reference, np.concatenate(logits[run])),
                }
            )
        )


if __name__ == "__main__":
    main()
