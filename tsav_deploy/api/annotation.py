"""What the Predictor returns for one video: an :class:`Annotation`, one table (Py-Feat style) that
converts to pandas and writes every output file."""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass, field

import pandas as pd

from tsav_deploy.outputs.records import OutputOptions, save_outputs, video_summary
from tsav_deploy.outputs.writers import write_parquet
from tsav_deploy.results.table import frame_table, read_table, read_video_table
from tsav_deploy.results.video_result import VideoResult

# Reading a folder back is public API here, beside the Annotation that writes it.
__all__ = ["Annotation", "TABLE_FORMATS", "read_table", "read_video_table"]

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
        """The per-frame table (``tsav_deploy.results.table``): the CSV's columns and rounding, with
        dtypes (int frame, bool face_found, category person, modality and expression, NaN box and
        score without a face; under the Predictor's ``no_face="nan"`` NaN predictions there too, the
        AU decisions then nullable Int64). ``df[df.modality == "audio+video"]`` keeps the frames
        whose face was seen. ``landmarks``: also the 68 points of the face each row used,
        ``x_0…x_67``, ``y_0…y_67`` in source-frame pixels (NaN without a face)."""
        return frame_table(self._require(), landmarks)

    def to_parquet(self, path: str | os.PathLike, landmarks: bool = False) -> pathlib.Path:
        """The table as Parquet (pyarrow), written atomically."""
        return write_parquet(pathlib.Path(path), self._require(), landmarks)

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
        return save_outputs(pathlib.Path(out_dir), self._require(), self.video, self.info, options)

    def summary(self) -> dict:
        """What ``summary.json`` records of the video."""
        return video_summary(self.video, self.result, self.info, self.error)

    def __repr__(self) -> str:
        if not self.ok:
            return f"Annotation({self.video.name!r}, error={self.error!r})"
        result = self._require()
        return f"Annotation({self.video.name!r}, frames={result.frames}, people={len(result.persons)})"
