"""ONNX Runtime over the three exported graphs: CPU, CUDA or TensorRT execution providers."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import torch

from tsav_deploy.artifacts.manifest import Manifest, contract
from tsav_deploy.errors import ArtifactError, TsavError
from tsav_deploy.runtime.backend import Array, Backend, as_numpy


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads share one core's arithmetic units)."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        siblings = pathlib.Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        cores.add(siblings.read_text().strip() if siblings.exists() else str(cpu))
    return max(1, len(cores))


class OnnxBackend(Backend):
    name = "onnxruntime"

    def __init__(self, manifest: Manifest, *, device: torch.device, check_hashes: bool = True, int8: bool = False):
        import onnxruntime as ort
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

        load_errors = (
            ort_errors.Fail,
            ort_errors.InvalidProtobuf,
            ort_errors.InvalidGraph,
            ort_errors.NoSuchFile,
            ort_errors.InvalidArgument,
            ort_errors.RuntimeException,
        )
        self.device = device
        self.folder = manifest.folder
        if int8:
            self.name, self.precision = "onnxruntime-int8", "int8"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = physical_cores()
        io = contract(manifest.config)
        max_batch = int(manifest.data.get("batch", {}).get("max", 32))
        self._sessions = {}
        for part, name in onnx_files(manifest, int8).items():
            path = manifest.checked_path(name) if check_hashes else manifest.folder / name
            providers = _providers(ort, device, path.parent, io[part]["inputs"], max_batch)
            try:
                session = ort.InferenceSession(str(path), options, providers=providers)
            except load_errors as exc:
                raise ArtifactError(
                    f"{path}: ONNX Runtime cannot load it ({str(exc).strip().splitlines()[0][:160]})"
                ) from None
            check_io(
                {
                    kind: [(arg.name, arg.shape, ORT_TYPES.get(arg.type, arg.type)) for arg in args]
                    for kind, args in (("inputs", session.get_inputs()), ("outputs", session.get_outputs()))
                },
                io[part],
                path,
            )
            self._sessions[part] = session
        self.providers = self._sessions["visual"].get_providers()

    def _run(self, part: str, *inputs: Array) -> np.ndarray:
        session = self._sessions[part]  # its inputs are the contract's, in order (check_io)
        return session.run(None, {arg.name: as_numpy(x) for arg, x in zip(session.get_inputs(), inputs)})[0]

    def describe(self) -> dict:
        import onnxruntime as ort

        return {
            "backend": self.name,
            "device": str(self.device),
            "source": str(self.folder),
            "providers": self.providers,
            "onnxruntime": ort.__version__,
            "intra_op_threads": physical_cores(),
            "precision": self.precision,
        }


def _providers(ort, device: torch.device, folder: pathlib.Path, inputs: dict, max_batch: int) -> list:
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise TsavError(
            f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (install onnxruntime-gpu); use device='cpu'"
        )
    cuda = ("CUDAExecutionProvider", {"device_id": device.index or 0})
    if "TensorrtExecutionProvider" not in available:
        return [cuda, "CPUExecutionProvider"]

    # One profile over the batch axis, so a new batch size does not rebuild the provider's engine.
    def shapes(batch: int) -> str:
        return ",".join(f"{name}:{'x'.join(map(str, [batch, *spec['shape'][1:]]))}" for name, spec in inputs.items())

    tensorrt = (
        "TensorrtExecutionProvider",
        {
            "device_id": device.index or 0,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(folder / "ort_trt_cache"),
            "trt_timing_cache_enable": True,
            "trt_profile_min_shapes": shapes(1),
            "trt_profile_opt_shapes": shapes(max(1, max_batch // 2)),
            "trt_profile_max_shapes": shapes(max_batch),
        },
    )
    return [tensorrt, cuda, "CPUExecutionProvider"]


def onnx_files(manifest: Manifest, int8: bool) -> dict[str, str]:
    """``{part: file}`` of the ONNX graphs to run: float32, with the int8 streams in their place for int8."""
    files = manifest.files("onnx")
    missing = [part for part in ("visual", "aural", "fusion") if part not in files]
    if missing:
        raise ArtifactError(f"{manifest.folder}: no ONNX file for {', '.join(missing)}; export with --onnx")
    if int8:
        quantized = manifest.files("onnx-int8")
        if not quantized:
            raise ArtifactError(f"{manifest.folder}: no int8 graphs; export with --int8 --calibrate VIDEO")
        files |= quantized
    return files


ORT_TYPES = {"tensor(float)": "float32"}


def check_io(ports: dict[str, list[tuple[str, list, str]]], spec: dict, path: pathlib.Path) -> None:
    """The graph's inputs and outputs (``{"inputs": [(name, shape, dtype)], "outputs": ...}``, dynamic
    dimensions as anything but an int) must be the contract's, in order, with a dynamic batch axis."""
    for kind, actual in ports.items():
        expected = spec[kind]
        names = [name for name, _, _ in actual]
        if names != list(expected):
            raise ArtifactError(f"{path}: {kind} {names}, the contract says {list(expected)}; wrong file or re-export")
        for name, shape, dtype in actual:
            want = expected[name]["shape"]
            if isinstance(shape[0], int) or list(shape[1:]) != list(want[1:]) or dtype != "float32":
                raise ArtifactError(
                    f"{path}: {name} is {dtype} {shape}, the contract says float32 {want} (dynamic batch); re-export"
                )
