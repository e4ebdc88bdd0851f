"""The figures computed by the authors' code, kept in ``tests/data/``, and the seeded weights, inputs
and test signal they were computed for.

The figures (the authors' network's logits and features, their masks and alignment, torchaudio's
mel power) were made by running the authors' implementation on deterministic inputs. The inputs are
regenerated here from their seeds with NumPy, following the generation procedure documented with
the figures, so the same numbers appear under any torch version.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"


def load_json(name: str):
    """``model_io.json`` (logits and features for the seeded weights and inputs) or
    ``tsav_state_dict.json`` (every key of the authors' checkpoint: shape and layer kind)."""
    return json.loads((DATA / name).read_text())


def load_npz(name: str) -> dict[str, np.ndarray]:
    """``face_ref.npz`` (dlib landmarks, the 5 points, the similarity matrix, the aligned crop, masks
    drawn by the authors' ``draw_mask``) or ``mel_track_power.npz`` (torchaudio's power mel)."""
    with np.load(DATA / name) as data:
        return dict(data)


def seeded_state_dict(spec: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """Weights for every key of ``spec``, drawn in sorted-key order from one RandomState: convolution
    and linear weights He-normal (std √(2 / fan_in)), linear biases N(0, 0.01), BatchNorm weight and
    running variance U(0.5, 1.5), BatchNorm bias and running mean N(0, 0.1), batch counters 0."""
    rng = np.random.RandomState(seed)
    weights = {}
    for key in sorted(spec):
        shape, kind = tuple(spec[key]["shape"]), spec[key]["kind"]
        leaf = key.rsplit(".", 1)[1]
        if leaf == "num_batches_tracked":
            weights[key] = np.zeros(shape, dtype=np.int64)
        elif kind == "bn" and leaf in ("weight", "running_var"):
            weights[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif kind == "bn":
            weights[key] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
        elif leaf == "bias":
            weights[key] = (0.01 * rng.standard_normal(shape)).astype(np.float32)
        else:
            weights[key] = (np.sqrt(2.0 / int(np.prod(shape[1:]))) * rng.standard_normal(shape)).astype(np.float32)
    return weights


def seeded_inputs(batch: int = 2, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal ``clip`` [B, 4, 8, 112, 112] then ``spec`` [B, 1, 64, 1001] from one RandomState."""
    rng = np.random.RandomState(seed)
    clip = rng.standard_normal((batch, 4, 8, 112, 112)).astype(np.float32)
    spec = rng.standard_normal((batch, 1, 64, 1001)).astype(np.float32)
    return clip, spec


def synthetic_speechlike(seconds: float = 12.0, sr: int = 44100, seed: int = 3) -> np.ndarray:
    """The mel figures' test signal: a chirp (200 Hz rising 150 Hz/s, amplitude 0.3), harmonics 2, 3
    and 5 of 220 Hz (amplitude 0.1/h, phase h), noise (0.05) under a 1.5 Hz envelope, and the fifth
    second 40 dB quieter; mono float32."""
    rng = np.random.RandomState(seed)
    t = np.arange(int(seconds * sr)) / sr
    signal = 0.3 * np.sin(2 * np.pi * (200 + 150 * t) * t)
    for h in (2, 3, 5):
        signal += (0.1 / h) * np.sin(2 * np.pi * 220 * h * t + h)
    signal += 0.05 * (0.5 * (1 + np.sin(2 * np.pi * 1.5 * t))) * rng.standard_normal(t.shape)
    signal[int(4 * sr) : int(5 * sr)] *= 0.01
    return signal.astype(np.float32)
