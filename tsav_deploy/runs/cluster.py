"""Many videos over a Ray cluster: the same Predictor in N Ray actors, the same files.

``RayAnnotator`` has the shape of :class:`~tsav_deploy.api.Predictor` where it matters to a
caller: :meth:`RayAnnotator.predict_many` yields one :class:`Annotation` per video (finished, or
with its one-line error), so ``tsav annotate`` saves them in its one loop, on the driver, with the
atomic writes and records that make reruns resume.

Each actor builds one Predictor from the same options (the model is loaded once per actor). Work is
scheduled per video, largest first, to whichever actor is free. A video longer than the split
length is cut: pass 1 (faces) runs once on one actor, pass 2 (the network, most of the time) runs
in frame ranges on any actors (:func:`~tsav_deploy.pipeline.offline.range_logits`), and the driver joins
the logits and builds the result as :func:`~tsav_deploy.pipeline.offline.annotate_video` does.

Faults: an actor that dies (killed, out of memory, node lost) is restarted by Ray (``max_restarts``)
and its task goes back to the queue for any free actor; a video whose task is lost twice gets an
error line and the run goes on.

Ray is an optional extra, imported here only.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import math
import os
import pathlib
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from tsav_deploy.api.annotation import Annotation
from tsav_deploy.api.predictor import Predictor, check_options, check_source
from tsav_deploy.bounds import CPUS_PER_WORKER, GPUS_PER_WORKER, SPLIT_SECONDS, WORKERS, check_number, check_whole
from tsav_deploy.errors import TsavError
from tsav_deploy.failures import Failure, describe_failure
from tsav_deploy.media.probe import probe
from tsav_deploy.pipeline.offline import (
    AnnotateOptions,
    PeopleFound,
    find_people,
    people_logits,
    provenance,
    range_logits,
    video_result,
)

INSTALL_HINT = "--ray needs Ray, an optional extra: pip install 'tsav-deploy[ray]'"
# A video is cut into ranges only when each range is at least this long (a range costs a look-back
# of 42 frames, a read of the audio track and a decode of the frames before it).
MIN_SPLIT_S = 60.0
ATTEMPTS = 2  # a video whose task is lost this often gets its error line
RESTARTS = 4  # restarts of each actor by Ray before it counts as lost
_REPORT_S = 0.5  # how often actors send progress, and the driver's progress tick


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how wide: ``address`` ``local`` (Ray started for the run on this machine),
    ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT`` (a running cluster); ``workers`` actors with
    ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs each (fractions allowed); videos longer
    than ``split_seconds`` run as ranges of that length (None: from the videos' length and the
    number of workers, see :func:`split_length`)."""

    address: str = "local"
    workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    split_seconds: float | None = None

    def __post_init__(self) -> None:
        check_whole("--workers", self.workers, WORKERS)
        check_number("--cpus-per-worker", self.cpus_per_worker, CPUS_PER_WORKER, above_low=True)
        check_number("--gpus-per-worker", self.gpus_per_worker, GPUS_PER_WORKER)
        if self.split_seconds is not None:
            check_number("--split-seconds", self.split_seconds, SPLIT_SECONDS)
        if not self.address:
            raise TsavError("--ray needs an address: local, auto, HOST:PORT or ray://HOST:PORT")


@dataclass(frozen=True)
class ClusterStatus:
    """Progress over all videos: frames done and in all (each frame counts in pass 1 and in
    pass 2), the actors that answer, and their process ids."""

    frames_done: int
    frames_total: int
    workers_alive: int
    worker_pids: tuple[int, ...]


ClusterProgress = Callable[[ClusterStatus], None]


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """Ray started within binds its servers (GCS, raylet, workers, agents) to 127.0.0.1 only.

    Ray has no option for it on Linux; its single-machine mode (what it runs on macOS and Windows,
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0) takes the loopback address as the node's, and every server
    binds to the node's address. That mode is what `--ray local` is: one machine, no other node.
    """
    from ray._private import ray_constants

    kept = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = kept


