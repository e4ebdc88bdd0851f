"""Latency and throughput of live annotation, and its agreement with offline annotation (a benchmark).

    python scripts/bench_live.py EXPORT_DIR VIDEO [--engine openvino-int8] [--detector hog]
        [--lookahead 5 --lookahead 2 --lookahead 0]

For every ``--lookahead`` the video is played as a camera would deliver it (``--realtime``) through
``Predictor.stream_frames``; printed per run, one JSON line each: ``latency_s`` (wall-clock time from
a frame's arrival to its row) median and 95th percentile, over all frames and over the steady
part (from 5 s on, where a window reaches its full look-ahead, to the look-ahead before the end), the strides used (frames per stride) and
the stride of the last half of the stream (what it settles at), frames dropped, and the agreement of
the main person's logits with ``tsav annotate --stride 1`` of the same engine (expression and AU
agreement, valence/arousal CCC and largest difference; frames dropped are left out). Then one line
comparing throughput with the file read as fast as the engine allows (no ``--realtime``) against
``Predictor.predict`` of the same file, run back to back, and the CPU's name.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time

import numpy as np

from tsav_deploy.api import Predictor
from tsav_deploy.export.int8 import agreement
from tsav_deploy.pipeline.offline import AnnotateOptions, find_people, predict_people


def cpu_name() -> str:
    lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name")), "unknown")


def live_logits(predictor: Predictor, video: str, **kwargs) -> tuple[list, object]:
    stream = predictor.stream_frames(video, **kwargs)
    return list(stream), stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir")
    parser.add_argument("video")
    parser.add_argument("--engine", default="openvino-int8")
    parser.add_argument("--detector", default="hog")
    parser.add_argument("--lookahead", type=float, action="append", default=[])
    args = parser.parse_args()
    predictor = Predictor(model=args.export_dir, engine=args.engine, faces="dlib", detector=args.detector)
    people = find_people(args.video, predictor.face_backend, AnnotateOptions())
    offline, _ = predict_people(args.video, people, predictor.engine, AnnotateOptions())
    offline = offline[0]
    print(json.dumps({"cpu": cpu_name(), "video": args.video, "engine": args.engine, "frames": len(offline)}))
    for lookahead in args.lookahead or [5.0, 2.0, 0.0]:
        frames, stream = live_logits(predictor, args.video, audio_lookahead=lookahead, realtime=True)
        latency = np.array([f.latency_s for f in frames])
        # From 5 s on a window reaches its full look-ahead (before, it holds only the past), until
        # the look-ahead runs past the end, where the stream's end makes the last frames final.
        end = frames[-1].time
        steady = np.array([f.latency_s for f in frames if 5.0 <= f.time <= end - lookahead] or [np.nan])
        strides = [f.stride for f in frames]
        settled = int(np.median(strides[len(strides) // 2 :]))
        indices = np.array([f.index for f in frames])
        logits = np.stack([f.entries[0].logits for f in frames])
        print(
            json.dumps(
                {
                    "audio_lookahead": lookahead,
                    "latency_s_median": round(float(np.median(latency)), 3),
                    "latency_s_p95": round(float(np.percentile(latency, 95)), 3),
                    "steady_latency_s_median": round(float(np.median(steady)), 3),
                    "steady_latency_s_p95": round(float(np.percentile(steady, 95)), 3),
                    "strides": {str(k): strides.count(k) for k in sorted(set(strides))},
                    "settled_stride": settled,
                    "dropped": stream.dropped,
                    "agreement_with_offline": agreement(offline[indices], logits),
                }
            ),
            flush=True,
        )
    started = time.perf_counter()
    predictor.predict(args.video)
    offline_s = time.perf_counter() - started
    started = time.perf_counter()
    frames, _ = live_logits(predictor, args.video)
    live_s = time.perf_counter() - started
    print(
        json.dumps(
            {
                "throughput": "file read as fast as the engine allows",
                "frames": len(frames),
                "live_frames_per_s": round(len(frames) / live_s, 2),
                "annotate_frames_per_s": round(len(offline) / offline_s, 2),
                "live_over_annotate": round(offline_s / live_s, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
