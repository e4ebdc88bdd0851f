"""The paper-like face backend: insightface's ``buffalo_l`` pack (SCRFD/RetinaFace-10GF detector,
``1k3d68`` 68-point 3D landmarks of which x, y are used, ArcFace R50 identity), run with onnxruntime.

The pack is ~280 MB and downloads into insightface's cache on first use (:mod:`.insightface_pack`,
which also verifies it on every use). ``auto`` selection only looks for it locally; an explicit
request may download it.
"""

from __future__ import annotations

import os

import numpy as np

from tsav_deploy.faces import insightface_pack
from tsav_deploy.faces.align import five_points
from tsav_deploy.faces.face import Face, FaceBackendError, error_summary, followable, make_face

_TASKS = ("detection", "landmark_3d_68", "recognition")
# The landmark model crops 1.5× the larger side of the box it is given, centred on it; a detector box
# spans roughly from the jaw line sideways and from the chin to a fifth of the face above the brows.
_FOREHEAD = 0.2


def box_from_landmarks(landmarks68: np.ndarray) -> np.ndarray:
    """An approximate detector-style xyxy box of 68 landmarks (see ``_FOREHEAD``)."""
    points = np.asarray(landmarks68, dtype=np.float64)
    x0, y0 = points.min(0)
    x1, y1 = points.max(0)
    return np.array([x0, y0 - _FOREHEAD * (y1 - y0), x1, y1])


class InsightFaceBackend:
    """insightface ``buffalo_l`` through its ``FaceAnalysis`` loader.

    ``root``: insightface's cache root (default :func:`.insightface_pack.default_root`); ``download``:
    fetch the pack when it is missing or fails its check; ``det_size``: the detector's square input side.
    """

    name = "insightface"
    # ArcFace embeddings are L2-normalised here; cosine similarity 0.35 (insightface's usual verification
    # range is 0.3-0.4) is a Euclidean distance of sqrt(2 * (1 - 0.35)).
    identity_threshold = float(np.sqrt(2 * (1 - 0.35)))

    def __init__(self, root: str | os.PathLike | None = None, download: bool = True, det_size: int = 640) -> None:
        folder = insightface_pack.ensure(root, download_missing=download)
        from insightface.app import FaceAnalysis

        try:
            app = FaceAnalysis(name=str(folder), allowed_modules=list(_TASKS))
            app.prepare(ctx_id=0, det_size=(det_size, det_size))
        # onnx/onnxruntime/protobuf raise unrelated types (and insightface asserts) for unreadable files.
        except Exception as error:
            raise FaceBackendError(
                f"cannot load the insightface model pack in {folder}: {error_summary(error)}"
            ) from error
        missing = [task for task in _TASKS if task not in app.models]
        if missing:
            raise FaceBackendError(f"the insightface pack in {folder} has no {', '.join(missing)} model")
        self._detector = app.models["detection"]
        self._landmarker = app.models["landmark_3d_68"]
        self._recognizer = app.models["recognition"]

    # --- FaceBackend ----------------------------------------------------------------------------------

    def detect(self, image_rgb: np.ndarray, *, thorough: bool = False) -> list[Face]:
        # One detector for both modes: it is already the thorough one.
        bgr = _bgr(image_rgb)
        boxes, _ = self._detector.detect(bgr, max_num=0, metric="default")
        return [self._fit(bgr, box[:4], float(box[4])) for box in boxes]

    def refit(self, image_rgb: np.ndarray, previous: Face) -> Face | None:
        box = box_from_landmarks(previous.landmarks68)
        if not followable(box, image_rgb.shape):
            return None
        return self._fit(_bgr(image_rgb), box, previous.score)

    def rescue(self, image_rgb: np.ndarray, face: Face) -> Face | None:
        return None  # the detector has no cheaper second opinion; a miss is a miss

    def embed(self, image_rgb: np.ndarray, face: Face) -> np.ndarray:
        from insightface.app.common import Face as InsightFace

        # The five points from the 68 landmarks are ArcFace's own template points, so followed faces
        # (which have no detector key points) are embedded exactly like detected ones.
        embedding = self._recognizer.get(_bgr(image_rgb), InsightFace(kps=five_points(face.landmarks68)))
        return (embedding / np.linalg.norm(embedding)).astype(np.float32)

    def _fit(self, bgr: np.ndarray, box: np.ndarray, score: float) -> Face:
        from insightface.app.common import Face as InsightFace

        landmarks = self._landmarker.get(bgr, InsightFace(bbox=np.asarray(box, dtype=np.float32)))[:, :2]
        return make_face(box_from_landmarks(landmarks), score, landmarks)


def _bgr(image_rgb: np.ndarray) -> np.ndarray:
    """insightface's models expect OpenCV's BGR order."""
    return np.ascontiguousarray(image_rgb[..., ::-1])
