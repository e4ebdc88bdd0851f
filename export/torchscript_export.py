"""The whole network as one TorchScript file whose streams can also run alone."""

from __future__ import annotations

import pathlib
import warnings

import torch

from tsav_deploy.artifacts.manifest import TORCHSCRIPT_FILE, contract
from tsav_deploy.export.onnx_export import TRACE_BATCH
from tsav_deploy.model import TSAV


def export_torchscript(model: TSAV, folder: pathlib.Path) -> pathlib.Path:
    """Write ``tsav.ts``: ``forward(clip, spec) -> logits`` plus ``visual``, ``aural`` and ``fusion``.

    Traced rather than scripted: the network has no data-dependent control flow, and tracing follows
    the model's own code (``torch.jit.script`` cannot compile the ``ModelConfig`` attribute). Tracing
    ``visual``/``aural``/``fusion`` as extra methods lets one file (one copy of the weights) serve the
    runtime's per-stream calls. ``check_trace`` is off because export verification compares the file
    with PyTorch on other batch sizes anyway.
    """
    io = contract(model.config)["network"]["inputs"]
    clip, spec = (torch.zeros(TRACE_BATCH, *s["shape"][1:]) for s in io.values())
    with torch.no_grad(), warnings.catch_warnings():
        # torch 2.13 marks TorchScript deprecated; the file is still what libtorch (C++) deployments load.
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning)
        aural, visual = model.aural(spec), model.visual(clip)
        traced = torch.jit.trace_module(
            model.eval(),
            {"forward": (clip, spec), "visual": (clip,), "aural": (spec,), "fusion": (aural, visual)},
            check_trace=False,
        )
    path = folder / TORCHSCRIPT_FILE
    traced.save(str(path))
    return path
