"""``Predictor``: the one object that turns videos into :class:`Annotation` tables.

Every entry point runs through it: ``tsav annotate`` hands :meth:`Predictor.predict_many` to a
:class:`~tsav_deploy.runs.batch.Batch` (the output folder, one guarded region per video) plus the
console, ``tsav annotate --isolate`` runs it in a worker process (engine/isolated.py), ``--ray``
in Ray actors (engine/cluster.py), ``tsav demo`` calls it, and so do users::

    p = Predictor(weights="TSAV416k.pth.tar")
    ann = p.predict("video.mp4")
    df = ann.to_pandas()

Every option is checked when the Predictor is built, before a model is loaded or a video touched;
a bad value is a :class:`~tsav_deploy.errors.TsavError` with one line.
"""

from __future__ import annotations

import os
import pathlib
import threading
import time
from collections.abc import Iterable, Iterator

from tsav_deploy.api.annotation import Annotation
from tsav_deploy.api.options import PredictorOptions
from tsav_deploy.errors import MediaError, TsavError
from tsav_deploy.faces import get_backend
from tsav_deploy.faces.dlib_backend import DETECTORS
from tsav_deploy.faces.select import BACKEND_CHOICES, check_detector
from tsav_deploy.failures import describe_failure
from tsav_deploy.media.sources import parse_source
from tsav_deploy.pipeline.offline import (
    AnnotateOptions,
    NetworkInput,
    Progress,
    annotate_video,
    find_people,
    network_inputs,
)
from tsav_deploy.pipeline.recording import live_rows
from tsav_deploy.pipeline.stream import MAX_LOOKAHEAD_S, LiveOptions, LivePipeline
from tsav_deploy.runtime import ENGINES, Engine
from tsav_deploy.runtime.engine import parse_device

NO_WEIGHTS = "no model given: pass weights (a checkpoint or a published name, see `tsav weights list`) or model (an export directory)"


