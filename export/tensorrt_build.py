"""TensorRT engines from the exported ONNX graphs (TensorRT 10 Python API).

Each part gets one optimisation profile over the batch axis (1 .. max batch, tuned for half of it),
optional FP16 kernels, and a timing cache shared by the three builds and kept in the export
directory, so re-exporting on the same GPU skips most kernel timing. No TensorRT/GPU was available
where this was written: see the README for what was verified on which hardware.
"""

from __future__ import annotations

import pathlib

from tsav_deploy.artifacts.manifest import ENGINE_FILES, TIMING_CACHE
from tsav_deploy.errors import ArtifactError
from tsav_deploy.runtime.tensorrt_backend import require_cuda, require_tensorrt

WORKSPACE_BYTES = 4 << 30


def check_tensorrt() -> str:
    """Fail early, before any export work, where engines cannot be built; returns the version."""
    trt = require_tensorrt()
    require_cuda("building TensorRT engines")
    return trt.__version__


def build_engines(
    onnx_files: dict[str, pathlib.Path], folder: pathlib.Path, *, max_batch: int, fp16: bool
) -> dict[str, pathlib.Path]:
    """Build ``<part>.engine`` for each ONNX file; updates ``folder/timing.cache``."""
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    cache_path = folder / TIMING_CACHE
    engines = {}
    for part, onnx_path in onnx_files.items():
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ArtifactError(f"{onnx_path}: TensorRT's ONNX parser rejected it ({errors[:200]})")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        if fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        else:  # fp32 means fp32: TF32 tensor-core math (on by default) would miss the 1e-4 parity bound
            config.clear_flag(trt.BuilderFlag.TF32)
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            rest = tuple(tensor.shape)[1:]
            profile.set_shape(tensor.name, (1, *rest), (max(1, max_batch // 2), *rest), (max_batch, *rest))
        config.add_optimization_profile(profile)
        cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.exists() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise ArtifactError(f"{onnx_path}: TensorRT could not build an engine (see the TensorRT log above)")
        path = folder / ENGINE_FILES[part]
        path.write_bytes(bytes(serialized))
        cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
        engines[part] = path
    return engines
