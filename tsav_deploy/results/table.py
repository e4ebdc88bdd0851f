"""The per-frame table, defined once (README "Formats"): one row per decoded frame and person,
frame-major, OpenFace FeatureExtraction style.

Its columns, their order, their decimals and the no-face convention live here; every form of the
table renders from :func:`table_values`:

- :func:`frame_table`: the pandas DataFrame (``Annotation.to_pandas``, Parquet, the report),
  values rounded to the column's decimals;
- :func:`csv_text`: the CSV file, each value written with the column's decimals;
- :func:`json_rows`: dicts for JSON Lines (``tsav live --jsonl``), rounded, None for an empty cell;
- :func:`read_video_table` / :func:`read_table`: a written table read back with the DataFrame's
  dtypes, and refused in one line where it holds what no writer writes.

Without a face a row has ``face_found`` false, ``modality`` "audio only", ``track_id`` -1, and no
box, score or landmarks (NaN, an empty CSV cell, JSON null). Its predictions come from the audio and
a black clip (as in the authors' pipeline, which the ABAW files' line per frame needs); the result's
``no_face`` policy says what the table does with them: ``keep`` writes them, ``nan`` leaves every
prediction cell empty (NaN, an empty CSV cell, JSON null; the expression NaN, the AU decisions
nullable ``Int64``).
"""

from __future__ import annotations

import csv
import io
import math
import os
import pathlib
from collections.abc import Iterator

import numpy as np
import pandas as pd

from tsav_deploy.contract import ACTION_UNITS, EXPRESSIONS
from tsav_deploy.results.video_result import PersonResult, VideoResult

# What a row's predictions rest on: the face and the audio, or the audio and a black clip.
AUDIO_VIDEO, AUDIO_ONLY = "audio+video", "audio only"
MODALITIES = (AUDIO_VIDEO, AUDIO_ONLY)
# What the table does with the predictions of a row without a face: write them, or leave them empty.
NO_FACE_POLICIES = ("keep", "nan")

BOX_COLUMNS = ("x1", "y1", "x2", "y2")
# Empty without a face: the detector's box and score describe a face, not a prediction.
FACE_COLUMNS = (*BOX_COLUMNS, "det_score")

TABLE_COLUMNS = (
    ["frame", "time", "person", "face_found", "modality", "track_id", *FACE_COLUMNS, "valence", "arousal"]
    + [f"p_{e}" for e in EXPRESSIONS]
    + ["expression"]
    + [f"p_{au}" for au in ACTION_UNITS]
    + list(ACTION_UNITS)
)
# Emptied on rows without a face under the ``nan`` policy.
PREDICTION_COLUMNS = frozenset(TABLE_COLUMNS[TABLE_COLUMNS.index("valence") :])

# With landmarks: the 68 points of the face each row used, in source-frame pixels (OpenFace's and
# Py-Feat's names), empty (NaN) without a face.
LANDMARK_COLUMNS = [f"x_{k}" for k in range(68)] + [f"y_{k}" for k in range(68)]

# Decimals of each real-valued column; every other column is an integer, a flag or a name.
DECIMALS: dict[str, int] = {
    "time": 4,
    **dict.fromkeys(BOX_COLUMNS, 1),
    "det_score": 3,
    "valence": 4,
    "arousal": 4,
    **{f"p_{e}": 4 for e in EXPRESSIONS},
    **{f"p_{au}": 4 for au in ACTION_UNITS},
    **dict.fromkeys(LANDMARK_COLUMNS, 2),
}

TEXT_COLUMNS = ("person", "modality", "expression")
# Categories in a fixed order (codes into the tuple; -1: an empty cell).
CODED_COLUMNS = {"modality": MODALITIES, "expression": EXPRESSIONS}


def table_columns(landmarks: bool = False) -> list[str]:
    return TABLE_COLUMNS + LANDMARK_COLUMNS * landmarks


def person_name(person: PersonResult) -> str:
    """The ``person`` column: ``main``, or the suffix without its underscore (``left``, ``person2``)."""
    return person.suffix.lstrip("_") or "main"


