"""The library API: Predictor -> Annotation -> pandas, the same files as the CLI, read_table, and
options checked before anything runs."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tsav_deploy import Predictor, read_table
from tsav_deploy.cli import app
from tsav_deploy.contract import ACTION_UNITS, EXPRESSIONS
from tsav_deploy.errors import TsavError
from tsav_deploy.results.table import TABLE_COLUMNS, read_video_table


@pytest.fixture(scope="module")
def predictor(small_checkpoint):
    return Predictor(weights=small_checkpoint, faces="dlib", detector="hog")


@pytest.fixture(scope="module")
def webcam(media_dir, predictor):
    return predictor.predict(media_dir / "webcam_man_mp3.mp4")


def test_predict_gives_a_typed_table(webcam):
    df = webcam.to_pandas()
    assert list(df.columns) == TABLE_COLUMNS and len(df) == 72
    assert df["frame"].dtype == np.int64 and df["frame"].tolist() == list(range(72))
    assert df["face_found"].dtype == bool and df["face_found"].all()
    assert isinstance(df["modality"].dtype, pd.CategoricalDtype) and (df["modality"] == "audio+video").all()
    assert isinstance(df["expression"].dtype, pd.CategoricalDtype)
    assert list(df["expression"].cat.categories) == list(EXPRESSIONS)
    assert df[list(ACTION_UNITS)].isin([0, 1]).all().all()
    probs = df[[f"p_{e}" for e in EXPRESSIONS]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=5e-4)
    assert (df["expression"].cat.codes.to_numpy() == probs.argmax(axis=1)).mean() > 0.95  # 4-decimal ties aside


def test_the_cli_files_hold_the_library_table(media_dir, small_checkpoint, webcam, tmp_path):
    video = media_dir / "webcam_man_mp3.mp4"
    result = CliRunner().invoke(
        app,
        [
            "annotate",
            str(video),
            "--weights",
            str(small_checkpoint),
            "--faces",
            "dlib",
            "--detector",
            "hog",
            "--out",
            str(tmp_path),
            "--no-plot",
        ],
    )
    assert result.exit_code == 0, result.output
    df = webcam.to_pandas()
    # The CLI and the library annotate the same video alike; the CSV's text against the table's
    # values is tests/test_table.py's.
    csv = read_video_table(tmp_path, "webcam_man_mp3")
    pd.testing.assert_frame_equal(csv, df.assign(person=df["person"].astype(str)), check_exact=True)
    va = np.loadtxt(tmp_path / "VA_Set" / "webcam_man_mp3.txt", delimiter=",", skiprows=1)
    np.testing.assert_allclose(va, df[["valence", "arousal"]].to_numpy(), atol=5.01e-4)
    expr = np.loadtxt(tmp_path / "EXPR_Set" / "webcam_man_mp3.txt", skiprows=1, dtype=int)
    np.testing.assert_array_equal(expr, df["expression"].cat.codes.to_numpy())
    au = np.loadtxt(tmp_path / "AU_Set" / "webcam_man_mp3.txt", delimiter=",", skiprows=1, dtype=int)
    np.testing.assert_array_equal(au, df[list(ACTION_UNITS)].to_numpy())


def test_save_writes_the_cli_files_and_read_table_gathers_a_folder(media_dir, predictor, webcam, tmp_path):
    written = webcam.save(tmp_path, plot=True, table="both")
    names = sorted(p.name for p in written)
    assert names == sorted(
        ["webcam_man_mp3.txt"] * 3 + ["webcam_man_mp3.csv", "webcam_man_mp3.parquet", "webcam_man_mp3.png"]
    )
    assert (tmp_path / ".tsav" / "webcam_man_mp3.json").exists()
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "webcam_man_mp3.parquet"), webcam.to_pandas())
    copy = tmp_path / "talking.mp4"
    shutil.copy(media_dir / "talking_head_vfr.mp4", copy)
    predictor.predict(copy).save(tmp_path, plot=False, table="csv")
    table = read_table(tmp_path)
    assert table.columns[0] == "video" and list(table.columns[1:]) == TABLE_COLUMNS
    assert table["video"].value_counts().to_dict() == {"webcam_man_mp3": 72, "talking": 135}
    assert table["face_found"].dtype == bool
    with pytest.raises(FileNotFoundError):
        read_table(tmp_path / ".tsav")


def test_predict_many_reports_a_bad_video_and_goes_on(media_dir, predictor, tmp_path):
    fake = tmp_path / "photo.mp4"
    fake.write_bytes(b"not a video at all" * 100)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    videos = [media_dir / "webcam_man_mp3.mp4", fake, empty, media_dir / "cartoon_no_face.mp4"]
    annotations = list(predictor.predict_many(videos))
    assert [a.ok for a in annotations] == [True, False, False, True]
    assert "photo.mp4" in annotations[1].error and "\n" not in annotations[1].error
    assert "empty" in annotations[2].error
    assert len(annotations[3].to_pandas()) == 95 and not annotations[3].to_pandas()["face_found"].any()
    # The cartoon's predictions rest on its audio alone: kept (the default), and marked so.
    assert (annotations[3].to_pandas()["modality"] == "audio only").all()
    assert annotations[3].to_pandas()["valence"].notna().all()
    with pytest.raises(ValueError, match="not annotated"):
        annotations[1].to_pandas()


BAD_OPTIONS = {
    "au_threshold=0": ({"au_threshold": 0.0}, "au_threshold must be a probability strictly between 0 and 1"),
    "au_threshold=1": ({"au_threshold": 1.0}, "au_threshold must be a probability strictly between 0 and 1"),
    "stride=0": ({"stride": 0}, "stride must be a whole number from 1 to 300"),
    "batch_size=0": ({"batch_size": 0}, "batch_size must be a whole number from 1 to 256"),
    "person": ({"person": "left"}, "person must be one of main, all"),
    "engine": ({"engine": "tensorflow"}, "engine must be one of auto, torch"),
    "faces": ({"faces": "mtcnn"}, "faces must be one of auto, insightface, dlib"),
    "detector": ({"detector": "yolo"}, "detector must be one of mtcnn, hog, cnn, hog+cnn"),
    "detector with insightface": ({"faces": "insightface", "detector": "hog"}, "the insightface backend has its own"),
    "device": ({"device": "tpu"}, "unknown device 'tpu'; use cpu, cuda or cuda:N"),
    "no_face": ({"no_face": "drop"}, "no_face must be one of keep, nan, not 'drop'"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_options_are_one_line_before_anything_loads(case, tmp_path):
    options, message = BAD_OPTIONS[case]
    with pytest.raises(TsavError) as info:
        Predictor(weights=tmp_path / "no-such-checkpoint.pt", **options)  # the option is checked first
    assert message in str(info.value) and "\n" not in str(info.value)


def test_weights_or_model_exactly_once(small_checkpoint, small_export):
    with pytest.raises(TsavError, match="not both"):
        Predictor(weights=small_checkpoint, model=small_export)
    with pytest.raises(TsavError, match="no model given"):
        Predictor()


@pytest.mark.parametrize(
    "option, value, line",
    [
        ("--au-threshold", "0", "strictly between 0 and 1"),
        ("--au-threshold", "1", "strictly between 0 and 1"),
        ("--no-face", "drop", "no_face must be one of keep, nan, not 'drop'"),
    ],
)
def test_cli_refuses_a_bad_option_before_touching_a_video(media_dir, small_checkpoint, tmp_path, option, value, line):
    out = tmp_path / "out"
    video = media_dir / "webcam_man_mp3.mp4"
    result = CliRunner().invoke(
        app, ["annotate", str(video), "--weights", str(small_checkpoint), option, value, "--out", str(out)]
    )
    assert result.exit_code == 2 and line in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_a_video_is_probed_once(media_dir, predictor, tmp_path, monkeypatch):
    """Annotation, its audio, the writers and the overlay share one probe of the file; the progress
    callback learns the declared frame count from it first."""
    from tsav_deploy import media
    from tsav_deploy.outputs import overlay
    from tsav_deploy.pipeline import offline as annotate

    real, calls, events = media.probe, [], []

    def counting(path):
        calls.append(path)
        return real(path)

    for module in (annotate, media, overlay):
        monkeypatch.setattr(module, "probe", counting)
    annotation = predictor.predict(
        media_dir / "webcam_man_mp3.mp4", progress=lambda stage, n: events.append((stage, n))
    )
    annotation.save(tmp_path, overlay=True)
    assert len(calls) == 1
    assert events[0] == ("frames", 72) and {stage for stage, _ in events[1:]} == {"faces", "network"}
    assert sum(n for stage, n in events if stage == "faces") == 72


def test_network_inputs_are_what_predict_runs(media_dir, predictor, webcam):
    """The network's inputs, run through the engine here frame by frame, give predict's table: the
    iterator and predict share one code path and cannot drift apart."""
    from tsav_deploy.results.predictions import decode

    inputs = list(predictor.network_inputs(media_dir / "webcam_man_mp3.mp4"))
    assert [item.frame for item in inputs] == list(range(72)) and {item.person for item in inputs} == {"main"}
    assert inputs[0].clip.shape == (4, 8, 112, 112) and inputs[0].window.shape == (1, 64, 1001)
    assert all(item.clip.dtype == np.float32 and item.window.dtype == np.float32 for item in inputs)
    engine = predictor.engine
    aural = engine.aural(np.stack([item.window for item in inputs]))
    visual = engine.visual(np.stack([item.clip for item in inputs]))
    predictions = decode(engine.fusion(aural, visual), predictor.options.au_threshold)
    df = webcam.to_pandas()
    np.testing.assert_allclose(df["valence"], np.round(predictions.valence, 4), atol=2e-4)
    np.testing.assert_allclose(df["p_Happiness"], np.round(predictions.expression_probs[:, 4], 4), atol=2e-4)
    np.testing.assert_allclose(df["p_AU12"], np.round(predictions.au_probs[:, 4], 4), atol=2e-4)
    # Each frame's own crop is the last of its clip: neighbouring frames' clips end differently.
    assert not np.array_equal(inputs[50].clip[:, -1], inputs[49].clip[:, -1])


def test_landmarks_in_the_table(media_dir, small_checkpoint, predictor, webcam, tmp_path):
    """``to_pandas(landmarks=True)`` and ``--landmarks`` add x_0…x_67, y_0…y_67: the points pass 1
    found, in source pixels, inside each row's box; the CSV and Parquet files carry the same."""
    from tsav_deploy.pipeline.offline import find_people
    from tsav_deploy.results.table import LANDMARK_COLUMNS

    df = webcam.to_pandas(landmarks=True)
    assert list(df.columns) == TABLE_COLUMNS + LANDMARK_COLUMNS
    assert LANDMARK_COLUMNS[:2] == ["x_0", "x_1"] and LANDMARK_COLUMNS[68] == "y_0"
    people = find_people(media_dir / "webcam_man_mp3.mp4", predictor.face_backend, predictor.options)
    faces = people.tracks[0].faces
    for frame in (0, 35, 71):
        xs, ys = faces[frame].landmarks68[:, 0], faces[frame].landmarks68[:, 1]
        np.testing.assert_allclose(df.loc[frame, "x_0":"x_67"].to_numpy(float), xs, atol=0.006)
        np.testing.assert_allclose(df.loc[frame, "y_0":"y_67"].to_numpy(float), ys, atol=0.006)
    x, y = df[LANDMARK_COLUMNS[:68]].to_numpy(float), df[LANDMARK_COLUMNS[68:]].to_numpy(float)
    assert ((x.mean(1) > df["x1"]) & (x.mean(1) < df["x2"]) & (y.mean(1) > df["y1"]) & (y.mean(1) < df["y2"])).all()
    result = CliRunner().invoke(
        app,
        ["annotate", str(media_dir / "webcam_man_mp3.mp4"), "--weights", str(small_checkpoint), "--faces", "dlib"]
        + ["--detector", "hog", "--out", str(tmp_path), "--no-plot", "--table", "both", "--landmarks"],
    )
    assert result.exit_code == 0, result.output
    for table in (pd.read_csv(tmp_path / "webcam_man_mp3.csv"), pd.read_parquet(tmp_path / "webcam_man_mp3.parquet")):
        assert list(table.columns) == TABLE_COLUMNS + LANDMARK_COLUMNS
        np.testing.assert_allclose(table[LANDMARK_COLUMNS].to_numpy(float), df[LANDMARK_COLUMNS].to_numpy(float))


