"""The visual input is the authors' clip as a whole, checked against their pipeline run on real recordings.

The reference (tests/helpers/authors_pipeline.py) is written from the authors' code and runs in a process of
its own with OpenCV 4.12 (their generation: ``VideoCapture`` with BT.601, the 4.x bicubic warp), fed
the same 68 landmarks per frame as ours. Every clip ``Predictor.network_inputs`` yields must equal
it value for value; the tests also show that a clip shifted by one frame, raw (non-JPEG) crops and a
BT.709 decode each fail that comparison. Both sides decode the JPEG files with libjpeg-turbo; the
authors' 2020 Pillow may have used IJG libjpeg, whose residual docs/preprocessing.md gives.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tsav_deploy import Predictor
from tsav_deploy.pipeline.offline import find_people

OPENCV4 = pathlib.Path(sys.prefix) / "opencv4"
SCRIPT = pathlib.Path(__file__).parent / "helpers" / "authors_pipeline.py"
pytestmark = pytest.mark.skipif(
    not (OPENCV4 / "cv2").is_dir(), reason="OpenCV 4.12 for the reference is not in .venv/opencv4 (scripts/setup.sh)"
)
STEP = 3  # every 3rd frame's clip is compared (all of them share the files of every frame)


@pytest.fixture(scope="module")
def predictor(small_checkpoint) -> Predictor:
    return Predictor(weights=small_checkpoint, faces="dlib", detector="hog")


def main_landmarks(predictor: Predictor, video: pathlib.Path) -> tuple[np.ndarray, int]:
    """The main person's 68 landmarks per frame (NaN without a face), as pass 1 finds them."""
    people = find_people(video, predictor.face_backend, predictor.options)
    landmarks = np.full((people.timeline.frames, 68, 2), np.nan)
    for index, face in people.tracks[0].faces.items():
        landmarks[index] = face.landmarks68
    return landmarks, people.timeline.frames


def authors_clips(video: pathlib.Path, landmarks: np.ndarray, targets: list[int], tmp: pathlib.Path) -> np.ndarray:
    np.savez(tmp / "landmarks.npz", landmarks=landmarks)
    env = {**os.environ, "PYTHONPATH": str(OPENCV4)}
    args = [
        str(video),
        str(tmp / "landmarks.npz"),
        ",".join(map(str, targets)),
        str(tmp / "out.npz"),
        str(tmp / "files"),
    ]
    subprocess.run([sys.executable, str(SCRIPT), *args], check=True, env=env, timeout=600)
    out = np.load(tmp / "out.npz")
    assert str(out["opencv"]).startswith("4.12"), out["opencv"]
    assert int(out["frames"]) == len(landmarks)  # OpenCV decodes as many frames as we do
    return out["clips"]


def our_clips(predictor: Predictor, video: pathlib.Path, targets: list[int]) -> np.ndarray:
    wanted = set(targets)
    inputs = [item for item in predictor.network_inputs(video) if item.frame in wanted]
    assert [item.frame for item in inputs] == targets and {item.person for item in inputs} == {"main"}
    return np.stack([item.clip for item in inputs])


@pytest.mark.parametrize("name", ["webcam_man_mp3.mp4", "talking_head_vfr.mp4", "face_then_cartoon_hevc.mov"])
def test_clips_equal_the_authors_pipeline(predictor, media_dir, tmp_path, name):
    video = media_dir / name
    landmarks, frames = main_landmarks(predictor, video)
    targets = list(range(0, frames, STEP))
    shifted_targets = [t + 1 for t in targets if t + 1 < frames]
    both = authors_clips(video, landmarks, targets + shifted_targets, tmp_path)
    theirs, shifted = both[: len(targets)], both[len(targets) :]
    ours = our_clips(predictor, video, targets)
    with_face = [k for k, t in enumerate(targets) if not np.isnan(landmarks[t]).any()]
    assert len(with_face) > len(targets) // 3
    for k, target in enumerate(targets):
        np.testing.assert_array_equal(ours[k], theirs[k], err_msg=f"{name}: the clip of frame {target}")
    # Shifted by one frame (the clip of frame i + 1 for frame i), it would fail:
    assert all(not np.array_equal(ours[k], shifted[k]) for k in with_face if k < len(shifted))


def test_raw_crops_and_bt709_would_fail(predictor, media_dir, tmp_path, monkeypatch):
    """Raw (non-JPEG) crops, or frames decoded following the file's BT.709 tag, are not the authors'."""
    from tsav_deploy import media
    from tsav_deploy.faces import crop_and_mask
    from tsav_deploy.pipeline import frontend

    video = media_dir / "face_then_cartoon_hevc.mov"  # tagged BT.709
    landmarks, frames = main_landmarks(predictor, video)
    targets = [t for t in range(42, 72, 6) if not np.isnan(landmarks[t]).any()]
    theirs = authors_clips(video, landmarks, targets, tmp_path)
    np.testing.assert_array_equal(our_clips(predictor, video, targets), theirs)

    def raw(image_rgb, face):
        aligned, mask = crop_and_mask(image_rgb, face.landmarks68)
        return np.dstack([aligned, mask])

    with monkeypatch.context() as patch:
        patch.setattr(frontend, "encoded_face", lambda image, lm: _Raw(raw(image, _Face(lm))))
        raw_clips = our_clips(predictor, video, targets)
    assert all(np.abs(raw_clips[k] - theirs[k]).max() > 0.05 for k in range(len(targets)))

    with monkeypatch.context() as patch:
        patch.setattr(media.RgbConverter, "colorspace", "ITU709")
        tagged = our_clips(predictor, video, targets)
    assert all(not np.array_equal(tagged[k], theirs[k]) for k in range(len(targets)))


class _Face:
    def __init__(self, landmarks68):
        self.landmarks68 = landmarks68


class _Raw:
    """Stands in for an encoded crop whose decoding gives the raw crop (the variant that must fail)."""

    def __init__(self, pixels):
        self.pixels = pixels

    def decode(self):
        return self.pixels
