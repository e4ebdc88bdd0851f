"""ResNet-18 (He et al. 2016) with torchvision's module names, for the aural stream.

Only what TSAV needs: BasicBlock, a configurable stem width/input channels, and no classifier
(``fc`` is an identity, as in the authors' model where it was replaced by ``Dummy()``).
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """torchvision.models.resnet18 minus the classifier; ``widths`` shrinks it for CPU tests."""

    def __init__(self, in_channels: int = 1, widths: tuple[int, int, int, int] = (64, 128, 256, 512)):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1, self.layer2, self.layer3, self.layer4 = make_stages(BasicBlock, nn.Conv2d, nn.BatchNorm2d, widths)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Identity()
        self.out_features = widths[3]
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def make_stages(
    block: type[nn.Module], conv: type[nn.Module], bn: type[nn.Module], widths: tuple[int, ...]
) -> list[nn.Sequential]:
    """torchvision's four residual stages (``layer1``–``layer4``) of two blocks each; every stage
    but the first halves the resolution, with a 1x1 projection shortcut where the shape changes."""
    stages, inplanes = [], widths[0]
    for index, planes in enumerate(widths):
        stride = 1 if index == 0 else 2
        downsample = None
        if stride != 1 or inplanes != planes:
            downsample = nn.Sequential(conv(inplanes, planes, 1, stride=stride, bias=False), bn(planes))
        stages.append(nn.Sequential(block(inplanes, planes, stride, downsample), block(planes, planes)))
        inplanes = planes
    return stages


def _init_weights(module: nn.Module) -> None:
    """torchvision's initialisation, so training from scratch starts where the authors' did."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
