"""The authors' visual pipeline, written from their code, as an independent reference for the clip tests.

Run as a script by tests/test_authors_clip.py in a process whose ``cv2`` is OpenCV 4.12 (installed by
scripts/setup.sh into ``.venv/opencv4``; the authors had a 4.x, whose ``VideoCapture`` converts with
BT.601 whatever the stream's tags and whose bicubic warp differs from 5.x). Given a video and the 68
landmarks of one person per frame (NaN: no face), it does what github.com/kuhnkeF/ABAW2020TNT does:

- ``Video.read_RGB``: ``cv2.VideoCapture`` frames, BGR → RGB;
- the alignment: five points → skimage ``SimilarityTransform`` onto the ArcFace template, landmarks
  mapped into the crop for the mask;
- ``create_alignments``: ``align_rescale_face`` (``cv2.warpAffine`` bicubic, border 0) and ``draw_mask``
  (or a black frame and black mask without a face), then ``render_img_and_mask`` writes both as JPEG
  files (RGB → BGR, quality 95; the mask BGR → gray, quality 100);
- ``Aff2CompDataset.__getitem__``: the clip of frame i from the files of frames i − 42, …, i read
  with PIL (black before frame 0), then ``NumpyToTensor`` + ``Normalize`` in torch.

Usage: ``python authors_pipeline.py VIDEO LANDMARKS.npz TARGETS_CSV OUT.npz WORKDIR``
"""

from __future__ import annotations

import os
import sys

import cv2
import numpy as np
import torch
from PIL import Image
from skimage.transform import SimilarityTransform

TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
MEAN = [0.43216, 0.394666, 0.37645, 0.5]
STD = [0.22803, 0.22145, 0.216989, 0.225]
# draw_mask's polylines: (first, last landmark exclusive, closed, gray), in the authors' order.
POLYLINES = [(48, 60, True, 255), (17, 22, False, 223), (22, 27, False, 191), (36, 42, True, 159),
             (42, 48, True, 127), (28, 31, False, 63), (6, 11, False, 31)]  # fmt: skip


def similarity(landmarks: np.ndarray) -> np.ndarray:
    points = np.stack([landmarks[36:42].mean(0), landmarks[42:48].mean(0), landmarks[30], landmarks[48], landmarks[54]])
    if hasattr(SimilarityTransform, "from_estimate"):
        return SimilarityTransform.from_estimate(points, TEMPLATE).params[:2]
    transform = SimilarityTransform()
    transform.estimate(points, TEMPLATE)
    return transform.params[:2]


def draw_mask(points: np.ndarray, image: np.ndarray) -> None:
    for first, stop, closed, gray in POLYLINES:
        pts = [np.rint(points[first:stop]).reshape(-1, 1, 2).astype(np.int32)]
        cv2.polylines(image, pts, closed, color=(gray, gray, gray), thickness=1, lineType=cv2.LINE_8)


def render(video: str, landmarks: np.ndarray, workdir: str) -> int:
    """Write every frame's crop and mask JPEG as ``create_alignments`` does; returns the frame count."""
    os.makedirs(os.path.join(workdir, "mask"), exist_ok=True)
    capture = cv2.VideoCapture(video)
    black = np.zeros((112, 112, 3), np.uint8)
    count = 0
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if count >= len(landmarks) or np.isnan(landmarks[count]).any():
            image, mask = black, black
        else:
            matrix = similarity(landmarks[count].astype(np.float64))
            image = cv2.warpAffine(frame, matrix, (112, 112), flags=cv2.INTER_CUBIC, borderValue=0.0)
            mask = black.copy()
            draw_mask(landmarks[count] @ matrix[:, :2].T + matrix[:, 2], mask)
        name = str(count).zfill(5) + ".jpg"
        cv2.imwrite(os.path.join(workdir, name), cv2.cvtColor(image, cv2.COLOR_BGR2RGB), [cv2.IMWRITE_JPEG_QUALITY, 95])
        gray = cv2.cvtColor(mask, cv2.COLOR_BGR2GRAY)
        cv2.imwrite(os.path.join(workdir, "mask", name), gray, [cv2.IMWRITE_JPEG_QUALITY, 100])
        count += 1
    capture.release()
    return count


def clip(index: int, frames: int, workdir: str) -> np.ndarray:
    """``__getitem__``'s clip of frame ``index``, normalized: [4, 8, 112, 112] float32."""
    data = np.zeros((8, 112, 112, 4), dtype=np.uint8)
    for clip_i, all_i in enumerate(range(index - 48 + 6, index - 48 + 6 * 9, 6)):
        if all_i < 0 or all_i >= frames:
            continue
        name = str(all_i).zfill(5) + ".jpg"
        data[clip_i, :, :, 0:3] = np.array(Image.open(os.path.join(workdir, name)))
        data[clip_i, :, :, 3] = np.array(Image.open(os.path.join(workdir, "mask", name)))
    tensor = torch.from_numpy(data.astype(np.float32) / 255).permute(3, 0, 1, 2)
    mean = torch.as_tensor(MEAN, dtype=tensor.dtype)[:, None, None, None]
    std = torch.as_tensor(STD, dtype=tensor.dtype)[:, None, None, None]
    return tensor.sub_(mean).div_(std).numpy()


def main(video: str, landmarks_file: str, targets: str, out: str, workdir: str) -> None:
    landmarks = np.load(landmarks_file)["landmarks"]
    frames = render(video, landmarks, workdir)
    wanted = [int(t) for t in targets.split(",")]
    np.savez(out, clips=np.stack([clip(i, frames, workdir) for i in wanted]), frames=frames, opencv=cv2.__version__)


if __name__ == "__main__":
    main(*sys.argv[1:])
