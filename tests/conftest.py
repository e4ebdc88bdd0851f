"""Shared fixtures: the real recordings live beside the checkout (``../shared/media``; tests that need
them skip cleanly where that folder is absent, e.g. on a user's clone); the authors' reference
figures are in ``tests/data`` (``helpers/reference.py`` reads them)."""

from __future__ import annotations

import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Shared test code is imported as ``helpers.…`` whatever pytest's import mode.
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))
SHARED = ROOT.parent / "shared"
MEDIA = SHARED / "media"


@pytest.fixture(scope="session")
def media_dir() -> pathlib.Path:
    if not (MEDIA / "MANIFEST.md").exists():
        pytest.skip("../shared/media is absent (the shared test recordings)")
    return MEDIA


@pytest.fixture(scope="session")
def reference():
    """The authors' figures (tests/data) and the seeded weights, inputs and signal they belong to."""
    from helpers import reference as module

    return module


@pytest.fixture(scope="session")
def authors_checkpoint(reference, tmp_path_factory) -> pathlib.Path:
    """A file in the authors' release format (TSAV416k.pth.tar): PyTorch 1.4-style legacy (non-zip)
    serialization of ``{'state_dict': ..., 'epoch': ..., 'best_score': numpy scalar}`` with the
    seeded reference weights."""
    import numpy as np
    import torch

    spec = reference.load_json("tsav_state_dict.json")
    state = {k: torch.from_numpy(v) for k, v in reference.seeded_state_dict(spec, 0).items()}
    path = tmp_path_factory.mktemp("authors") / "TSAV416k.pth.tar"
    payload = {"state_dict": state, "epoch": 7, "best_score": np.float64(0.5401), "arch": "TwoStreamAuralVisualModel"}
    torch.save(payload, path, _use_new_zipfile_serialization=False)
    return path


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> pathlib.Path:
    """A project-format checkpoint of the reduced network with seeded weights (fast on CPU)."""
    import torch

    from tsav_deploy.artifacts.checkpoint import save_checkpoint
    from tsav_deploy.model import TSAV, ModelConfig

    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("small") / "small.pt", TSAV(ModelConfig.reduced()))


@pytest.fixture(scope="session")
def small_export(small_checkpoint, tmp_path_factory) -> pathlib.Path:
    """ONNX + TorchScript export of ``small_checkpoint`` (tests that damage it work on a copy)."""
    from tsav_deploy.export import Exporter

    return Exporter()(small_checkpoint, tmp_path_factory.mktemp("small_export") / "export").folder


# --- the synthetic Aff-Wild2-shaped dataset, made once per session for the training tests ----------


@pytest.fixture(scope="module")
def one_thread():
    """Training tests run torch on one thread (see helpers.synthetic_data.single_thread_torch)."""
    from helpers.synthetic_data import single_thread_torch

    with single_thread_torch():
        yield


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    from helpers.synthetic_data import synthetic_dataset

    return synthetic_dataset(tmp_path_factory)


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    from helpers.synthetic_data import synthetic_cache

    return synthetic_cache(tmp_path_factory)
