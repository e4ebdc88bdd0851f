"""``tsav bench``: frames/s of every stage of annotation, end to end, peak memory, and the model-bound
ceiling of the network stages (issues 4 and 7).

The ceiling is a rate no engine can beat on this machine, at the engine's precision, divided by the
network's FLOPs per output frame, counted from the model configuration (a reduced network gets its
own ceiling): the larger of the CPU's vector peak (:mod:`.cpu_peak`: its instruction sets, clock and
cores) and the best rate measured in the same run on the model's heaviest convolution through every
engine installed (torch, ONNX Runtime, OpenVINO; int8: ONNX Runtime's integer GEMM). The measured
rate counts where an engine beats the peak's arithmetic (a clock above the one the VM shows,
Winograd convolutions doing fewer multiplications than the FLOPs counted). With ``--stride K`` the
network runs on one frame in K, so the ceiling in output frames/s is K times higher. The network
stages (visual, aural, fusion) each get their own ceiling (the ceiling's rate over the stage's FLOPs
per output frame) and the share of it they reach (``x_ceiling``); end to end is given as a share of
the whole network's ceiling; the other stages are not the network and get no ceiling.

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
from tsav_deploy.runs.cpu_peak import CpuPeak, this_cpu_peak
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
# The integer GEMM measured for int8 engines: large enough for the kernels' full rate.
_INT8_GEMM_SIZE = 4096
_RATE_SECONDS = 0.5  # each engine's convolution (or GEMM) is timed this long, its best call counting


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


def heaviest_conv(config: ModelConfig) -> tuple[torch.nn.Conv3d, tuple[int, ...], int]:
    """The visual stream's convolution with the most FLOPs per clip (a copy, random weights), the shape
    of its input for one clip, and its FLOPs (a multiply-add counts two)."""
    with torch.device("meta"):
        model = TSAV(config).eval()
    found: list[tuple[int, torch.nn.Conv3d, tuple[int, ...]]] = []

    def note(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(module, torch.nn.Conv3d):
            per_output = module.in_channels // module.groups * int(np.prod(module.kernel_size))
            found.append((2 * output.numel() * per_output, module, tuple(inputs[0].shape)))

    hooks = [m.register_forward_hook(note) for m in model.modules()]
    with torch.device("meta"):
        model.visual(torch.empty(1, *CLIP_SHAPE))
    for hook in hooks:
        hook.remove()
    flops, meta, shape = max(found, key=lambda item: item[0])
    conv = torch.nn.Conv3d(
        meta.in_channels, meta.out_channels, meta.kernel_size, meta.stride, meta.padding, bias=False
    ).eval()
    return conv, shape, flops


def best_rate(call: Callable[[], object], flops: float, seconds: float = _RATE_SECONDS) -> float:
    """GFLOP/s of the fastest of ``call``'s runs over about ``seconds`` (after one warm-up)."""
    call()  # warm-up: kernel selection, page faults
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or best == 0.0:
        start = time.perf_counter()
        call()
        best = max(best, flops / (time.perf_counter() - start))
    return best / 1e9


def measured_rates(config: ModelConfig, precision: str = "fp32", device: str = "cpu") -> dict[str, float]:
    """The best GFLOP/s (int8: GOP/s) each installed engine reaches at ``precision``: on the network's
    heaviest convolution (torch; on the CPU in fp32 also ONNX Runtime and OpenVINO), or for int8
    ONNX Runtime's uint8 x int8 GEMM (the integer kernels the int8 engines' convolutions run on)."""
    if precision == "int8":
        return {"onnxruntime int8 GEMM": best_rate(_onnxruntime_int8_matmul(_INT8_GEMM_SIZE), 2 * _INT8_GEMM_SIZE**3)}
    conv, shape, flops = heaviest_conv(config)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    dev = torch.device(device)
    module, x = conv.to(dev, dtype), torch.randn(shape, device=dev).to(dtype)

    def run_torch() -> None:
        with torch.inference_mode():
            module(x)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    rates = {"torch": best_rate(run_torch, flops)}
    if precision == "fp32" and dev.type == "cpu":
        graph = _conv_onnx(conv, shape)
        feed = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        for name, session in (("onnxruntime", _onnxruntime_session), ("openvino", _openvino_session)):
            try:
                run = session(graph, feed)
            except ImportError:  # the engine is not installed
                continue
            rates[name] = best_rate(run, flops)
    return rates


