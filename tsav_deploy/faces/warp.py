"""Bicubic affine warp with OpenCV 4.x's fixed-point arithmetic, whatever OpenCV is installed.

The authors cut every face with ``cv2.warpAffine(..., INTER_CUBIC, borderValue=0)`` of OpenCV 4.x.
OpenCV 5 rewrote the warp kernels and its crops differ by up to 3 gray levels on about 0.5 % of
values (its ``remap`` with fixed-point maps differs too). The project requires OpenCV 4.x and calls
its ``warpAffine``; where an OpenCV 5 is installed all the same (pip installs what another package
asks for), :func:`warp_like_opencv_4` does it step for step as 4.x does (``WarpAffineInvoker`` +
``remapBicubic``), several times slower. Both are bit-identical to OpenCV 4.12 and 4.14
(tests/test_faces_warp.py holds hashes of their crops):

1. the inverse map's coordinates in 1/1024 px (``AB_BITS`` = 10), rounded half to even, then cut to
   1/32 px (``INTER_BITS`` = 5): integer source pixel + one of 32×32 sub-pixel phases;
2. per phase, 4×4 weights of the cubic kernel (A = −0.75) computed in float32, scaled to 2¹⁵ and
   rounded, with the rounding error of their sum put on one of the four centre taps;
3. per pixel, the weighted sum of the 16 source pixels (taps outside the image count as 0), then
   ``(sum + 2¹⁴) >> 15`` saturated to uint8.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

OPENCV_4 = cv2.__version__.startswith("4.")
_INTER_BITS = 5
_TAB = 1 << _INTER_BITS  # sub-pixel phases per axis
_AB_BITS = 10
_AB_SCALE = 1 << _AB_BITS
_ROUND_DELTA = _AB_SCALE // _TAB // 2
_COEF_BITS = 15


def _cubic_weights_1d() -> np.ndarray:
    """``[32, 4]`` float32: OpenCV's ``interpolateCubic`` at each phase, in float32 arithmetic."""
    f = np.float32
    a, one = f(-0.75), f(1)
    x = np.arange(_TAB, dtype=np.float32) * (f(1) / f(_TAB))
    c0 = ((a * (x + one) - f(5) * a) * (x + one) + f(8) * a) * (x + one) - f(4) * a
    c1 = ((a + f(2)) * x - (a + f(3))) * x * x + one
    c2 = ((a + f(2)) * (one - x) - (a + f(3))) * (one - x) * (one - x) + one
    return np.stack([c0, c1, c2, one - c0 - c1 - c2], axis=1)


def _fix_sum(weights: np.ndarray) -> None:
    """Make 16 fixed-point weights sum to exactly 2¹⁵, as ``initInterTab2D`` does (in place)."""
    diff = int(weights.sum()) - (1 << _COEF_BITS)
    if diff == 0:
        return
    low = high = (2, 2)
    for k1 in (2, 3):
        for k2 in (2, 3):
            if weights[k1, k2] < weights[low]:
                low = (k1, k2)
            elif weights[k1, k2] > weights[high]:
                high = (k1, k2)
    weights[high if diff < 0 else low] -= diff


_TAP_X = np.tile(np.arange(4, dtype=np.int16), 4)  # tap k = 4 · row + column of the 4×4 window
_TAP_Y = np.repeat(np.arange(4, dtype=np.int16), 4)


@functools.cache
def _weights_by_tap() -> np.ndarray:
    """``[16, 1024]`` float32: :func:`_weights` with taps first, for gathering by phase."""
    return np.ascontiguousarray(_weights().T.astype(np.float32))


@functools.cache
def _weights() -> np.ndarray:
    """``[1024, 16]`` int32: the 4×4 fixed-point weights of each (y phase, x phase)."""
    one_d = _cubic_weights_1d()
    table = np.empty((_TAB * _TAB, 4, 4), dtype=np.int32)
    for i in range(_TAB):
        for j in range(_TAB):
            product = (one_d[i][:, None] * one_d[j][None, :]).astype(np.float32)
            weights = np.rint(product * np.float32(1 << _COEF_BITS)).astype(np.int32)
            _fix_sum(weights)
            table[i * _TAB + j] = weights
    return table.reshape(_TAB * _TAB, 16)


