"""Face alignment (docs/preprocessing.md): five points from the 68 landmarks, a least-squares similarity onto the
ArcFace 112×112 template, and a bicubic warp with a black border.

The model was trained on crops made exactly this way, so every step mirrors the authors' pipeline
(skimage ``SimilarityTransform.estimate`` = Umeyama's method, then OpenCV 4.x's bicubic
``cv2.warpAffine``, reproduced in :mod:`.warp`).
"""

from __future__ import annotations

import numpy as np

from tsav_deploy.contract import ARCFACE_TEMPLATE, CROP_SIZE
from tsav_deploy.faces.warp import warp_affine_cubic

_TEMPLATE = np.asarray(ARCFACE_TEMPLATE, dtype=np.float64)
# iBUG 68 (0-based): eye contours, nose tip, outer mouth corners.
_LEFT_EYE = slice(36, 42)
_RIGHT_EYE = slice(42, 48)
_NOSE_TIP = 30
_MOUTH_LEFT, _MOUTH_RIGHT = 48, 54


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """The ArcFace five points [5, 2] (left eye, right eye, nose tip, mouth corners) of 68 landmarks."""
    lm = np.asarray(landmarks68, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected landmarks of shape (68, 2), got {lm.shape}")
    return np.stack([lm[_LEFT_EYE].mean(0), lm[_RIGHT_EYE].mean(0), lm[_NOSE_TIP], lm[_MOUTH_LEFT], lm[_MOUTH_RIGHT]])


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping ``src``
    onto ``dst``, as a [2, 3] matrix: Umeyama (1991), the method behind skimage's
    ``SimilarityTransform.estimate``."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var <= 0.0:
        raise ValueError("cannot align: the landmarks are all at one point")
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    # A reflection would mirror the face; flip the weakest axis instead (Umeyama's D matrix).
    d = np.array([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rotation = u @ np.diag(d) @ vt
    scale = (s * d).sum() / src_var
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a [2, 3] affine matrix to points [N, 2] (e.g. landmarks into the aligned crop)."""
    points = np.asarray(points, dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def alignment_matrix(landmarks68: np.ndarray) -> np.ndarray:
    """The [2, 3] similarity that takes image coordinates into the 112×112 ArcFace crop."""
    return similarity_matrix(five_points(landmarks68), _TEMPLATE)


def align_face(image_rgb: np.ndarray, landmarks68: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Warp a face to the 112×112 ArcFace crop.

    Returns ``(aligned_rgb [112, 112, 3] uint8, M [2, 3] float64)``; ``transform_points(landmarks68, M)``
    gives the landmarks in the crop (the input of :func:`render_mask`).
    """
    matrix = alignment_matrix(landmarks68)
    return warp_affine_cubic(image_rgb, matrix, (CROP_SIZE, CROP_SIZE)), matrix
