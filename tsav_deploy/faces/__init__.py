"""Faces: detection and 68 landmarks (dlib or insightface backends), people across a video, and the
alignment and landmark mask that make the visual stream's input (docs/preprocessing.md)."""

from tsav_deploy.faces.align import align_face, five_points, transform_points
from tsav_deploy.faces.crop import EncodedCrop, clip_frame, encoded_face
from tsav_deploy.faces.face import Face, FaceBackend, FaceBackendError
from tsav_deploy.faces.mask import crop_and_mask, render_mask
from tsav_deploy.faces.select import BACKEND_CHOICES, get_backend, resolve_backend_name
from tsav_deploy.faces.tracking import PERSON_CHOICES, Track, main_track, select_tracks, track_faces
from tsav_deploy.faces.video import VideoFaceTracker, detect_video

__all__ = [
    "BACKEND_CHOICES",
    "EncodedCrop",
    "PERSON_CHOICES",
    "Face",
    "FaceBackend",
    "FaceBackendError",
    "Track",
    "VideoFaceTracker",
    "align_face",
    "clip_frame",
    "crop_and_mask",
    "detect_video",
    "encoded_face",
    "five_points",
    "get_backend",
    "main_track",
    "render_mask",
    "resolve_backend_name",
    "select_tracks",
    "track_faces",
    "transform_points",
]
