"""A synthetic annotation for the report tests and ``scripts/bench_report.py``: smooth predictions
(valence and arousal waves, expressions and AUs that change every few seconds, a little noise) for
any frame times and number of people, with stretches of frames without a face."""

from __future__ import annotations

import numpy as np

from tsav_deploy.results.predictions import decode
from tsav_deploy.results.video_result import PersonResult, VideoResult


def synthetic_result(
    name: str,
    times: np.ndarray,
    suffixes: tuple[str, ...] = ("",),
    gaps: dict[int, list[tuple[int, int]]] | None = None,
    seed: int = 0,
) -> VideoResult:
    """``gaps``: per person index, ``(first, end)`` frame ranges without a face."""
    rng = np.random.default_rng(seed)
    times = np.asarray(times, dtype=np.float64)
    n = len(times)
    people = []
    for k, suffix in enumerate(suffixes):
        phase = 1.7 * k
        logits = np.empty((n, 17))
        logits[:, :7] = 3 * np.sin(times[:, None] * np.linspace(0.21, 0.47, 7) + phase + np.arange(7))
        logits[:, 7] = 0.8 * np.sin(0.9 * times + phase)
        logits[:, 8] = 0.7 * np.cos(0.6 * times + phase)
        logits[:, 9:] = 4 * np.sin(times[:, None] * np.linspace(0.3, 1.1, 8) + phase) - 1
        logits += rng.normal(0, 0.05, logits.shape)
        found = np.ones(n, dtype=bool)
        for first, end in (gaps or {}).get(k, []):
            found[first:end] = False
        boxes = np.tile(np.array([[100 + 200 * k, 60, 220 + 200 * k, 200]], np.float32), (n, 1))
        boxes[~found] = np.nan
        scores = np.where(found, 0.99, np.nan).astype(np.float32)
        people.append(PersonResult(suffix, k, found, boxes, scores, decode(logits)))
    info = {"frames": n, "engine": "synthetic", "face_backend": "synthetic", "stride": 1}
    return VideoResult(name, times, people, info)
