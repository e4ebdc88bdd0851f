"""The synthetic Aff-Wild2-shaped dataset: real decodable videos with sound and findable faces, ABAW
annotation folders the label reader accepts, and labels that the picture and the sound carry."""

from __future__ import annotations

import numpy as np

from tsav_deploy.faces import get_backend
from tsav_deploy.media.audio import read_audio
from tsav_deploy.media.frames import iter_frames
from tsav_deploy.media.probe import probe
from tsav_deploy.train.labels import read_annotations
from tsav_deploy.train.synthetic import FPS, HEIGHT, WIDTH

from helpers.synthetic_data import SECONDS, VIDEOS


def test_videos_decode_with_sound(synth):
    assert len(synth.videos) == VIDEOS
    for video in synth.videos:
        info = probe(video.path)
        assert (info.width, info.height) == (WIDTH, HEIGHT)
        assert info.has_audio and info.video_codec == "h264"
        assert abs(info.fps - FPS) < 1e-6
        frames = list(iter_frames(video.path))
        assert len(frames) == round(SECONDS * FPS) == len(video.va)


def test_dlib_finds_the_face(synth):
    """The generator's faces are found by dlib's HOG detector, which the synthetic cache uses."""
    backend = get_backend("dlib", detector="hog")
    for video in synth.videos:
        frames = [f.rgb for f in iter_frames(video.path)][::10]
        found = [len(backend.detect(rgb)) == 1 for rgb in frames]
        assert np.mean(found) >= 0.9, video.name


def test_annotations_read_with_gaps(synth):
    annotations = read_annotations(synth.annotations_dir)
    train, validation = annotations["train"], annotations["validation"]
    assert sorted(validation) == [v.name for v in synth.videos if v.split == "validation"]
    assert sorted(train) == [v.name for v in synth.videos if v.split == "train"]
    first = train["synth_00"]
    assert np.isnan(first.va[-3:]).all()  # VA file 3 lines short: padded as unannotated
    assert (first.expr[: FPS // 3] == -1).all()
    assert not train["synth_01"].has_va.any()  # expression-only video
    truth = synth.videos[4]
    table = validation[truth.name]
    np.testing.assert_allclose(table.va, truth.va, atol=5e-4)
    np.testing.assert_array_equal(table.expr, truth.expr)
    np.testing.assert_array_equal(table.au, truth.au)


def _face_brightness(rgb: np.ndarray) -> float:
    h, w = rgb.shape[:2]
    return float(rgb[h // 2 - 30 : h // 2 + 30, w // 2 - 30 : w // 2 + 30].mean())


def test_labels_are_in_picture_and_sound(synth):
    """Valence moves the face's brightness; arousal the sound's loudness (independent measurements)."""
    for video in synth.videos[:3]:
        brightness = np.array([_face_brightness(f.rgb) for f in iter_frames(video.path)])
        # Within one expression (one tint) brightness depends on valence alone.
        tint = np.bincount(video.expr).argmax()
        same = video.expr == tint
        assert np.corrcoef(brightness[same], video.va[same, 0])[0, 1] > 0.8  # the face drifts under the window
    loudness, arousal = [], []
    for video in synth.videos:
        wave, _ = read_audio(video.path)
        per_frame = wave[: len(video.va) * 1470].reshape(len(video.va), 1470)  # 44100 / 30 samples
        loudness.append(10 * np.log10((per_frame[5:-5] ** 2).mean(1)))
        arousal.append(video.va[5:-5, 1])
    assert np.corrcoef(np.concatenate(loudness), np.concatenate(arousal))[0, 1] > 0.9