def table_values(result: VideoResult, landmarks: bool = False) -> dict[str, np.ndarray]:
    """Each column's values in row order, unrounded (real values as float64, NaN without a face):
    what every rendering of the table starts from. ``modality`` and ``expression`` hold codes into
    MODALITIES and EXPRESSIONS; under the ``nan`` policy a row without a face has NaN predictions,
    and -1 (an empty cell) as its expression code and AU decisions."""
    n, people = result.frames, result.persons
    frame = np.repeat(np.arange(n, dtype=np.int64), len(people))  # frame-major, then person

    def stack(values: list[np.ndarray], dtype: type) -> np.ndarray:  # [people][n, ...] -> rows
        if not people:
            return np.zeros((0,), dtype=dtype)
        array = np.stack(values, axis=1).astype(dtype, copy=False)
        return array.reshape((n * len(people),) + array.shape[2:])

    found = stack([p.face_found for p in people], bool)
    boxes = stack([p.boxes for p in people], np.float64).reshape(-1, 4).copy()
    scores = stack([p.scores for p in people], np.float64).copy()
    boxes[~found], scores[~found] = np.nan, np.nan
    predictions = [p.predictions for p in people]
    expression_probs = stack([p.expression_probs for p in predictions], np.float64).reshape(-1, len(EXPRESSIONS))
    au_probs = stack([p.au_probs for p in predictions], np.float64).reshape(-1, len(ACTION_UNITS))
    decisions = stack([p.au for p in predictions], np.int64).reshape(-1, len(ACTION_UNITS))
    columns: dict[str, np.ndarray] = {
        "frame": frame,
        "time": result.times[frame],
        "person": stack([np.full(n, person_name(p)) for p in people], str),
        "face_found": found,
        "modality": np.where(found, 0, 1).astype(np.int64),
        "track_id": stack([p.track_ids for p in people], np.int64),
        **dict(zip(BOX_COLUMNS, boxes.T)),
        "det_score": scores,
        "valence": stack([p.valence for p in predictions], np.float64),
        "arousal": stack([p.arousal for p in predictions], np.float64),
        **{f"p_{e}": expression_probs[:, k] for k, e in enumerate(EXPRESSIONS)},
        "expression": stack([p.expression for p in predictions], np.int64),
        **{f"p_{au}": au_probs[:, k] for k, au in enumerate(ACTION_UNITS)},
        **{au: decisions[:, k] for k, au in enumerate(ACTION_UNITS)},
    }
    if result.no_face == "nan":
        for name in PREDICTION_COLUMNS:
            columns[name] = np.where(found, columns[name], np.nan if columns[name].dtype.kind == "f" else -1)
    if landmarks:
        points = stack([_landmarks(p) for p in people], np.float64).reshape(-1, len(LANDMARK_COLUMNS))
        columns.update(zip(LANDMARK_COLUMNS, points.T))
    return columns


def _landmarks(person: PersonResult) -> np.ndarray:
    """[N, 136] x_0…x_67, y_0…y_67 per frame, NaN without a face."""
    points = person.landmarks_or_nan().astype(np.float64)
    return np.concatenate([points[..., 0], points[..., 1]], axis=1)


def frame_table(result: VideoResult, landmarks: bool = False) -> pd.DataFrame:
    """The table as a DataFrame: int64 frame, track_id and AU decisions (nullable Int64 where one is
    empty), bool face_found, category person, modality and expression, float64 values rounded to the
    column's decimals (NaN without a face)."""
    values = table_values(result, landmarks)
    columns: dict[str, object] = {}
    for name in table_columns(landmarks):
        columns[name] = np.round(values[name], DECIMALS[name]) if name in DECIMALS else values[name]
    for name in ACTION_UNITS:
        columns[name] = _decisions(values[name])
    columns["person"] = pd.Categorical(values["person"])
    for name, categories in CODED_COLUMNS.items():
        columns[name] = pd.Categorical.from_codes(values[name], categories=list(categories))
    return pd.DataFrame(columns)


def _decisions(values: np.ndarray) -> np.ndarray | pd.api.extensions.ExtensionArray:
    """An AU's 0/1 decisions: int64, or nullable Int64 with NA for -1 where any cell is empty."""
    empty = values < 0
    return pd.array(np.where(empty, None, values), dtype="Int64") if empty.any() else values


def csv_rows(result: VideoResult, landmarks: bool = False) -> Iterator[tuple[str, ...]]:
    """The CSV's rows (header aside) as text cells: each real value with its column's decimals,
    ``face_found`` as 1/0, an empty cell without a face."""
    values = table_values(result, landmarks)
    found = values["face_found"]
    return zip(*(_csv_cells(name, values[name], found) for name in table_columns(landmarks)))


def _csv_cells(name: str, values: np.ndarray, found: np.ndarray) -> list[str]:
    if name == "face_found":
        return ["1" if v else "0" for v in values.tolist()]
    if name in CODED_COLUMNS:
        names = CODED_COLUMNS[name]
        return [names[code] if code >= 0 else "" for code in values.tolist()]
    if name in ACTION_UNITS:
        return [str(v) if v >= 0 else "" for v in values.tolist()]
    if name not in DECIMALS:
        return [str(v) for v in values.tolist()]
    spec = f".{DECIMALS[name]}f"
    # A face's box and score are written as they are (a detector without a score gives nan); a
    # missing face, missing landmarks or an emptied prediction leave the cell empty.
    empty = ~found if name in FACE_COLUMNS else np.isnan(values)
    return ["" if e else format(v, spec) for v, e in zip(values.tolist(), empty.tolist())]


