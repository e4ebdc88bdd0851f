"""The per-frame table, defined once in ``tsav_deploy.results.table``: its columns against the
README, its values against hand-computed rows, and each rendering (DataFrame, CSV, JSON rows, the
read-back) against what pandas and json make of the others."""

from __future__ import annotations

import ast
import io
import json
import pathlib
import re

import numpy as np
import pandas as pd
import pytest

from tsav_deploy.api import read_table
from tsav_deploy.contract import ACTION_UNITS, EXPRESSIONS
from tsav_deploy.faces.face import Face
from tsav_deploy.outputs.writers import write_parquet, write_table
from tsav_deploy.pipeline.recording import live_rows
from tsav_deploy.pipeline.stream import LiveEntry, LiveFrame
from tsav_deploy.results.predictions import Predictions, decode
from tsav_deploy.results.table import (
    LANDMARK_COLUMNS,
    TABLE_COLUMNS,
    csv_text,
    frame_table,
    json_rows,
    read_video_table,
    table_columns,
)
from tsav_deploy.results.video_result import PersonResult, VideoResult

ROOT = pathlib.Path(__file__).resolve().parents[1]


def two_people() -> VideoResult:
    """Two frames, two people; the right one has no face in frame 1 (hand-checkable values)."""
    f32 = np.float32

    def predictions(valence, expression, au_prob) -> Predictions:
        probs = np.zeros((2, 7), f32)
        probs[np.arange(2), expression] = 1.0
        au_probs = np.full((2, 8), au_prob, f32)
        return Predictions(
            probs, np.array(expression), np.array(valence, f32), -np.array(valence, f32), au_probs, (au_probs >= 0.5)
        )

    left = PersonResult(
        "_left",
        3,
        np.array([True, True]),
        np.array([[10.04, 20.06, 110.0, 120.0], [11.0, 21.0, 111.0, 121.0]], f32),
        np.array([0.98765, 0.5], f32),
        predictions([0.12346, -1.0], [4, 0], 0.25),
        np.tile(np.arange(136, dtype=f32).reshape(68, 2) + f32(0.004), (2, 1, 1)),
    )
    right = PersonResult(
        "_right",
        np.array([7, 8]),
        np.array([True, False]),
        np.array([[300.0, 20.0, 400.0, 120.0], [np.nan] * 4], f32),
        np.array([0.9, np.nan], f32),
        predictions([0.5, 0.33333], [6, 1], 0.75),
    )
    return VideoResult("clip", np.array([0.0, 1 / 30]), [left, right])


def test_columns_are_the_documented_ones():
    """The README's "Per-frame table" paragraph names the columns in order; its ``a … b`` ranges run
    over the contract's expressions and action units."""
    text = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    listed = re.search(r"\*\*Per-frame table\*\*.*?: `([^`]*)`; with `--landmarks`", text).group(1)
    ranges = {
        "p_Neutral … p_Surprise": [f"p_{e}" for e in EXPRESSIONS],
        "p_AU1 … p_AU25": [f"p_{au}" for au in ACTION_UNITS],
        "AU1 … AU25": list(ACTION_UNITS),
    }
    documented = [name for item in listed.split(", ") for name in ranges.get(item, [item])]
    assert TABLE_COLUMNS == documented
    assert LANDMARK_COLUMNS == [f"x_{k}" for k in range(68)] + [f"y_{k}" for k in range(68)]
    assert table_columns(landmarks=True) == documented + LANDMARK_COLUMNS


