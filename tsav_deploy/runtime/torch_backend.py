"""PyTorch eager and TorchScript: both are torch modules with ``visual``/``aural``/``fusion`` methods.

``tsav.ts`` is traced with those methods next to ``forward`` (export/torchscript_export.py), so one
file serves the whole network and each stream alone, exactly like the eager ``TSAV``.
"""

from __future__ import annotations

import pathlib
import warnings

import numpy as np
import torch

from tsav_deploy.errors import ArtifactError
from tsav_deploy.runtime.backend import Array, Backend


class TorchBackend(Backend):
    def __init__(self, module: torch.nn.Module, *, name: str, device: torch.device, source: str, compile: bool = False):
        self.name = name
        self.device = device
        self.source = source
        self.compiled = compile
        self.module = module.to(device).eval()
        calls = {"visual": module.visual, "aural": module.aural, "fusion": module.fusion, "network": module.forward}
        # torch.compile is lazy: each stream compiles on its first call (and again for a new batch size).
        self._calls = {k: torch.compile(v) for k, v in calls.items()} if compile else calls

    @classmethod
    def eager(
        cls, model: torch.nn.Module, *, device: torch.device, source: str, compile: bool = False
    ) -> "TorchBackend":
        return cls(model, name="torch", device=device, source=source, compile=compile)

    @classmethod
    def torchscript(cls, path: pathlib.Path, *, device: torch.device) -> "TorchBackend":
        try:
            with warnings.catch_warnings():  # deprecated in torch 2.13 (see export/torchscript_export.py)
                warnings.filterwarnings(
                    "ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning
                )
                module = torch.jit.load(str(path), map_location=device)
        except (RuntimeError, ValueError) as exc:
            raise ArtifactError(
                f"{path}: not a loadable TorchScript file ({str(exc).strip().splitlines()[0][:120]})"
            ) from None
        missing = [m for m in ("visual", "aural", "fusion") if not hasattr(module, m)]
        if missing:
            raise ArtifactError(
                f"{path}: TorchScript module lacks {', '.join(missing)}(); re-export with this tsav-deploy"
            )
        return cls(module, name="torchscript", device=device, source=str(path))

    def _run(self, call: str, *xs: Array) -> np.ndarray:
        tensors = [torch.as_tensor(x, dtype=torch.float32, device=self.device) for x in xs]
        with torch.inference_mode():
            return self._calls[call](*tensors).float().cpu().numpy()

    def network(self, clip: Array, spec: Array) -> np.ndarray:
        return self._run("network", clip, spec)

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "device": str(self.device),
            "source": self.source,
            "torch": torch.__version__,
            "compiled": self.compiled,
        }