def test_landmarks_are_nan_without_a_face(media_dir, predictor):
    df = predictor.predict(media_dir / "cartoon_no_face.mp4").to_pandas(landmarks=True)
    assert not df["face_found"].any() and df["x_0"].isna().all() and df["y_67"].isna().all()


PREDICTION_COLUMNS = TABLE_COLUMNS[TABLE_COLUMNS.index("valence") :]


def test_no_face_nan_leaves_the_cartoons_table_empty_and_its_abaw_files_whole(media_dir, small_checkpoint, tmp_path):
    """cartoon_no_face.mp4 has no face in any of its 95 frames: with no_face="nan" every prediction
    cell is empty in the DataFrame, the CSV (read as text), the Parquet file (read by pyarrow) and
    `tsav live --no-face nan --jsonl`, while the ABAW files hold a line of numbers per frame."""
    import csv
    import json

    import pyarrow.parquet as pq

    video = media_dir / "cartoon_no_face.mp4"
    # Stride 8: the policy is what is tested here, not the network's every frame (fewer network runs).
    predictor = Predictor(weights=small_checkpoint, faces="dlib", detector="hog", stride=8, no_face="nan")
    annotation = predictor.predict(video)
    df = annotation.to_pandas()
    assert len(df) == 95 and (df["modality"] == "audio only").all() and df[PREDICTION_COLUMNS].isna().all().all()
    annotation.save(tmp_path, plot=False, table="both")
    with open(tmp_path / "cartoon_no_face.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 95 and {r["modality"] for r in rows} == {"audio only"}
    assert {r[c] for r in rows for c in PREDICTION_COLUMNS} == {""}
    parquet = pq.read_table(tmp_path / "cartoon_no_face.parquet")
    assert all(parquet.column(c).null_count == 95 for c in PREDICTION_COLUMNS)
    assert set(parquet.column("modality").to_pylist()) == {"audio only"}
    # The ABAW files: the challenge's line per frame, with the audio-only predictions.
    va = np.loadtxt(tmp_path / "VA_Set" / "cartoon_no_face.txt", delimiter=",", skiprows=1)
    expr = np.loadtxt(tmp_path / "EXPR_Set" / "cartoon_no_face.txt", skiprows=1, dtype=int)
    au = np.loadtxt(tmp_path / "AU_Set" / "cartoon_no_face.txt", delimiter=",", skiprows=1, dtype=int)
    assert va.shape == (95, 2) and np.isfinite(va).all() and np.abs(va).max() <= 1
    assert expr.shape == (95,) and set(expr.tolist()) <= set(range(7))
    assert au.shape == (95, 8) and set(au.ravel().tolist()) <= {0, 1}
    predictions = annotation.result.persons[0].predictions
    np.testing.assert_allclose(
        va, np.clip(np.stack([predictions.valence, predictions.arousal], 1), -1, 1), atol=5.01e-4
    )
    # Live: the same policy, JSON null.
    lines = tmp_path / "rows.jsonl"
    result = CliRunner().invoke(
        app,
        ["live", str(video), "--weights", str(small_checkpoint), "--faces", "dlib", "--detector", "hog",
         "--stride", "8", "--no-face", "nan", "--jsonl", str(lines)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    live = [json.loads(line) for line in lines.read_text().splitlines()]
    assert len(live) == 95 and {r["modality"] for r in live} == {"audio only"}
    assert {r[c] for r in live for c in PREDICTION_COLUMNS} == {None}
