"""How well a face backend finds the faces a person sees: recall and false positives against labelled
frames (``tests/data/face_labels.json``, docs/faces.md), per video and per face size, and the HD and 4K
scenes made from the labelled frames (upscaled and set into a wider canvas, labels transformed alike).

A detection matches a labelled face when their boxes overlap by ``MATCH_IOU`` (detectors draw boxes of
different extent, so the bar is lower than the usual 0.5); a detection that matches no face but overlaps
an ``ignore`` region (or has its centre inside one) counts neither way; any other is a false positive.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tsav_deploy.faces.face import Face, iou_matrix, match_boxes

MATCH_IOU = 0.3
SIZE_BUCKETS = ((24, 48), (48, 96), (96, 10_000))  # labelled box width, source pixels


def bucket_name(bucket: tuple[int, int]) -> str:
    low, high = bucket
    return f">{low}" if high >= 10_000 else f"{low}-{high}"


@dataclass
class LabelledFrame:
    """The labelled faces of one frame: ``boxes`` [N, 4] to find, ``ignore`` [M, 4] regions."""

    boxes: np.ndarray
    ignore: np.ndarray
    who: list[str | None] = field(default_factory=list)


def load_labels(path: str | os.PathLike) -> dict[str, dict[int, LabelledFrame]]:
    """video file name -> frame index -> its labelled faces."""
    document = json.loads(Path(path).read_text())
    videos = {}
    for name, video in document["videos"].items():
        frames = {}
        for index, faces in video["frames"].items():
            keep = [f for f in faces if not f.get("ignore")]
            frames[int(index)] = LabelledFrame(
                boxes=np.array([f["box"] for f in keep], dtype=np.float64).reshape(-1, 4),
                ignore=np.array([f["box"] for f in faces if f.get("ignore")], dtype=np.float64).reshape(-1, 4),
                who=[f.get("who") for f in keep],
            )
        videos[name] = frames
    return videos


@dataclass
class Score:
    """Counts over many frames: labelled faces and those found, per size bucket; false positives."""

    faces: dict[str, int] = field(default_factory=lambda: {bucket_name(b): 0 for b in SIZE_BUCKETS})
    found: dict[str, int] = field(default_factory=lambda: {bucket_name(b): 0 for b in SIZE_BUCKETS})
    false_positives: int = 0
    frames: int = 0

    @property
    def recall(self) -> float:
        total = sum(self.faces.values())
        return sum(self.found.values()) / total if total else float("nan")

    def bucket_recall(self, name: str) -> float:
        return self.found[name] / self.faces[name] if self.faces[name] else float("nan")

    def add(self, other: Score) -> None:
        for name in self.faces:
            self.faces[name] += other.faces[name]
            self.found[name] += other.found[name]
        self.false_positives += other.false_positives
        self.frames += other.frames


def _bucket(width: float) -> str | None:
    for low, high in SIZE_BUCKETS:
        if low <= width < high:
            return bucket_name((low, high))
    return None  # under 24 px: should have been labelled ignore


def score_frame(label: LabelledFrame, detected: np.ndarray) -> Score:
    """One frame's score for detected boxes [K, 4] (xyxy, source pixels)."""
    detected = np.asarray(detected, dtype=np.float64).reshape(-1, 4)
    score = Score(frames=1)
    pairs = match_boxes(label.boxes, detected, MATCH_IOU)
    matched = {i for i, _ in pairs}
    for i, box in enumerate(label.boxes):
        name = _bucket(box[2] - box[0])
        if name is not None:
            score.faces[name] += 1
            score.found[name] += i in matched
    spare = np.delete(detected, [j for _, j in pairs], axis=0)
    score.false_positives = sum(not _ignored(box, label.ignore) for box in spare)
    return score


def _ignored(box: np.ndarray, ignore: np.ndarray) -> bool:
    if not len(ignore):
        return False
    centre = (box[:2] + box[2:]) / 2
    inside = (
        (ignore[:, 0] <= centre[0])
        & (centre[0] < ignore[:, 2])
        & (ignore[:, 1] <= centre[1])
        & (centre[1] < ignore[:, 3])
    )
    return bool(inside.any() or iou_matrix(box[None], ignore).max() >= MATCH_IOU)


def face_boxes(faces: Sequence[Face]) -> np.ndarray:
    return np.array([f.box for f in faces], dtype=np.float64).reshape(-1, 4)


def score_video(labels: dict[int, LabelledFrame], per_frame: Sequence[Sequence[Face]]) -> Score:
    """The score of a video's per-frame faces (list position = frame index) on its labelled frames."""
    total = Score()
    for index, label in labels.items():
        if index < len(per_frame):
            total.add(score_frame(label, face_boxes(per_frame[index])))
    return total


# --- HD and 4K scenes -----------------------------------------------------------------------------

# (canvas width, height, upscale of each 640x360 source frame, panel origins): faces of 25-75 px in the
# stage recording become about 50-150 px.
SCENES = {
    "1080p": (1920, 1080, 1.5, ((0, 0), (960, 540))),
    "4k": (3840, 2160, 2.0, ((0, 0), (1280, 720), (2560, 1440))),
}


def compose_scene(
    kind: str, frames: Sequence[np.ndarray], labels: Sequence[LabelledFrame], seed: int = 0
) -> tuple[np.ndarray, LabelledFrame]:
    """A ``kind`` scene (see ``SCENES``) from as many source frames as it has panels, on a dim noisy
    background, with the frames' labels moved into it."""
    width, height, scale, origins = SCENES[kind]
    rng = np.random.default_rng(seed)
    canvas = rng.integers(20, 60, size=(height, width, 3), dtype=np.uint8)
    boxes, ignore, who = [], [], []
    for frame, label, (x, y) in zip(frames, labels, origins, strict=True):
        panel = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        h, w = min(panel.shape[0], height - y), min(panel.shape[1], width - x)
        canvas[y : y + h, x : x + w] = panel[:h, :w]
        shift = np.array([x, y, x, y], dtype=np.float64)
        boxes.append(label.boxes * scale + shift)
        ignore.append(label.ignore * scale + shift)
        who += label.who
    return canvas, LabelledFrame(np.concatenate(boxes), np.concatenate(ignore), who)


def stage_scenes(
    frames: dict[int, np.ndarray], labels: dict[int, LabelledFrame], kind: str
) -> Iterable[tuple[np.ndarray, LabelledFrame]]:
    """``kind`` scenes from the stage recording's labelled frames: each pairs (1080p) or combines (4K,
    with the wide shot's small faces) an audience frame and a performer close-up."""
    wide, performer, audience = (0, 10), range(90, 220, 20), range(220, 280, 10)
    for n, (a, p) in enumerate(zip(audience, performer)):
        chosen = [a, p] if kind == "1080p" else [wide[n % 2], a, p]
        yield compose_scene(kind, [frames[i] for i in chosen], [labels[i] for i in chosen], seed=n)
