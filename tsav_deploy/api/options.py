"""The Predictor's options, declared once: name, default, the CLI's flag and its help.

:class:`~tsav_deploy.api.predictor.Predictor` takes these as keyword arguments, ``tsav annotate``,
``tsav live`` and ``tsav bench`` build their options from :data:`PREDICTOR_OPTIONS`, and a test
holds each command's options against it, so an option cannot be added in one place only.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any


def _option(default: Any, flag: str, help: str, *short: str) -> Any:
    return field(default=default, metadata={"flags": (flag, *short), "help": help})


@dataclass(frozen=True)
class PredictorOptions:
    """Everything a :class:`Predictor` is built from; ``asdict()`` gives its keyword arguments."""

    weights: str | os.PathLike | None = _option(None, "--weights", "Checkpoint path or published name.", "-w")
    model: str | os.PathLike | None = _option(None, "--model", "Export directory (tsav export).", "-m")
    engine: str = _option(
        "auto", "--engine", "auto | torch | torchscript | onnx | onnx-int8 | openvino | openvino-int8 | tensorrt."
    )
    device: str = _option("cpu", "--device", "cpu | cuda[:N].")
    faces: str = _option(
        "auto",
        "--faces",
        "auto (insightface if its model pack is on disk, else dlib) | insightface | dlib (offline: dlib "
        "landmarks and identities, --detector's faces).",
    )
    detector: str | None = _option(
        None,
        "--detector",
        "dlib detector: mtcnn (the default; faces from 24 px at any resolution: recall 1.00 on the labelled "
        "frames, face pass ~30 frames/s at 360p on 2 cores), hog+cnn (recall 0.94, ~13 frames/s: ~1.2 s per shot "
        "and per lost face), hog (fastest, ~60 frames/s; recall 0.79, faces from ~80 px of a 640 px frame), cnn. "
        "Figures: docs/faces.md.",
    )
    person: str = _option("main", "--person", "main (the person seen in most frames) | all.")
    stride: int = _option(
        1, "--stride", "Run the network every K-th frame, interpolate between (1 = exact; at most 300)."
    )
    batch_size: int = _option(8, "--batch-size", "Frames per network batch (1-256).")
    au_threshold: float = _option(
        0.5, "--au-threshold", "AU probability threshold, strictly between 0 and 1 (0.6225 = the authors' writer)."
    )
    no_face: str = _option(
        "keep",
        "--no-face",
        "Frames without a face, whose predictions come from the audio and a black clip: keep (the table holds "
        'them, modality "audio only") | nan (their prediction cells are left empty; the plot and overlay '
        "show no values there). ABAW files keep a line per frame either way.",
    )

    def asdict(self) -> dict[str, Any]:
        """The Predictor's keyword arguments."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


# By name: each option's field (default, metadata["flags"], metadata["help"]).
PREDICTOR_OPTIONS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(PredictorOptions)}
