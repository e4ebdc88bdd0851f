"""tsav-deploy: the two-stream aural-visual affect model (Kuhnke, Rumberg, Ostermann, ABAW 2020).

Library first: ``Predictor(weights=...).predict("video.mp4").to_pandas()`` annotates a video into
one table; ``read_table`` gathers a folder of results; ``load_model`` gives the network itself; the
frontends (``media``, ``faces``, ``audio``, ``clips``) make its inputs; ``predictions.decode`` turns
logits into valence, arousal, expressions and action units. The ``tsav`` command is a thin layer
over these.
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


_LAZY = {"TSAV": "model", "Predictor": "engine", "Annotation": "engine", "read_table": "engine"}


def __getattr__(name: str):
    # Importable from the top level without making `import tsav_deploy` (and `tsav --help`) pay for
    # torch, OpenVINO and dlib.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)


__all__ = ["Predictor", "Annotation", "read_table", "load_model", "TSAV", "__version__"]
