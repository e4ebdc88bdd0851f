"""The two-stream aural-visual network (TwoStreamAuralVisualModel in the authors' tsav.py).

Module names reproduce the authors' checkpoint keys exactly (``audio_model.resnet.*``,
``video_model.r2plus1d.*``, ``fc.1.*``) so their ``state_dict`` loads with ``strict=True``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from tsav_deploy.contract import N_OUTPUTS
from tsav_deploy.model.r2plus1d import R2Plus1D18
from tsav_deploy.model.resnet import ResNet18


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters; the defaults are the paper's network (42,489,995 parameters).

    ``widths``/``stem_mid`` exist for the reduced network used in CPU tests and the demo; a
    checkpoint records its config so it is always rebuilt with the shape it was trained with.
    """

    widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    stem_mid: int = 45

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "ModelConfig":
        data = dict(data or {})
        return cls(widths=tuple(data.get("widths", cls.widths)), stem_mid=int(data.get("stem_mid", cls.stem_mid)))

    @classmethod
    def reduced(cls) -> "ModelConfig":
        """The reduced-width network (about 1/64 of the paper's FLOPs) for CPU tests and the demo."""
        return cls(widths=(8, 16, 32, 64), stem_mid=8)

    @property
    def is_paper(self) -> bool:
        return self == ModelConfig()


class AudioModel(nn.Module):
    """Aural stream: ResNet-18 over a [B, 1, 64, 1001] log-mel window -> [B, 512]."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.resnet = ResNet18(in_channels=1, widths=config.widths)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.resnet(spec)


class VideoModel(nn.Module):
    """Visual stream: R(2+1)D-18 over a [B, 4, 8, 112, 112] RGB+mask clip -> [B, 512]."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.r2plus1d = R2Plus1D18(in_channels=4, widths=config.widths, stem_mid=config.stem_mid)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.r2plus1d(clip)


class Fusion(nn.Module):
    """Fusion head over concat([aural, visual]) — aural first, as the authors — sharing TSAV's ``fc``."""

    def __init__(self, fc: nn.Module):
        super().__init__()
        self.fc = fc

    def forward(self, aural: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([aural, visual], dim=1))


class TSAV(nn.Module):
    """forward(clip [B,4,8,112,112], spec [B,1,64,1001]) -> logits [B,17].

    The three parts are separate callables (``visual``, ``aural``, ``fusion``) because export and
    fast inference run them apart (e.g. one aural window serves many strided frames).
    """

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config or ModelConfig()
        self.audio_model = AudioModel(self.config)
        self.video_model = VideoModel(self.config)
        # Dropout(0) kept so the linear layer's key is ``fc.1.weight`` as in the authors' checkpoint.
        self.fc = nn.Sequential(nn.Dropout(0.0), nn.Linear(2 * self.config.widths[3], N_OUTPUTS))

    @property
    def features(self) -> int:
        return self.config.widths[3]

    def visual(self, clip: torch.Tensor) -> torch.Tensor:
        return self.video_model(clip)

    def aural(self, spec: torch.Tensor) -> torch.Tensor:
        return self.audio_model(spec)

    def fusion(self, aural: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([aural, visual], dim=1))

    def parts(self) -> dict[str, nn.Module]:
        """The three stages as standalone modules (sharing this model's weights), for export."""
        return {"visual": self.video_model, "aural": self.audio_model, "fusion": Fusion(self.fc)}

    def forward(self, clip: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        return self.fusion(self.aural(spec), self.visual(clip))
