"""One runtime object over every backend (in the spirit of ultralytics' AutoBackend).

``Engine.load(source)`` takes an export directory (ONNX / TorchScript / TensorRT artifacts, checked
against their manifest) or a checkpoint (path or published name, run by PyTorch) and exposes the
network's three parts on batches: ``visual(clip)``, ``aural(spec)``, ``fusion(aural, visual)`` and
``engine(clip, spec)`` for the logits.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib

import numpy as np
import torch

from tsav_deploy.artifacts.manifest import CONSTANT_FEATURES_FILE, Manifest, read_manifest
from tsav_deploy.contract import CLIP_SHAPE, N_OUTPUTS, SPEC_SHAPE
from tsav_deploy.errors import ArtifactError, TsavError
from tsav_deploy.model import ModelConfig
from tsav_deploy.runtime.backend import Array, Backend

# *-int8: the statically quantized streams of `tsav export --int8` (never picked by auto: they change
# the numerics; agreement with float32 is in the export's manifest).
ENGINES = ("auto", "torch", "torchscript", "onnx", "onnx-int8", "openvino", "openvino-int8", "tensorrt")
# The artifact format each engine runs: OpenVINO reads the ONNX files.
ARTIFACT_FORMAT = {
    "torchscript": "torchscript",
    "onnx": "onnx",
    "onnx-int8": "onnx-int8",
    "openvino": "onnx",
    "openvino-int8": "onnx-int8",
    "tensorrt": "tensorrt",
}
# What `auto` tries, fastest first. CPU: measured with the paper-size network on a 2-core AVX-512 VM
# (torch 2.13, ONNX Runtime 1.32, OpenVINO 2026.4, batch 8, fp32): OpenVINO ran the visual stream
# 1.6-1.9x as fast as ONNX Runtime and 2-4x as fast as torch eager (channels-last included); TorchScript is ONNX Runtime's fallback. CUDA: TensorRT's fused, tuned kernels first by
# design (not measurable where this was written).
AUTO_ORDER = {"cpu": ("openvino", "onnx", "torchscript"), "cuda": ("tensorrt", "onnx", "torchscript")}


class Engine:
    """The network behind one backend; inputs NumPy or torch, outputs float32 NumPy arrays."""

    def __init__(
        self,
        backend: Backend,
        config: ModelConfig,
        *,
        manifest: Manifest | None = None,
        selection: str = "",
        constants: dict[str, np.ndarray] | None = None,
        checkpoint_sha256: str | None = None,
    ):
        self.backend = backend
        self.config = config
        self.manifest = manifest
        self.selection = selection
        # {"visual" | "aural": float32 features [1, F] of the stream's constant input}: rows the
        # frontend marks as that input get them without running the backend (int8 engines; see
        # contract.constant_inputs).
        self.constants = constants or {}
        # The weights' SHA-256 (of the checkpoint an export was made from): what a result names as its model.
        self.checkpoint_sha256 = checkpoint_sha256

    @classmethod
    def load(
        cls,
        source: str | os.PathLike,
        engine: str = "auto",
        device: str = "cpu",
        compile: bool = False,
        check_hashes: bool = True,
    ) -> "Engine":
        """Open an export directory or a checkpoint with ``engine`` ("auto" picks the fastest present)."""
        if engine not in ENGINES:
            raise TsavError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
        if compile and engine not in ("auto", "torch"):
            raise TsavError(f"compile=True applies to the torch engine, not {engine}")
        dev = parse_device(device)
        path = pathlib.Path(os.fspath(source)).expanduser()
        if path.is_dir():
            if compile or engine == "torch":
                raise ArtifactError(
                    f"{path}: an export directory holds no PyTorch checkpoint; use engine torchscript/onnx/tensorrt or pass the checkpoint"
                )
            manifest = read_manifest(path)
            if engine == "auto":
                engine, selection = _auto(manifest, dev)
            else:
                selection = f"{engine} (asked for)"
            backend = open_backend(manifest, engine, dev, check_hashes=check_hashes)
            constants = _constant_features(manifest) if backend.precision == "int8" else None
            return cls(
                backend,
                manifest.config,
                manifest=manifest,
                selection=selection,
                constants=constants,
                checkpoint_sha256=manifest.data.get("source", {}).get("sha256"),
            )
        if engine not in ("auto", "torch"):
            raise ArtifactError(
                f"{source}: the {engine} engine needs an export directory (tsav export CHECKPOINT --out DIR)"
            )
        from tsav_deploy.artifacts.checkpoint import load_checkpoint
        from tsav_deploy.artifacts.weights import resolve
        from tsav_deploy.runtime.torch_backend import TorchBackend

        checkpoint = load_checkpoint(resolve(source))
        checkpoint.require_current_preprocessing()
        backend = TorchBackend.eager(checkpoint.build_model(), device=dev, source=str(checkpoint.path), compile=compile)
        selection = "torch (a checkpoint runs in PyTorch)" if engine == "auto" else "torch (asked for)"
        return cls(backend, checkpoint.config, selection=selection, checkpoint_sha256=checkpoint.sha256)

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def device(self) -> torch.device:
        return self.backend.device

    @property
    def features(self) -> int:
        return self.config.widths[3]

    def visual(self, clip: Array, black: np.ndarray | None = None) -> np.ndarray:
        """Visual features ``[B, 512]`` of clips ``[B, 4, 8, 112, 112]``. ``black`` ([B] bool, from
        the frontend) marks the black clips of stretches without the person."""
        _check_shape(clip, "clip", CLIP_SHAPE)
        return self._stream("visual", clip, black)

    def aural(self, spec: Array, silent: np.ndarray | None = None) -> np.ndarray:
        """Aural features ``[B, 512]`` of log-mel windows ``[B, 1, 64, 1001]``. ``silent`` ([B] bool,
        from the frontend) marks windows of digital silence."""
        _check_shape(spec, "spec", SPEC_SHAPE)
        return self._stream("aural", spec, silent)

    def fusion(self, aural: Array, visual: Array) -> np.ndarray:
        """Logits ``[B, 17]`` from aural and visual features (aural first, as the authors)."""
        _check_shape(aural, "aural features", (self.features,))
        _check_shape(visual, "visual features", (self.features,))
        return self._batched(self.backend.fusion, N_OUTPUTS, aural, visual)

    def __call__(self, clip: Array, spec: Array) -> np.ndarray:
        """Logits ``[B, 17]`` of the whole network."""
        _check_shape(clip, "clip", CLIP_SHAPE)
        _check_shape(spec, "spec", SPEC_SHAPE)
        return self._batched(self.backend.network, N_OUTPUTS, clip, spec)

    def describe(self) -> dict:
        info = {**self.backend.describe(), "selection": self.selection, "model_config": self.config.to_dict()}
        if self.manifest is not None:
            info["source_checkpoint"] = self.manifest.data.get("source", {})
        return info

    def _stream(self, part: str, x: Array, constant: np.ndarray | None) -> np.ndarray:
        """One stream's features; rows the frontend marks as its constant input get that input's
        stored float32 features where the engine has them (int8 engines), without running."""
        run = getattr(self.backend, part)
        if part not in self.constants or constant is None or not np.any(constant):
            return self._batched(run, self.features, x)
        constant = np.asarray(constant, dtype=bool)
        x = np.asarray(x)
        if constant.shape != (len(x),):
            raise TsavError(f"{part}: {constant.shape} flags for a batch of {len(x)}; give one flag per row")
        out = np.empty((len(x), self.features), np.float32)
        out[constant] = self.constants[part]
        if not constant.all():
            out[~constant] = self._batched(run, self.features, x[~constant])
        return out

    def _batched(self, run, width: int, *arrays: Array) -> np.ndarray:
        """Run in chunks the backend accepts (TensorRT profiles bound the batch)."""
        n = arrays[0].shape[0]
        if any(a.shape[0] != n for a in arrays):
            raise ValueError(f"inputs disagree on the batch size: {[a.shape[0] for a in arrays]}")
        if n == 0:
            return np.zeros((0, width), np.float32)
        step = self.backend.max_batch or n
        chunks = [run(*(a[i : i + step] for a in arrays)) for i in range(0, n, step)]
        out = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        if not np.isfinite(out).all():  # never written as predictions: NaN compares as nothing
            raise TsavError(
                "the network's outputs are not numbers (NaN or infinity): its weights or export are damaged; "
                "re-export or use another checkpoint"
            )
        return out


def _constant_features(manifest: Manifest) -> dict[str, np.ndarray]:
    """The export's float32 features [1, F] of the frontend's constant inputs, by stream (every
    int8 export has them)."""
    with np.load(manifest.checked_path(CONSTANT_FEATURES_FILE)) as stored:
        return {"visual": stored["visual"], "aural": stored["aural"]}


def parse_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise TsavError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise TsavError(f"device {device!r} is not supported; use cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TsavError(f"device {device!r} asked for, but torch {torch.__version__} sees no CUDA GPU")
    return dev


def open_backend(manifest: Manifest, engine: str, device: torch.device, *, check_hashes: bool = True) -> Backend:
    """The backend for one artifact format of an export directory."""
    if engine in ("onnx", "onnx-int8"):
        from tsav_deploy.runtime.onnx_backend import OnnxBackend

        return OnnxBackend(manifest, device=device, check_hashes=check_hashes, int8=engine == "onnx-int8")
    if engine in ("openvino", "openvino-int8"):
        from tsav_deploy.runtime.openvino_backend import OpenVinoBackend

        return OpenVinoBackend(manifest, device=device, check_hashes=check_hashes, int8=engine == "openvino-int8")
    if engine == "torchscript":
        from tsav_deploy.runtime.torch_backend import TorchBackend

        name = next(iter(manifest.files("torchscript").values()), None)
        if name is None:
            raise ArtifactError(f"{manifest.folder}: no TorchScript file; export with --torchscript")
        path = manifest.checked_path(name) if check_hashes else manifest.folder / name
        return TorchBackend.torchscript(path, device=device)
    if engine == "tensorrt":
        from tsav_deploy.runtime.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(manifest, device=device, check_hashes=check_hashes)
    raise ValueError(f"no backend for engine {engine!r}")


def _auto(manifest: Manifest, device: torch.device) -> tuple[str, str]:
    order = AUTO_ORDER[device.type]
    for engine in order:
        if manifest.files(ARTIFACT_FORMAT[engine]) and _runs_here(engine, device):
            return engine, f"{engine} (auto: fastest present on {device.type}; order {' > '.join(order)})"
    formats = sorted({entry.get("format") for entry in manifest.artifacts.values()} & set(ENGINES))
    raise ArtifactError(
        f"{manifest.folder}: none of its artifacts ({', '.join(formats) or 'none'}) runs on {device.type} here; "
        "export ONNX/TorchScript or install the missing runtime"
    )


def _runs_here(engine: str, device: torch.device) -> bool:
    if engine == "tensorrt":
        return device.type == "cuda" and importlib.util.find_spec("tensorrt") is not None
    if engine == "openvino":
        return device.type == "cpu" and importlib.util.find_spec("openvino") is not None
    if engine == "onnx":
        if importlib.util.find_spec("onnxruntime") is None:
            return False
        import onnxruntime as ort

        return device.type == "cpu" or "CUDAExecutionProvider" in ort.get_available_providers()
    return True


def _check_shape(x: Array, name: str, tail: tuple[int, ...]) -> None:
    shape = tuple(x.shape)
    if len(shape) != 1 + len(tail) or shape[1:] != tuple(tail):
        raise ValueError(f"{name} must have shape [B, {', '.join(map(str, tail))}], got {list(shape)}")
