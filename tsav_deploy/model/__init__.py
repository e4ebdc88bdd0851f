"""The TSAV network in plain torch (no torchvision at run time; docs/model-contract.md)."""

from tsav_deploy.model.r2plus1d import R2Plus1D18
from tsav_deploy.model.resnet import ResNet18
from tsav_deploy.model.tsav import TSAV, Fusion, ModelConfig

__all__ = ["TSAV", "Fusion", "ModelConfig", "R2Plus1D18", "ResNet18"]
