"""``tsav bench``: frames/s of every stage of annotation, end to end, peak memory, and the model-bound
ceiling measured in the same run (issues 4 and 7).

The ceiling is the machine's matrix-multiply rate at the engine's precision (large GEMMs on every core
torch uses, measured just before and just after the pipeline; the higher of the two counts) divided by
the network's FLOPs per output frame, counted from the model configuration (a reduced network gets
its own ceiling). With ``--stride K`` the network runs on one frame in K, so the ceiling in output
frames/s is K times higher. Every stage's frames/s is also given as a multiple of the ceiling
(``x_ceiling``), the network stages also as the share of the matmul rate they reach.

Stages run the code annotation runs. The end-to-end run is :func:`annotate_video` plus the writers, with
the face backend's and the engine's calls timed from outside (detection, landmarks, identity, visual,
aural, fusion) and the writers timed around ``Annotation.save``. Pass 1 (decode, faces), pass 2's
alignment+mask and clips (between network batches on the CPU, beside them with a GPU engine), and
audio and mel are timed in passes of their own through the same functions (``iter_frames``,
``detect_video``, ``track_faces``, ``face_crop``, ``ClipAssembler.push``, ``audio_track`` and
``SpecWindows.frame_windows``: "audio" decodes and resamples the track, "mel" cuts every target
frame's window from it by the authors' rule).
Without a model only the frontend is measured (issue 4's benchmark):
"frontend" is then pass 1 as annotation runs it plus pass 2's decode, alignment and clips plus audio and mel.

"faces" is pass 1's wall time less decoding. Its parts are the time spent in each call: detection runs
in a thread beside the landmark fits and identity, so detection + landmarks + identity + tracking can
add up to more than "faces".
"""

from __future__ import annotations

import os
import pathlib
import resource
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from .annotate import AnnotateOptions, annotate_video, target_frames
from .audio import SpecWindows
from .clips import ClipAssembler
from .constants import CLIP_SHAPE, SPEC_SHAPE
from .engine.results import Annotation
from .faces import FaceBackend, detect_video, select_tracks, track_faces
from .frontend import FaceTimeline, audio_track, face_crop, video_duration
from .media import iter_frames
from .model import TSAV, ModelConfig
from .runtime import Engine

# Stages in report order; "faces" is pass 1 less decoding: detection, landmarks, identity (partly
# overlapping) and tracking (grouping tracklets into people).
FRONTEND_STAGES = (
    "decode",
    "faces",
    "detection",
    "landmarks",
    "identity",
    "tracking",
    "alignment+mask",
    "clips",
    "audio",
    "mel",
)
NETWORK_STAGES = ("visual", "aural", "fusion")
# What the face backend's calls are (detection includes the landmark fit of what it finds).
_BACKEND_STAGES = {"detect": "detection", "rescue": "detection", "refit": "landmarks", "embed": "identity"}
# Large enough to run at the GEMM kernels' full rate, small enough for ~0.1 s per product (the faster
# low-precision kernels need the larger size for a measurable product).
_MATMUL_SIZE = {"fp32": 2048, "fp16": 4096, "bf16": 4096, "int8": 4096}


def count_flops(call: Callable, *inputs: torch.Tensor) -> int:
    """FLOPs of one call (a multiply-add counts two), as torch's operator-level counter sees them."""
    with FlopCounterMode(display=False) as counter:
        call(*inputs)
    return int(counter.get_total_flops())


def network_flops(config: ModelConfig) -> dict[str, int]:
    """FLOPs of one visual clip, one aural window and one fusion row of the network ``config`` builds.

    Counted on the meta device: shapes only, no weights and no arithmetic, so the paper network
    costs nothing to count.
    """
    with torch.device("meta"):
        model = TSAV(config).eval()
        clip, spec = torch.empty(1, *CLIP_SHAPE), torch.empty(1, *SPEC_SHAPE)
        features = torch.empty(1, config.widths[3])
    return {
        "visual": count_flops(model.visual, clip),
        "aural": count_flops(model.aural, spec),
        "fusion": count_flops(model.fusion, features, features),
    }


def matmul_gflops(precision: str = "fp32", device: str = "cpu", seconds: float = 1.0) -> float:
    """The best rate (GFLOP/s; int8: GOP/s) of square GEMMs at ``precision`` over about ``seconds``."""
    n = _MATMUL_SIZE[precision]
    if precision == "int8":
        multiply = _onnxruntime_int8_matmul(n)
    else:
        dev = torch.device(device)
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        a, b = torch.randn(n, n, device=dev).to(dtype), torch.randn(n, n, device=dev).to(dtype)

        def multiply() -> None:
            torch.matmul(a, b)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)

    best = 0.0
    multiply()  # warm-up: kernel selection, page faults
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or best == 0.0:
        start = time.perf_counter()
        multiply()
        best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best / 1e9


