"""``IsolatedPredictor``: the Predictor in a supervised worker process, so that a native crash
(a segmentation fault inside FFmpeg or dlib on some file) costs that one video, not the batch.

The worker builds the one :class:`~tsav_deploy.api.predictor.Predictor` and annotates one video
at a time; progress and the finished :class:`Annotation` come back over a pipe. When the worker
dies, the video it held gets its one line and a fresh worker (the model loaded again) takes the
next one. Python-level failures never get that far: ``predict_many`` in the worker already turns
them into an Annotation with its error.
"""

from __future__ import annotations

import multiprocessing
import os
import pathlib
import signal
from collections.abc import Iterable, Iterator
from multiprocessing.connection import Connection

from tsav_deploy.api.annotation import Annotation
from tsav_deploy.errors import TsavError
from tsav_deploy.pipeline.offline import Progress


class IsolatedPredictor:
    """:class:`Predictor`'s options (``weights``/``model`` and the keyword options); ``predict_many``
    as the Predictor's, each video annotated in the worker process."""

    def __init__(self, weights: str | os.PathLike | None = None, model: str | os.PathLike | None = None, **options):
        self._arguments = (weights, model, options)
        self._process: multiprocessing.process.BaseProcess | None = None
        self._connection: Connection | None = None
        self.description = self._start()  # a bad option or model fails here, as with Predictor

    @property
    def pid(self) -> int | None:
        """The worker's process id (None between a crash and the next video)."""
        return self._process.pid if self._process is not None else None

    def describe(self) -> str:
        return self.description

    def _start(self) -> str:
        context = multiprocessing.get_context("spawn")  # no fork of a process that holds threads
        mine, theirs = context.Pipe()
        self._process = context.Process(target=_serve, args=(theirs, self._arguments), daemon=True)
        self._process.start()
        theirs.close()
        self._connection = mine
        try:
            kind, text = mine.recv()
        except (EOFError, OSError):
            raise TsavError(f"the annotating worker process died while starting ({self._end()})") from None
        if kind == "error":
            self.close()
            raise TsavError(text)
        return text

    def predict_many(
        self, sources: Iterable[str | os.PathLike], progress: Progress | None = None
    ) -> Iterator[Annotation]:
        for source in sources:
            video = pathlib.Path(source)
            try:
                if self._process is None:
                    self._start()
                yield self._predict(video, progress)
            except TsavError as exc:  # no worker could be started again
                yield Annotation(video, error=f"{video}: {exc}")

    def _predict(self, video: pathlib.Path, progress: Progress | None) -> Annotation:
        assert self._connection is not None
        try:
            self._connection.send(str(video))
        except OSError:  # the worker died while idle (the out-of-memory killer): a new one
            self._end()
            self._start()
            self._connection.send(str(video))
        while True:
            try:
                message = self._connection.recv()
            except (EOFError, OSError):  # OSError: it died in the middle of a message
                how = self._end()
                return Annotation(
                    video,
                    error=f"{video}: the annotating process crashed on it ({how}); the file is probably damaged "
                    "in a way the decoder or face detector cannot handle; the other videos go on",
                )
            if message[0] == "progress":
                if progress is not None:
                    progress(*message[1:])
                continue
            return message[1]

    def _end(self) -> str:
        """Reap a dead worker; how it ended, in words."""
        assert self._process is not None
        self._process.join()
        code = self._process.exitcode
        self._process = self._connection = None
        if code is not None and code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    def close(self) -> None:
        if self._process is not None:
            self._connection.close()  # the worker's recv ends, and so does the worker
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
            self._process = self._connection = None

    def __enter__(self) -> IsolatedPredictor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _serve(connection: Connection, arguments: tuple) -> None:
    """The worker: one Predictor, then one video per message until the pipe closes."""
    from tsav_deploy.api.predictor import Predictor

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    weights, model, options = arguments
    try:
        predictor = Predictor(weights, model, **options)
    except TsavError as exc:
        connection.send(("error", str(exc)))
        return
    connection.send(("ready", predictor.describe()))
    while True:
        try:
            video = connection.recv()
        except EOFError:
            return
        for annotation in predictor.predict_many([video], lambda stage, n: connection.send(("progress", stage, n))):
            connection.send(("done", annotation))
