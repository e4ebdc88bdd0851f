"""Face detection benchmark: recall and false positives on the labelled frames of the shared recordings
(tests/data/face_labels.json) and on HD / 4K scenes made from them, per video and per face size, for each
face backend / detector, with frames per second on this machine.

    .venv/bin/python scripts/bench_faces.py [--media ../shared/media] [--config dlib:mtcnn ...] [--quick]

``--config BACKEND:DETECTOR[:OPTION=VALUE...]`` (repeatable; default: every dlib detector, dlib HOG with
upsampling at full resolution, and insightface when its pack is present). Options: ``detect_size``
(``none`` for full resolution), ``upsample``, ``min_face``. ``--quick``: the per-frame detector only,
no video runs. Prints Markdown tables (docs/faces.md has the figures).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tsav_deploy import media
from tsav_deploy.faces import detect_video, get_backend
from tsav_deploy.faces.dlib_backend import DlibBackend
from tsav_deploy.faces.evaluation import (
    SIZE_BUCKETS,
    Score,
    bucket_name,
    face_boxes,
    load_labels,
    score_frame,
    score_video,
    stage_scenes,
)
from tsav_deploy.faces.insightface_pack import is_available

ROOT = Path(__file__).resolve().parent.parent
LABELS = ROOT / "tests" / "data" / "face_labels.json"
DEFAULT_CONFIGS = ["dlib:hog", "dlib:hog+cnn", "dlib:hog:detect_size=none:upsample=1", "dlib:cnn", "dlib:mtcnn"]


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
        cpus = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("CPU(s)"))
        return f"{model}, {cpus} CPUs"
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


def make_backend(config: str):
    backend, _, rest = config.partition(":")
    if backend != "dlib":
        return get_backend(backend)
    detector, *options = rest.split(":") if rest else ["mtcnn"]
    kwargs: dict = {}
    for option in options:
        key, value = option.split("=")
        kwargs[key] = None if value == "none" else (float(value) if key == "min_face" else int(value))
    return DlibBackend(detector=detector, **kwargs)


def decode(path: Path, indices: set[int] | None = None) -> dict[int, np.ndarray]:
    with media.iter_frames(path) as stream:
        return {f.index: f.rgb for f in stream if indices is None or f.index in indices}


def run_detector(backend, media_dir: Path, labels) -> tuple[dict[str, Score], dict[str, float]]:
    """``detect`` alone on each labelled frame and on the HD / 4K scenes: scores and seconds per set."""
    scores: dict[str, Score] = {}
    seconds: dict[str, float] = {}

    def measure(name: str, image: np.ndarray, label) -> None:
        start = time.perf_counter()
        found = backend.detect(image)
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
        scores.setdefault(name, Score()).add(score_frame(label, face_boxes(found)))

    for name, frames in labels.items():
        images = decode(media_dir / name, set(frames))
        for index, label in frames.items():
            measure(name, images[index], label)
    stage = decode(media_dir / "stage_and_audience.mp4", set(labels["stage_and_audience.mp4"]))
    for kind in ("1080p", "4k"):
        for scene, label in stage_scenes(stage, labels["stage_and_audience.mp4"], kind):
            measure(f"scene {kind}", scene, label)
    return scores, seconds


def run_videos(backend, media_dir: Path, labels) -> tuple[dict[str, Score], float]:
    """The video face stage as ``tsav annotate`` runs it (detection, following, rescue); frames/s with decoding."""
    scores, frames, seconds = {}, 0, 0.0
    for name, video_labels in labels.items():
        start = time.perf_counter()
        with media.iter_frames(media_dir / name) as stream:
            per_frame = list(detect_video(backend, (f.rgb for f in stream)))
        seconds += time.perf_counter() - start
        frames += len(per_frame)
        scores[name] = score_video(video_labels, per_frame)
    return scores, frames / seconds


def table(rows: list[tuple[str, str, Score]]) -> str:
    names = [bucket_name(b) for b in SIZE_BUCKETS]
    head = "| config | set | recall | " + " | ".join(f"{n} px" for n in names) + " | false pos. | frames |"
    lines = [head, "|" + "---|" * (5 + len(names))]
    for config, name, s in rows:
        buckets = " | ".join(f"{s.found[n]}/{s.faces[n]}" if s.faces[n] else "–" for n in names)
        lines.append(f"| {config} | {name} | {s.recall:.3f} | {buckets} | {s.false_positives} | {s.frames} |")
    return "\n".join(lines)


def total(scores: dict[str, Score], scenes: bool) -> Score:
    out = Score()
    for name, score in scores.items():
        if name.startswith("scene") == scenes:
            out.add(score)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--media", type=Path, default=ROOT.parent / "shared" / "media")
    parser.add_argument("--config", action="append")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if not args.media.is_dir():
        sys.exit(f"bench_faces: no recordings in {args.media}")
    labels = load_labels(LABELS)
    configs = args.config or DEFAULT_CONFIGS + (["insightface"] if is_available() else [])
    print(f"CPU: {cpu_name()}\n")
    detector_rows, video_rows, speeds = [], [], []
    for config in configs:
        backend = make_backend(config)
        scores, seconds = run_detector(backend, args.media, labels)
        detector_rows += [(config, n, s) for n, s in scores.items()] + [
            (config, "**all videos**", total(scores, False))
        ]
        videos = [n for n in scores if not n.startswith("scene")]
        speed = [f"{sum(scores[n].frames for n in videos) / sum(seconds[n] for n in videos):.1f}"]
        speed += [f"{scores[n].frames / seconds[n]:.2f}" for n in ("scene 1080p", "scene 4k")]
        video_score, fps = (None, float("nan")) if args.quick else run_videos(backend, args.media, labels)
        if video_score is not None:
            video_rows += [(config, n, s) for n, s in video_score.items()] + [
                (config, "**all**", total(video_score, False))
            ]
        speeds.append((config, speed, fps))
        print(f"{config}: detector recall {total(scores, False).recall:.3f}", file=sys.stderr, flush=True)
    print("## Detector alone, on the labelled frames and the HD / 4K scenes\n")
    print(table(detector_rows))
    if video_rows:
        print("\n## Video face stage (as tsav annotate runs it), on the labelled frames\n")
        print(table(video_rows))
    print(
        "\n## Speed\n\n| config | detect, 360p-700p frames/s | 1080p scenes/s | 4K scenes/s | video stage frames/s (with decoding) |"
    )
    print("|---|---|---|---|---|")
    for config, speed, fps in speeds:
        print(f"| {config} | {' | '.join(speed)} | {fps:.1f} |")


if __name__ == "__main__":
    main()
