"""tsav_deploy.inputs.clips: frame selection by index (the authors' ``_range`` at every frame rate, the start
of a video, a real variable-rate recording against OpenCV's frame order), normalization, and the
streaming assembler."""

from __future__ import annotations

import numpy as np
import pytest

from tsav_deploy.inputs import clips

MEAN = np.array([0.43216, 0.394666, 0.37645, 0.5], np.float32)  # docs/preprocessing.md, restated
STD = np.array([0.22803, 0.22145, 0.216989, 0.225], np.float32)


def authors_indices(i: int) -> list[int | None]:
    """The authors' dataset: range(i − 48 + 6, i − 48 + 6·9, 6), negative = black frame."""
    return [j if j >= 0 else None for j in range(i - 48 + 6, i - 48 + 6 * 9, 6)]


def test_every_index_is_the_authors_range():
    for i in range(400):
        assert clips.clip_frame_indices(i) == authors_indices(i)
        assert clips.first_clip_frame(i) == max(0, i - 42)


def test_first_frames():
    assert clips.clip_frame_indices(0) == [None] * 7 + [0]
    assert clips.clip_frame_indices(41) == [None, 5, 11, 17, 23, 29, 35, 41]
    assert clips.clip_frame_indices(42) == [0, 6, 12, 18, 24, 30, 36, 42]
    with pytest.raises(IndexError):
        clips.clip_frame_indices(-1)


@pytest.mark.parametrize(
    "name, variable",
    [("talking_head_vfr.mp4", True), ("face_then_cartoon_hevc.mov", True), ("cartoon_no_face.mp4", False)],
)
def test_decoded_frames_are_opencvs_frames_in_order(media_dir, name, variable):
    """A clip position is a decode index, and the authors decoded with OpenCV's VideoCapture: on the
    variable-rate recording, the HEVC clip whose rate changes and the file whose container
    miscounts its frames, our frame k has OpenCV's frame k's timestamp (same count, same order), so
    every clip position reads the authors' frame."""
    import cv2

    from tsav_deploy import media

    ours = np.array([f.time for f in media.iter_frames(media_dir / name, max_side=32)])
    capture = cv2.VideoCapture(str(media_dir / name))
    theirs = []
    while capture.grab():
        theirs.append(capture.get(cv2.CAP_PROP_POS_MSEC) / 1000)
    capture.release()
    assert len(theirs) == len(ours)
    np.testing.assert_allclose(np.asarray(theirs) - theirs[0], ours, atol=1e-6)
    # Where the rate varies, a rule by time would pick other frames than these.
    assert (np.ptp(np.diff(ours)) > 0.005) == variable


def test_talking_head_frames_equal_opencvs_pixels(media_dir):
    """The untagged VFR recording, whose colours every OpenCV converts with BT.601: frame k is
    OpenCV's frame k pixel for pixel."""
    import cv2

    from tsav_deploy import media

    capture = cv2.VideoCapture(str(media_dir / "talking_head_vfr.mp4"))
    try:
        for frame in media.iter_frames(media_dir / "talking_head_vfr.mp4"):
            ok, bgr = capture.read()
            assert ok
            np.testing.assert_array_equal(frame.rgb, bgr[..., ::-1], err_msg=f"frame {frame.index}")
        assert not capture.read()[0]
    finally:
        capture.release()


# --- normalization --------------------------------------------------------------------------------


def random_crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 112, 112, 4), dtype=np.uint8)


def test_normalize_clip_is_the_authors_arithmetic():
    crops = random_crops(8)
    expected = ((crops.astype(np.float32) / 255 - MEAN) / STD).transpose(3, 0, 1, 2)
    out = clips.normalize_clip(crops)
    assert out.shape == (4, 8, 112, 112) and out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(clips.normalize_clip(list(crops)), expected)