def _join_remedy() -> str:
    """What to do when joining a cluster at an address fails: Ray sends its authentication token to
    an address named explicitly only with RAY_AUTH_MODE=token, and `ray start --head` asks for one."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        return "check that the head runs (`ray start --head`) and that this machine has its token, or use --ray local"
    return (
        "a cluster started with `ray start --head` asks for its token: run with RAY_AUTH_MODE=token and the "
        "head's token in ~/.ray/auth_token (or RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH), or use --ray local"
    )


def init_ray(address: str) -> None:
    """Start Ray for this process (``local``: on this machine, listening on 127.0.0.1 only, no
    dashboard) or join the cluster at ``address``; a cluster that cannot be joined is one line
    that says what to do."""
    import logging

    ray = import_ray()
    if address == "local":
        with _loopback_only():
            ray.init(
                address="local",  # a new Ray, even where `ray start` left a cluster address behind
                num_cpus=os.cpu_count(),
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
            )
        return
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TsavError(f"--ray {address}: cannot join the Ray cluster ({message}); {_join_remedy()}") from None


def split_length(durations: Iterable[float], workers: int) -> float:
    """Seconds per range when none is asked for: about two ranges per worker over all the work,
    never under :data:`MIN_SPLIT_S`, so many short videos are not cut and one long one fills the
    cluster."""
    return max(MIN_SPLIT_S, sum(durations) / (2 * workers))


def frame_ranges(frames: int, fps: float, seconds: float, options: AnnotateOptions) -> list[tuple[int, int]]:
    """``[a, b)`` ranges of about ``seconds`` covering ``frames`` frames (one range when shorter).
    Each starts at a target frame that also starts a network batch in a whole run, so every batch
    holds the same clips as there and the joined logits are those of the whole run, bit for bit."""
    batch_frames = options.stride * options.batch_size
    step = max(1, math.ceil(seconds * (fps or 30.0) / batch_frames)) * batch_frames
    return [(a, min(a + step, frames)) for a in range(0, frames, step)] or [(0, frames)]


def import_ray():
    try:
        import ray
    except ImportError:
        raise TsavError(INSTALL_HINT) from None
    return ray


class _Reporter:
    """Sends an actor's frames done to the driver's counter, at most every ``_REPORT_S``."""

    def __init__(self, counter):
        self.counter, self.pending, self.sent = counter, 0, time.monotonic()

    def __call__(self, stage: str, n: int) -> None:
        if stage == "frames":  # the declared count: the driver sized the bar from its own probe
            return
        self.pending += n
        if time.monotonic() - self.sent >= _REPORT_S:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.counter.add.remote(self.pending)
        self.pending, self.sent = 0, time.monotonic()


class _Counter:
    """Frames done over all actors (a Ray actor of its own; no CPU)."""

    def __init__(self) -> None:
        self.done = 0

    def add(self, n: int) -> None:
        self.done += n

    def total(self) -> int:
        return self.done


class _Worker:
    """One Predictor in a Ray actor. A bad option is kept as an error the driver raises in one line,
    not a failed actor (whose error would be a remote traceback)."""

    def __init__(self, predictor_options: dict, counter_name: str):
        import ray

        # Found by name, not passed: an actor handle among the arguments would keep them in the
        # object store, where a restart after their loss could not find them.
        self.counter = ray.get_actor(counter_name)
        self.predictor: Predictor | None = None
        self.error: str | None = None
        try:
            self.predictor = Predictor(**predictor_options)
        except TsavError as exc:
            self.error = str(exc)

    def hello(self) -> tuple[int, str | None, str]:
        """Process id, the construction error if any, the Predictor's description."""
        return os.getpid(), self.error, self.predictor.describe() if self.predictor else ""

    def annotate(self, video: str) -> Annotation:
        """The whole video, the single-process way."""
        reporter = _Reporter(self.counter)
        try:
            return next(self.predictor.predict_many([video], progress=reporter))
        finally:
            reporter.flush()

    def find_people(self, video: str) -> PeopleFound | Failure:
        """Pass 1, or why the video cannot be annotated."""
        reporter = _Reporter(self.counter)
        try:
            return find_people(video, self.predictor.face_backend, self.predictor.options, reporter)
        except Exception as exc:
            return describe_failure(video, exc)
        finally:
            reporter.flush()

    def range_logits(
        self, video: str, people: PeopleFound, frames: tuple[int, int]
    ) -> tuple[np.ndarray, list[str], float, dict] | Failure:
        """Pass 2 over frames ``[a, b)``: logits of its target frames, audio warnings, seconds, and
        the engine and face backend for the summary; or why it failed."""
        reporter = _Reporter(self.counter)
        started = time.perf_counter()
        p = self.predictor
        try:
            logits, warnings = range_logits(video, people, p.engine, p.options, frames, reporter)
        except Exception as exc:
            return describe_failure(video, exc)
        finally:
            reporter.flush()
        return logits, warnings, time.perf_counter() - started, provenance(p.engine, p.face_backend)


@dataclass
class _Video:
    path: pathlib.Path
    frames: int  # the container's count (the bar's size)
    seconds: float
    attempts: int = 0
    failed: bool = False
    started: float = 0.0
    people: PeopleFound | None = None
    people_ref: object = None
    parts: dict[int, tuple] = field(default_factory=dict)  # range number -> range_logits' answer
    ranges: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class _Task:
    kind: str  # "annotate" (whole video), "people" (pass 1) or "range" (pass 2 over ranges[part])
    video: _Video
    part: int = 0