def test_frame_table_holds_the_hand_computed_rows():
    df = frame_table(two_people())
    assert list(df.columns) == TABLE_COLUMNS and len(df) == 4
    assert df["frame"].tolist() == [0, 0, 1, 1] and df["person"].astype(str).tolist() == ["left", "right"] * 2
    assert df["time"].tolist() == [0.0, 0.0, 0.0333, 0.0333]
    assert df["face_found"].tolist() == [True, True, True, False] and df["track_id"].tolist() == [3, 7, 3, -1]
    assert df.loc[0, ["x1", "y1", "x2", "y2", "det_score"]].tolist() == [10.0, 20.1, 110.0, 120.0, 0.988]
    assert df.loc[3, ["x1", "y1", "x2", "y2", "det_score"]].isna().all()  # no face: no box, no score
    assert df["valence"].tolist() == [0.1235, 0.5, -1.0, 0.3333] and df["arousal"].tolist() == [
        -0.1235,
        -0.5,
        1.0,
        -0.3333,
    ]
    assert df["expression"].astype(str).tolist() == ["Happiness", "Surprise", "Neutral", "Anger"]
    assert df["p_AU1"].tolist() == [0.25, 0.75, 0.25, 0.75] and df["AU25"].tolist() == [0, 1, 0, 1]
    dtypes = df.dtypes.astype(str).to_dict()
    assert {dtypes[c] for c in ["frame", "track_id", *ACTION_UNITS]} == {"int64"}
    assert dtypes["face_found"] == "bool" and dtypes["person"] == dtypes["expression"] == "category"
    assert df["modality"].tolist() == ["audio+video"] * 3 + ["audio only"] and dtypes["modality"] == "category"
    assert list(df["modality"].cat.categories) == ["audio+video", "audio only"]
    reals = set(TABLE_COLUMNS) - {"frame", "track_id", "person", "face_found", "modality", "expression", *ACTION_UNITS}
    assert {dtypes[c] for c in reals} == {"float64"}
    assert list(df["expression"].cat.categories) == list(EXPRESSIONS)
    points = frame_table(two_people(), landmarks=True)
    assert points.loc[0, "x_0"] == 0.0 and points.loc[0, "y_0"] == 1.0 and points.loc[0, "x_67"] == 134.0
    assert points.loc[1, LANDMARK_COLUMNS].isna().all()  # the right person kept no landmarks


def test_csv_text_is_the_documented_rounding():
    lines = csv_text(two_people()).splitlines()
    assert lines[0] == ",".join(TABLE_COLUMNS)
    probs = "0.0000,0.0000,0.0000,0.0000,1.0000,0.0000,0.0000"
    assert lines[1] == f"0,0.0000,left,1,audio+video,3,10.0,20.1,110.0,120.0,0.988,0.1235,-0.1235,{probs},Happiness" + (
        ",0.2500" * 8 + ",0" * 8
    )
    assert lines[4].startswith("1,0.0333,right,0,audio only,-1,,,,,,0.3333,-0.3333,")
    with_points = csv_text(two_people(), landmarks=True).splitlines()
    xs, ys = (",".join(f"{v}.00" for v in range(first, 136, 2)) for first in (0, 1))
    assert with_points[1].endswith(f",0,0,0,0,0,0,0,0,{xs},{ys}")
    assert with_points[2].endswith("," * 136)


@pytest.mark.parametrize("landmarks", [False, True])
def test_csv_read_back_with_explicit_dtypes_is_the_frame_table(landmarks):
    result = two_people()
    dtypes = {c: "float64" for c in table_columns(landmarks)} | {
        "frame": "int64",
        "track_id": "int64",
        "face_found": "bool",
        "person": "category",
        **dict.fromkeys(ACTION_UNITS, "int64"),
    }
    text = {"expression": "str", "modality": "str"}
    read = pd.read_csv(io.StringIO(csv_text(result, landmarks)), dtype=dtypes | text)
    read["expression"] = pd.Categorical(read["expression"], categories=list(EXPRESSIONS))
    read["modality"] = pd.Categorical(read["modality"], categories=["audio+video", "audio only"])
    pd.testing.assert_frame_equal(read, frame_table(result, landmarks), check_exact=True)


def test_json_rows_are_the_frame_table_rows_with_nan_as_none():
    result = two_people()
    rows = json.loads(json.dumps(json_rows(result, landmarks=True), allow_nan=False))
    df = frame_table(result, landmarks=True)
    expected = df.astype(object).where(df.notna(), None).to_dict("records")
    expected = [
        {k: str(v) if k in ("person", "modality", "expression") else v for k, v in row.items()} for row in expected
    ]
    assert rows == expected and list(rows[0]) == table_columns(landmarks=True)
    assert rows[3]["face_found"] is False and rows[3]["x1"] is None and rows[3]["det_score"] is None


