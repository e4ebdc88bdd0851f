"""The preprocess cache and the training loader: the clip training sees is the clip annotation builds."""

from __future__ import annotations

import colorsys
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tsav_deploy.cli import app
from tsav_deploy.contract import preprocessing_dict
from tsav_deploy.faces import get_backend
from tsav_deploy.inputs.clips import ClipAssembler
from tsav_deploy.pipeline import frontend
from tsav_deploy.train.cache import CacheError, check_compatible, open_cache, video_folder
from tsav_deploy.train.dataset import (
    ClipDataset,
    augment_clip,
    build_samples,
    fit_histograms,
    hsv_jitter,
    normalization_table,
    normalize_batch,
)
from tsav_deploy.train.labels import read_annotations
from tsav_deploy.train.preprocess import preprocess


def test_index_and_entries(synth, cache):
    index = open_cache(cache)
    assert json.loads((cache / "index.json").read_text())["preprocessing"] == preprocessing_dict()
    assert index.faces == "dlib" and sorted(index.videos) == [v.name for v in synth.videos]
    for video in synth.videos:
        entry = index.videos[video.name]
        assert entry["frames"] == len(video.va)
        assert entry["faces"] >= 0.9 * entry["frames"]
        cached = index.open(video.name)
        assert len(cached) == entry["frames"] and cached.face_found.sum() == entry["faces"]
        np.testing.assert_allclose(np.diff(cached.times), 1 / 30, atol=1e-6)
    assert 1_000 < index.bytes / index.frames < 15_000  # bytes per frame


def test_resume_redoes_only_unfinished_videos(synth, cache, tmp_path):
    copy = tmp_path / "cache"
    import shutil

    shutil.copytree(cache, copy)
    (video_folder(copy, "synth_02") / "entry.json").unlink()  # as if interrupted during synth_02
    report = preprocess(synth.videos_dir, copy, faces="dlib", detector="hog")
    assert report.processed == ["synth_02"] and len(report.skipped) == len(synth.videos) - 1
    assert json.loads((copy / "index.json").read_text()) == json.loads((cache / "index.json").read_text())


def test_cli_reports_size_per_frame(synth, cache):
    result = CliRunner().invoke(
        app, ["preprocess", str(synth.videos_dir), "--out", str(cache), "--faces", "dlib", "--detector", "hog"]
    )
    assert result.exit_code == 0, result.output
    assert "already done" in result.output and "kB per frame" in result.output


def test_cache_from_another_version_is_refused(cache, tmp_path):
    with pytest.raises(CacheError, match="tsav preprocess"):
        open_cache(tmp_path)
    index = json.loads((cache / "index.json").read_text())
    index["preprocessing"]["clip"]["step_frames"] = 5
    (tmp_path / "index.json").write_text(json.dumps(index))
    with pytest.raises(
        CacheError, match=r"other preprocessing .*clip.step_frames: 5, this version 6\); preprocess again"
    ):
        open_cache(tmp_path)


def test_cache_of_the_time_based_clip_is_refused(cache, tmp_path):
    """A cache made under the clip rule by time, raw-decoded colours and an exact mask (format 2)."""
    index = json.loads((cache / "index.json").read_text())
    index["format_version"] = 2
    clip = index["preprocessing"]["clip"]
    for key in ("step_frames", "rule", "decode_colorspace", "warp", "crop_codec"):
        del clip[key]
    clip["step_s"] = 0.2
    (tmp_path / "index.json").write_text(json.dumps(index))
    message = r"clip.step_frames: none recorded, this version 6\); preprocess again into a new folder"
    with pytest.raises(CacheError, match=message):
        open_cache(tmp_path)


def test_cache_with_centred_windows_is_refused(cache, tmp_path):
    """A cache of the whole-track mel and centred windows (format 1, no window rule recorded)."""
    index = json.loads((cache / "index.json").read_text())
    index["format_version"] = 1
    for key in ("window_rule", "segment_samples", "segment_lead_samples", "min_segment_samples", "wave_format"):
        del index["preprocessing"]["audio"][key]
    (tmp_path / "index.json").write_text(json.dumps(index))
    message = r"audio.window_rule: none recorded, this version 'authors-segment'\); preprocess again into a new folder"
    with pytest.raises(CacheError, match=message):
        open_cache(tmp_path)
    with pytest.raises(CacheError, match=message):
        check_compatible(tmp_path, "dlib")


def test_training_window_equals_annotation_window(synth, cache):
    """The loader's aural input of a frame is annotation's: the same wave (kept as 16 bits in the
    cache), the same millisecond timestamp, the same rule."""
    from tsav_deploy.inputs.windows import SpecWindows
    from tsav_deploy.media.audio import read_audio

    video = next(v for v in synth.videos if v.split == "validation")
    index = open_cache(cache)
    cached = index.open(video.name)
    wave, _ = read_audio(video.path)
    np.testing.assert_array_equal(cached.wave.astype(np.float32) / 32768, wave)
    samples = build_samples(read_annotations(synth.annotations_dir)["validation"], index, training=False)
    dataset = ClipDataset(index, samples)
    rows = [r for r in range(len(samples)) if samples.videos[samples.video[r]] == video.name][::11]
    reference = SpecWindows(wave).frame_windows(cached.times[samples.frame[rows]])
    for row, expected in zip(rows, reference):
        np.testing.assert_array_equal(dataset[row]["spec"], expected)


