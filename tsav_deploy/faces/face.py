"""What every face backend returns, and the small interface the video tracker drives them through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tsav_deploy.errors import TsavError


class FaceBackendError(TsavError):
    """A face backend cannot be used (model pack missing or unreadable, download failed, bad option)."""


def error_summary(error: BaseException, limit: int = 200) -> str:
    """The first line of a third-party error, for a one-line :class:`FaceBackendError`."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(eq=False)
class Face:
    """One face in one frame.

    Landmarks are float32 because a whole video's faces stay in memory between the annotate pipeline's
    two passes (about 0.6 KB per face and frame); alignment converts them to float64.
    """

    box: np.ndarray  # [4] float32 x0, y0, x1, y1 in image pixels
    score: float  # confidence of the detection that found or last confirmed this face
    landmarks68: np.ndarray  # [68, 2] float32 (x, y), iBUG 68-point order, 0-based
    embedding: np.ndarray | None = None  # identity vector; computed where a tracklet starts
    tracklet: int | None = None  # short-term id from the video tracker (None for still images)

    @property
    def size(self) -> float:
        """Geometric mean of the box's width and height (pixels)."""
        width, height = self.box[2:] - self.box[:2]
        return float(np.sqrt(max(width, 0.0) * max(height, 0.0)))


def make_face(box: np.ndarray, score: float, landmarks68: np.ndarray) -> Face:
    """A :class:`Face` with its arrays in the compact dtypes above."""
    return Face(
        box=np.asarray(box, dtype=np.float32).reshape(4),
        score=float(score),
        landmarks68=np.asarray(landmarks68, dtype=np.float32).reshape(68, 2),
    )


class FaceBackend(Protocol):
    """A detector + 68-point landmark model + identity model.

    The video tracker (:mod:`.video`) runs ``detect`` on some frames only and follows faces with
    ``refit`` in between, so a backend exposes these steps separately rather than one ``analyze`` call.
    """

    name: str
    identity_threshold: float  # largest Euclidean distance between two embeddings of one person

    def detect(self, image_rgb: np.ndarray, *, thorough: bool = False) -> list[Face]:
        """All faces in an RGB uint8 image with landmarks (no embeddings). ``thorough`` asks for the
        backend's best recall at a higher cost (used on a shot's first frame)."""
        ...

    def refit(self, image_rgb: np.ndarray, previous: Face) -> Face | None:
        """Follow a face into the next frame from its previous landmarks, or None if it left the image."""
        ...

    def rescue(self, image_rgb: np.ndarray, face: Face) -> Face | None:
        """A second, local opinion on a tracked face that full-frame detection missed: the confirmed face,
        or None (also for backends without one)."""
        ...

    def embed(self, image_rgb: np.ndarray, face: Face) -> np.ndarray:
        """The identity vector of a face (compared by Euclidean distance with ``identity_threshold``)."""
        ...


# --- box geometry shared by the backends and the trackers ------------------------------------------


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Intersection over union of every xyxy box in ``boxes_a`` [N, 4] with every one in ``boxes_b`` [M, 4]."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)[:, None]
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)[None]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_boxes(boxes_a: np.ndarray, boxes_b: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """One-to-one pairs (i, j), best overlap first, with IoU ≥ ``min_iou`` (greedy: faces rarely overlap,
    so the optimal assignment buys nothing)."""
    iou = iou_matrix(boxes_a, boxes_b)
    pairs: list[tuple[int, int]] = []
    if iou.size == 0:
        return pairs
    for flat in np.argsort(-iou, axis=None):
        i, j = np.unravel_index(flat, iou.shape)
        if iou[i, j] < min_iou:
            break
        if all(i != p and j != q for p, q in pairs):
            pairs.append((int(i), int(j)))
    return pairs


# Below this a face cannot be followed (nor usefully aligned to 112×112); with less of its box inside
# the frame than this, it has left it.
_MIN_FACE_PX = 16
_MIN_INSIDE = 0.5


def followable(box: np.ndarray, image_shape: tuple[int, ...]) -> bool:
    """Whether a face's predicted box is big enough and in the frame enough to refit landmarks in."""
    return box[2] - box[0] >= _MIN_FACE_PX and inside_fraction(box, image_shape) >= _MIN_INSIDE


def inside_fraction(box: np.ndarray, image_shape: tuple[int, ...]) -> float:
    """Share of a box's area inside an image of shape (H, W, ...)."""
    height, width = image_shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    area = max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
    if area == 0.0:
        return 0.0
    inside = max(min(x1, width) - max(x0, 0.0), 0.0) * max(min(y1, height) - max(y0, 0.0), 0.0)
    return inside / area
