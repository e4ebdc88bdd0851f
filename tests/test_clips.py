"""tsav_deploy.clips: frame selection by time (the authors' 30 fps indexing, hand-worked variable
rates, ties, the start of a video), normalization, and the streaming assembler."""

from __future__ import annotations

import numpy as np
import pytest

from tsav_deploy import clips

MEAN = np.array([0.43216, 0.394666, 0.37645, 0.5], np.float32)  # docs/preprocessing.md, restated
STD = np.array([0.22803, 0.22145, 0.216989, 0.225], np.float32)


def authors_indices(i: int) -> list[int | None]:
    """The authors' dataset: range(i − 48 + 6, i − 48 + 6·9, 6), negative = black frame."""
    return [j if j >= 0 else None for j in range(i - 48 + 6, i - 48 + 6 * 9, 6)]


@pytest.mark.parametrize(
    "times",
    [
        np.arange(400) / 30,  # exact 30 fps
        np.arange(400) * 512 / 15360,  # 30 fps as MP4 timestamps (time base 1/15360)
        np.arange(400) * 1001 / 30000 + 0.852,  # 29.97 fps starting late (0.2 s = 5.994 frames)
    ],
)
def test_30fps_is_the_authors_indexing(times):
    for i in range(len(times)):
        assert clips.clip_frame_indices(times, i) == authors_indices(i)


def test_25fps_steps_five_frames():
    times = np.arange(100) * 0.04
    assert clips.clip_frame_indices(times, 60) == [25, 30, 35, 40, 45, 50, 55, 60]
    assert clips.clip_frame_indices(times, 34) == [None, 4, 9, 14, 19, 24, 29, 34]
    assert clips.clip_frame_indices(times, 35) == [0, 5, 10, 15, 20, 25, 30, 35]


def test_ties_go_to_the_later_frame():
    # 12.5 fps: 0.2 s is 2.5 frames, so every other clip time falls exactly between two frames.
    times = np.arange(40) * 0.08
    assert clips.clip_frame_indices(times, 20) == [3, 5, 8, 10, 13, 15, 18, 20]


def test_variable_rate_by_hand():
    times = [0.0, 0.05, 0.1, 0.35, 0.4, 0.9, 1.0, 1.2, 1.45, 1.5, 1.62, 1.9]
    # Target 11 at 1.9 s; clip times 0.5, 0.7, 0.9, 1.1, 1.3, 1.5, 1.7, 1.9:
    # 0.5 -> 0.4 (4: 0.1 away vs 0.4); 0.7 -> 0.9 (5: 0.2 vs 0.3 from 0.4); 0.9 -> 5;
    # 1.1 -> tie between 1.0 and 1.2 -> later (7); 1.3 -> 1.2 (7: 0.1 vs 0.15);
    # 1.5 -> 9; 1.7 -> 1.62 (10: 0.08 vs 0.2); 1.9 -> 11.
    assert clips.clip_frame_indices(times, 11) == [4, 5, 5, 7, 7, 9, 10, 11]
    # Target 8 at 1.45 s: 0.05 -> 1; 0.25 -> 0.35 (3: 0.1 vs 0.15); 0.45 -> 0.4 (4);
    # 0.65 -> tie 0.4/0.9 -> 5; 0.85 -> 5; 1.05 -> 1.0 (6); 1.25 -> 1.2 (7); 1.45 -> 8.
    assert clips.clip_frame_indices(times, 8) == [1, 3, 4, 5, 5, 6, 7, 8]


def test_start_of_video_uses_half_the_median_interval():
    # Intervals 0.01, 0.09, then 0.1: the median is 0.1, so up to 0.05 s before frame 0 still
    # counts as frame 0 and anything earlier is black.
    times = np.array([0.0, 0.01] + [0.1 * k for k in range(1, 14)] + [1.36, 1.44])
    assert times[15] == 1.36 and np.median(np.diff(times[:16])) == pytest.approx(0.1)
    assert clips.clip_frame_indices(times, 15)[0] == 0  # 1.36 − 1.4 = −0.04
    idx_1_34 = np.array([0.0, 0.01] + [0.1 * k for k in range(1, 14)] + [1.34])
    assert clips.clip_frame_indices(idx_1_34, 15)[0] is None  # 1.34 − 1.4 = −0.06


