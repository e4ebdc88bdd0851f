"""Many videos into one output folder, each in its own guarded region.

Everything done for one video (its claim on the folder, the check for finished outputs, the
annotation with both passes, every writer, the record, and the caller's own per-video work) runs
inside one region: whatever fails there becomes that video's one line (engine/failures.py) and the
batch goes on. A bug's traceback goes to ``<out>/tsav-errors.log``, named in the line.

:meth:`Batch.annotate` is the whole of ``tsav annotate``'s run: the videos, then the folder's
summary.json and (with the report) index.html; :func:`open_predictor` picks the predictor it runs
with (in process, in a supervised worker process, or on Ray).

Two runs may share an output folder: a video is written only by the run that holds its claim
(engine/records.py); a run that finds a video claimed does the others first and then waits for it,
so it finds it finished and skips it.
"""

from __future__ import annotations

import contextlib
import datetime
import pathlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tsav_deploy.api import Annotation, Predictor, PredictorOptions
from tsav_deploy.api.predictor import check_options
from tsav_deploy.atomic import append_text
from tsav_deploy.errors import TsavError, shown
from tsav_deploy.failures import Failure, describe_failure
from tsav_deploy.outputs.records import (
    ERROR_LOG,
    OutputOptions,
    check_output_folder,
    claim,
    is_complete,
    output_name,
    read_record,
    release,
    save_outputs,
    write_failure,
    write_summary,
)
from tsav_deploy.runs.isolated import IsolatedPredictor
from tsav_deploy.runs.pages import write_folder_index

AnnotateMany = Callable[[Iterable[pathlib.Path]], Iterable[Annotation]]


@dataclass
class Outcome:
    """What became of one video: ``done`` (with its annotation), ``skipped`` (finished before; its
    record) or ``failed`` (the one line)."""

    video: pathlib.Path
    status: str
    annotation: Annotation | None = None
    record: dict | None = None
    error: str | None = None


class Batch:
    """Annotate ``videos`` into ``out`` with ``annotate_many`` (``Predictor.predict_many`` or any
    function that turns videos into Annotations, in any order, one per video)."""

    def __init__(self, out: pathlib.Path, outputs: OutputOptions):
        self.out, self.outputs = out, outputs
        check_output_folder(out)
        self._claims: dict[str, int] = {}  # by name: callers may hand back the video spelled otherwise

    def run(
        self,
        videos: Sequence[pathlib.Path],
        annotate_many: AnnotateMany,
        on_start: Callable[[pathlib.Path], None] | None = None,
    ) -> Iterator[Outcome]:
        """Outcomes as videos finish; ``on_start(video)`` runs inside the video's region before it
        is annotated."""
        todo, clashes = _unique_names(videos)
        for video, other in clashes:
            line = shown(
                f"{video}: same name as {other}; ABAW files are named by video, annotate it into another --out"
            )
            yield self.failed(video, Failure(line), recorded=False)  # the record's name is the other video's
        busy: list[pathlib.Path] = []
        try:
            for wait, queue in ((False, todo), (True, busy)):
                noted: list[Outcome] = []
                feed = self._feed(list(queue), wait, busy, noted, on_start)
                for annotation in annotate_many(feed):
                    yield from _drain(noted)
                    yield self.finish(annotation)
                yield from _drain(noted)
        finally:
            for stem in list(self._claims):
                release(self.out, stem, self._claims.pop(stem))

    def annotate(
        self,
        videos: Sequence[pathlib.Path],
        predictor: Any,
        *,
        on_start: Callable[[pathlib.Path], None] | None = None,
        progress: Callable | None = None,
    ) -> Iterator[Outcome]:
        """:meth:`run` with ``predictor.predict_many`` (a :class:`Predictor` or one of
        :func:`open_predictor`'s), then :meth:`write_folder_files`: the folder ``tsav annotate``
        leaves. ``progress`` goes to ``predict_many``."""
        yield from self.run(videos, lambda todo: predictor.predict_many(todo, progress=progress), on_start)
        yield from self.write_folder_files()

    def write_folder_files(self) -> Iterator[Outcome]:
        """summary.json over the folder and, with ``outputs.report``, index.html; a file that
        cannot be written is a failed outcome named by it (the videos' own files stay)."""
        files = [("summary.json", write_summary)] + (
            [("index.html", write_folder_index)] if self.outputs.report else []
        )
        for name, write in files:
            try:
                write(self.out)
            except OSError as exc:
                yield Outcome(self.out / name, "failed", error=describe_failure(self.out / name, exc).line)

    def _feed(
        self,
        queue: list[pathlib.Path],
        wait: bool,
        busy: list[pathlib.Path],
        noted: list[Outcome],
        on_start: Callable[[pathlib.Path], None] | None,
    ) -> Iterator[pathlib.Path]:
        """The videos this run is to annotate, each claimed before it is handed out; the others go
        to ``busy`` (claimed by another run) or ``noted`` (finished, or failed before annotating)."""
        for video in queue:
            try:
                output_name(video.stem, f"{video}: the name")
            except TsavError as exc:
                noted.append(self.failed(video, Failure(shown(str(exc)))))
                continue
            try:
                fd = claim(self.out, video.stem, wait=wait)
                if fd is None:
                    busy.append(video)
                    continue
                self._claims[video.stem] = fd
                if not self.outputs.overwrite and is_complete(self.out, video.stem, self.outputs):
                    self._release(video)
                    noted.append(Outcome(video, "skipped", record=read_record(self.out, video.stem)))
                    continue
                if on_start is not None:
                    on_start(video)
            except Exception as exc:
                held = video.stem in self._claims  # without the claim, the record is another run's
                self._release(video)
                noted.append(self.failed(video, describe_failure(video, exc), recorded=held))
                continue
            yield video

    def finish(self, annotation: Annotation) -> Outcome:
        """Write a finished annotation's files and record (or record its failure); the video's
        claim, if this run holds it, is given up either way."""
        video = annotation.video
        try:
            if not annotation.ok:
                return self.failed(video, Failure(annotation.error or "failed", annotation.traceback))
            save_outputs(self.out, annotation.result, video, annotation.info, self.outputs)
            return Outcome(video, "done", annotation=annotation)
        except Exception as exc:
            return self.failed(video, describe_failure(video, exc))
        finally:
            self._release(video)

    def failed(self, video: pathlib.Path, failure: Failure, *, recorded: bool = True) -> Outcome:
        """The outcome of a failed video, its traceback logged and its failure recorded (both
        best-effort: on a full disk the line itself must still reach the user)."""
        line = failure.line
        if failure.traceback:
            log = self.out / ERROR_LOG
            try:
                stamp = datetime.datetime.now().isoformat(timespec="seconds")
                append_text(log, f"=== {stamp} {shown(str(video))}\n{failure.traceback}")
                line += f"; traceback in {log}"
            except (OSError, ValueError, TsavError):
                pass
        if recorded:
            try:
                write_failure(self.out, video, line)
            except (OSError, ValueError):
                pass
        return Outcome(video, "failed", error=line)

    def _release(self, video: pathlib.Path) -> None:
        fd = self._claims.pop(video.stem, None)
        if fd is not None:
            release(self.out, video.stem, fd)