def test_live_rows_are_table_rows_then_latency_and_stride():
    logits = np.random.default_rng(0).normal(0, 2, (2, 17)).astype(np.float32)
    face = Face(np.array([1.26, 2.0, 30.0, 40.04], np.float32), float("nan"), np.zeros((68, 2), np.float32))
    entries = [LiveEntry("person4", 9, face, logits[0]), LiveEntry("person5", 2, None, logits[1])]
    rows = live_rows(LiveFrame(41, 1.23456, 0.01234, 3, entries), 0.5)
    json.dumps(rows, allow_nan=False)
    assert [list(row) for row in rows] == [TABLE_COLUMNS + ["latency_s", "stride"]] * 2
    assert [(r["frame"], r["time"], r["person"], r["track_id"]) for r in rows] == [
        (41, 1.2346, "person4", 9),
        (41, 1.2346, "person5", -1),
    ]
    assert [rows[0][c] for c in ("x1", "y1", "x2", "y2", "det_score")] == [1.3, 2.0, 30.0, 40.0, None]
    assert all(rows[1][c] is None for c in ("x1", "y1", "x2", "y2", "det_score")) and rows[1]["face_found"] is False
    assert {(r["latency_s"], r["stride"]) for r in rows} == {(0.012, 3)}
    decoded = decode(logits, 0.5)
    for k, row in enumerate(rows):
        assert row["valence"] == round(float(decoded.valence[k]), 4)
        assert row["expression"] == EXPRESSIONS[decoded.expression[k]]
        assert [row[f"p_{au}"] for au in ACTION_UNITS] == [round(float(p), 4) for p in decoded.au_probs[k]]
        assert [row[au] for au in ACTION_UNITS] == decoded.au[k].tolist()


def test_written_tables_read_back_typed_and_edits_are_one_line(tmp_path):
    result = two_people()
    write_table(tmp_path / "a.csv", result, landmarks=True)
    write_parquet(tmp_path / "b.parquet", result)
    expected = frame_table(result, landmarks=True)
    csv = read_video_table(tmp_path, "a")
    pd.testing.assert_frame_equal(csv, expected.assign(person=expected["person"].astype(str)), check_exact=True)
    pd.testing.assert_frame_equal(read_video_table(tmp_path, "b"), frame_table(result), check_exact=True)
    both = read_table(tmp_path)
    assert both["video"].astype(str).tolist() == ["a"] * 4 + ["b"] * 4 and list(both.columns[1:]) == table_columns(True)
    (tmp_path / "a.csv").write_text((tmp_path / "a.csv").read_text().replace(",Happiness,", ",Boredom,"))
    with pytest.raises(ValueError, match=r"a\.csv: column 'expression' holds a value that is not one of Neutral"):
        read_video_table(tmp_path, "a")


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
        if isinstance(node, ast.Import) or node.module
    }


def test_the_table_and_the_records_import_no_higher_layer():
    table = _imports(ROOT / "tsav_deploy" / "results" / "table.py")
    assert {m for m in table if m.startswith("tsav_deploy")} <= {
        "tsav_deploy.contract",
        "tsav_deploy.results.video_result",
    }
    records = _imports(ROOT / "tsav_deploy" / "outputs" / "records.py")
    assert not [m for m in records if m.startswith(("tsav_deploy.api", "tsav_deploy.runs", "tsav_deploy.cli"))]


def test_a_video_without_people_is_an_empty_table():
    empty = VideoResult("none", np.zeros(0), [])
    assert frame_table(empty).empty and list(frame_table(empty).columns) == TABLE_COLUMNS
    assert csv_text(empty) == ",".join(TABLE_COLUMNS) + "\n" and json_rows(empty) == []


# --- frames without a face: the modality column and the no_face policy --------------------------------

PREDICTIONS = TABLE_COLUMNS[TABLE_COLUMNS.index("valence") :]  # README: valence … AU25


