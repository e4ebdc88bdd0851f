"""OpenVINO over the exported ONNX graphs: the fastest CPU engine measured here.

OpenVINO's CPU plugin (oneDNN underneath) runs the factorised 3-D convolutions of the visual stream
1.6-1.9x as fast as ONNX Runtime in fp32 on a 2-core AVX-512 machine; on the int8 graphs of ``tsav export --int8`` it runs 4-5x as fast as ONNX
Runtime (VNNI/AMX kernels). It reads the same ``*.onnx`` files, so an export needs nothing extra.
"""

from __future__ import annotations

import numpy as np
import torch

from tsav_deploy.artifacts.manifest import Manifest, contract
from tsav_deploy.errors import ArtifactError, TsavError
from tsav_deploy.runtime.backend import Array, Backend, as_numpy
from tsav_deploy.runtime.onnx_backend import check_io, onnx_files, physical_cores


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(self, manifest: Manifest, *, device: torch.device, check_hashes: bool = True, int8: bool = False):
        if device.type != "cpu":
            raise TsavError(
                f"the openvino engine runs on the CPU, not {device}; use engine tensorrt/onnx/torchscript on CUDA"
            )
        try:
            import openvino as ov
        except ImportError:
            raise TsavError("openvino is not installed (pip install openvino); use engine onnx") from None
        self.device = device
        self.folder = manifest.folder
        self.version = ov.__version__
        if int8:
            self.name, self.precision = "openvino-int8", "int8"
        core = ov.Core()
        # Without the hint, CPUs with AMX or AVX512-BF16 silently run float graphs in bfloat16.
        # THROUGHPUT: OpenVINO splits the cores into streams (one per core on 2 cores) and each batch is
        # split over them, so no core waits for another at every layer's end as in one stream over all
        # cores. Measured on 2 cores, paper network, end to end in 3 interleaved pairs: fp32 0.837 ->
        # 0.861 of the ceiling (means), int8 10.3 -> 9.8 s; the features are identical.
        config = {
            "INFERENCE_PRECISION_HINT": "f32",
            "INFERENCE_NUM_THREADS": physical_cores(),
            "PERFORMANCE_HINT": "THROUGHPUT",
        }
        io = contract(manifest.config)
        self._requests = {}
        for part, name in onnx_files(manifest, int8).items():
            path = manifest.checked_path(name) if check_hashes else manifest.folder / name
            try:
                model = core.read_model(str(path))
                compiled = core.compile_model(model, "CPU", config)
            except RuntimeError as exc:
                raise ArtifactError(f"{path}: OpenVINO cannot load it ({_last_line(exc)})") from None
            check_io(
                {
                    kind: [(port.get_any_name(), _shape(port), _dtype(port)) for port in ports]
                    for kind, ports in (("inputs", model.inputs), ("outputs", model.outputs))
                },
                io[part],
                path,
            )
            # One request per stream (OpenVINO picks the count per model), reused: the annotate loop
            # calls each part from one thread.
            self._requests[part] = [
                compiled.create_infer_request() for _ in range(compiled.get_property("NUM_STREAMS"))
            ]

    def _run(self, part: str, *inputs: Array) -> np.ndarray:
        """The batch split into one contiguous chunk per stream, run at once (fewer for a small batch)."""
        inputs = [as_numpy(x) for x in inputs]
        n, requests = len(inputs[0]), self._requests[part]
        bounds = np.linspace(0, n, min(n, len(requests)) + 1).round().astype(int)
        used = requests[: len(bounds) - 1]
        for request, start, stop in zip(used, bounds[:-1], bounds[1:]):
            request.start_async([x[start:stop] for x in inputs], share_inputs=True)
        for request in used:
            request.wait()
        return np.concatenate([r.get_output_tensor(0).data for r in used])  # copies: buffers are reused

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "device": str(self.device),
            "source": str(self.folder),
            "openvino": self.version,
            "inference_threads": physical_cores(),
            "streams": {part: len(r) for part, r in self._requests.items()},
            "precision": self.precision,
        }


OV_TYPES = {"f32": "float32"}


def _dtype(port) -> str:
    name = port.get_element_type().get_type_name()
    return OV_TYPES.get(name, name)


def _shape(port) -> list:
    """Static dimensions as ints, dynamic ones as "?"."""
    return [dim.get_length() if dim.is_static else "?" for dim in port.get_partial_shape()]


def _last_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:160]