def _unique_names(videos: Sequence[pathlib.Path]) -> tuple[list[pathlib.Path], list[tuple[pathlib.Path, pathlib.Path]]]:
    """Videos with distinct names (outputs are named by video), and each later one that clashes."""
    first: dict[str, pathlib.Path] = {}
    todo, clashes = [], []
    for video in videos:
        if video.stem in first:
            clashes.append((video, first[video.stem]))
        else:
            first[video.stem] = video
            todo.append(video)
    return todo, clashes


def _drain(items: list[Outcome]) -> Iterator[Outcome]:
    while items:
        yield items.pop(0)


RAY_ONLY = (
    "--workers, --cpus-per-worker, --gpus-per-worker and --split-seconds go with --ray ADDRESS (e.g. --ray local)"
)


def check_predictor(
    options: PredictorOptions, *, isolate: bool = False, ray: str | None = None, ray_options: dict | None = None
) -> Any:
    """Every check :func:`open_predictor` makes before it loads anything (each option's bounds,
    what goes together), one line each; with ``ray``, the cluster's options (else None)."""
    ray_options = {k: v for k, v in (ray_options or {}).items() if v is not None}
    if ray is None and ray_options:
        raise TsavError(RAY_ONLY)
    if ray is not None and isolate:
        raise TsavError("--isolate and --ray do not go together: Ray's actors already are processes of their own")
    check_options(**options.asdict())
    if ray is None:
        return None
    from tsav_deploy.runs.cluster import ClusterOptions

    return ClusterOptions(ray, **ray_options)


@contextlib.contextmanager
def open_predictor(
    options: PredictorOptions,
    *,
    isolate: bool = False,
    ray: str | None = None,
    ray_options: dict | None = None,
) -> Iterator[Any]:
    """The predictor of a batch: a :class:`Predictor`, an :class:`IsolatedPredictor` (``isolate``:
    a native crash costs its video, not the run) or a Ray annotator (``ray``: local, auto,
    HOST:PORT or ray://HOST:PORT; ``ray_options``: workers, cpus_per_worker, gpus_per_worker,
    split_seconds). Its worker process, or its actors and a Ray of its own, end with the block,
    also on Ctrl-C."""
    cluster = check_predictor(options, isolate=isolate, ray=ray, ray_options=ray_options)
    if cluster is not None:
        from tsav_deploy.runs.cluster import RayAnnotator  # Ray loads only when asked for

        predictor = RayAnnotator(options.asdict(), cluster)
    else:
        predictor = (IsolatedPredictor if isolate else Predictor)(**options.asdict())
    try:
        yield predictor
    finally:
        if not isinstance(predictor, Predictor):
            predictor.close()
