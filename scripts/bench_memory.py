"""Peak memory against video length (issue 7: a 10-minute video within 100 MB of a 1-minute one, apart
from the audio track). A benchmark, not a test.

    python scripts/bench_memory.py SOURCE_VIDEO --weights CKPT [--minutes 1 --minutes 10] [--stride 8]

Loops SOURCE_VIDEO (video and audio, re-encoded with PyAV) to each length, annotates each in a fresh
process (`tsav annotate`) and prints that process's peak RSS. The audio track is read whole (mono
int16 at 44.1 kHz: 5.3 MB a minute; the aural windows are cut from it), which the issue allows
for; the script prints that size next to the difference. The stride only thins the network's work, not what the
frontend holds, so a larger one keeps the run short.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import av
import numpy as np

AUDIO_BYTES_PER_S = 44_100 * 2  # the mono int16 track the pipeline holds (frontend.audio_track)


def loop_video(source: pathlib.Path, target: pathlib.Path, seconds: float) -> None:
    """Write ``source`` repeated to ``seconds``: H.264 video, AAC audio (mono, 44.1 kHz)."""
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(source)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=44_100)
        audio = np.concatenate([r.to_ndarray()[0] for f in container.decode(audio=0) for r in resampler.resample(f)])
    n_frames = int(seconds * float(rate))
    with av.open(str(target), "w") as out:
        video = out.add_stream("libx264", rate=rate, options={"preset": "ultrafast", "crf": "23"})
        video.width, video.height, video.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        sound = out.add_stream("aac", rate=44_100, layout="mono")
        for k in range(n_frames):
            out.mux(video.encode(av.VideoFrame.from_ndarray(frames[k % len(frames)], format="rgb24")))
        out.mux(video.encode(None))
        samples = np.resize(audio, int(seconds * 44_100)).astype(np.float32)
        chunk = 1024 * 64
        for start in range(0, len(samples), chunk):
            frame = av.AudioFrame.from_ndarray(samples[None, start : start + chunk], format="flt", layout="mono")
            frame.sample_rate = 44_100
            frame.pts = start
            out.mux(sound.encode(frame))
        out.mux(sound.encode(None))


def annotate_peak_mb(video: pathlib.Path, weights: str, stride: int, out: pathlib.Path) -> float:
    """Peak RSS (MB) of a `tsav annotate` process on ``video``, from the kernel's accounting of that child."""
    cmd = [
        sys.executable,
        "-m",
        "tsav_deploy.cli",
        "annotate",
        str(video),
        "--weights",
        weights,
        "--faces",
        "dlib",
        "--stride",
        str(stride),
        "--out",
        str(out),
        "--no-plot",
        "--overwrite",
    ]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"annotate failed on {video}: {process.stderr.read().decode()[-500:]}")
    return usage.ru_maxrss * 1024 / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("--weights", required=True)
    parser.add_argument("--minutes", type=float, action="append", default=[])
    parser.add_argument("--stride", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tsav-memory-") as scratch:
        peaks = {}
        for minutes in args.minutes or [1.0, 10.0]:
            video = pathlib.Path(scratch) / f"looped_{minutes:g}min.mp4"
            loop_video(pathlib.Path(args.source), video, minutes * 60)
            peaks[minutes] = annotate_peak_mb(video, args.weights, args.stride, pathlib.Path(scratch) / "out")
            print(
                json.dumps(
                    {
                        "minutes": minutes,
                        "peak_rss_mb": round(peaks[minutes], 1),
                        "audio_track_mb": round(minutes * 60 * AUDIO_BYTES_PER_S / 1e6, 1),
                    }
                ),
                flush=True,
            )
        shortest, longest = min(peaks), max(peaks)
        audio = (longest - shortest) * 60 * AUDIO_BYTES_PER_S / 1e6
        growth = peaks[longest] - peaks[shortest]
        print(
            json.dumps(
                {
                    "growth_mb": round(growth, 1),
                    "audio_growth_mb": round(audio, 1),
                    "growth_apart_from_audio_mb": round(growth - audio, 1),
                }
            )
        )


if __name__ == "__main__":
    main()