def test_training_clip_equals_annotation_clip(synth, cache):
    """The annotate-side path (frontend pass 1 + 2, ClipAssembler) against the cache and the loader:
    the same clip for the same frame, bit for bit (the cache keeps the authors' JPEG files)."""
    video = next(v for v in synth.videos if v.split == "validation")
    timeline = frontend.scan_faces(video.path, get_backend("dlib", detector="hog"))
    index = open_cache(cache)
    cached = index.open(video.name)
    assembler = ClipAssembler()
    reference_clips = []
    for frame, (crop,) in frontend.iter_crops(video.path, timeline, [timeline.main_track_id]):
        pixels = None if crop is None else crop.decode()
        reference_clips.append(assembler.push(frame.index, pixels).copy())
        stored = cached.crop(frame.index)
        assert (pixels is None) == (stored is None)
        if pixels is not None:
            np.testing.assert_array_equal(stored, pixels)
            np.testing.assert_array_equal(
                stored, frontend.face_crop(frame.rgb, timeline.track(timeline.main_track_id).faces[frame.index])
            )
    samples = build_samples(read_annotations(synth.annotations_dir)["validation"], index, training=False)
    dataset = ClipDataset(index, samples)
    rows = [r for r in range(len(samples)) if samples.videos[samples.video[r]] == video.name][::7]
    items = [dataset[r] for r in rows]
    clips = normalize_batch(torch.from_numpy(np.stack([it["crops"] for it in items])), normalization_table()).numpy()
    for clip, row in zip(clips, rows):
        np.testing.assert_array_equal(clip, reference_clips[samples.frame[row]])


def test_clip_frames_at_30_fps(synth, cache):
    """Frame i's clip is frames i-42, i-36, ..., i; earlier than frame 0 is black."""
    index = open_cache(cache)
    samples = build_samples(read_annotations(synth.annotations_dir)["validation"], index, training=False)
    dataset = ClipDataset(index, samples)
    row = int(np.flatnonzero(samples.frame == 20)[0])
    rgb, mask, present = dataset.frames(row)
    assert present.tolist() == [False] * 4 + [True] * 4
    assert not rgb[:4].any() and not mask[:4].any()
    cached = index.open(samples.videos[samples.video[row]])
    for k, frame in zip(range(4, 8), (2, 8, 14, 20)):
        np.testing.assert_array_equal(np.dstack([rgb[k], mask[k]]), cached.crop(frame))


def _hsv_reference(rgb: np.ndarray, hue: int, saturation: int, value: int) -> np.ndarray:
    """Python's colorsys in floating point, on OpenCV's scales (hue 0-180, saturation/value 0-255)."""
    out = np.empty_like(rgb)
    for idx in np.ndindex(rgb.shape[:-1]):
        h, s, v = colorsys.rgb_to_hsv(*(rgb[idx] / 255.0))
        h = ((h * 180 + hue) % 180) / 180
        s = np.clip(s * 255 + saturation, 0, 255) / 255
        v = np.clip(v * 255 + value, 0, 255) / 255
        out[idx] = np.round(np.array(colorsys.hsv_to_rgb(h, s, v)) * 255)
    return out


def test_hsv_jitter_against_colorsys():
    rng = np.random.default_rng(1)
    rgb = rng.integers(30, 226, (1, 16, 16, 3), dtype=np.uint8)
    for hue, saturation, value in ((10, 0, 0), (-10, 25, -20), (0, -25, 20)):
        ours = hsv_jitter(rgb, hue, saturation, value).astype(int)
        reference = _hsv_reference(rgb, hue, saturation, value).astype(int)
        # OpenCV keeps hue in 180 integer steps (2°): a few gray levels of rounding on saturated pixels.
        assert np.abs(ours - reference).mean() < 2.0 and np.percentile(np.abs(ours - reference), 99) <= 8


def test_augmentation_flips_rgb_and_mask_together():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (8, 112, 112, 3), dtype=np.uint8)
    mask = np.zeros((8, 112, 112), np.uint8)
    mask[:, 50, 10:20] = 255  # a mark on the left
    present = np.array([False] * 2 + [True] * 6)
    rgb[~present], mask[~present] = 0, 0  # as ClipDataset.frames gives them
    flipped = unflipped = 0
    for seed in range(12):
        out = augment_clip(rgb, mask, present, np.random.default_rng(seed))
        assert not out[~present].any()  # absent frames stay black
        if out[2, 50, 101, 3] == 255:  # mirrored: the mark is on the right
            flipped += 1
            np.testing.assert_array_equal(out[..., 3], mask[:, :, ::-1])
        else:
            unflipped += 1
            np.testing.assert_array_equal(out[..., 3], mask)
    assert flipped and unflipped


def test_training_items_are_reproducible_and_pseudo_labels_redrawn(synth, cache):
    index = open_cache(cache)
    tables = read_annotations(synth.annotations_dir)["train"]
    histograms = fit_histograms(tables, index)
    samples = build_samples(tables, index, training=True, histograms=histograms)
    dataset = ClipDataset(index, samples, histograms=histograms, seed=3)
    row = int(np.flatnonzero(np.isnan(samples.va[:, 0]) & (samples.expr >= 0))[0])  # expression only
    first, again = dataset[(row, 5, 2)], dataset[(row, 5, 2)]
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    drawn = {float(dataset[(row, step, 0)]["va"][0]) for step in range(6)}
    assert len(drawn) == 6 and all(-1 <= v <= 1 for v in drawn)  # pseudo valence, new each time
    assert np.isnan(dataset[(row, 0, 0)]["va"][1])  # arousal stays unlabelled (paper default)
