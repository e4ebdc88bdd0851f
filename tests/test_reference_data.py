"""tests/data and tests/helpers/reference.py against the shared reference folder they come from (skipped
where ../shared/reference is absent): the same figures, and the same seeded weights, inputs and
signal from the project's own generator."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np
import pytest

from helpers import reference

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "reference"


@pytest.fixture(scope="module")
def shared():
    if not (SHARED / "refcommon.py").exists():
        pytest.skip("../shared/reference is absent")
    spec = importlib.util.spec_from_file_location("shared_refcommon", SHARED / "refcommon.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_figures_are_the_shared_ones(shared):
    for name in ("model_io.json", "tsav_state_dict.json"):
        assert reference.load_json(name) == json.loads((SHARED / name).read_text())
    for name in ("face_ref.npz",):
        ours, theirs = reference.load_npz(name), dict(np.load(SHARED / name))
        assert ours.keys() == theirs.keys() and all(np.array_equal(ours[k], theirs[k]) for k in ours)
    np.testing.assert_array_equal(
        reference.load_npz("mel_track_power.npz")["track_power"], np.load(SHARED / "mel_ref.npz")["track_power"]
    )


def test_generators_reproduce_the_shared_ones(shared):
    spec = reference.load_json("tsav_state_dict.json")
    ours, theirs = reference.seeded_state_dict(spec, 0), shared.seeded_state_dict(spec, 0)
    assert ours.keys() == theirs.keys() and all(np.array_equal(ours[k], theirs[k]) for k in ours)
    for a, b in zip(reference.seeded_inputs(2, 1), shared.seeded_inputs(2, 1)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        reference.synthetic_speechlike(12.0, 44100, 3), shared.synthetic_speechlike(12.0, 44100, 3)
    )