def test_first_frames():
    times = np.arange(10) / 30
    assert clips.clip_frame_indices(times, 0) == [None] * 7 + [0]
    assert clips.clip_frame_indices([0.0], 0) == [None] * 7 + [0]
    with pytest.raises(IndexError):
        clips.clip_frame_indices(times, 10)


def test_real_variable_rate_recording(media_dir):
    """The VFR recording's own times: every pick is the nearest frame and never in the future."""
    from tsav_deploy import media

    frames = media.iter_frames(media_dir / "talking_head_vfr.mp4", max_side=32)
    times = np.array([f.time for f in frames])
    for i in range(len(times)):
        picks = clips.clip_frame_indices(times, i)
        assert picks[-1] == i
        for k, j in enumerate(picks):
            clip_time = times[i] - (7 - k) * 0.2
            if j is None:
                assert clip_time < times[0]
            else:
                nearest = np.abs(times[: i + 1] - clip_time).min()
                assert j <= i and abs(times[j] - clip_time) == pytest.approx(nearest)


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


def jittered(n: int, seed: int) -> np.ndarray:
    """Variable-rate times: intervals between 10 and 120 ms."""
    return np.cumsum(np.random.default_rng(seed).uniform(0.01, 0.12, n)) - 0.01


@pytest.mark.parametrize(
    "times",
    [
        np.arange(120) / 30,
        np.arange(60) * 0.08,
        np.arange(80) * 1001 / 24000,
        jittered(150, 1),
        jittered(150, 2),
    ],
    ids=["30fps", "12.5fps-ties", "23.976fps", "vfr-1", "vfr-2"],
)
def test_assembler_agrees_with_clip_frame_indices(times):
    crops = random_crops(len(times), seed=3)
    faces = [crops[j] if j % 7 != 3 else None for j in range(len(times))]  # some without a face
    assembler = clips.ClipAssembler()
    for i, (t, crop) in enumerate(zip(times, faces)):
        clip = assembler.push(t, crop)
        picks = clips.clip_frame_indices(times, i)
        expected = clips.normalize_clip([None if j is None else faces[j] for j in picks])
        np.testing.assert_array_equal(clip, expected)
        # Exactly what a later clip can still use: the frames after the oldest clip time and the
        # last one at or before it.
        oldest = t - 7 * 0.2
        held = times[: i + 1]
        assert assembler.buffered_frames == np.sum(held > oldest) + np.any(held <= oldest)


def test_assembler_writes_into_a_batch_slot():
    batch = np.zeros((3, 4, 8, 112, 112), np.float32)
    assembler = clips.ClipAssembler()
    crops = random_crops(3)
    for i in range(3):
        returned = assembler.push(i / 30, crops[i], out=batch[i])
        assert returned is batch[i] or np.shares_memory(returned, batch[i])
    np.testing.assert_array_equal(batch[2], clips.normalize_clip([None] * 7 + [crops[2]]))


def test_assembler_rejects_time_going_backwards():
    assembler = clips.ClipAssembler()
    assembler.push(0.0, None)
    with pytest.raises(ValueError):
        assembler.push(0.0, None)


def test_face_less_clips_are_the_one_constant_input():
    """Whenever a person has been absent for a whole clip, the clip is the constant black clip whose
    float32 features an int8 export stores."""
    from tsav_deploy.contract import constant_inputs

    constant = constant_inputs()["clip"][0]
    assembler = clips.ClipAssembler()
    face = np.full((112, 112, 4), 200, np.uint8)
    pushed = [assembler.push(t, face if t < 1.0 else None).copy() for t in np.arange(0.0, 4.0, 0.04)]
    assert not np.array_equal(pushed[30], constant)  # 1.2 s: the face is still in the clip
    for clip in pushed[62:]:  # 2.48 s onwards: the last face (0.96 s) is more than 1.4 s back
        np.testing.assert_array_equal(clip, constant)


def test_the_black_flag_marks_exactly_the_black_clips(media_dir):
    """On a real recording whose face leaves (face, then a cartoon), the frontend's flag is set on
    exactly the clips equal to the constant black clip that int8 engines answer from storage."""
    from tsav_deploy import frontend
    from tsav_deploy.contract import constant_inputs
    from tsav_deploy.faces import get_backend

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
