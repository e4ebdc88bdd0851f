"""Alignment and mask against the authors' figures (../shared/reference/face_ref.npz) and skimage."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.transform import SimilarityTransform

from tsav_deploy.contract import ARCFACE_TEMPLATE, CROP_SIZE, MASK_POLYLINES
from tsav_deploy.faces import align_face, crop_and_mask, five_points, render_mask, transform_points


@pytest.fixture(scope="module")
def face_ref(reference):
    return reference.load_npz("face_ref.npz")


@pytest.fixture(scope="module")
def single_face(media_dir):
    return cv2.cvtColor(cv2.imread(str(media_dir / "single_face.jpg")), cv2.COLOR_BGR2RGB)


def _skimage_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    if hasattr(SimilarityTransform, "from_estimate"):  # skimage ≥ 0.26
        return SimilarityTransform.from_estimate(src, dst).params[:2]
    transform = SimilarityTransform()
    transform.estimate(src, dst)
    return transform.params[:2]


def test_five_points_match_reference(face_ref):
    np.testing.assert_array_equal(five_points(face_ref["image_landmarks68"]), face_ref["five_points"])


def test_matrix_and_crop_match_reference(face_ref, single_face):
    aligned, matrix = align_face(single_face, face_ref["image_landmarks68"])
    assert aligned.shape == (CROP_SIZE, CROP_SIZE, 3) and aligned.dtype == np.uint8
    assert matrix.shape == (2, 3) and matrix.dtype == np.float64
    np.testing.assert_allclose(matrix, face_ref["M"], rtol=0, atol=1e-9)
    assert_like_the_reference_crop(aligned, face_ref["aligned_rgb"])


def assert_like_the_reference_crop(aligned: np.ndarray, reference: np.ndarray) -> None:
    """The shared reference crop was rendered by the authors' code with OpenCV 5.x, whose bicubic
    warp differs from 4.x's, which the authors had (and this project keeps, tests/test_faces_warp.py),
    by at most 2 levels on a few per cent of values: the same crop otherwise."""
    difference = np.abs(aligned.astype(int) - reference)
    assert difference.max() <= 2 and (difference > 0).mean() < 0.08


def test_matrix_matches_skimage_on_varied_faces(face_ref):
    """Rotated, scaled, shifted and jittered landmark sets: the least-squares similarity equals
    skimage's (an independent implementation of Umeyama's method)."""
    rng = np.random.default_rng(4)
    base = face_ref["image_landmarks68"].astype(np.float64)
    for _ in range(25):
        angle, scale = rng.uniform(-1.2, 1.2), rng.uniform(0.2, 4.0)
        rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        landmarks = base @ rotation.T + rng.uniform(-500, 500, 2) + rng.normal(0, 3, base.shape)
        expected = _skimage_matrix(five_points(landmarks), np.array(ARCFACE_TEMPLATE))
        _, matrix = align_face(np.zeros((8, 8, 3), np.uint8), landmarks)
        np.testing.assert_allclose(matrix, expected, rtol=0, atol=1e-9)


def test_transform_points_puts_five_points_near_template(face_ref):
    moved = transform_points(face_ref["five_points"], face_ref["M"])
    assert np.abs(moved - np.array(ARCFACE_TEMPLATE)).max() < 5.0
    np.testing.assert_allclose(
        transform_points(face_ref["image_landmarks68"], face_ref["M"]), face_ref["landmarks_aligned"][0], atol=1e-9
    )


def test_border_outside_the_image_is_black(face_ref, single_face):
    """A face cut by the left image edge: the part of the crop beyond it is black, the rest is the warp
    of the full image."""
    landmarks = face_ref["image_landmarks68"]
    cut = int(landmarks[:, 0].min()) + 20
    shifted = landmarks - [cut, 0]
    aligned, matrix = align_face(np.ascontiguousarray(single_face[:, cut:]), shifted)
    full, _ = align_face(single_face, landmarks)
    inverse = cv2.invertAffineTransform(matrix)
    xs, ys = np.meshgrid(np.arange(CROP_SIZE), np.arange(CROP_SIZE))
    source_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    outside = source_x < -2  # well beyond the edge (bicubic blends the last 2 pixels)
    inside = source_x > 2
    assert outside.sum() > 100 and inside.sum() > 100
    assert not aligned[outside].any()
    # Same warp up to OpenCV's fixed-point rounding of the shifted translation.
    assert np.abs(aligned[inside].astype(int) - full[inside]).max() <= 1


@pytest.mark.parametrize("index", range(20))
def test_masks_match_reference_pixel_for_pixel(face_ref, index):
    mask = render_mask(face_ref["landmarks_aligned"][index])
    assert mask.shape == (CROP_SIZE, CROP_SIZE) and mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, face_ref["masks"][index])


def test_reference_includes_landmarks_outside_the_crop(face_ref):
    """The pixel-identity test above covers partly visible faces (not only the easy case)."""
    landmarks = face_ref["landmarks_aligned"]
    assert ((landmarks < 0) | (landmarks > CROP_SIZE - 1)).any(axis=(1, 2)).sum() >= 3


def test_mask_uses_only_the_polyline_grays(face_ref):
    grays = {0} | {gray for *_, gray in MASK_POLYLINES}
    assert set(np.unique(render_mask(face_ref["landmarks_aligned"][0]))) <= grays


def test_mask_of_landmarks_far_outside_is_black():
    assert not render_mask(np.full((68, 2), -500.0)).any()
    assert not render_mask(np.full((68, 2), 5000.0)).any()


def test_mask_later_polylines_are_drawn_on_top():
    """All 68 landmarks on one point: the last polyline (chin, gray 31) wins."""
    mask = render_mask(np.full((68, 2), 56.0))
    assert mask[56, 56] == MASK_POLYLINES[-1][3] and mask.sum() == MASK_POLYLINES[-1][3]


def test_crop_and_mask_is_align_then_mask(face_ref, single_face):
    aligned, mask = crop_and_mask(single_face, face_ref["image_landmarks68"])
    assert_like_the_reference_crop(aligned, face_ref["aligned_rgb"])
    np.testing.assert_array_equal(mask, face_ref["masks"][0])


def test_bad_landmarks_are_rejected():
    with pytest.raises(ValueError, match="68, 2"):
        align_face(np.zeros((8, 8, 3), np.uint8), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="68, 2"):
        render_mask(np.zeros((68, 3)))
    with pytest.raises(ValueError, match="one point"):
        align_face(np.zeros((8, 8, 3), np.uint8), np.ones((68, 2)))
