"""tsav-deploy: the two-stream aural-visual affect model (Kuhnke, Rumberg, Ostermann, ABAW 2020).

Library first: ``load_model`` gives the network; the frontends (``media``, ``faces``, ``audio``,
``clips``) make its inputs; ``predictions.decode`` turns logits into valence, arousal, expressions
and action units. The ``tsav`` command is a thin layer over these.
"""
from __future__ import annotations

import os

__version__ = "0.1.0"


def load_model(path: str | os.PathLike):
    """A TSAV network (``nn.Module``, eval mode, CPU) from a checkpoint path or a published name.

    Accepts the project's checkpoints and the authors' ``{'state_dict': ...}`` files
    (e.g. TSAV416k.pth.tar); see ``tsav weights list`` for published names.
    """
    from .checkpoint import load_checkpoint
    from .weights import resolve

    return load_checkpoint(resolve(path)).build_model()


def __getattr__(name: str):
    # TSAV is importable from the top level without making `import tsav_deploy` pay for torch.
    if name == "TSAV":
        from .model import TSAV

        return TSAV
    raise AttributeError(name)


__all__ = ["load_model", "TSAV", "__version__"]
