"""The three parts of the network as ONNX graphs with a dynamic batch axis."""

from __future__ import annotations

import pathlib
import warnings

import onnx
import torch

from tsav_deploy.artifacts.manifest import ONNX_FILES, contract
from tsav_deploy.errors import TsavError
from tsav_deploy.model import TSAV

DEFAULT_OPSET = 17
# The legacy exporter's range; TensorRT 10's ONNX parser reads all of it.
OPSETS = range(13, 21)
TRACE_BATCH = 2  # differs from the probe batches (3 and 1), so verification proves the axis is dynamic


def check_opset(opset: int) -> None:
    if opset not in OPSETS:
        raise TsavError(f"--opset {opset}: supported opsets are {OPSETS.start}-{OPSETS.stop - 1}")


def export_onnx(model: TSAV, folder: pathlib.Path, opset: int = DEFAULT_OPSET) -> dict[str, pathlib.Path]:
    """Write ``visual.onnx``, ``aural.onnx``, ``fusion.onnx`` into ``folder``; returns ``{part: path}``.

    The legacy TorchScript-based exporter (``dynamo=False``) is used on purpose: torch 2.13's default
    dynamo exporter needs onnxscript (not a dependency of this project) and torch.export batch-dim
    constraints, while these plain convolutional graphs export reliably through tracing with
    ``dynamic_axes``; parity verification on batches 1 and 3 checks the result either way.
    """
    check_opset(opset)
    io = contract(model.config)
    paths = {}
    for part, module in model.parts().items():
        spec = io[part]
        example = tuple(torch.zeros(TRACE_BATCH, *s["shape"][1:]) for s in spec["inputs"].values())
        names = [*spec["inputs"], *spec["outputs"]]
        path = folder / ONNX_FILES[part]
        with warnings.catch_warnings(), torch.no_grad():
            # The exporter's notice that the legacy path is deprecated: chosen deliberately (above).
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                module.eval(),
                example,
                str(path),
                input_names=list(spec["inputs"]),
                output_names=list(spec["outputs"]),
                dynamic_axes={name: {0: "batch"} for name in names},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        onnx.checker.check_model(str(path), full_check=True)
        paths[part] = path
    return paths
