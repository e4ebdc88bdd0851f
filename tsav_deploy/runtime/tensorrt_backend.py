"""TensorRT engines (``*.engine``, built by ``tsav export --trt``), run on CUDA tensors owned by torch.

Written against TensorRT 10's Python API (name-based I/O tensors): ``Runtime.deserialize_cuda_engine``,
``IExecutionContext.set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3`` on torch's
current CUDA stream. No TensorRT/GPU was available where this was written: see the README for what
was verified on which hardware.
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch

from tsav_deploy.artifacts.manifest import Manifest, contract
from tsav_deploy.errors import ArtifactError, TsavError
from tsav_deploy.runtime.backend import Array, Backend


def require_tensorrt():
    """``import tensorrt`` (>= 10), or one clear line saying what is missing."""
    try:
        import tensorrt as trt
    except ImportError:
        raise TsavError(
            "TensorRT is not installed (pip install 'tensorrt>=10' on a machine with an NVIDIA GPU)"
        ) from None
    if int(trt.__version__.split(".")[0]) < 10:
        raise TsavError(f"TensorRT {trt.__version__} is too old: the engines use the TensorRT 10 API")
    return trt


def require_cuda(what: str) -> None:
    if not torch.cuda.is_available():
        raise TsavError(f"{what} needs a CUDA GPU, and torch sees none (torch {torch.__version__})")


class _EngineRunner:
    """One deserialized engine with its execution context."""

    def __init__(self, trt, runtime, path: pathlib.Path, spec: dict, device: torch.device):
        self.path = path
        self.device = device
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise ArtifactError(
                f"{path}: TensorRT {trt.__version__} cannot deserialize it (built by another TensorRT version or for another GPU); re-export with --trt here"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if self.inputs != list(spec["inputs"]) or self.outputs != list(spec["outputs"]):
            raise ArtifactError(
                f"{path}: engine I/O {self.inputs} -> {self.outputs} is not the contract's {list(spec['inputs'])} -> {list(spec['outputs'])}"
            )
        for name in self.inputs:
            shape = list(self.engine.get_tensor_shape(name))
            if shape[0] != -1 or shape[1:] != list(spec["inputs"][name]["shape"][1:]):
                raise ArtifactError(
                    f"{path}: input {name} has shape {shape}, the contract says {spec['inputs'][name]['shape']} (dynamic batch)"
                )
        # Profile 0's (min, opt, max) shapes; the batch axis bounds what one call accepts.
        self.max_batch = int(self.engine.get_tensor_profile_shape(self.inputs[0], 0)[2][0])
        self.dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}

    def __call__(self, *arrays: Array) -> np.ndarray:
        # Keep every buffer referenced until the stream has finished with it.
        buffers = []
        for name, x in zip(self.inputs, arrays):
            tensor = torch.as_tensor(x).to(self.device, self.dtypes[name]).contiguous()
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
            buffers.append(tensor)
        outputs = []
        for name in self.outputs:
            out = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=self.dtypes[name], device=self.device)
            self.context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"{self.path}: TensorRT execution failed")
        stream.synchronize()
        return outputs[0].float().cpu().numpy()


def _torch_dtype(trt, dtype) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16}  # the contract's tensors are floating point
    if dtype not in table:
        raise ArtifactError(f"engine tensor type {dtype} is not supported by this runtime")
    return table[dtype]


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, manifest: Manifest, *, device: torch.device, check_hashes: bool = True):
        files = manifest.files("tensorrt")
        missing = [part for part in ("visual", "aural", "fusion") if part not in files]
        if missing:
            raise ArtifactError(f"{manifest.folder}: no TensorRT engine for {', '.join(missing)}; export with --trt")
        trt = require_tensorrt()
        require_cuda("the TensorRT engine")
        self.device = device if device.type == "cuda" else torch.device("cuda")
        self.folder = manifest.folder
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        io = contract(manifest.config)
        with torch.cuda.device(self.device):
            self._engines = {
                part: _EngineRunner(
                    trt,
                    self._runtime,
                    manifest.checked_path(name) if check_hashes else manifest.folder / name,
                    io[part],
                    self.device,
                )
                for part, name in files.items()
            }
        self.max_batch = min(e.max_batch for e in self._engines.values())
        self.precisions = {name: manifest.artifacts[name].get("precision", "fp32") for name in files.values()}
        self.precision = "fp16" if "fp16" in self.precisions.values() else "fp32"
        self.tensorrt_version = trt.__version__

    def _run(self, part: str, *inputs: Array) -> np.ndarray:
        return self._engines[part](*inputs)

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "device": str(self.device),
            "source": str(self.folder),
            "tensorrt": self.tensorrt_version,
            "precision": self.precisions,
            "max_batch": self.max_batch,
        }
