"""How far today's JPEG decoder is from the authors': the clip frames of real recordings decoded with
libjpeg-turbo (Pillow, what tsav-deploy uses) and with IJG libjpeg 9 (what the authors' 2020 Pillow
wheels bundled), from the same bytes (docs/preprocessing.md, "The residual that remains").

libjpeg 9 is not a Debian 12 package; the Pillow 7.2.0 manylinux wheel on PyPI carries it::

    pip download pillow==7.2.0 --no-deps --only-binary=:all: --python-version 3.8 \
        --platform manylinux1_x86_64 -d /tmp/pil7
    unzip -o /tmp/pil7/*.whl 'Pillow.libs/*' -d /tmp/pil7
    python scripts/jpeg_decoder_residual.py /tmp/pil7/Pillow.libs/libjpeg-*.so.9.4.0 ../shared/media/*.mp4

The library is driven through its C API with ctypes (x86-64 libjpeg 9d: the decompressor struct is
664 bytes; the library refuses any other size). Faces come from the default dlib backend (HOG).
"""

from __future__ import annotations

import ctypes
import sys

import numpy as np

from tsav_deploy.faces import get_backend
from tsav_deploy.pipeline import frontend

STRUCT_SIZE = 664  # sizeof(struct jpeg_decompress_struct) in libjpeg 9d on x86-64
API_VERSION = 90


class LibJpeg9:
    def __init__(self, path: str):
        self.lib = ctypes.CDLL(path)
        self.lib.jpeg_std_error.restype = ctypes.c_void_p

    def decode(self, data: bytes, components: int, size: int = 112) -> np.ndarray:
        """Decode with the library's defaults (islow IDCT, fancy upsampling), as Pillow did."""
        lib, error = self.lib, ctypes.create_string_buffer(4096)
        cinfo = ctypes.create_string_buffer(8192)
        ctypes.memmove(cinfo, ctypes.byref(ctypes.c_void_p(lib.jpeg_std_error(error))), 8)  # cinfo->err
        lib.jpeg_CreateDecompress(cinfo, API_VERSION, ctypes.c_size_t(STRUCT_SIZE))
        source = ctypes.create_string_buffer(data, len(data))
        lib.jpeg_mem_src(cinfo, source, ctypes.c_ulong(len(data)))
        lib.jpeg_read_header(cinfo, 1)
        lib.jpeg_start_decompress(cinfo)
        out = np.zeros((size, size * components), np.uint8)
        row = (ctypes.c_void_p * 1)()
        for y in range(size):
            row[0] = out[y].ctypes.data
            lib.jpeg_read_scanlines(cinfo, row, 1)
        lib.jpeg_finish_decompress(cinfo)
        lib.jpeg_destroy_decompress(cinfo)
        return out.reshape(size, size, components)


def residual(video: str, libjpeg9: LibJpeg9) -> dict:
    """Largest and mean absolute difference (gray levels) of every face crop's RGB and mask."""
    timeline = frontend.scan_faces(video, get_backend("dlib", detector="hog"))
    if timeline.main_track_id is None:
        return {"crops": 0}
    rgb_diffs, mask_diffs = [], []
    for _, (crop,) in frontend.iter_crops(video, timeline, [timeline.main_track_id]):
        if crop is None:
            continue
        ours = crop.decode().astype(np.int16)
        rgb_diffs.append(np.abs(ours[..., :3] - libjpeg9.decode(crop.rgb, 3)))
        mask_diffs.append(np.abs(ours[..., 3] - libjpeg9.decode(crop.mask, 1)[..., 0]))
    rgb, mask = np.stack(rgb_diffs), np.stack(mask_diffs)
    return {
        "crops": len(rgb),
        "rgb_max": int(rgb.max()),
        "rgb_mean": round(float(rgb.mean()), 3),
        "rgb_differing": round(float((rgb > 0).mean()), 3),
        "mask_max": int(mask.max()),
        "mask_mean": round(float(mask.mean()), 4),
    }


def main(library: str, videos: list[str]) -> None:
    libjpeg9 = LibJpeg9(library)
    for video in videos:
        print(video, residual(video, libjpeg9), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
