"""Inputs on which exported artifacts are compared with the PyTorch network.

Two seeded probe sets, regenerated bit for bit from (batch, seed) by NumPy on any machine, so
``tsav export --verify`` needs neither the checkpoint nor the data:

- ``random``: standard-normal clip and spectrogram (batch 3), the widest spread of activations.
- ``structured``: inputs in the value ranges and with the structure the frontends produce
  (batch 1): a synthetic face — skin ellipse, eyes, a mouth that opens and closes, slight head
  motion — normalized with the clip mean/std, a sparse landmark mask with the mask's gray levels,
  and a speech-like log-mel window (spectral tilt, harmonics of a moving pitch, syllable envelope,
  pauses) floored at max − 80 dB and normalized as the audio frontend does.

Batches 3 and 1 both differ from the batch of 2 used when tracing, so the dynamic batch axis is
exercised by every verification.
"""

from __future__ import annotations

import numpy as np
import torch

from tsav_deploy.contract import (
    CLIP_FRAMES,
    CLIP_MEAN,
    CLIP_STD,
    CROP_SIZE,
    N_MELS,
    SPEC_MEAN,
    SPEC_STD,
    TOP_DB,
    WINDOW_COLUMNS,
)
from tsav_deploy.model import TSAV

PROBES = {"random": {"batch": 3, "seed": 0}, "structured": {"batch": 1, "seed": 1}}
OUTPUTS = ("visual_features", "aural_features", "logits")


def probe_inputs(kind: str, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(clip [B,4,8,112,112], spec [B,1,64,1001])`` float32 for a probe set."""
    rng = np.random.RandomState(seed)
    if kind == "random":
        clip = rng.standard_normal((batch, 4, CLIP_FRAMES, CROP_SIZE, CROP_SIZE)).astype(np.float32)
        spec = rng.standard_normal((batch, 1, N_MELS, WINDOW_COLUMNS)).astype(np.float32)
        return clip, spec
    if kind == "structured":
        clip = np.stack([_face_clip(rng) for _ in range(batch)])
        spec = np.stack([_speech_window(rng) for _ in range(batch)])
        return clip, spec
    raise ValueError(f"unknown probe set {kind!r}")


def all_probes() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {kind: probe_inputs(kind, **spec) for kind, spec in PROBES.items()}


@torch.inference_mode()
def reference_outputs(model: TSAV) -> dict[str, np.ndarray]:
    """The PyTorch network's features and logits on every probe set, keyed ``"<probe>.<output>"``."""
    out = {}
    for kind, (clip, spec) in all_probes().items():
        visual = model.visual(torch.from_numpy(clip))
        aural = model.aural(torch.from_numpy(spec))
        logits = model.fusion(aural, visual)
        for name, value in zip(OUTPUTS, (visual, aural, logits)):
            out[f"{kind}.{name}"] = value.numpy()
    return out


def _face_clip(rng: np.random.RandomState) -> np.ndarray:
    """A normalized RGB + mask clip [4, 8, 112, 112] of a synthetic talking face."""
    yy, xx = np.mgrid[0:CROP_SIZE, 0:CROP_SIZE].astype(np.float32)
    frames, masks = [], []
    for k in range(CLIP_FRAMES):
        dx, dy = 2.0 * np.sin(k / 3.0), 1.5 * np.cos(k / 4.0)  # slight head motion
        rgb = np.empty((CROP_SIZE, CROP_SIZE, 3), np.float32)
        rgb[...] = np.stack([60 + 0.5 * yy, 70 + 0.3 * xx, 90 + 0.2 * (yy + xx)], axis=-1)  # background
        face = ((xx - 56 - dx) / 40) ** 2 + ((yy - 62 - dy) / 52) ** 2 <= 1
        rgb[face] = (205, 160, 135)
        opening = 3 + 3 * abs(np.sin(k * 1.3))  # the mouth opens and closes while talking
        features = [
            (38.3, 51.7, 7, 3, (40, 30, 30)),
            (73.5, 51.5, 7, 3, (40, 30, 30)),
            (56.0, 92.0, 13, opening, (120, 40, 50)),
        ]
        for cx, cy, rx, ry, colour in features:
            rgb[((xx - cx - dx) / rx) ** 2 + ((yy - cy - dy) / ry) ** 2 <= 1] = colour
        rgb += rng.normal(0, 4, rgb.shape)  # sensor noise
        frames.append(np.clip(np.rint(rgb), 0, 255))
        masks.append(_landmark_mask(dx, dy, opening))
    pixels = np.concatenate([np.stack(frames).transpose(3, 0, 1, 2), np.stack(masks)[None]], axis=0) / 255.0
    mean = np.asarray(CLIP_MEAN, np.float32)[:, None, None, None]
    std = np.asarray(CLIP_STD, np.float32)[:, None, None, None]
    return ((pixels - mean) / std).astype(np.float32)


def _landmark_mask(dx: float, dy: float, opening: float) -> np.ndarray:
    """Outlines at the mask's gray levels (mouth 255, brows 223/191, eyes 159/127, nose 63, chin 31)."""
    mask = np.zeros((CROP_SIZE, CROP_SIZE), np.float32)
    t = np.linspace(0, 2 * np.pi, 64)
    outlines = [
        (56.0 + 13 * np.cos(t), 92.0 + opening * np.sin(t), 255),
        (np.linspace(28, 46, 16), np.full(16, 42.0), 223),
        (np.linspace(66, 84, 16), np.full(16, 42.0), 191),
        (38.3 + 7 * np.cos(t), 51.7 + 3 * np.sin(t), 159),
        (73.5 + 7 * np.cos(t), 51.5 + 3 * np.sin(t), 127),
        (np.full(16, 56.0), np.linspace(55, 72, 16), 63),
        (np.linspace(44, 68, 16), 110 - 0.02 * (np.linspace(44, 68, 16) - 56) ** 2, 31),
    ]
    for xs, ys, gray in outlines:
        cols = np.clip(np.rint(xs + dx), 0, CROP_SIZE - 1).astype(int)
        rows = np.clip(np.rint(ys + dy), 0, CROP_SIZE - 1).astype(int)
        mask[rows, cols] = gray
    return mask


def _speech_window(rng: np.random.RandomState) -> np.ndarray:
    """A normalized log-mel window [1, 64, 1001] with speech-like structure."""
    bins = np.arange(N_MELS, dtype=np.float32)[:, None]
    seconds = np.arange(WINDOW_COLUMNS, dtype=np.float32)[None, :] / 100.0
    db = -25.0 - 0.6 * bins + np.zeros_like(seconds)  # spectral tilt
    pitch_bin = 6 + 2 * np.sin(2 * np.pi * 0.3 * seconds)  # a slowly moving fundamental
    for harmonic in range(1, 6):
        db += (22.0 / harmonic) * np.exp(-0.5 * ((bins - harmonic * pitch_bin) / 1.2) ** 2)
    syllables = 0.5 * (1 + np.sin(2 * np.pi * 4.0 * seconds))
    voiced = ((seconds % 2.5) < 1.8).astype(np.float32)  # pauses between phrases
    db = db + 30.0 * np.log10(1e-3 + syllables * voiced) + rng.normal(0, 2.0, db.shape)
    db = np.maximum(db, db.max() - TOP_DB)
    return ((db - SPEC_MEAN) / SPEC_STD).astype(np.float32)[None]
