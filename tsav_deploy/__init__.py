"""tsav-deploy: the two-stream aural-visual affect model (Kuhnke, Rumberg, Ostermann, ABAW 2020).

Library first: ``Predictor(weights=...).predict("video.mp4").to_pandas()`` annotates a video into
one table; ``read_table`` gathers a folder of results; ``load_model`` gives the network itself.

The package follows the data flow, each layer importing only those below it:
``media`` (decoding) -> ``faces`` -> ``inputs`` (the network's clips and aural windows) ->
``model`` / ``artifacts`` (checkpoints, weights, export manifest) -> ``runtime`` (the ``Engine``) ->
``results`` -> ``pipeline`` (offline passes, live stream) -> ``outputs`` (files, plot, overlay,
report) -> ``api`` (``Predictor``, ``Annotation``) -> ``runs`` (batch, isolated, Ray, live) ->
``cli``. ``train`` and ``export`` sit beside the front door and use the same layers.

Everything named in ``__all__`` is importable from here without loading torch, OpenVINO or dlib
until it is first used.
"""

from __future__ import annotations

import importlib
import os

__version__ = "0.1.0"


def load_model(path: str | os.PathLike):
    """A TSAV network (``nn.Module``, eval mode, CPU) from a checkpoint path or a published name.

    Accepts the project's checkpoints and the authors' ``{'state_dict': ...}`` files
    (e.g. TSAV416k.pth.tar); see ``tsav weights list`` for published names.
    """
    from tsav_deploy.artifacts.checkpoint import load_checkpoint
    from tsav_deploy.artifacts.weights import resolve

    return load_checkpoint(resolve(path)).build_model()


# Where each public name lives (imported on first use, so `import tsav_deploy` and `tsav --help`
# stay fast).
_LAZY = {
    "Predictor": "tsav_deploy.api",
    "Annotation": "tsav_deploy.api",
    "read_table": "tsav_deploy.api",
    "Engine": "tsav_deploy.runtime",
    "TSAV": "tsav_deploy.model",
    "ModelConfig": "tsav_deploy.model",
    "save_checkpoint": "tsav_deploy.artifacts.checkpoint",
    "load_checkpoint": "tsav_deploy.artifacts.checkpoint",
    "spec_window": "tsav_deploy.inputs.windows",
    "SpecWindows": "tsav_deploy.inputs.windows",
    "clip_frame_indices": "tsav_deploy.inputs.clips",
    "ClipAssembler": "tsav_deploy.inputs.clips",
    "align_face": "tsav_deploy.faces.align",
    "render_mask": "tsav_deploy.faces.mask",
    "Exporter": "tsav_deploy.export",
    "verify_export": "tsav_deploy.export",
    "TrainConfig": "tsav_deploy.train.trainer",
    "Trainer": "tsav_deploy.train.trainer",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


__all__ = ["__version__", "load_model", *_LAZY]
