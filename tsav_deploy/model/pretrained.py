"""Training initialisation from torchvision's published backbones (docs/model-contract.md).

The visual stream starts from R(2+1)D-18 Kinetics-400 with the RGB stem filters copied into
channels 0–2 of the 4-channel stem (the mask channel keeps its fresh initialisation, as in the
authors' VideoModel); the aural stream optionally starts from ImageNet ResNet-18 with ``conv1``
averaged over RGB (the authors' AudioModel(pretrained=True)).
"""

from __future__ import annotations

import pathlib

import torch

from tsav_deploy.errors import CheckpointError
from tsav_deploy.model.tsav import TSAV


def _read_backbone(path: pathlib.Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is the user's to fix, reported in one line
        raise CheckpointError(
            f"{path}: not a readable torchvision weight file ({str(exc).splitlines()[0][:120]})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a torchvision state_dict")
    return state


def _copy_into(target: torch.nn.Module, source: dict[str, torch.Tensor], first_conv: str, path: pathlib.Path) -> int:
    """Copy every backbone tensor except the classifier; adapt the first convolution's input channels."""
    own = target.state_dict()
    copied = 0
    with torch.no_grad():
        for key, value in source.items():
            if key.startswith("fc."):
                continue
            if key not in own:
                raise CheckpointError(f"{path}: unexpected key {key!r} for this backbone")
            if key == first_conv and value.shape[1] != own[key].shape[1]:
                if own[key].shape[1] == 1:  # 1-channel spectrogram: average the RGB filters
                    own[key].copy_(value.mean(dim=1, keepdim=True))
                else:  # RGB + mask: RGB filters into channels 0-2, the mask channel keeps its init
                    own[key][:, : value.shape[1]].copy_(value)
            elif value.shape != own[key].shape:
                raise CheckpointError(f"{path}: {key} has shape {list(value.shape)}, expected {list(own[key].shape)}")
            else:
                own[key].copy_(value)
            copied += 1
    return copied


def init_visual_from_kinetics(model: TSAV, path: pathlib.Path) -> int:
    """Load torchvision's ``r2plus1d_18`` Kinetics-400 file into the visual stream; returns tensors copied."""
    return _copy_into(model.video_model.r2plus1d, _read_backbone(path), "stem.0.weight", path)


def init_aural_from_imagenet(model: TSAV, path: pathlib.Path) -> int:
    """Load torchvision's ``resnet18`` ImageNet file into the aural stream; returns tensors copied."""
    return _copy_into(model.audio_model.resnet, _read_backbone(path), "conv1.weight", path)
