"""The embedded offline face backend: dlib (PyPI ``dlib-bin``) with the models that PyPI
``face_recognition_models`` ships (68-point shape predictor, ResNet face descriptor, HOG and MMOD CNN
detectors), and the MTCNN detector whose weights PyPI ``mtcnn`` ships (:mod:`.mtcnn`), the default.

MTCNN finds faces from 24 px wide (``min_face``, in source pixels) at any resolution: its pyramid starts
where such a face is 12 px, so a 640×360 frame costs ~20-40 ms and a 1080p one ~0.2-0.3 s on one core.
dlib's detectors see faces from about 80 px only, so they run on a frame shrunk to ``detect_size``.
Other costs on one core, 640×360: HOG ~20 ms, MMOD CNN ~1.3 s, shape predictor ~1 ms, descriptor
~80 ms. So the video tracker detects on some frames only, follows faces with the shape predictor, and
computes descriptors only at the start of a tracklet. A followed face that full-frame detection missed
gets a local second opinion (:meth:`DlibBackend.rescue`): MTCNN's two refining networks on its box, or
(``hog+cnn``) the MMOD CNN on a small region around it; ``hog+cnn`` also runs the CNN on a shot's first
frame.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import cv2
import dlib
import numpy as np

from tsav_deploy.faces.face import Face, FaceBackendError, error_summary, followable, iou_matrix, make_face
from tsav_deploy.faces.mtcnn import CONFIRM_THRESHOLDS, Mtcnn

DETECTORS = ("mtcnn", "hog", "cnn", "hog+cnn")
DEFAULT_DETECTOR = "mtcnn"
MIN_FACE_PX = 24

# The shape predictor was trained on HOG detector boxes, so a face is followed by giving it the box HOG
# would have found. Fitted over HOG detections on the shared recordings (n=90): the box is square, its
# side 2.76 times the landmarks' RMS radius (sd 0.26), its centre 0.13 radii above their centroid.
_BOX_SIDE = 2.76
_BOX_CENTRE_DY = -0.13
# MMOD finds faces from about 80 px; the rescue search scales its region so the face is this wide.
_RESCUE_FACE_PX = 90
_SAME_FACE_IOU = 0.3


def models_dir() -> Path:
    """Folder of face_recognition_models' files, found without importing the package (its __init__
    imports pkg_resources, which recent setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise FaceBackendError(
            "the dlib face backend needs the face_recognition_models package: pip install face_recognition_models"
        )
    return Path(spec.origin).parent / "models"


def box_from_landmarks(landmarks68: np.ndarray) -> np.ndarray:
    """The HOG-like xyxy box of 68 landmarks (see the calibration above)."""
    points = np.asarray(landmarks68, dtype=np.float64)
    centre = points.mean(0)
    radius = np.sqrt(((points - centre) ** 2).sum(1).mean())
    cx, cy = centre[0], centre[1] + _BOX_CENTRE_DY * radius
    half = _BOX_SIDE * radius / 2
    return np.array([cx - half, cy - half, cx + half, cy + half])


def _resized(box: np.ndarray, side: float) -> np.ndarray:
    """A square box of ``side`` with the centre of ``box``."""
    centre = (box[:2] + box[2:]) / 2
    return np.concatenate([centre - side / 2, centre + side / 2])


def _to_rect(box: np.ndarray) -> dlib.rectangle:
    """xyxy (right/bottom exclusive) to dlib's inclusive integer rectangle."""
    x0, y0, x1, y1 = (round(float(v)) for v in box)
    return dlib.rectangle(x0, y0, x1 - 1, y1 - 1)


