"""``--faces auto|insightface|dlib``: which backend runs."""

from __future__ import annotations

import os

from . import insightface_backend, insightface_pack
from .face import FaceBackend, FaceBackendError

BACKEND_CHOICES = ("auto", "insightface", "dlib")


def resolve_backend_name(name: str = "auto", root: str | os.PathLike | None = None) -> str:
    """``auto`` is insightface when its pack is on disk under ``root`` (never downloading), else dlib."""
    if name not in BACKEND_CHOICES:
        raise FaceBackendError(f"unknown face backend {name!r}: choose one of {', '.join(BACKEND_CHOICES)}")
    if name == "auto":
        return "insightface" if insightface_pack.is_available(root) else "dlib"
    return name


def get_backend(
    name: str = "auto",
    *,
    root: str | os.PathLike | None = None,
    download: bool = True,
    detector: str = "hog+cnn",
    detect_size: int | None = 640,
) -> FaceBackend:
    """A ready face backend; its ``name`` says which one ``auto`` chose (for the caller to report).

    ``root`` and ``download`` concern insightface's pack (``auto`` never downloads); ``detector``
    (hog, cnn, hog+cnn) concerns dlib; ``detect_size`` is the detector's input side for both.
    """
    resolved = resolve_backend_name(name, root)
    if resolved == "insightface":
        return insightface_backend.InsightFaceBackend(
            root=root, download=download and name == "insightface", det_size=detect_size or 640
        )
    from .dlib_backend import DlibBackend

    return DlibBackend(detector=detector, detect_size=detect_size)
