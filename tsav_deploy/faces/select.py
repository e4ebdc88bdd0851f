"""``--faces auto|insightface|dlib``: which backend runs."""

from __future__ import annotations

import os

from tsav_deploy.faces import insightface_backend, insightface_pack
from tsav_deploy.faces.face import FaceBackend, FaceBackendError

BACKEND_CHOICES = ("auto", "insightface", "dlib")


def resolve_backend_name(name: str = "auto", root: str | os.PathLike | None = None) -> str:
    """``auto`` is insightface when its pack is on disk under ``root`` (never downloading), else dlib."""
    if name not in BACKEND_CHOICES:
        raise FaceBackendError(f"unknown face backend {name!r}: choose one of {', '.join(BACKEND_CHOICES)}")
    if name == "auto":
        return "insightface" if insightface_pack.is_available(root) else "dlib"
    return name


def check_detector(name: str, detector: str | None, root: str | os.PathLike | None = None) -> str:
    """The backend ``name`` resolves to; a dlib ``detector`` asked for where that is insightface,
    whose detector is its own, is refused rather than silently ignored."""
    resolved = resolve_backend_name(name, root)
    if detector is not None and resolved == "insightface":
        chosen = " (chosen by faces auto: its model pack is on disk)" if name == "auto" else ""
        raise FaceBackendError(
            f"detector {detector!r} is a dlib detector, but the insightface backend has its own{chosen}; "
            "drop the detector option or choose the dlib backend"
        )
    return resolved


def get_backend(
    name: str = "auto",
    *,
    root: str | os.PathLike | None = None,
    download: bool = True,
    detector: str | None = None,
    detect_size: int | None = 640,
) -> FaceBackend:
    """A ready face backend; its ``name`` says which one ``auto`` chose (for the caller to report).

    ``root`` and ``download`` concern insightface's pack (``auto`` never downloads); ``detector``
    (mtcnn, hog, cnn, hog+cnn; None: mtcnn) concerns dlib and is refused for insightface;
    ``detect_size`` is the input side of insightface's detector and of dlib's HOG and CNN (dlib's
    default MTCNN detector takes its scale from the smallest face to find, 24 px, instead).
    """
    resolved = check_detector(name, detector, root)
    if resolved == "insightface":
        return insightface_backend.InsightFaceBackend(
            root=root, download=download and name == "insightface", det_size=detect_size or 640
        )
    from tsav_deploy.faces.dlib_backend import DEFAULT_DETECTOR, DlibBackend

    return DlibBackend(detector=detector or DEFAULT_DETECTOR, detect_size=detect_size)