def test_no_face_nan_empties_every_prediction_cell_of_a_faceless_row_in_each_rendering():
    keep, emptied = two_people(), two_people()
    emptied.no_face = "nan"
    df = frame_table(emptied)
    faceless = df.index[~df["face_found"]].tolist()
    assert faceless == [3] and df.loc[3, "modality"] == "audio only"
    assert df.loc[3, PREDICTIONS].isna().all() and df.loc[:2, PREDICTIONS].notna().all().all()
    # Everything else is the keep table's: the faces' rows, the identity columns.
    pd.testing.assert_frame_equal(df.drop(columns=PREDICTIONS), frame_table(keep).drop(columns=PREDICTIONS))
    assert df.loc[:2, PREDICTIONS].astype(object).equals(frame_table(keep).loc[:2, PREDICTIONS].astype(object))
    assert {str(df[au].dtype) for au in ACTION_UNITS} == {"Int64"} and df["AU25"].tolist()[:3] == [0, 1, 0]
    assert {str(frame_table(keep)[au].dtype) for au in ACTION_UNITS} == {"int64"}  # keep: as it always was
    # CSV: the row's cells after det_score are all empty; JSON: all null.
    line = csv_text(emptied).splitlines()[4].split(",")
    assert line[: TABLE_COLUMNS.index("valence")] == [
        "1",
        "0.0333",
        "right",
        "0",
        "audio only",
        "-1",
        "",
        "",
        "",
        "",
        "",
    ]
    assert line[TABLE_COLUMNS.index("valence") :] == [""] * len(PREDICTIONS)
    rows = json.loads(json.dumps(json_rows(emptied), allow_nan=False))
    assert [rows[3][c] for c in PREDICTIONS] == [None] * len(PREDICTIONS) and rows[3]["modality"] == "audio only"
    assert rows[0]["AU1"] == 0 and rows[0]["expression"] == "Happiness" and rows[0]["modality"] == "audio+video"


def test_a_no_face_nan_table_reads_back_as_it_was_written(tmp_path):
    result = two_people()
    result.no_face = "nan"
    write_table(tmp_path / "a.csv", result)
    write_parquet(tmp_path / "b.parquet", result)
    expected = frame_table(result)
    pd.testing.assert_frame_equal(
        read_video_table(tmp_path, "a"), expected.assign(person=expected["person"].astype(str)), check_exact=True
    )
    pd.testing.assert_frame_equal(read_video_table(tmp_path, "b"), expected, check_exact=True)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ((",audio only,", ",audio+video,"), "column 'modality' is not 'audio\\+video' exactly where face_found is 1"),
        ((",audio+video,3,10.0", ",video only,3,10.0"), "column 'modality' is not"),
        ((",0.1235,-0.1235,", ",,-0.1235,"), "column 'valence' is empty on a row with a face"),
        ((",Happiness,", ",,"), "column 'expression' is empty on a row with a face"),
    ],
)
def test_a_table_whose_modality_or_empty_cells_contradict_its_faces_is_refused(tmp_path, edit, message):
    write_table(tmp_path / "a.csv", two_people())
    text = (tmp_path / "a.csv").read_text()
    assert edit[0] in text
    (tmp_path / "a.csv").write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ValueError, match=rf"a\.csv: {message}"):
        read_video_table(tmp_path, "a")


def test_live_rows_follow_the_no_face_policy():
    logits = np.random.default_rng(1).normal(0, 2, (2, 17)).astype(np.float32)
    face = Face(np.array([1.0, 2.0, 30.0, 40.0], np.float32), 0.9, np.zeros((68, 2), np.float32))
    entries = [LiveEntry("person1", 1, face, logits[0]), LiveEntry("person2", 2, None, logits[1])]
    frame = LiveFrame(5, 0.2, 0.01, 1, entries)
    kept, emptied = live_rows(frame, 0.5, "keep"), live_rows(frame, 0.5, "nan")
    assert [r["modality"] for r in kept] == ["audio+video", "audio only"]
    assert kept[0] == emptied[0] and all(kept[1][c] is not None for c in PREDICTIONS)
    assert all(emptied[1][c] is None for c in PREDICTIONS)
