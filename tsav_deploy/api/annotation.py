"""What the Predictor returns for one video: an :class:`Annotation`, one table (Py-Feat style) that
converts to pandas and writes every output file."""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tsav_deploy.atomic import atomic_path
from tsav_deploy.contract import ACTION_UNITS, EXPRESSIONS
from tsav_deploy.outputs.records import OutputOptions, save_outputs
from tsav_deploy.outputs.writers import LANDMARK_COLUMNS, landmark_values, table_columns
from tsav_deploy.results.video import VideoResult

TABLE_FORMATS = ("csv", "parquet", "both")


@dataclass
class Annotation:
    """One video's predictions for every person it shows, or why it could not be annotated.

    ``error`` is None for a finished video; otherwise ``result`` is None and ``error`` is the one-line
    reason (what is wrong, what to do), with ``traceback`` where the cause is a bug of ours.
    ``to_pandas`` is the per-frame table (one row per frame and person, the CSV's columns in its
    order), ``save`` writes the files ``tsav annotate`` writes.
    """

    video: pathlib.Path
    result: VideoResult | None = None
    error: str | None = None
    info: dict = field(default_factory=dict)
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def name(self) -> str:
        return self.video.stem

    def _require(self) -> VideoResult:
        if self.result is None:
            raise ValueError(f"{self.video}: not annotated ({self.error})")
        return self.result

    def to_pandas(self, landmarks: bool = False) -> pd.DataFrame:
        """The per-frame table: the CSV's columns and rounding, with dtypes (int frame, bool
        face_found, category person and expression, NaN box and score without a face).
        ``landmarks``: also the 68 points of the face each row used, ``x_0…x_67``, ``y_0…y_67`` in
        source-frame pixels (NaN without a face)."""
        result = self._require()
        n, people = result.frames, result.persons
        frame = np.repeat(np.arange(n, dtype=np.int64), len(people))  # frame-major, then person

        def stack(values) -> np.ndarray:  # [people, n, ...] -> rows in table order
            array = np.stack(values, axis=1)
            return array.reshape((n * len(people),) + array.shape[2:])

        found = stack([p.face_found for p in people])
        boxes = stack([p.boxes for p in people]).astype(np.float64)
        boxes[~found] = np.nan
        scores = stack([p.scores for p in people]).astype(np.float64)
        scores[~found] = np.nan
        columns: dict[str, object] = {
            "frame": frame,
            "time": np.round(result.times[frame], 4),
            "person": pd.Categorical(stack([np.full(n, p.suffix.lstrip("_") or "main") for p in people])),
            "face_found": found,
            "track_id": stack([p.track_ids for p in people]),
        }
        for k, name in enumerate(("x1", "y1", "x2", "y2")):
            columns[name] = np.round(boxes[:, k], 1)
        columns["det_score"] = np.round(scores, 3)
        predictions = [p.predictions for p in people]
        columns["valence"] = np.round(stack([p.valence for p in predictions]).astype(np.float64), 4)
        columns["arousal"] = np.round(stack([p.arousal for p in predictions]).astype(np.float64), 4)
        expression_probs = stack([p.expression_probs for p in predictions]).astype(np.float64)
        for k, name in enumerate(EXPRESSIONS):
            columns[f"p_{name}"] = np.round(expression_probs[:, k], 4)
        columns["expression"] = pd.Categorical.from_codes(
            stack([p.expression for p in predictions]), categories=list(EXPRESSIONS)
        )
        au_probs = stack([p.au_probs for p in predictions]).astype(np.float64)
        decisions = stack([p.au for p in predictions]).astype(np.int64)
        for k, name in enumerate(ACTION_UNITS):
            columns[f"p_{name}"] = np.round(au_probs[:, k], 4)
        for k, name in enumerate(ACTION_UNITS):
            columns[name] = decisions[:, k]
        if landmarks:
            columns.update(zip(LANDMARK_COLUMNS, stack([landmark_values(p) for p in people]).T))
        return pd.DataFrame(columns)[table_columns(landmarks)]  # the CSV writer's column order

    def to_parquet(self, path: str | os.PathLike, landmarks: bool = False) -> pathlib.Path:
        """The table as Parquet (pyarrow), written atomically."""
        path = pathlib.Path(path)
        with atomic_path(path) as tmp:
            self.to_pandas(landmarks).to_parquet(tmp, engine="pyarrow", index=False)
        return path

    def save(
        self,
        out_dir: str | os.PathLike,
        *,
        overlay: bool = False,
        plot: bool = True,
        table: str = "csv",
        report: bool = False,
        landmarks: bool = False,
    ) -> list[pathlib.Path]:
        """Write what ``tsav annotate`` writes into ``out_dir`` (ABAW files, table, plot, overlay,
        HTML report, the record that marks the video complete); every file atomically; ``landmarks``
        adds the 68 points to the table. Returns the files."""
        if table not in TABLE_FORMATS:
            raise ValueError(f"table must be one of {', '.join(TABLE_FORMATS)}, not {table!r}")
        options = OutputOptions(overlay=overlay, plot=plot, table=table, report=report, landmarks=landmarks)
        return save_outputs(pathlib.Path(out_dir), self, options)

    def summary(self) -> dict:
        """What ``summary.json`` records of the video."""
        return {
            "video": str(self.video),
            **(self.result.info if self.result else {}),
            **self.info,
            **({"error": self.error} if self.error else {}),
        }

    def __repr__(self) -> str:
        if not self.ok:
            return f"Annotation({self.video.name!r}, error={self.error!r})"
        result = self._require()
        return f"Annotation({self.video.name!r}, frames={result.frames}, people={len(result.persons)})"


def read_table(folder: str | os.PathLike) -> pd.DataFrame:
    """Every video's per-frame table in an output folder as one DataFrame with a ``video`` column
    first (Parquet where a video has it, else CSV), videos in name order."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such output folder")
    names = sorted({p.stem for p in folder.glob("*.csv")} | {p.stem for p in folder.glob("*.parquet")})
    tables = []
    for name in names:
        table = read_video_table(folder, name)
        table.insert(0, "video", name)
        tables.append(table)
    if not tables:
        raise FileNotFoundError(f"{folder}: no per-frame tables (<name>.csv or <name>.parquet) in it")
    table = pd.concat(tables, ignore_index=True)
    table["video"] = pd.Categorical(table["video"])
    for column in ("person", "expression"):
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
    """A table CSV with the dtypes ``Annotation.to_pandas`` gives."""
    table = pd.read_csv(path)
    if "face_found" in table and pd.api.types.is_numeric_dtype(table["face_found"]):
        table["face_found"] = table["face_found"].astype(bool)
    if "person" in table:
        table["person"] = table["person"].astype(str)
    if "expression" in table:
        table["expression"] = pd.Categorical(table["expression"], categories=list(EXPRESSIONS))
    return table


_TEXT_COLUMNS = ("person", "expression")


def _checked(table: pd.DataFrame, path: pathlib.Path) -> pd.DataFrame:
    columns = table_columns(landmarks=any(column in table.columns for column in LANDMARK_COLUMNS))
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise ValueError(f"{path}: no column {missing[0]!r}")
    for column in columns:
        if column not in _TEXT_COLUMNS and not pd.api.types.is_numeric_dtype(table[column]):
            raise ValueError(f"{path}: column {column!r} holds a value that is not a number")
    if table["expression"].isna().any():
        raise ValueError(f"{path}: column 'expression' holds a value that is not one of {', '.join(EXPRESSIONS)}")
    return table