def _onnxruntime_int8_matmul(n: int) -> Callable[[], None]:
    """A uint8 x int8 -> int32 GEMM in ONNX Runtime: the integer kernels the int8 engine's convolutions
    run on (VNNI/AMX where present; torch's own int8 matmul does not use them on CPU)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.integers(-128, 128, (n, n), dtype=np.int8), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])],
        "int8_gemm",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"a": rng.integers(0, 256, (n, n), dtype=np.uint8)}
    return lambda: session.run(None, feed)


def peak_rss_mb() -> float:
    """This process's resident-set high-water mark in MB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6


class _Clock:
    """Seconds and item counts per stage name (pass 1 times calls from two threads)."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.items: defaultdict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def timed(self, stage: str, call: Callable, items: Callable[..., int] = lambda *a: 0) -> Callable:
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds[stage] += time.perf_counter() - start
                    self.items[stage] += items(*args)

        return run


class _TimedBackend:
    """A face backend whose detection, landmark and identity calls are timed; the rest passes through."""

    def __init__(self, backend: FaceBackend, clock: _Clock) -> None:
        self._backend, self._clock = backend, clock

    def __getattr__(self, name: str):
        inner = getattr(self._backend, name)
        stage = _BACKEND_STAGES.get(name)
        return inner if stage is None else self._clock.timed(stage, inner)


class _TimedEngine:
    """An engine whose visual, aural and fusion calls are timed (with the clips/windows they ran)."""

    def __init__(self, engine: Engine, clock: _Clock) -> None:
        self._engine = engine
        batch = lambda x, *rest: len(x)  # noqa: E731 - the item count of a stage is its batch size
        for stage in NETWORK_STAGES:
            setattr(self, stage, clock.timed(stage, getattr(engine, stage), batch))

    def __getattr__(self, name: str):
        return getattr(self._engine, name)


@dataclass
class BenchReport:
    """What one ``tsav bench`` run measured; :meth:`to_dict` is the ``--json`` output."""

    video: str
    frames: int
    video_seconds: float
    people: int
    targets: int
    options: AnnotateOptions
    face_backend: str
    engine: dict | None
    precision: str
    flops: dict[str, int]  # per clip / window / fusion row
    network: str  # "paper" or the reduced configuration
    matmul_gflops: list[float]  # before and after the pipeline
    seconds: dict[str, float]  # per stage
    items: dict[str, int]  # clips / windows / rows per network stage
    end_to_end_s: float | None
    frontend_s: float
    peak_rss_mb: float
    warnings: list[str] = field(default_factory=list)

    @property
    def flops_per_frame(self) -> float:
        """Network FLOPs per output frame at this stride and number of people."""
        per_target = self.people * (self.flops["visual"] + self.flops["fusion"]) + self.flops["aural"]
        return per_target * self.targets / max(self.frames, 1)

    @property
    def ceiling_fps(self) -> float:
        return max(self.matmul_gflops) * 1e9 / self.flops_per_frame

    def fps(self, seconds: float) -> float | None:
        """Frames per second of a stage; None for a stage that did not run (no time at all)."""
        return self.frames / seconds if seconds > 0 else None

    def to_dict(self) -> dict:
        ceiling = self.ceiling_fps
        stages = {}
        for name, seconds in self.seconds.items():
            fps = self.fps(seconds)
            entry = {"seconds": round(seconds, 4), "fps": _round(fps, 2), "x_ceiling": _round(fps and fps / ceiling, 3)}
            if name in NETWORK_STAGES and seconds > 0:
                rate = self.items[name] * self.flops[name] / seconds / 1e9
                entry |= {
                    "items": self.items[name],
                    "items_per_s": round(self.items[name] / seconds, 2),
                    "gflops": round(rate, 1),
                    "fraction_of_matmul": round(rate / max(self.matmul_gflops), 3),
                }
            stages[name] = entry
        result = {
            "video": self.video,
            "frames": self.frames,
            "video_seconds": round(self.video_seconds, 3),
            "people": self.people,
            "stride": self.options.stride,
            "batch_size": self.options.batch_size,
            "targets": self.targets,
            "face_backend": self.face_backend,
            "engine": self.engine,
            "threads": torch.get_num_threads(),
            "ceiling": {
                "precision": self.precision,
                "matmul_gflops": [round(r, 1) for r in self.matmul_gflops],
                "network": self.network,
                "gflop": {part: round(f / 1e9, 4) for part, f in self.flops.items()},
                "gflop_per_frame": round(self.flops_per_frame / 1e9, 4),
                "fps": round(ceiling, 3),
            },
            "stages": stages,
            "frontend": {"seconds": round(self.frontend_s, 3), "fps": _round(self.fps(self.frontend_s), 2)},
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "warnings": self.warnings,
        }
        if self.end_to_end_s is not None:
            fps = self.fps(self.end_to_end_s)
            result["end_to_end"] = {
                "seconds": round(self.end_to_end_s, 3),
                "fps": round(fps, 3),
                "fraction_of_ceiling": round(fps / ceiling, 3),
                "real_time_factor": round(self.video_seconds / self.end_to_end_s, 3),
            }
        return result


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def engine_precision(engine: Engine | None) -> str:
    """The arithmetic the engine's convolutions run in: fp32 unless its backend says otherwise."""
    return "fp32" if engine is None else getattr(engine.backend, "precision", "fp32")