def _inverse(matrix: np.ndarray) -> np.ndarray:
    """The destination→source map of a forward [2, 3] affine matrix, as ``warpAffine`` inverts it."""
    m = np.asarray(matrix, dtype=np.float64).reshape(6).copy()
    det = m[0] * m[4] - m[1] * m[3]
    det = 1.0 / det if det != 0 else 0.0
    a11, a22 = m[4] * det, m[0] * det
    m[0], m[1], m[3], m[4] = a11, -m[1] * det, -m[3] * det, a22
    m[2], m[5] = -m[0] * m[2] - m[1] * m[5], -m[3] * m[2] - m[4] * m[5]
    return m


def _source_positions(matrix: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per destination pixel (flattened): the top-left tap (x, y) of its 4×4 window and its phase."""
    m = _inverse(matrix)
    x = np.arange(width, dtype=np.float64)
    y = np.arange(height, dtype=np.float64)
    x_step = np.rint(m[0] * x * _AB_SCALE).astype(np.int64)
    y_step = np.rint(m[3] * x * _AB_SCALE).astype(np.int64)
    x_row = np.rint((m[1] * y + m[2]) * _AB_SCALE).astype(np.int64) + _ROUND_DELTA
    y_row = np.rint((m[4] * y + m[5]) * _AB_SCALE).astype(np.int64) + _ROUND_DELTA
    sx = (x_row[:, None] + x_step[None, :]) >> (_AB_BITS - _INTER_BITS)
    sy = (y_row[:, None] + y_step[None, :]) >> (_AB_BITS - _INTER_BITS)
    phase = (sy & (_TAB - 1)) * _TAB + (sx & (_TAB - 1))
    # OpenCV keeps the integer part in int16.
    left = np.clip(sx >> _INTER_BITS, -32768, 32767) - 1
    top = np.clip(sy >> _INTER_BITS, -32768, 32767) - 1
    return left.ravel(), top.ravel(), phase.ravel()


def warp_affine_cubic(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cv2.warpAffine(image, matrix, size, flags=INTER_CUBIC, borderMode=BORDER_CONSTANT,
    borderValue=0)`` of OpenCV 4.x for a uint8 image ``[H, W, C]`` (C ≤ 4); ``size`` is (width, height)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or not 1 <= image.shape[2] <= 4:
        raise ValueError(f"expected a uint8 image [H, W, 1..4], got {image.dtype} {image.shape}")
    if not OPENCV_4:
        return warp_like_opencv_4(image, matrix, size)
    warped = cv2.warpAffine(
        image,
        np.asarray(matrix, np.float64),
        size,
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return warped.reshape(size[1], size[0], image.shape[2])


def warp_like_opencv_4(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """:func:`warp_affine_cubic` in OpenCV 4.x's arithmetic, with any OpenCV (checked image)."""
    width, height = size
    left, top, phase = _source_positions(matrix, width, height)
    # The 16 taps of every pixel, gathered by a nearest-neighbour remap at integer positions (a plain
    # copy in any OpenCV version; a tap outside the image reads the constant 0, as in 4.x's kernel).
    taps = np.empty((16, len(phase), 2), dtype=np.int16)
    taps[..., 0] = np.clip(left, -32768, 32764).astype(np.int16)[None, :] + _TAP_X[:, None]
    taps[..., 1] = np.clip(top, -32768, 32764).astype(np.int16)[None, :] + _TAP_Y[:, None]
    pixels = cv2.remap(image, taps, None, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # Every product and partial sum is an integer below 2²⁴ in magnitude (255 · Σ|w| ≤ 255 · 1.89 · 2¹⁵),
    # so float32 adds them exactly.
    weights = np.take(_weights_by_tap(), phase, axis=1)[:, :, None]  # [16, pixels, 1]
    total = np.einsum("kpc,kpc->pc", pixels.reshape(16, len(phase), -1).astype(np.float32), weights, optimize=False)
    out = np.clip((total.astype(np.int32) + (1 << (_COEF_BITS - 1))) >> _COEF_BITS, 0, 255).astype(np.uint8)
    return out.reshape(height, width, image.shape[2])