def csv_text(result: VideoResult, landmarks: bool = False) -> str:
    """The whole CSV file: the header, then :func:`csv_rows`, ``\\n`` line ends."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table_columns(landmarks))
    writer.writerows(csv_rows(result, landmarks))
    return buffer.getvalue()


def json_rows(result: VideoResult, landmarks: bool = False) -> list[dict]:
    """The rows as dicts in column order, for JSON: real values rounded to the column's decimals,
    None where the table has NaN (JSON has no NaN), names as text, ``face_found`` as bool."""
    values = table_values(result, landmarks)
    names = table_columns(landmarks)
    cells = [_json_cells(name, values[name]) for name in names]
    return [dict(zip(names, row)) for row in zip(*cells)]


def _json_cells(name: str, values: np.ndarray) -> list:
    if name in CODED_COLUMNS:
        names = CODED_COLUMNS[name]
        return [names[code] if code >= 0 else None for code in values.tolist()]
    if name in ACTION_UNITS:
        return [v if v >= 0 else None for v in values.tolist()]
    if name not in DECIMALS:
        return values.tolist()
    decimals = DECIMALS[name]
    return [round(v, decimals) if math.isfinite(v) else None for v in values.tolist()]


# --- reading a written table back -------------------------------------------------------------------


def read_table(folder: str | os.PathLike) -> pd.DataFrame:
    """Every video's per-frame table in an output folder as one DataFrame with a ``video`` column
    first (Parquet where a video has it, else CSV), videos in name order."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such output folder")
    names = sorted({p.stem for p in folder.glob("*.csv")} | {p.stem for p in folder.glob("*.parquet")})
    tables = []
    for name in names:
        table = read_video_table(folder, name).copy()  # consolidated: an insert into many blocks warns
        table.insert(0, "video", name)
        tables.append(table)
    if not tables:
        raise FileNotFoundError(f"{folder}: no per-frame tables (<name>.csv or <name>.parquet) in it")
    table = pd.concat(tables, ignore_index=True)
    table["video"] = pd.Categorical(table["video"])
    for column in TEXT_COLUMNS:
        table[column] = table[column].astype("category")
    return table


def read_video_table(folder: pathlib.Path, name: str) -> pd.DataFrame:
    """One video's per-frame table from an output folder: Parquet where it is there, else CSV; a
    table without the columns, numbers and expressions the writers write is a one-line ValueError
    (it is a file anyone can edit)."""
    parquet = folder / f"{name}.parquet"
    path = parquet if parquet.exists() else folder / f"{name}.csv"
    return _checked(pd.read_parquet(path) if path == parquet else _read_csv(path), path)


def _read_csv(path: pathlib.Path) -> pd.DataFrame:
    """A table CSV with the dtypes :func:`frame_table` gives (person as text; modality and
    expression as text until :func:`_checked` makes them categories)."""
    table = pd.read_csv(path)
    if "face_found" in table and pd.api.types.is_numeric_dtype(table["face_found"]):
        table["face_found"] = table["face_found"].astype(bool)
    if "person" in table:
        table["person"] = table["person"].astype(str)
    for column in ACTION_UNITS:  # empty cells (--no-face nan): nullable integers, as frame_table gives
        cells = table.get(column)
        if cells is not None and pd.api.types.is_float_dtype(cells) and cells.isna().any():
            if (cells.dropna() % 1 == 0).all():
                table[column] = cells.astype("Int64")
    return table


def _checked(table: pd.DataFrame, path: pathlib.Path) -> pd.DataFrame:
    columns = table_columns(landmarks=any(column in table.columns for column in LANDMARK_COLUMNS))
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise ValueError(f"{path}: no column {missing[0]!r}")
    for column in columns:
        if column not in TEXT_COLUMNS and not pd.api.types.is_numeric_dtype(table[column]):
            raise ValueError(f"{path}: column {column!r} holds a value that is not a number")
    found = table["face_found"].astype(bool).to_numpy()
    seen = (table["modality"].astype(object) == AUDIO_VIDEO).to_numpy()
    if not table["modality"].isin(MODALITIES).all() or (seen != found).any():
        raise ValueError(
            f"{path}: column 'modality' is not {AUDIO_VIDEO!r} exactly where face_found is 1 ({AUDIO_ONLY!r} elsewhere)"
        )
    expression = table["expression"]
    if (expression.notna() & ~expression.isin(EXPRESSIONS)).any():
        raise ValueError(f"{path}: column 'expression' holds a value that is not one of {', '.join(EXPRESSIONS)}")
    # Only a row without a face can have its predictions left empty (--no-face nan).
    emptied = table.loc[found, [c for c in columns if c in PREDICTION_COLUMNS]].isna().any()
    if emptied.any():
        raise ValueError(f"{path}: column {emptied.idxmax()!r} is empty on a row with a face")
    for column, names in CODED_COLUMNS.items():  # the writers' categories, in their order
        table[column] = pd.Categorical(table[column], categories=list(names))
    return table
