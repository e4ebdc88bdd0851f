"""A clip frame as the authors' network saw it: the aligned crop and mask through their JPEG files.

The authors' ``render_img_and_mask`` writes every aligned 112×112 crop with OpenCV's ``imwrite``
(RGB → BGR, JPEG quality 95, 4:2:0 chroma) and the mask as a grayscale JPEG of quality 100; their
dataset reads both back with PIL. Every face their network saw, in training and in their test runs,
carried those JPEG artefacts (72–77 % of RGB values differ from the raw crop, up to 27 levels), so
every clip frame here takes the same round trip: :func:`encode_crop` makes the two files' bytes
exactly as ``imwrite`` does (OpenCV 4.12 and 5.1 write identical bytes), :meth:`EncodedCrop.decode`
reads them with PIL. The training cache stores the bytes, so training and inference decode the
same bytes with the same call (docs/preprocessing.md: the decoder residual against the authors').
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from tsav_deploy.contract import CROP_SIZE
from tsav_deploy.faces.mask import crop_and_mask

RGB_QUALITY = 95
MASK_QUALITY = 100
_RGB_PARAMS = [cv2.IMWRITE_JPEG_QUALITY, RGB_QUALITY]
if hasattr(cv2, "IMWRITE_JPEG_SAMPLING_FACTOR"):  # OpenCV ≥ 4.5.5 can be told; its default is 4:2:0 too
    _RGB_PARAMS += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420]
_MASK_PARAMS = [cv2.IMWRITE_JPEG_QUALITY, MASK_QUALITY]
CROP_SHAPE = (CROP_SIZE, CROP_SIZE, 4)


@dataclass(frozen=True)
class EncodedCrop:
    """The two JPEG files of one clip frame: ``rgb`` (colour, quality 95) and ``mask`` (gray, 100)."""

    rgb: bytes
    mask: bytes

    def decode(self, out: np.ndarray | None = None) -> np.ndarray:
        """The clip frame as the authors' loader reads it: uint8 ``[112, 112, 4]`` RGB + mask
        (written into ``out`` where given)."""
        if out is None:
            out = np.empty(CROP_SHAPE, dtype=np.uint8)
        out[..., :3] = _read_jpeg(self.rgb, "RGB")
        out[..., 3] = _read_jpeg(self.mask, "L")
        return out


def _read_jpeg(data: bytes, mode: str) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        if image.mode != mode or image.size != (CROP_SIZE, CROP_SIZE):
            raise ValueError(f"expected a {CROP_SIZE}×{CROP_SIZE} {mode} JPEG, got {image.mode} {image.size}")
        return np.asarray(image)


def _jpeg(image: np.ndarray, params: list[int]) -> bytes:
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image), params)
    if not ok:
        raise RuntimeError("JPEG encoding of a 112×112 crop failed")
    return data.tobytes()


def encode_crop(aligned_rgb: np.ndarray, mask: np.ndarray) -> EncodedCrop:
    """The authors' two files of an aligned RGB crop ``[112, 112, 3]`` and its mask ``[112, 112]``."""
    return EncodedCrop(rgb=_jpeg(aligned_rgb[..., ::-1], _RGB_PARAMS), mask=_jpeg(mask, _MASK_PARAMS))


def encoded_face(image_rgb: np.ndarray, landmarks68: np.ndarray) -> EncodedCrop:
    """Align, draw the mask and encode: one clip frame's files from a frame and a face's landmarks."""
    return encode_crop(*crop_and_mask(image_rgb, landmarks68))


def clip_frame(image_rgb: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
    """One clip frame, uint8 ``[112, 112, 4]``: what the authors' pipeline feeds for this face."""
    return encoded_face(image_rgb, landmarks68).decode()
