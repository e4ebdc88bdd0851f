"""``tsav bench``: frames/s of every stage of annotation, end to end, peak memory, and the model-bound
ceiling measured in the same run (issues 4 and 7).

The ceiling is the machine's matrix-multiply rate at the engine's precision (large GEMMs on every core
torch uses, measured just before and just after the pipeline; the higher of the two counts) divided by
the network's FLOPs per output frame, counted from the model configuration (a reduced network gets
its own ceiling). With ``--stride K`` the network runs on one frame in K, so the ceiling in output
frames/s is K times higher. Every stage's frames/s is also given as a multiple of the ceiling
(``x_ceiling``), the network stages also as the share of the matmul rate they reach.

Stages are the pipeline's own: one run of ``Predictor.predict`` plus ``Annotation.save``, timed
through the stage marks the pipeline makes (:mod:`tsav_deploy.stages`: decode, pass 1, tracking,
pass 2's decode, alignment+mask and clips, audio, mel, writers) and through the face backend's and
the engine's calls (detection, landmarks, identity, visual, aural, fusion), so the figures are those
of annotation itself, with nothing run a second time. "audio" decodes and resamples the track,
"mel" cuts every target frame's window from it by the authors' rule. Without a model the network's
place is taken by zeros, so the same run measures the frontend alone.

"faces" is pass 1's wall time less decoding. Its parts are the time spent in each call: detection runs
in a thread beside the landmark fits and identity, so detection + landmarks + identity + tracking can
add up to more than "faces".
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from tsav_deploy.api import Predictor, PredictorOptions
from tsav_deploy.contract import CLIP_SHAPE, N_OUTPUTS, SPEC_SHAPE
from tsav_deploy.faces import FaceBackend, get_backend
from tsav_deploy.model import TSAV, ModelConfig
from tsav_deploy.pipeline.frontend import video_duration
from tsav_deploy.pipeline.offline import AnnotateOptions, target_frames
from tsav_deploy.runtime import Engine
from tsav_deploy.stages import measure, stage

# Stages in report order; "faces" is pass 1 less decoding: detection, landmarks, identity (partly
# overlapping) and tracking (grouping tracklets into people).
FRONTEND_STAGES = (
    "decode",
    "faces",
    "detection",
    "landmarks",
    "identity",
    "tracking",
    "pass 2 decode",
    "alignment+mask",
    "clips",
    "audio",
    "mel",
)
NETWORK_STAGES = ("visual", "aural", "fusion")
# The stages the pipeline marks itself (tsav_deploy.stages); "faces" is "pass 1" less its decoding.
PIPELINE_STAGES = (
    "pass 1",
    "decode",
    "tracking",
    "pass 2 decode",
    "alignment+mask",
    "clips",
    "audio",
    "mel",
    "writers",
)
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


def _timed(name: str, call: Callable, items: Callable[..., int] = lambda *a, **k: 0) -> Callable:
    def run(*args, **kwargs):
        with stage(name, items(*args, **kwargs)):
            return call(*args, **kwargs)

    return run


class _TimedBackend:
    """A face backend whose detection, landmark and identity calls are marked; the rest passes through."""

    def __init__(self, backend: FaceBackend) -> None:
        self._backend = backend

    def __getattr__(self, name: str):
        inner = getattr(self._backend, name)
        marked = _BACKEND_STAGES.get(name)
        return inner if marked is None else _timed(marked, inner)


class _TimedEngine:
    """An engine whose visual, aural and fusion calls are marked (with the clips/windows they ran)."""

    def __init__(self, engine) -> None:
        self._engine = engine
        batch = lambda x, *rest, **flags: len(x)  # noqa: E731 - the item count of a stage is its batch size
        for part in NETWORK_STAGES:
            setattr(self, part, _timed(part, getattr(engine, part), batch))

    def __getattr__(self, name: str):
        return getattr(self._engine, name)


class _NoNetwork:
    """The network's place when only the frontend is measured: zero features and logits at no cost,
    so the pipeline runs whole and its frontend stages are what is timed."""

    name, selection, device = "none (frontend only)", None, torch.device("cpu")
    checkpoint_sha256 = None  # no weights

    def __init__(self, config: ModelConfig) -> None:
        self.config = config

    def visual(self, clip, black=None) -> np.ndarray:
        return np.zeros((len(clip), self.config.widths[3]), np.float32)

    def aural(self, spec, silent=None) -> np.ndarray:
        return np.zeros((len(spec), self.config.widths[3]), np.float32)

    def fusion(self, aural, visual) -> np.ndarray:
        return np.zeros((len(aural), N_OUTPUTS), np.float32)


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


def bench_predictor(options: PredictorOptions) -> Predictor:
    """The Predictor ``tsav bench`` times: the one ``options`` build, or without weights and model
    one whose network is zeros (:class:`_NoNetwork`), so the frontend alone is measured."""
    if options.weights or options.model:
        return Predictor.from_options(options)
    annotate = AnnotateOptions(person=options.person, stride=options.stride, batch_size=options.batch_size)
    backend = get_backend(options.faces, detector=options.detector)
    return Predictor.from_parts(_NoNetwork(ModelConfig()), backend, annotate)


def bench_video(
    video: str | os.PathLike,
    predictor: Predictor,
    *,
    device: str = "cpu",
    progress: Callable[[str], None] | None = None,
) -> BenchReport:
    """Measure every stage of one ``predictor.predict(video)`` and its ``save`` (the pipeline's
    own calls, timed through its stage marks and through stand-ins for the predictor's engine and
    face backend); a predictor from :func:`bench_predictor` without a model measures the frontend
    (the network's place taken by zeros) against the paper ceiling."""
    say = progress or (lambda stage: None)
    engine = None if isinstance(predictor.engine, _NoNetwork) else predictor.engine
    options = predictor.options
    precision = engine_precision(engine)
    config = predictor.engine.config
    say("matmul")
    rates = [matmul_gflops(precision, device)]
    say("annotation")
    timed = Predictor.from_parts(_TimedEngine(predictor.engine), _TimedBackend(predictor.face_backend), options)
    with measure() as clock, tempfile.TemporaryDirectory(prefix="tsav-bench-") as out:
        start = time.perf_counter()
        annotation = timed.predict(video)
        annotation.save(out)
        wall = time.perf_counter() - start
    result = annotation.result
    say("matmul")
    rates.append(matmul_gflops(precision, device))
    seconds = dict(clock.seconds)
    unknown = set(seconds) - set(PIPELINE_STAGES) - set(NETWORK_STAGES) - set(_BACKEND_STAGES.values())
    if unknown:
        raise RuntimeError(f"the pipeline marks stages bench does not report: {sorted(unknown)}")
    seconds["faces"] = seconds.pop("pass 1", 0.0) - seconds.get("decode", 0.0)
    frontend_s = sum(
        seconds.get(s, 0.0) for s in ("decode", "faces", "pass 2 decode", "alignment+mask", "clips", "audio", "mel")
    )
    order = FRONTEND_STAGES + (NETWORK_STAGES + ("writers",) if engine is not None else ())
    return BenchReport(
        video=str(video),
        frames=result.frames,
        video_seconds=video_duration(result.times),
        people=len(result.persons),
        targets=len(target_frames(result.frames, options.stride)),
        options=options,
        face_backend=predictor.face_backend.name,
        engine=None if engine is None else engine.describe(),
        precision=precision,
        flops=network_flops(config),
        network="paper" if config.is_paper else f"reduced {config.to_dict()}",
        matmul_gflops=rates,
        seconds={s: seconds.get(s, 0.0) for s in order},
        items=dict(clock.items),
        end_to_end_s=wall if engine is not None else None,
        frontend_s=frontend_s,
        peak_rss_mb=peak_rss_mb(),
        warnings=result.info["warnings"],
    )