# The Predictor's keyword options and defaults, for checking options given in part.
_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(Predictor).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
}


class RayAnnotator:
    """Annotates videos on Ray actors with the files and guarantees of one process.

    ``predictor_options``: the :class:`Predictor`'s keyword arguments (checked here, before Ray is
    touched); paths in them are made absolute, since actors need not share the driver's working
    directory. Use as a context manager, or call :meth:`close`: the actors are ended, and Ray too
    where this object started it (``local``).
    """

    def __init__(self, predictor_options: dict, cluster: ClusterOptions = ClusterOptions()):
        options = dict(predictor_options)
        for key in ("weights", "model"):
            if options.get(key) and pathlib.Path(options[key]).expanduser().exists():
                options[key] = str(pathlib.Path(options[key]).expanduser().resolve())
        self.annotate_options = check_options(**{"weights": None, "model": None, **_DEFAULTS, **options})
        self.options = options
        self.cluster = cluster
        self.ray = import_ray()
        self._started_ray = False
        self._actors: list = []
        self._counter = None
        self.pids: dict[int, int] = {}  # actor number -> process id
        try:
            self._connect()
            self._start_actors()
        except BaseException:
            self.close()
            raise

    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():  # the caller's own session (ray.init before us): use it, leave it
            return
        init_ray(self.cluster.address)
        self._started_ray = True
        resources = ray.cluster_resources()
        need = {
            "CPU": self.cluster.workers * self.cluster.cpus_per_worker,
            "GPU": self.cluster.workers * self.cluster.gpus_per_worker,
        }
        for name, amount in need.items():
            if amount > resources.get(name, 0) + 1e-9:
                raise TsavError(
                    f"--workers {self.cluster.workers} need {amount:g} {name}s in all; the cluster at "
                    f"{self.cluster.address} has {resources.get(name, 0):g}: use fewer workers or "
                    f"smaller --{name.lower()}s-per-worker"
                )

    def _start_actors(self) -> None:
        ray = self.ray
        counter_name = f"tsav-progress-{uuid.uuid4().hex}"
        self._counter = ray.remote(num_cpus=0)(_Counter).options(name=counter_name).remote()
        worker = ray.remote(
            num_cpus=self.cluster.cpus_per_worker,
            num_gpus=self.cluster.gpus_per_worker,
            max_restarts=RESTARTS,
            max_task_retries=0,  # the driver retries, on whichever actor is free
        )(_Worker)
        self._actors = [worker.remote(self.options, counter_name) for _ in range(self.cluster.workers)]
        self.descriptions = []
        for k, (pid, error, description) in enumerate(ray.get([a.hello.remote() for a in self._actors])):
            if error:
                raise TsavError(error)
            self.pids[k] = pid
            self.descriptions.append(description)

    def describe(self) -> str:
        """One line: the cluster, the workers, and the engine and face backend they chose."""
        return f"ray {self.cluster.address}: {len(self._actors)} workers; {self.descriptions[0]}"

    def close(self) -> None:
        for actor in [*self._actors, *([self._counter] if self._counter is not None else [])]:
            self.ray.kill(actor)
        self._actors, self._counter = [], None
        if self._started_ray:
            self.ray.shutdown()
            self._started_ray = False

    def __enter__(self) -> RayAnnotator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def predict_many(
        self, sources: Iterable[str | os.PathLike], progress: ClusterProgress | None = None
    ) -> Iterator[Annotation]:
        """Annotate videos across the actors, largest first; yields each video's Annotation as it
        completes (not in input order), a failed video's with its ``error``."""
        videos: list[_Video] = []
        for source in sources:
            try:
                path = check_source(source).resolve()
                info = probe(path)
            except Exception as exc:
                failure = describe_failure(source, exc)
                yield Annotation(pathlib.Path(source), error=failure.line, traceback=failure.traceback)
                continue
            videos.append(_Video(path, info.frame_count, info.duration_s))
        videos.sort(key=lambda v: -v.frames)
        split = self.cluster.split_seconds or split_length((v.seconds for v in videos), len(self._actors))
        queue = collections.deque(
            _Task("people" if v.seconds > split and len(self._actors) > 1 else "annotate", v) for v in videos
        )
        yield from _Schedule(self, queue, split, sum(2 * v.frames for v in videos), progress).run()


