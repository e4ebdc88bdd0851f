"""What every inference backend offers: the three parts of the network on batches of NumPy arrays."""

from __future__ import annotations

from typing import Union

import numpy as np
import torch

Array = Union[np.ndarray, torch.Tensor]


class Backend:
    """One way of running the network (PyTorch, TorchScript, ONNX Runtime, TensorRT).

    Inputs may be NumPy arrays or torch tensors; outputs are float32 NumPy arrays. Shapes are
    checked by :class:`~tsav_deploy.runtime.Engine`, not here.
    """

    name: str = ""
    max_batch: int | None = None  # largest batch one call accepts (TensorRT profiles); None: any
    precision: str = "fp32"  # arithmetic of the heavy layers: fp32, fp16, bf16 or int8 (the bench's ceiling)
    device: torch.device = torch.device("cpu")

    def _run(self, part: str, *inputs: Array) -> np.ndarray:
        """One part ("visual", "aural", "fusion") on a batch, inputs in the contract's order."""
        raise NotImplementedError

    def visual(self, clip: Array) -> np.ndarray:
        return self._run("visual", clip)

    def aural(self, spec: Array) -> np.ndarray:
        return self._run("aural", spec)

    def fusion(self, aural: Array, visual: Array) -> np.ndarray:
        return self._run("fusion", aural, visual)

    def network(self, clip: Array, spec: Array) -> np.ndarray:
        """Logits of the whole network; backends holding it as one graph override this."""
        return self.fusion(self.aural(spec), self.visual(clip))

    def describe(self) -> dict:
        raise NotImplementedError


def as_numpy(x: Array) -> np.ndarray:
    """A C-contiguous float32 array (copies only when needed)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    return np.ascontiguousarray(x, dtype=np.float32)