def bench_video(
    video: str | os.PathLike,
    backend: FaceBackend,
    engine: Engine | None = None,
    options: AnnotateOptions = AnnotateOptions(),
    *,
    device: str = "cpu",
    progress: Callable[[str], None] | None = None,
) -> BenchReport:
    """Measure every stage on ``video``; without ``engine`` only the frontend (and the paper ceiling)."""
    say = progress or (lambda stage: None)
    precision = engine_precision(engine)
    config = engine.config if engine is not None else ModelConfig()
    say("matmul")
    rates = [matmul_gflops(precision, device)]
    clock = _Clock()

    say("faces (pass 1)")
    timeline = _time_pass1(video, _TimedBackend(backend, clock), clock)
    frames = timeline.frames
    pass1_s = clock.seconds["decode"] + clock.seconds["faces"]
    tracks = sorted(select_tracks(timeline.tracks, options.person), key=lambda t: -len(t.faces))
    targets = target_frames(timeline.frames, options.stride)

    say("alignment+mask, clips (pass 2)")
    start = time.perf_counter()
    _time_crops_and_clips(video, tracks, clock)
    pass2_s = time.perf_counter() - start

    say("audio, mel")
    start = time.perf_counter()
    wave, _ = audio_track(video)
    clock.seconds["audio"] = time.perf_counter() - start
    start = time.perf_counter()
    spec = SpecWindows(wave)
    for first in range(0, len(targets), options.batch_size):  # in the network's batches, as annotation
        spec.frame_windows(timeline.times[targets[first : first + options.batch_size]])
    clock.seconds["mel"] = time.perf_counter() - start

    end_to_end = None
    if engine is not None:
        say("end to end")
        with tempfile.TemporaryDirectory(prefix="tsav-bench-") as out:
            start = time.perf_counter()
            result = annotate_video(video, _TimedEngine(engine, clock), _TimedBackend(backend, _Clock()), options)
            clock.timed("writers", Annotation(pathlib.Path(video), result).save)(out)
            end_to_end = time.perf_counter() - start
    say("matmul")
    rates.append(matmul_gflops(precision, device))
    order = FRONTEND_STAGES + (NETWORK_STAGES + ("writers",) if engine is not None else ())
    return BenchReport(
        video=str(video),
        frames=frames,
        video_seconds=video_duration(timeline.times),
        people=max(1, len(tracks)),
        targets=len(targets),
        options=options,
        face_backend=backend.name,
        engine=None if engine is None else engine.describe(),
        precision=precision,
        flops=network_flops(config),
        network="paper" if config.is_paper else f"reduced {config.to_dict()}",
        matmul_gflops=rates,
        seconds={s: clock.seconds[s] for s in order},
        items=dict(clock.items),
        end_to_end_s=end_to_end,
        frontend_s=pass1_s + pass2_s + clock.seconds["audio"] + clock.seconds["mel"],
        peak_rss_mb=peak_rss_mb(),
        warnings=timeline.warnings,
    )


def _time_pass1(video: str | os.PathLike, backend: FaceBackend, clock: _Clock) -> FaceTimeline:
    """Pass 1 as :func:`scan_faces` runs it (``iter_frames`` → ``detect_video`` → ``track_faces``),
    with decoding and the face work (detection, landmarks, identity, tracking) timed apart."""
    times, per_frame = [], []
    shape = (0, 0)

    def frames(stream) -> Iterator[np.ndarray]:
        nonlocal shape
        decode = clock.timed("decode", next)
        while (frame := decode(stream, None)) is not None:
            times.append(frame.time)
            shape = frame.rgb.shape[:2]
            yield frame.rgb

    with iter_frames(video) as stream:
        faces = detect_video(backend, frames(stream))
        while (found := clock.timed("faces", next)(faces, None)) is not None:
            per_frame.append(found)
        warnings = list(stream.warnings)
    clock.seconds["faces"] -= clock.seconds["decode"]  # detect_video pulls (decodes) each frame
    tracks = clock.timed("tracking", track_faces)(per_frame, backend.identity_threshold)
    clock.seconds["faces"] += clock.seconds["tracking"]
    return FaceTimeline(np.asarray(times, dtype=np.float64), tracks, shape, warnings)


def _time_crops_and_clips(video: str | os.PathLike, tracks: list, clock: _Clock) -> None:
    """Pass 2's frontend work as :func:`predict_people` does it: every frame's crop of each person
    (``face_crop``) pushed into that person's ``ClipAssembler``, each timed apart from decoding."""
    assemblers = [ClipAssembler() for _ in range(max(1, len(tracks)))]
    crop = clock.timed("alignment+mask", face_crop)
    push = clock.timed("clips", ClipAssembler.push)
    with iter_frames(video) as stream:
        for frame in stream:
            faces = [track.faces.get(frame.index) for track in tracks] or [None]
            for assembler, face in zip(assemblers, faces):
                push(assembler, frame.time, None if face is None else crop(frame.rgb, face))
