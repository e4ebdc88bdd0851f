"""Faces in every frame of a video at a fraction of the detector's cost.

Detection runs on a shot's first frame (with the backend's thorough mode), then every ``detect_every``
frames, and on the frame after a followed face was lost; in between, each face is followed by refitting
its landmarks from the previous frame's. Followed faces carry a ``tracklet`` id. Identity embeddings
cost as much as several detections, so they are computed only on a tracklet's first few detection
frames where the face is roughly frontal (one frame's embedding is noisy, the mean of three separates
people far better; profile views embed by pose more than by person and wrongly join strangers), which
is all :func:`.tracking.track_faces` needs to join a person's tracklets across cuts and gaps.

A hard cut would leave the landmark fit clinging to whatever replaced the face, so cuts are detected
from a colour histogram of a thumbnail and end every tracklet.

Which frames get a detection depends on the frames alone (a shot's first frame, then every
``detect_every``-th frame of the shot), never on the faces found, so :func:`detect_video` runs those
detections in a thread a few frames ahead of the landmark fits: the detector and the fitting share the
two cores instead of taking turns. Only the frame after a lost face needs a detection on demand. (dlib's
CNN, which a shot's first frame gets, holds the GIL for its whole call, about 1.2 s on a 640x360 frame,
so that one still runs alone; its HOG detector releases the GIL.)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import cv2
import numpy as np

from tsav_deploy.faces.face import Face, FaceBackend, iou_matrix, match_boxes

DETECT_EVERY = 5
# Bhattacharyya distance between consecutive frames' hue/saturation histograms. On the shared
# recordings hard cuts score 0.39-1.0 and everything else (camera motion, gestures) at most 0.09.
CUT_THRESHOLD = 0.25
IDENTITY_SAMPLES = 3
# Head-turn proxy: (a - b) / (a + b) for the nose tip's distances a, b to the two ends of the jaw line;
# 0 is frontal. Frontal talking-head footage stays within ±0.32 (5th-95th percentile), profiles pass 0.5.
_MAX_TURN = 0.4
_SAME_FACE_IOU = 0.3  # a detection with this overlap is the followed face, not a new one
_THUMBNAIL = (64, 36)


def _shot_signature(image: np.ndarray) -> np.ndarray:
    thumbnail = cv2.resize(image, _THUMBNAIL, interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(thumbnail, cv2.COLOR_RGB2HSV)
    histogram = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256])
    return cv2.normalize(histogram, None).flatten()


def _frontal(landmarks68: np.ndarray) -> bool:
    nose = landmarks68[30]
    left, right = np.linalg.norm(nose - landmarks68[0]), np.linalg.norm(nose - landmarks68[16])
    return abs(left - right) <= _MAX_TURN * (left + right)


def _overlaps(face: Face, others: list[Face]) -> bool:
    return bool(others) and iou_matrix(face.box[None], np.stack([f.box for f in others])).max() >= _SAME_FACE_IOU


class ShotClock:
    """Which frames get a detection: a shot's first frame (a thorough one) and every ``detect_every``-th
    frame of the shot after it. Feed frames in order to :meth:`tick`."""

    def __init__(self, detect_every: int = DETECT_EVERY, cut_threshold: float = CUT_THRESHOLD) -> None:
        if detect_every < 1:
            raise ValueError("detect_every must be at least 1")
        self.detect_every = detect_every
        self.cut_threshold = cut_threshold
        self._signature: np.ndarray | None = None
        self._since_shot = 0

    def tick(self, image: np.ndarray) -> tuple[bool, bool]:
        """``(new_shot, detect)`` for the next frame."""
        signature = _shot_signature(image)
        new_shot = (
            self._signature is None
            or cv2.compareHist(self._signature, signature, cv2.HISTCMP_BHATTACHARYYA) > self.cut_threshold
        )
        self._signature = signature
        self._since_shot = 0 if new_shot else self._since_shot + 1
        return new_shot, self._since_shot % self.detect_every == 0


class VideoFaceTracker:
    """Stateful per-frame face finder: feed frames in order to :meth:`update` (or, with the detections
    computed elsewhere, to :meth:`step`)."""

    def __init__(
        self, backend: FaceBackend, detect_every: int = DETECT_EVERY, cut_threshold: float = CUT_THRESHOLD
    ) -> None:
        self.backend = backend
        self.clock = ShotClock(detect_every, cut_threshold)
        self._faces: list[Face] = []
        self._lost = False
        self._next_tracklet = 0
        self._samples: dict[int, int] = {}  # embeddings computed so far, per tracklet still sampling

    def update(self, frame_rgb: np.ndarray) -> list[Face]:
        """The faces of the next frame (RGB uint8 [H, W, 3])."""
        image = np.ascontiguousarray(frame_rgb)
        new_shot, detect = self.clock.tick(image)
        return self.step(image, new_shot, self.backend.detect(image, thorough=new_shot) if detect else None)

    def step(self, image: np.ndarray, new_shot: bool, detected: list[Face] | None) -> list[Face]:
        """The faces of the next frame, given :attr:`clock`'s verdict on it and, where the clock asked
        for one, the backend's detections in it (thorough on a new shot)."""
        if new_shot:
            self._samples.clear()
            detected = self.backend.detect(image, thorough=True) if detected is None else detected
            self._faces, self._lost = self._start(image, detected), False
        elif detected is not None or self._lost:
            # A face lost since the last detection is looked for at once, not at the next planned one.
            detected = self.backend.detect(image) if detected is None else detected
            self._faces, self._lost = self._redetect(image, detected), False
        else:
            self._faces = self._follow(image)  # sets _lost when a face is dropped
        return list(self._faces)

    def _follow(self, image: np.ndarray) -> list[Face]:
        """Refit every face from its previous landmarks; drop those that left the frame and any that
        drifted onto a face already followed (the older tracklet wins)."""
        faces: list[Face] = []
        for previous in sorted(self._faces, key=lambda f: f.tracklet):
            face = self.backend.refit(image, previous)
            if face is None or _overlaps(face, faces):
                self._lost = True
                continue
            face.tracklet = previous.tracklet
            faces.append(face)
        return faces

    def _redetect(self, image: np.ndarray, detected: list[Face]) -> list[Face]:
        """A detection frame: a detection takes over the followed face it overlaps (fresh landmarks, same
        tracklet); followed faces the detector missed get the backend's second opinion or end; other
        detections start tracklets."""
        followed = self._follow(image)
        pairs = match_boxes([f.box for f in followed], [d.box for d in detected], _SAME_FACE_IOU)
        faces = []
        for i, j in pairs:
            detected[j].tracklet = followed[i].tracklet
            faces.append(detected[j])
        matched_followed = {i for i, _ in pairs}
        for i, face in enumerate(followed):
            if i in matched_followed:
                continue
            rescued = self.backend.rescue(image, face)
            if rescued is not None and not _overlaps(rescued, faces):
                rescued.tracklet = face.tracklet
                faces.append(rescued)
        matched_detected = {j for _, j in pairs}
        fresh = [d for j, d in enumerate(detected) if j not in matched_detected and not _overlaps(d, faces)]
        live = {face.tracklet for face in faces}
        self._samples = {t: n for t, n in self._samples.items() if t in live}
        for face in faces:
            if face.tracklet in self._samples:
                self._sample(image, face)
        return faces + self._start(image, fresh)

    def _start(self, image: np.ndarray, faces: list[Face]) -> list[Face]:
        for face in faces:
            face.tracklet = self._next_tracklet
            self._next_tracklet += 1
            self._samples[face.tracklet] = 0
            self._sample(image, face)
        return faces

    def _sample(self, image: np.ndarray, face: Face) -> None:
        if not _frontal(face.landmarks68):
            return
        face.embedding = self.backend.embed(image, face)
        self._samples[face.tracklet] += 1
        if self._samples[face.tracklet] == IDENTITY_SAMPLES:
            del self._samples[face.tracklet]


def detect_video(
    backend: FaceBackend,
    frames: Iterable[np.ndarray],
    detect_every: int = DETECT_EVERY,
    cut_threshold: float = CUT_THRESHOLD,
) -> Iterator[list[Face]]:
    """The faces of each frame, in order: :class:`VideoFaceTracker`'s, with the planned detections run
    in a thread up to ``detect_every + 2`` frames ahead (those frames stay in memory meanwhile)."""
    tracker = VideoFaceTracker(backend, detect_every, cut_threshold)
    ahead: deque[tuple[np.ndarray, bool, Future | None]] = deque()
    pool = ThreadPoolExecutor(1, thread_name_prefix="tsav-detect")

    def step() -> list[Face]:
        image, new_shot, detection = ahead.popleft()
        return tracker.step(image, new_shot, None if detection is None else detection.result())

    try:
        for frame in frames:
            image = np.ascontiguousarray(frame)
            new_shot, detect = tracker.clock.tick(image)
            ahead.append((image, new_shot, pool.submit(backend.detect, image, thorough=new_shot) if detect else None))
            if len(ahead) > detect_every + 2:
                yield step()
        while ahead:
            yield step()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