def _conv_onnx(conv: torch.nn.Conv3d, shape: tuple[int, ...]) -> bytes:
    """``conv`` as a one-node ONNX graph (input ``x``)."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(conv.weight.detach().numpy(), "w")
    node = helper.make_node(
        "Conv",
        ["x", "w"],
        ["y"],
        kernel_shape=list(conv.kernel_size),
        strides=list(conv.stride),
        pads=list(conv.padding) * 2,
    )
    graph = helper.make_graph(
        [node],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _onnxruntime_session(graph: bytes, x: np.ndarray) -> Callable[[], object]:
    import onnxruntime as ort

    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"x": x})


def _openvino_session(graph: bytes, x: np.ndarray) -> Callable[[], object]:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(model=graph, weights=b""), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    return lambda: request.infer({0: x})


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
    measured_gflops: dict[str, float]  # per engine, on the heaviest convolution (int8: GEMM)
    peak: CpuPeak | None  # the CPU's vector peak (None on a GPU or without a clock)
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
    def ceiling_gflops(self) -> float:
        """The rate no engine beats here: the CPU's peak or the best measured rate, the larger."""
        return max([self.peak.gflops if self.peak else 0.0, *self.measured_gflops.values()])

    @property
    def ceiling_fps(self) -> float:
        return self.ceiling_gflops * 1e9 / self.flops_per_frame

    def fps(self, seconds: float) -> float | None:
        """Frames per second of a stage; None for a stage that did not run (no time at all)."""
        return self.frames / seconds if seconds > 0 else None

    def _stage(self, name: str, seconds: float) -> dict:
        """A stage's figures; a network stage's also against its own ceiling (the ceiling's rate over
        the stage's FLOPs per output frame): ``x_ceiling`` is the share of that rate it reaches."""
        entry = {"seconds": round(seconds, 4), "fps": _round(self.fps(seconds), 2)}
        if name in NETWORK_STAGES and seconds > 0:
            rate = self.items[name] * self.flops[name] / seconds / 1e9
            per_frame = self.items[name] * self.flops[name] / max(self.frames, 1)
            entry |= {
                "items": self.items[name],
                "items_per_s": round(self.items[name] / seconds, 2),
                "gflops": round(rate, 1),
                "ceiling_fps": round(self.ceiling_gflops * 1e9 / per_frame, 2),
                "x_ceiling": float(f"{rate / self.ceiling_gflops:.3g}"),  # 3 digits: fusion's share is tiny
            }
        return entry

    def _ceiling(self) -> dict:
        return {
            "precision": self.precision,
            "gflops": round(self.ceiling_gflops, 1),
            "cpu_peak": self.peak.to_dict() if self.peak else None,
            "measured_gflops": {name: round(rate, 1) for name, rate in self.measured_gflops.items()},
            "network": self.network,
            "gflop": {part: round(f / 1e9, 4) for part, f in self.flops.items()},
            "gflop_per_frame": round(self.flops_per_frame / 1e9, 4),
            "fps": round(self.ceiling_fps, 3),
        }

    def to_dict(self) -> dict:
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
            "ceiling": self._ceiling(),
            "stages": {name: self._stage(name, seconds) for name, seconds in self.seconds.items()},
            "frontend": {"seconds": round(self.frontend_s, 3), "fps": _round(self.fps(self.frontend_s), 2)},
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "warnings": self.warnings,
        }
        if self.end_to_end_s is not None:
            fps = self.fps(self.end_to_end_s)
            result["end_to_end"] = {
                "seconds": round(self.end_to_end_s, 3),
                "fps": round(fps, 3),
                "fraction_of_ceiling": round(fps / self.ceiling_fps, 3),
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
    say("the engines' rates")
    rates = measured_rates(config, precision, device)
    peak = this_cpu_peak(precision) if torch.device(device).type == "cpu" else None
    say("annotation")
    timed = Predictor.from_parts(_TimedEngine(predictor.engine), _TimedBackend(predictor.face_backend), options)
    with measure() as clock, tempfile.TemporaryDirectory(prefix="tsav-bench-") as out:
        start = time.perf_counter()
        annotation = timed.predict(video)
        annotation.save(out)
        wall = time.perf_counter() - start
    result = annotation.result
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
        measured_gflops=rates,
        peak=peak,
        seconds={s: seconds.get(s, 0.0) for s in order},
        items=dict(clock.items),
        end_to_end_s=wall if engine is not None else None,
        frontend_s=frontend_s,
        peak_rss_mb=peak_rss_mb(),
        warnings=result.info["warnings"],
    )
