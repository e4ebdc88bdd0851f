"""The bicubic warp that cuts every face: OpenCV 4.x's arithmetic, bit for bit, whatever OpenCV is installed.

``tests/data/warp_opencv4.json`` holds the SHA-256 of ``cv2.warpAffine(image, M, (112, 112),
INTER_CUBIC, BORDER_CONSTANT, 0)`` computed by OpenCV 4.12.0 (4.14.0 gives the same 24 hashes,
OpenCV 5.1 none of them) for 24 matrices (scales 0.3–2.8, any rotation, crops partly outside the
image) on an integer pattern image that the test rebuilds.
"""

from __future__ import annotations

import hashlib
import json
import pathlib

import cv2
import numpy as np
import pytest

from tsav_deploy.faces.warp import OPENCV_4, warp_affine_cubic, warp_like_opencv_4

REFERENCE = json.loads((pathlib.Path(__file__).parent / "data" / "warp_opencv4.json").read_text())


def pattern() -> np.ndarray:
    y, x, c = np.meshgrid(np.arange(240), np.arange(300), np.arange(3), indexing="ij")
    return ((x * 37 + y * 91 + c * 53 + (x * y) % 97) % 256).astype(np.uint8)


@pytest.mark.parametrize("warp", [warp_affine_cubic, warp_like_opencv_4], ids=["installed", "numpy"])
@pytest.mark.parametrize("k", range(len(REFERENCE["crops"])))
def test_equals_opencv_4(k, warp):
    """Both the warp the pipeline calls (OpenCV's own where it is 4.x) and the step-by-step one
    used with an OpenCV 5."""
    row = REFERENCE["crops"][k]
    crop = warp(pattern(), np.array(row["matrix"]), (112, 112))
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    assert int(crop.astype(np.int64).sum()) == row["sum"]
    assert hashlib.sha256(crop.tobytes()).hexdigest() == row["sha256"]


@pytest.mark.skipif(not OPENCV_4, reason="the installed OpenCV is not 4.x")
def test_step_by_step_equals_the_installed_opencv_4_on_random_images():
    rng = np.random.default_rng(0)
    for _ in range(30):
        image = rng.integers(0, 256, (rng.integers(50, 400), rng.integers(50, 400), 3), dtype=np.uint8)
        scale, angle = rng.uniform(0.2, 3.0), rng.uniform(-np.pi, np.pi)
        matrix = np.array([[scale * np.cos(angle), -scale * np.sin(angle), rng.uniform(-300, 100)],
                           [scale * np.sin(angle), scale * np.cos(angle), rng.uniform(-300, 100)]])  # fmt: skip
        expected = cv2.warpAffine(image, matrix, (112, 112), flags=cv2.INTER_CUBIC, borderValue=0)
        np.testing.assert_array_equal(warp_like_opencv_4(image, matrix, (112, 112)), expected)


@pytest.mark.parametrize("warp", [warp_affine_cubic, warp_like_opencv_4], ids=["installed", "numpy"])
def test_a_translation_by_whole_pixels_copies_pixels(warp):
    """Phase 0 has the weights (0, 1, 0, 0) on both axes: an integer shift is a plain copy, with
    black where the source ends."""
    image = pattern()
    crop = warp(image, np.array([[1.0, 0, -30], [0, 1.0, -20]]), (112, 112))
    np.testing.assert_array_equal(crop, image[20:132, 30:142])
    edge = warp(image, np.array([[1.0, 0, 10], [0, 1.0, 0]]), (112, 112))
    assert not edge[:, :9].any()
    np.testing.assert_array_equal(edge[:, 10:], image[:112, :102])


def test_rejects_what_it_cannot_warp():
    with pytest.raises(ValueError):
        warp_affine_cubic(np.zeros((10, 10), np.uint8), np.eye(2, 3), (112, 112))
    with pytest.raises(ValueError):
        warp_affine_cubic(np.zeros((10, 10, 3), np.float32), np.eye(2, 3), (112, 112))
