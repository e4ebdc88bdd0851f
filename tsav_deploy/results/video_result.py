"""What annotation produces for one video: per person, one row per decoded frame (Py-Feat style:
one table), from which every writer (ABAW files, CSV, plot, overlay) reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tsav_deploy.media.probe import VideoInfo
from tsav_deploy.results.predictions import Predictions


@dataclass
class PersonResult:
    """One tracked person over all N decoded frames of a video (frames without the face included)."""

    suffix: str  # "" for the main person; "_left"/"_right" or "_personK" in --person all mode
    track_id: int | np.ndarray  # the person's id (-1: no face at all), or [N] ids where it changes (live)
    face_found: np.ndarray  # [N] bool
    boxes: np.ndarray  # [N, 4] float32 x1, y1, x2, y2 in frame pixels; NaN without a face
    scores: np.ndarray  # [N] float32 detector score; NaN without a face
    predictions: Predictions  # N rows
    landmarks: np.ndarray | None = None  # [N, 68, 2] float32 the face's 68 points in frame pixels; NaN without

    def landmarks_or_nan(self) -> np.ndarray:
        """[N, 68, 2] float32: the landmarks, NaN where the frame has no face (or none were kept)."""
        if self.landmarks is None:
            return np.full((len(self.face_found), 68, 2), np.nan, dtype=np.float32)
        return np.where(self.face_found[:, None, None], self.landmarks, np.nan).astype(np.float32)

    @property
    def track_ids(self) -> np.ndarray:
        """[N] int64: the track id of each frame's row (-1 where the frame has no face)."""
        ids = np.broadcast_to(np.asarray(self.track_id, dtype=np.int64), self.face_found.shape)
        return np.where(self.face_found, ids, -1)


@dataclass
class VideoResult:
    name: str  # file stem: the ABAW file name
    times: np.ndarray  # [N] float64 presentation time of each decoded frame, seconds
    persons: list[PersonResult]
    info: dict = field(default_factory=dict)  # engine, face backend, timings, warnings (summary.json)
    video_info: VideoInfo | None = None  # the file's probe (the overlay's frame rate and audio)
    # Rows without a face: "keep" their audio-only predictions in the table, or "nan" (empty cells;
    # the plot and the overlay leave them out too). ABAW files keep them either way.
    no_face: str = "keep"

    @property
    def frames(self) -> int:
        return len(self.times)
