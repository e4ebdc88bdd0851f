"""R(2+1)D-18 (Tran et al. 2018) with torchvision's module names (``torchvision.models.video``).

Every 3x3x3 convolution is factorised into a spatial (1x3x3) and a temporal (3x1x1) one, with the
intermediate width chosen so the parameter count matches the full 3-D convolution.
"""

from __future__ import annotations

import torch
from torch import nn

from tsav_deploy.model.resnet import _init_weights, make_stages


def midplanes(inplanes: int, planes: int) -> int:
    return (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes)


class Conv2Plus1D(nn.Sequential):
    def __init__(self, in_planes: int, out_planes: int, mid_planes: int, stride: int = 1):
        super().__init__(
            nn.Conv3d(in_planes, mid_planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(mid_planes),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid_planes, out_planes, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False),
        )


class BasicBlock3d(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        # torchvision sizes both factorised convolutions of a block from its *input* width.
        mid = midplanes(inplanes, planes)
        self.conv1 = nn.Sequential(
            Conv2Plus1D(inplanes, planes, mid, stride), nn.BatchNorm3d(planes), nn.ReLU(inplace=True)
        )
        self.conv2 = nn.Sequential(Conv2Plus1D(planes, planes, mid), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + identity)


class R2Plus1D18(nn.Module):
    """torchvision.models.video.r2plus1d_18 minus the classifier, with a configurable stem input.

    TSAV feeds 4 channels (RGB + landmark mask): ``stem.0`` is ``Conv3d(4, 45, (1,7,7))``.
    ``widths`` shrinks the network for CPU tests; the default is the paper's.
    """

    def __init__(
        self, in_channels: int = 4, widths: tuple[int, int, int, int] = (64, 128, 256, 512), stem_mid: int = 45
    ):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(in_channels, stem_mid, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(stem_mid),
            nn.ReLU(inplace=True),
            nn.Conv3d(stem_mid, widths[0], (3, 1, 1), stride=1, padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(widths[0]),
            nn.ReLU(inplace=True),
        )
        self.layer1, self.layer2, self.layer3, self.layer4 = make_stages(
            BasicBlock3d, nn.Conv3d, nn.BatchNorm3d, widths
        )
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Identity()
        self.out_features = widths[3]
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))
