"""Frames per second of the face frontend, stage by stage, on one video (a benchmark, not a test).

    python scripts/bench_faces.py ../shared/media/pexels_woman_silent_audio.mp4 [--detector hog]

Stages: decode (PyAV to RGB), detection (full-frame detector passes and rescue searches, including the
landmark fit of what they find), landmarks (following faces between detections), identity (embeddings
at tracklet starts), tracker (shot-cut check, matching), alignment+mask. Each figure is frames divided
by the seconds that stage took over the whole video; "frontend" is frames over the sum, run in one
thread (decoding in a second thread would overlap with the rest on a second core).
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict
from typing import ClassVar

from tsav_deploy import media
from tsav_deploy.faces import VideoFaceTracker, crop_and_mask, get_backend, track_faces
from tsav_deploy.faces.dlib_backend import DETECTORS
from tsav_deploy.faces.video import DETECT_EVERY


class TimedBackend:
    """Delegates to a face backend, adding up the seconds spent in each of its steps and counting calls."""

    STAGES: ClassVar[dict[str, str]] = {
        "detect": "detection",
        "rescue": "detection",
        "refit": "landmarks",
        "embed": "identity",
    }

    def __init__(self, backend, seconds: defaultdict) -> None:
        self._backend = backend
        self._seconds = seconds
        self.calls: defaultdict[str, int] = defaultdict(int)
        self.name = backend.name
        self.identity_threshold = backend.identity_threshold

    def __getattr__(self, method: str):
        inner = getattr(self._backend, method)
        stage = self.STAGES.get(method)
        if stage is None:
            return inner

        def timed(*args, **kwargs):
            self.calls[method] += 1
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self._seconds[stage] += time.perf_counter() - start

        return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video")
    parser.add_argument("--faces", default="dlib", help="auto, insightface or dlib (default: dlib)")
    parser.add_argument("--detector", default="hog+cnn", choices=DETECTORS, help="dlib detector")
    parser.add_argument("--detect-every", type=int, default=DETECT_EVERY)
    parser.add_argument("--detect-size", type=int, default=640)
    args = parser.parse_args()

    seconds: defaultdict[str, float] = defaultdict(float)
    backend = TimedBackend(get_backend(args.faces, detector=args.detector, detect_size=args.detect_size), seconds)
    tracker = VideoFaceTracker(backend, detect_every=args.detect_every)
    per_frame = []
    with media.iter_frames(args.video) as stream:
        frames = iter(stream)
        while True:
            start = time.perf_counter()
            frame = next(frames, None)
            seconds["decode"] += time.perf_counter() - start
            if frame is None:
                break
            start = time.perf_counter()
            faces = tracker.update(frame.rgb)
            seconds["tracker"] += time.perf_counter() - start
            start = time.perf_counter()
            for face in faces:
                crop_and_mask(frame.rgb, face.landmarks68)
            seconds["alignment+mask"] += time.perf_counter() - start
            per_frame.append(faces)
    # The tracker's time includes the backend steps timed inside it.
    seconds["tracker"] -= seconds["detection"] + seconds["landmarks"] + seconds["identity"]
    count = len(per_frame)
    tracks = track_faces(per_frame, backend.identity_threshold)
    found = sum(1 for faces in per_frame if faces)
    print(f"{args.video}: {count} frames, faces in {found / max(count, 1):.1%}, {len(tracks)} track(s)")
    print(f"backend {backend.name} (detector {args.detector}), detection every {args.detect_every} frames")
    print("  calls: " + ", ".join(f"{method} {n}" for method, n in sorted(backend.calls.items())))
    for stage in ("decode", "detection", "landmarks", "identity", "tracker", "alignment+mask"):
        rate = count / seconds[stage] if seconds[stage] > 0 else float("inf")
        print(f"  {stage:<15} {rate:9.1f} frames/s   ({seconds[stage]:.2f} s)")
    total = sum(seconds.values())
    print(f"  {'frontend':<15} {count / total:9.1f} frames/s   ({total:.2f} s)")


if __name__ == "__main__":
    main()
