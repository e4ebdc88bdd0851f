"""The landmark mask, the clip's fourth channel (docs/preprocessing.md).

Pixel-identical to the authors' ``draw_mask``: integer landmarks (``np.rint``), 1-pixel 8-connected
polylines in a fixed order, later ones drawn over earlier ones. OpenCV clips lines that leave the crop,
so landmarks outside it still draw the visible part of their segments.
"""

from __future__ import annotations

import cv2
import numpy as np

from tsav_deploy.contract import CROP_SIZE, MASK_POLYLINES
from tsav_deploy.faces.align import align_face, transform_points


def render_mask(landmarks68_in_aligned_frame: np.ndarray) -> np.ndarray:
    """Draw the seven gray polylines of 68 aligned-frame landmarks into a black [112, 112] uint8 image."""
    points = np.asarray(landmarks68_in_aligned_frame, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"expected landmarks of shape (68, 2), got {points.shape}")
    points = np.rint(points).astype(np.int32)
    mask = np.zeros((CROP_SIZE, CROP_SIZE), dtype=np.uint8)
    for first, last, closed, gray in MASK_POLYLINES:
        cv2.polylines(mask, [points[first : last + 1]], closed, int(gray), thickness=1, lineType=cv2.LINE_8)
    return mask


def crop_and_mask(image_rgb: np.ndarray, landmarks68: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One clip frame's visual input: the aligned 112×112 RGB crop and its landmark mask."""
    aligned, matrix = align_face(image_rgb, landmarks68)
    return aligned, render_mask(transform_points(landmarks68, matrix))