class _Schedule:
    """The driver's loop: one task per free actor, results as they come, retries after losses."""

    def __init__(self, annotator: RayAnnotator, queue: collections.deque, split: float, total: int, progress):
        self.a, self.ray, self.queue, self.split = annotator, annotator.ray, queue, split
        self.total, self.progress = total, progress
        self.idle = list(range(len(annotator._actors)))
        self.alive = set(self.idle)
        self.running: dict = {}  # object ref -> (task, actor number)
        self.waking: dict = {}  # hello ref -> actor number (an actor Ray is restarting)

    def run(self) -> Iterator[Annotation]:
        ray = self.ray
        while self.queue or self.running or self.waking:
            while self.queue and self.idle:
                task = self.queue.popleft()
                if not task.video.failed:  # the other ranges of a video that failed are not run
                    self._submit(task, self.idle.pop(0))
            if not self.alive:
                for task in self.queue:
                    if not task.video.failed:
                        task.video.failed = True
                        yield Annotation(task.video.path, error=f"{task.video.path}: no Ray worker is left to run it")
                self.queue.clear()
                break
            ready, _ = ray.wait([*self.running, *self.waking], num_returns=1, timeout=_REPORT_S)
            self._report()
            for ref in ready:
                if ref in self.waking:
                    self._woken(ref)
                else:
                    yield from self._finished(ref)
        self._report(final=True)

    def _submit(self, task: _Task, k: int) -> None:
        actor, video = self.a._actors[k], task.video
        if task.kind == "annotate":
            ref = actor.annotate.remote(str(video.path))
        elif task.kind == "people":
            ref = actor.find_people.remote(str(video.path))
        else:
            ref = actor.range_logits.remote(str(video.path), video.people_ref, video.ranges[task.part])
        if not video.started:
            video.started = time.perf_counter()
        self.running[ref] = (task, k)

    def _finished(self, ref) -> Iterator[Annotation]:
        task, k = self.running.pop(ref)
        video = task.video
        try:
            value = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:  # not ours: Ray could not run or return it
            self.idle.append(k)
            if not video.failed:
                video.failed = True
                failure = describe_failure(video.path, exc)
                yield Annotation(video.path, error=failure.line, traceback=failure.traceback)
            return
        except self.ray.exceptions.RayActorError as exc:
            # The actor died with the task (killed, out of memory, node lost): Ray restarts it; the
            # task goes back to the queue once, for any free actor.
            self.waking[self.a._actors[k].hello.remote()] = k
            video.attempts += 1
            if video.failed:
                return
            if video.attempts >= ATTEMPTS:
                video.failed = True
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                yield Annotation(
                    video.path,
                    error=f"{video.path}: the Ray worker running it was lost {ATTEMPTS} times ({reason}); run again to retry",
                )
            else:
                self.queue.appendleft(task)
            return
        self.idle.append(k)
        if not video.failed:
            yield from self._value(task, value)

    def _value(self, task: _Task, value) -> Iterator[Annotation]:
        """What a finished task returned: an annotation, a failure, a video's people (its ranges
        are queued) or one range's logits (the video is joined once all are in)."""
        video = task.video
        if task.kind == "annotate":
            yield value
        elif isinstance(value, Failure):
            video.failed = True
            yield Annotation(video.path, error=value.line, traceback=value.traceback)
        elif task.kind == "people":
            people = value
            video.people, video.people_ref = people, self.ray.put(people)
            video.ranges = frame_ranges(people.timeline.frames, people.info.fps, self.split, self.a.annotate_options)
            # The ranges go first: they are the largest work left, and the video is done sooner.
            self.queue.extendleft(_Task("range", video, part) for part in reversed(range(len(video.ranges))))
        else:
            video.parts[task.part] = value
            if len(video.parts) == len(video.ranges):
                yield self._joined(video)

    def _joined(self, video: _Video) -> Annotation:
        """The result of a video run in ranges, built as ``annotate_video`` builds it."""
        parts = [video.parts[p] for p in range(len(video.ranges))]
        logits = np.concatenate([p[0] for p in parts])
        _, warnings, _, made_by = parts[0]
        annotate_options = self.a.annotate_options
        result = video_result(
            video.path,
            video.people,
            people_logits(video.people.timeline, annotate_options, logits),
            warnings,
            annotate_options,
            made_by,
            sum(p[2] for p in parts),
        )
        video.people = video.people_ref = None
        return Annotation(video.path, result, info={"wall_s": round(time.perf_counter() - video.started, 3)})

    def _woken(self, ref) -> None:
        k = self.waking.pop(ref)
        try:
            pid, _, _ = self.ray.get(ref)
        except self.ray.exceptions.RayActorError:
            self.alive.discard(k)  # Ray gave up restarting it
            self.a.pids.pop(k, None)
            return
        self.a.pids[k] = pid
        self.idle.append(k)

    def _report(self, final: bool = False) -> None:
        if self.progress is None:
            return
        done = self.total if final else min(self.total, self.ray.get(self.a._counter.total.remote()))
        self.progress(ClusterStatus(done, self.total, len(self.alive), tuple(self.a.pids.values())))