def test_missing_frames_are_black_before_normalization():
    crops = list(random_crops(8))
    crops[0] = crops[5] = None
    out = clips.normalize_clip(crops)
    for k in (0, 5):
        black = np.broadcast_to((-MEAN / STD)[:, None, None], (4, 112, 112))
        np.testing.assert_array_equal(out[:, k], black)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((7, 112, 112, 4), np.uint8),
        np.zeros((8, 112, 112, 3), np.uint8),
        np.zeros((8, 112, 112, 4), np.float32),
    ],
)
def test_normalize_clip_rejects_wrong_input(bad):
    with pytest.raises(ValueError):
        clips.normalize_clip(bad)


# --- the streaming assembler ----------------------------------------------------------------------


def test_assembler_agrees_with_clip_frame_indices():
    n = 150
    crops = random_crops(n, seed=3)
    faces = [crops[j] if j % 7 != 3 else None for j in range(n)]  # some without a face
    assembler = clips.ClipAssembler()
    for i, crop in enumerate(faces):
        clip = assembler.push(i, crop)
        picks = clips.clip_frame_indices(i)
        expected = clips.normalize_clip([None if j is None else faces[j] for j in picks])
        np.testing.assert_array_equal(clip, expected)
        assert assembler.black == all(j is None or faces[j] is None for j in picks)
        # Exactly the faces a later clip can still use: frames i − 42 … i.
        assert assembler.buffered_frames == sum(f is not None for f in faces[max(0, i - 42) : i + 1])


def test_assembler_writes_into_a_batch_slot():
    batch = np.zeros((3, 4, 8, 112, 112), np.float32)
    assembler = clips.ClipAssembler()
    crops = random_crops(3)
    for i in range(3):
        returned = assembler.push(i, crops[i], out=batch[i])
        assert returned is batch[i] or np.shares_memory(returned, batch[i])
    np.testing.assert_array_equal(batch[2], clips.normalize_clip([None] * 7 + [crops[2]]))


def test_assembler_rejects_indices_going_backwards():
    assembler = clips.ClipAssembler()
    assembler.push(0, None)
    with pytest.raises(ValueError):
        assembler.push(0, None)


def test_a_stream_with_gaps_keeps_the_authors_positions():
    """Live sources number frames by the source's index: a dropped frame is black where a clip holds it."""
    frames = clips.ClipFrames()
    assert frames.push(0) == [None] * 7 + [0]
    assert frames.push(50) == [8, 14, 20, 26, 32, 38, 44, 50]
    assert frames.oldest == 8


def test_face_less_clips_are_the_one_constant_input():
    """Whenever a person has been absent for a whole clip, the clip is the constant black clip whose
    float32 features an int8 export stores."""
    from tsav_deploy.artifacts.manifest import constant_inputs

    constant = constant_inputs()["clip"][0]
    assembler = clips.ClipAssembler()
    face = np.full((112, 112, 4), 200, np.uint8)
    pushed = [assembler.push(i, face if i < 25 else None).copy() for i in range(100)]
    assert not np.array_equal(pushed[66], constant)  # frame 24 is still in frame 66's clip
    for clip in pushed[67:]:  # from frame 67 on, the last face (frame 24) is more than 42 frames back
        np.testing.assert_array_equal(clip, constant)


def test_the_black_flag_marks_exactly_the_black_clips(media_dir):
    """On a real recording whose face leaves (face, then a cartoon), the frontend's flag is set on
    exactly the clips equal to the constant black clip that int8 engines answer from storage."""
    from tsav_deploy.artifacts.manifest import constant_inputs
    from tsav_deploy.faces import get_backend
    from tsav_deploy.pipeline import frontend

    video = media_dir / "face_then_cartoon_hevc.mov"
    timeline = frontend.scan_faces(video, get_backend("dlib", detector="hog"))
    constant = constant_inputs()["clip"][0]
    flags, equal = [], []
    targets = np.ones(timeline.frames, bool)
    for _, _, batch, black in frontend.iter_clips(video, timeline, [timeline.main_track_id], targets):
        flags.append(bool(black[0]))
        equal.append(np.array_equal(batch[0], constant))
    assert flags == equal
    assert 0 < sum(flags) < len(flags)  # both kinds occur
