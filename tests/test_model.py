"""The network against the authors' own network (reference logits) and against torchvision."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tsav_deploy.model import TSAV, ModelConfig


@pytest.fixture(scope="module")
def authors_state(reference):
    spec = reference.load_json("tsav_state_dict.json")
    return spec, {k: torch.from_numpy(v) for k, v in reference.seeded_state_dict(spec, 0).items()}


@pytest.fixture(scope="module")
def seeded_model(authors_state):
    model = TSAV().eval()
    model.load_state_dict(authors_state[1], strict=True)
    return model


def test_parameter_count_and_keys_match_authors_checkpoint(authors_state):
    spec, _ = authors_state
    model = TSAV()
    assert sum(p.numel() for p in model.parameters()) == 42_489_995
    own = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert own == {k: v["shape"] for k, v in spec.items()}


def test_logits_equal_authors_network(seeded_model, reference):
    ref = reference.load_json("model_io.json")
    clip, spec = reference.seeded_inputs(ref["batch"], ref["inputs_seed"])
    clip, spec = torch.from_numpy(clip), torch.from_numpy(spec)
    with torch.no_grad():
        aural = seeded_model.aural(spec)
        visual = seeded_model.visual(clip)
        logits = seeded_model.fusion(aural, visual)
        whole = seeded_model(clip, spec)
    expected = np.asarray(ref["logits"])
    scale = np.abs(expected).max()
    assert np.abs(logits.numpy() - expected).max() / scale < 1e-5
    np.testing.assert_allclose(aural[:, :8].numpy(), ref["aural_features_head"], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(visual[:, :8].numpy(), ref["visual_features_head"], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(whole, logits)
    assert aural.shape == visual.shape == (2, 512)


def test_fusion_puts_aural_features_first():
    model = TSAV(ModelConfig.reduced()).eval()
    aural, visual = torch.randn(3, 64), torch.zeros(3, 64)
    weight, bias = model.fc[1].weight, model.fc[1].bias
    with torch.no_grad():
        torch.testing.assert_close(model.fusion(aural, visual), aural @ weight[:, :64].T + bias)
        torch.testing.assert_close(model.parts()["fusion"](aural, visual), model.fusion(aural, visual))


def test_reduced_network_shapes():
    model = TSAV(ModelConfig.reduced()).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 4, 8, 112, 112), torch.randn(2, 1, 64, 1001))
    assert out.shape == (2, 17)
    assert not ModelConfig.reduced().is_paper and ModelConfig().is_paper


def _torchvision_tsav():
    """The authors' construction (tsav.py) from torchvision's models, without downloading weights."""
    tv = pytest.importorskip("torchvision")
    from torch import nn

    video = tv.models.video.r2plus1d_18(weights=None)
    video.stem[0] = nn.Conv3d(4, 45, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False)
    video.fc = nn.Identity()
    audio = tv.models.resnet18(weights=None)
    audio.conv1 = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
    audio.fc = nn.Identity()
    return video.eval(), audio.eval()


def test_backbones_equal_torchvision(seeded_model):
    video, audio = _torchvision_tsav()
    state = seeded_model.state_dict()
    video.load_state_dict(
        {k[len("video_model.r2plus1d.") :]: v for k, v in state.items() if k.startswith("video_model.")}
    )
    audio.load_state_dict(
        {k[len("audio_model.resnet.") :]: v for k, v in state.items() if k.startswith("audio_model.")}
    )
    gen = torch.Generator().manual_seed(0)
    clip, spec = torch.randn(1, 4, 8, 112, 112, generator=gen), torch.randn(1, 1, 64, 1001, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(seeded_model.visual(clip), video(clip), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(seeded_model.aural(spec), audio(spec), rtol=1e-4, atol=1e-4)
