"""The TSAV network in plain torch (no torchvision at run time; docs/model-contract.md)."""

from .r2plus1d import R2Plus1D18
from .resnet import ResNet18
from .tsav import TSAV, Fusion, ModelConfig

__all__ = ["TSAV", "Fusion", "ModelConfig", "R2Plus1D18", "ResNet18"]