class Predictor:
    """Loads the network once (``weights``: a checkpoint or published name; or ``model``: an export
    directory) and the face backend, then annotates any number of videos.

    Options, with the CLI's names and defaults: ``engine`` (auto, torch, torchscript, onnx, onnx-int8,
    openvino, openvino-int8, tensorrt), ``device`` (cpu, cuda[:N]), ``faces`` (auto, insightface,
    dlib), ``detector`` (dlib: mtcnn, hog+cnn, hog, cnn), ``person`` (main, all), ``stride`` (network on
    every K-th frame, interpolated between), ``batch_size``, ``au_threshold`` (AU probability, 0–1
    exclusive), ``no_face`` (keep, nan: what the table does with the audio-only predictions of
    frames without a face).
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        model: str | os.PathLike | None = None,
        *,
        engine: str = "auto",
        device: str = "cpu",
        faces: str = "auto",
        detector: str | None = None,
        person: str = "main",
        stride: int = 1,
        batch_size: int = 8,
        au_threshold: float = 0.5,
        no_face: str = "keep",
    ):
        # The signature spells out PredictorOptions (api/options.py) for readers and editors; a
        # test holds the two equal.
        self.options = check_options(
            weights,
            model,
            engine=engine,
            device=device,
            faces=faces,
            detector=detector,
            person=person,
            stride=stride,
            batch_size=batch_size,
            au_threshold=au_threshold,
            no_face=no_face,
        )
        self.engine = Engine.load(model or weights, engine=engine, device=device)
        self.face_backend = get_backend(faces, detector=detector)

    @classmethod
    def from_options(cls, options: PredictorOptions) -> Predictor:
        """A Predictor built from a :class:`~tsav_deploy.api.options.PredictorOptions`."""
        return cls(**options.asdict())

    @classmethod
    def from_parts(cls, engine, face_backend, options: AnnotateOptions) -> Predictor:
        """A Predictor around an engine and a face backend made elsewhere: anything with the
        :class:`~tsav_deploy.runtime.Engine`'s and the face backend's calls (``tsav bench`` times
        them through such stand-ins)."""
        predictor = cls.__new__(cls)
        predictor.engine, predictor.face_backend, predictor.options = engine, face_backend, options
        return predictor

    def describe(self) -> str:
        """One line: which engine and face backend were chosen."""
        return f"engine: {self.engine.selection or self.engine.name}; faces: {self.face_backend.name}"

    def predict(self, source: str | os.PathLike, progress: Progress | None = None) -> Annotation:
        """Annotate one video; a file that cannot be annotated raises a one-line ``TsavError``."""
        video = check_source(source)
        started = time.perf_counter()
        result = annotate_video(video, self.engine, self.face_backend, self.options, progress)
        return Annotation(video, result, info={"wall_s": round(time.perf_counter() - started, 3)})

    def network_inputs(self, source: str | os.PathLike) -> Iterator[NetworkInput]:
        """What the network receives, target frame by target frame and person by person
        (``frame``, ``time``, ``person``, ``clip`` [4, 8, 112, 112], ``window`` [1, 64, 1001]):
        the very arrays :meth:`predict` runs the engine on, from the same code, for checking the
        preprocessing (docs/preprocessing.md). Faces are found first (pass 1), as for predict."""
        video = check_source(source)
        yield from network_inputs(video, find_people(video, self.face_backend, self.options), self.options)

    def stream(
        self,
        source: str | os.PathLike,
        *,
        audio_lookahead: float = MAX_LOOKAHEAD_S,
        realtime: bool = False,
        stop: threading.Event | None = None,
    ) -> Iterator[dict]:
        """Annotate a file, webcam (``webcam``, ``webcam:N``, ``/dev/videoN``) or stream URL as it
        arrives: one dict per frame and person as soon as it is final, with the per-frame table's
        columns plus ``latency_s`` and ``stride`` (see :meth:`stream_frames`)."""
        for frame in self.stream_frames(source, audio_lookahead=audio_lookahead, realtime=realtime, stop=stop):
            yield from live_rows(frame, self.options.au_threshold, self.options.no_face)

    def stream_frames(
        self,
        source: str | os.PathLike,
        *,
        audio_lookahead: float = MAX_LOOKAHEAD_S,
        realtime: bool = False,
        stop: threading.Event | None = None,
        keep_pictures: bool = False,
    ) -> LivePipeline:
        """The frames of :meth:`stream` as :class:`~tsav_deploy.pipeline.stream.LiveFrame` (logits, faces and,
        with ``keep_pictures``, the picture), from an iterable that also says what the source
        dropped. ``audio_lookahead``: seconds of audio after a frame its window waits for (0-5; 5
        is the model's own window, less hears silence in the rest); ``realtime``: play a file at
        its own rate; ``stop``: set it to end the stream early, every pending frame still made
        final. The source is checked here (one-line ``TsavError``), opened when iteration starts."""
        live = LiveOptions(audio_lookahead=audio_lookahead, realtime=realtime)
        return LivePipeline(
            parse_source(source),
            self.engine,
            self.face_backend,
            self.options,
            live,
            keep_pictures=keep_pictures,
            stop=stop,
        )

    def predict_many(
        self, sources: Iterable[str | os.PathLike], progress: Progress | None = None
    ) -> Iterator[Annotation]:
        """Annotate videos one after another; a video that fails, for whatever reason, yields an
        Annotation whose ``error`` says why in one line (and ``traceback`` where it is a bug of
        ours), and the rest go on. Ctrl-C still stops the loop."""
        for source in sources:
            try:
                yield self.predict(source, progress)
            except Exception as exc:
                failure = describe_failure(source, exc)
                yield Annotation(pathlib.Path(source), error=failure.line, traceback=failure.traceback)


def check_options(
    weights: str | os.PathLike | None,
    model: str | os.PathLike | None,
    *,
    engine: str,
    device: str,
    faces: str,
    detector: str | None,
    person: str,
    stride: int,
    batch_size: int,
    au_threshold: float,
    no_face: str,
) -> AnnotateOptions:
    """Check the Predictor's options without loading anything (one-line ``TsavError``); returns
    the annotation options among them."""
    if weights and model:
        raise TsavError("pass either weights (a checkpoint) or model (an export directory), not both")
    if not (weights or model):
        raise TsavError(NO_WEIGHTS)
    _choice("engine", engine, ENGINES)
    _choice("faces", faces, BACKEND_CHOICES)
    if detector is not None:
        _choice("detector", detector, DETECTORS)
    options = AnnotateOptions(
        person=person, stride=stride, batch_size=batch_size, au_threshold=au_threshold, no_face=no_face
    )
    parse_device(device)
    check_detector(faces, detector)
    return options


def check_source(source: str | os.PathLike) -> pathlib.Path:
    """The video's path, or a one-line ``MediaError`` when there is nothing to decode."""
    video = pathlib.Path(source).expanduser()
    if not video.exists():
        raise MediaError(f"{video}: no such file")
    if video.is_file() and video.stat().st_size == 0:
        raise MediaError(f"{video}: the file is empty (0 bytes)")
    return video


def _choice(option: str, value: str, choices) -> None:
    if value not in choices:
        raise TsavError(f"{option} must be one of {', '.join(choices)}, not {value!r}")