def _from_rect(rect: dlib.rectangle, scale: float = 1.0, offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """dlib rectangle found in an image scaled by ``scale`` (then shifted by ``offset``) to frame xyxy."""
    box = np.array([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], dtype=np.float64) / scale
    return box + np.array([offset[0], offset[1], offset[0], offset[1]])


def _downscale(image: np.ndarray, longest_side: int | None) -> tuple[np.ndarray, float]:
    height, width = image.shape[:2]
    if longest_side is None or max(height, width) <= longest_side:
        return image, 1.0
    scale = longest_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


class DlibBackend:
    """dlib detectors, 68-point landmarks and ResNet identity descriptors (offline).

    ``detector``: ``"mtcnn"`` (the default: faces from ``min_face`` source pixels up at any
    resolution), ``"hog+cnn"`` (HOG, plus the CNN on a shot's first frame and to rescue faces HOG lost;
    on a single-shot video this costs one CNN pass), ``"hog"`` (fastest, frontal faces from ~80 px of
    the ``detect_size`` image) or ``"cnn"`` (MMOD for every detection: slow).
    ``detect_size``: longest side of the image dlib's detectors see (None: full resolution; MTCNN's
    scale follows from ``min_face`` instead); landmarks are always fitted at full resolution.
    ``upsample``: dlib's pyramid upsampling for small faces.
    """

    name = "dlib"
    identity_threshold = 0.6  # dlib's documented same-person distance for its ResNet descriptor

    def __init__(
        self,
        detector: str = DEFAULT_DETECTOR,
        detect_size: int | None = 640,
        upsample: int = 0,
        min_face: float = MIN_FACE_PX,
    ) -> None:
        if detector not in DETECTORS:
            raise FaceBackendError(f"unknown dlib detector {detector!r}: choose one of {', '.join(DETECTORS)}")
        folder = models_dir()
        self._mtcnn = Mtcnn() if detector == "mtcnn" else None
        try:
            self._hog = dlib.get_frontal_face_detector() if "hog" in detector else None
            self._cnn = (
                dlib.cnn_face_detection_model_v1(str(folder / "mmod_human_face_detector.dat"))
                if "cnn" in detector
                else None
            )
            self._predictor = dlib.shape_predictor(str(folder / "shape_predictor_68_face_landmarks.dat"))
            self._encoder = dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat"))
        except RuntimeError as error:  # dlib's only error type for unreadable model files
            raise FaceBackendError(f"cannot load the dlib face models in {folder}: {error_summary(error)}") from error
        self.detector = detector
        self.detect_size = detect_size
        self.upsample = upsample
        self.min_face = min_face
        # The video tracker detects in one thread while it fits landmarks and embeds in another. dlib's
        # detectors and descriptor net keep per-call state (scanner pyramids, layer outputs), so each is
        # used by one thread at a time; the shape predictor is stateless and runs in both at once.
        self._hog_lock, self._cnn_lock, self._encoder_lock = threading.Lock(), threading.Lock(), threading.Lock()

    # --- FaceBackend ----------------------------------------------------------------------------------

    def detect(self, image_rgb: np.ndarray, *, thorough: bool = False) -> list[Face]:
        image = np.ascontiguousarray(image_rgb)
        if self._mtcnn is not None:
            boxes, scores, _ = self._mtcnn.detect(image, self.min_face)
            return [self._fit_cnn(image, box, score) for box, score in zip(boxes, scores, strict=True)]
        small, scale = _downscale(image, self.detect_size)
        faces: list[Face] = []
        if self._hog is not None:
            # HOG on gray finds the same faces as on RGB (max gradient over channels) in ~3/4 of the time.
            gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
            with self._hog_lock:
                rects, scores, _ = self._hog.run(gray, self.upsample, 0.0)
            faces = [self._fit(image, _from_rect(r, scale), s) for r, s in zip(rects, scores, strict=True)]
        if self._cnn is not None and (thorough or self._hog is None):
            with self._cnn_lock:
                found = [(_from_rect(d.rect, scale), d.confidence) for d in self._cnn(small, self.upsample)]
            faces += self._new_faces(image, found, faces)
        return faces

    def refit(self, image_rgb: np.ndarray, previous: Face) -> Face | None:
        """Landmarks fitted in the box of the previous ones, keeping the box's side: fitting again and
        again from the box of the last fit shrinks it by a few per cent a frame on small or laughing
        faces (the predictor's mean shape pulls the points inwards); detections reset the side."""
        side = float(previous.box[2] - previous.box[0])
        box = _resized(box_from_landmarks(previous.landmarks68), side)
        if not followable(box, image_rgb.shape):
            return None
        landmarks = self._landmarks(np.ascontiguousarray(image_rgb), box)
        return make_face(_resized(box_from_landmarks(landmarks), side), previous.score, landmarks)

    def rescue(self, image_rgb: np.ndarray, face: Face) -> Face | None:
        if self.detector not in ("mtcnn", "hog+cnn") or not followable(face.box, image_rgb.shape):
            return None
        image = np.ascontiguousarray(image_rgb)
        if self._mtcnn is not None:
            return self._confirm(image, face, [*self._mtcnn.verify(image, face.box[None], CONFIRM_THRESHOLDS)[:2]])
        height, width = image.shape[:2]
        side = face.size
        cx, cy = (face.box[:2] + face.box[2:]) / 2
        x0, y0 = max(int(cx - side), 0), max(int(cy - side), 0)
        x1, y1 = min(int(cx + side), width), min(int(cy + side), height)
        scale = _RESCUE_FACE_PX / side
        region = cv2.resize(
            image[y0:y1, x0:x1],
            None,
            fx=scale,
            fy=scale,
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
        )
        with self._cnn_lock:
            found = [(_from_rect(d.rect, scale, (x0, y0)), d.confidence) for d in self._cnn(region, 0)]
        boxes = np.stack([box for box, _ in found]) if found else np.zeros((0, 4))
        return self._confirm(image, face, [boxes, np.array([score for _, score in found])])

    def _confirm(self, image: np.ndarray, face: Face, found: list[np.ndarray]) -> Face | None:
        """The face refitted from the detection among ``found`` (boxes, scores) that overlaps it most, if any."""
        boxes, scores = found
        if not len(boxes):
            return None
        iou = iou_matrix(face.box[None], boxes)[0]
        best = int(iou.argmax())
        if iou[best] < _SAME_FACE_IOU:
            return None
        return self._fit_cnn(image, boxes[best], float(scores[best]))

    def embed(self, image_rgb: np.ndarray, face: Face) -> np.ndarray:
        points = dlib.points([dlib.point(round(float(x)), round(float(y))) for x, y in face.landmarks68])
        shape = dlib.full_object_detection(_to_rect(face.box), points)
        with self._encoder_lock:
            descriptor = self._encoder.compute_face_descriptor(np.ascontiguousarray(image_rgb), shape)
        return np.asarray(descriptor, dtype=np.float32)

    # --- helpers --------------------------------------------------------------------------------------

    def _landmarks(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        shape = self._predictor(image, _to_rect(box))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def _fit(self, image: np.ndarray, box: np.ndarray, score: float) -> Face:
        """Landmarks from a HOG-like box; the face's box is then re-derived from them, so detected and
        followed frames report boxes of one kind."""
        landmarks = self._landmarks(image, box)
        return make_face(box_from_landmarks(landmarks), score, landmarks)

    def _fit_cnn(self, image: np.ndarray, box: np.ndarray, score: float) -> Face:
        """MMOD and MTCNN boxes sit lower and vary more than HOG's: fit once from the CNN box, then again from the
        HOG-like box of that fit, which is what the predictor was trained on."""
        return self._fit(image, box_from_landmarks(self._landmarks(image, box)), score)

    def _new_faces(self, image: np.ndarray, found: list[tuple[np.ndarray, float]], known: list[Face]) -> list[Face]:
        """CNN detections that are not already among the ``known`` faces."""
        faces = []
        for box, score in found:
            boxes = [f.box for f in known + faces]
            if boxes and iou_matrix(box[None], np.stack(boxes)).max() >= _SAME_FACE_IOU:
                continue
            faces.append(self._fit_cnn(image, box, score))
        return faces
