"""Live annotation (``tsav live``, ``Predictor.stream``): :mod:`.annotate`'s pipeline run online.

The same stages in the same code, each fed as frames arrive instead of over a whole file:

- media: a :class:`~tsav_deploy.media.sources.LiveSource` decodes in a thread; audio goes into a
  :class:`~tsav_deploy.media.LiveTrack` (bounded, sample 0 at frame 0, as ``read_audio`` aligns it);
- faces: the video tracker (:func:`~tsav_deploy.faces.detect_video`, causal, a few frames of
  look-ahead for its detection thread), then :class:`~tsav_deploy.faces.online.OnlinePeople`;
- clips: :class:`~tsav_deploy.inputs.clips.ClipFrames` picks each frame's 8 clip frames, crops are kept per
  tracklet for the last 42 frames only; a clip is complete as soon as its frame arrives, so the visual
  stream runs then and only its 512 features wait;
- audio windows: a target frame's window (:class:`~tsav_deploy.inputs.windows.SpecWindows`) is cut once the
  audio up to ``audio_lookahead`` seconds past it has arrived (the model's own window reaches 5 s
  ahead; a shorter look-ahead hears silence in the rest), then the aural stream and the fusion run;
- outputs: frames between two target frames are interpolated as ``--stride`` does; each frame is
  yielded as a :class:`LiveFrame` as soon as it is final.

With the default look-ahead, a file read without ``realtime`` gives the predictions of ``tsav
annotate`` with the same stride on a single-person video (the people are chosen online, so videos
with several people may differ where the main person changes).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from tsav_deploy.artifacts.manifest import constant_inputs
from tsav_deploy.contract import CLIP_SHAPE, SAMPLE_RATE, SEGMENT_LEAD_SAMPLES
from tsav_deploy.errors import TsavError
from tsav_deploy.faces import Face, FaceBackend, detect_video
from tsav_deploy.faces.online import OnlinePeople
from tsav_deploy.inputs.clips import ClipFrames, fill_clip, normalized_crop
from tsav_deploy.inputs.windows import SpecWindows, authors_timestamps, segment_bounds
from tsav_deploy.media.audio import LIVE_AUDIO_HOLD_S, LiveTrack
from tsav_deploy.media.sources import Arrival, AudioPiece, LiveSource, SourceSpec
from tsav_deploy.pipeline.frontend import face_crop
from tsav_deploy.pipeline.offline import AnnotateOptions, interpolate_logits
from tsav_deploy.runtime import Engine

MAX_LOOKAHEAD_S = SEGMENT_LEAD_SAMPLES / SAMPLE_RATE  # 5 s: the model's window reaches no further
MAX_STRIDE = 32
# Falling behind: more than this many seconds of frames queued raises the stride (doubling, at most
# once per _HOLD_S); none queued for _HOLD_S lowers it again towards the asked-for stride.
_BEHIND_S = 0.5
_HOLD_S = 2.0
_PENDING_AUDIO_S = 30.0  # audio that arrives before any video frame is kept this long at most
_AUDIO_GRACE_S = 2.0  # how far (stream time) a live source's audio may lag the pictures before windows stop waiting
_AUDIO_ENDED_S = 10.0  # audio this far behind the pictures has ended
_POLL_S = 0.2


@dataclass(frozen=True)
class LiveOptions:
    audio_lookahead: float = MAX_LOOKAHEAD_S  # seconds of audio after a frame its window waits for
    realtime: bool = False  # play a file at its own rate (a camera or stream always runs in real time)

    def __post_init__(self) -> None:
        value = self.audio_lookahead
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_LOOKAHEAD_S:
            raise TsavError(
                f"audio_lookahead must be between 0 and {MAX_LOOKAHEAD_S:g} seconds (the model's window "
                f"reaches {MAX_LOOKAHEAD_S:g} s ahead), not {value!r}"
            )


@dataclass
class LiveEntry:
    """One person's prediction for one frame."""

    person: str  # "main", or "person<id>" with --person all
    track_id: int  # the online person id; -1 without a face
    face: Face | None
    logits: np.ndarray  # [17]


@dataclass
class LiveFrame:
    """A frame whose predictions are final: its number in the stream (dropped frames leave gaps),
    time (s from frame 0), how long after its arrival it became final, the stride of its stretch."""

    index: int
    time: float
    latency_s: float
    stride: int
    entries: list[LiveEntry]
    absent: np.ndarray | None = None  # [17] with --person all: the prediction for someone absent
    rgb: np.ndarray | None = None  # the picture, kept only for an overlay
    # With the picture, from a source with audio: the sound since the previous frame's up to this
    # frame's time (int16 mono 44.1 kHz, sample 0 at frame 0; what had arrived), for an overlay.
    audio: np.ndarray | None = None


@dataclass(eq=False)
class _Frame:
    """A frame on its way: what is known of it until its stretch's logits are final."""

    index: int
    time: float
    arrived: float
    faces: dict[str, tuple[int, Face | None]]  # key -> (person id or -1, face)
    rgb: np.ndarray | None
    target: _Target | None = None


@dataclass(eq=False)
class _Target:
    """A frame the network runs on."""

    number: int  # the frame's index in the stream (dropped frames leave gaps)
    time: float
    stride: int
    visual: dict[str, np.ndarray | None] = field(default_factory=dict)  # key -> features (None: black)
    logits: dict[str, np.ndarray] = field(default_factory=dict)
    absent: np.ndarray | None = None  # --person all: the logits of someone absent
    done: bool = False  # logits computed


class LivePipeline:
    """The online pipeline for one stream: iterate over it for its :class:`LiveFrame` in order
    (until the stream ends or ``stop`` is set); ``dropped`` and ``warnings`` say what the source
    lost."""

    def __init__(
        self,
        spec: SourceSpec,
        engine: Engine,
        face_backend: FaceBackend,
        options: AnnotateOptions = AnnotateOptions(),
        live: LiveOptions = LiveOptions(),
        *,
        keep_pictures: bool = False,
        stop: threading.Event | None = None,
    ):
        self.spec, self.stop = spec, stop
        self.engine, self.face_backend, self.options, self.live = engine, face_backend, options, live
        self.keep_pictures = keep_pictures
        self.people = OnlinePeople(face_backend.identity_threshold)
        self.clip_frames = ClipFrames()
        self.stride = options.stride
        self.track: LiveTrack | None = None
        self.windows: SpecWindows | None = None
        self.source: LiveSource | None = None
        self._early_audio: list[AudioPiece] = []
        self._crops: dict[int, dict[int, np.ndarray]] = {}  # tracklet -> frame number -> normalized crop
        self._frames: deque[_Frame] = deque()  # not yet final, in order
        self._targets: deque[_Target] = deque()  # whose logits are not yet computed
        self._jobs: list[tuple[_Target, str, np.ndarray]] = []  # clips waiting for the visual stream
        self._previous: _Target | None = None  # the last target with logits
        self._last_chosen: list[int | None] = []
        self._last_target = -math.inf
        self._stride_changed = 0.0
        self._black_features: np.ndarray | None = None
        self._audio_late = False
        self._newest_time = 0.0  # the latest frame's time
        self._caught_up_since: float | None = None
        self._audio_passed = 0  # samples of the track passed on with the frames (keep_pictures)

    # --- driving ---------------------------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Video frames the source dropped because the pipeline fell behind."""
        return self.source.dropped if self.source is not None else 0

    @property
    def warnings(self) -> list[str]:
        return list(self.source.warnings) if self.source is not None else []

    def __iter__(self) -> Iterator[LiveFrame]:
        waiting: deque[Arrival] = deque()
        with LiveSource(self.spec, realtime=self.live.realtime) as source:
            self.source = source
            done = threading.Event()
            if self.stop is not None:
                threading.Thread(target=_close_on, args=(self.stop, done, source), daemon=True).start()

            def pictures() -> Iterator[np.ndarray]:
                for item in source:
                    if isinstance(item, AudioPiece):
                        self._add_audio(item)
                        continue
                    if self.track is None:
                        self._start_audio(item.origin_s)
                    waiting.append(item)
                    yield item.frame.rgb

            try:
                for faces in detect_video(self.face_backend, pictures()):
                    yield from self._add_frame(waiting.popleft(), faces)
                yield from self._finish()
            finally:
                done.set()

    # --- audio -----------------------------------------------------------------------------------

    def _start_audio(self, origin_s: float) -> None:
        self.track = LiveTrack(origin_s)
        self.windows = SpecWindows(self.track)
        for piece in self._early_audio:
            self.track.add(piece.seconds, piece.samples)
        self._early_audio.clear()

    def _add_audio(self, piece: AudioPiece) -> None:
        if self.track is not None:
            if self.track.finished:  # audio taken for ended comes back: the track goes on
                self.track.finished = False
                self.windows.forget()
                self.source.warnings.append(
                    f"{self.spec.name}: the audio stopped for over {_AUDIO_ENDED_S:g} s and came back; "
                    "windows in between were cut where it had stopped"
                )
            dropped = self.track.dropped
            self.track.add(piece.seconds, piece.samples)
            if self.track.dropped and not dropped:
                self.source.warnings.append(
                    f"{self.spec.name}: audio arrived more than {LIVE_AUDIO_HOLD_S:g} s ahead of the pictures; "
                    "what came beyond that was dropped"
                )
            return
        self._early_audio.append(piece)
        held = sum(len(p.samples) for p in self._early_audio)
        while held > _PENDING_AUDIO_S * SAMPLE_RATE:
            held -= len(self._early_audio.pop(0).samples)

    def _need(self, target: _Target) -> int:
        """The sample the target's window waits for: its segment's end, or its look-ahead."""
        at = authors_timestamps([target.time])
        _, stop = segment_bounds(at, len(self.track))
        return min(int(stop[0]), self._horizon(at[0]))

    def _horizon(self, authors_time: float) -> int:
        return int(np.trunc(authors_time * SAMPLE_RATE)) + int(round(self.live.audio_lookahead * SAMPLE_RATE))

    def _audio_ready(self, target: _Target) -> bool:
        """Whether the target's window has the audio it waits for. A source without audio waits for
        none; a camera or stream whose audio lags the pictures by more than ``_AUDIO_GRACE_S`` (in
        the stream's own time) waits no longer: the window hears silence where the audio has not
        arrived (said once)."""
        if self.track.finished or not self.source.has_audio:
            return True
        need = self._need(target)
        if need <= self.track.final:
            return True
        if self.source.paced and self._newest_time > need / SAMPLE_RATE + _AUDIO_GRACE_S:
            if not self._audio_late:
                self._audio_late = True
                self.source.warnings.append(
                    f"{self.spec.name}: the audio lagged the pictures by more than {_AUDIO_GRACE_S:g} s; "
                    "windows heard silence where it had not arrived"
                )
            return True
        return False

    def _check_audio_end(self) -> None:
        """Audio that stopped ``_AUDIO_ENDED_S`` before the pictures has ended (a file whose audio is
        shorter than its video): the track's end is known, and windows are cut there as offline."""
        if self.source.has_audio and not self.track.finished:
            if self._newest_time - self.track.end / SAMPLE_RATE > _AUDIO_ENDED_S:
                self.track.finish()

    # --- frames ----------------------------------------------------------------------------------

    def _add_frame(self, arrival: Arrival, faces: list[Face]) -> Iterator[LiveFrame]:
        frame = arrival.frame
        self._newest_time = frame.time
        self._check_audio_end()
        # Frames are numbered by the source's index, so a clip holds the frames an offline run's
        # clip holds (i - 42, ..., i); a frame the source dropped is black where a clip holds it.
        number = frame.index
        by_person = self.people.update(number, faces)
        for person, face in by_person.items():
            self._crops.setdefault(face.tracklet, {})[number] = normalized_crop(face_crop(frame.rgb, face))
        chosen = self.clip_frames.push(number)
        self._forget_before(self.clip_frames.oldest)
        self._last_chosen = chosen
        keys = self._keys(by_person)
        record = _Frame(frame.index, frame.time, arrival.arrived, keys, frame.rgb if self.keep_pictures else None)
        self._adapt_stride()
        if number - self._last_target >= self.stride:
            self._add_target(record, number, chosen)
        self._frames.append(record)
        if len(self._jobs) >= self.options.batch_size or self._caught_up():
            self._run_visual()
        yield from self._emit(final=False)

    def _keys(self, by_person: dict[int, Face]) -> dict[str, tuple[int, Face | None]]:
        """The rows a frame gets: the main person's (``main``), or (``all``) those of everyone seen
        in the last 42 frames."""
        if self.options.person == "main":
            main = self.people.main
            return {"main": (main if main in by_person else -1, by_person.get(main))}
        # Everyone whose clip still holds a face (seen within the clip's 42 frames).
        recent = [p.id for p in self.people.people.values() if p.last_seen >= self.clip_frames.oldest]
        if not recent:
            return {"main": (-1, None)}  # nobody: one face-less row, as annotate gives without people
        return {f"person{p}": (p if p in by_person else -1, by_person.get(p)) for p in recent}

    def _person_of_key(self, key: str) -> int | None:
        return self.people.main if key == "main" else int(key.removeprefix("person"))

    def _add_target(self, record: _Frame, number: int, chosen: list[int | None]) -> None:
        target = _Target(number, record.time, self.stride)
        for key in record.faces:
            person = self._person_of_key(key)
            tracklets = self.people.people[person].tracklets if person in self.people.people else set()
            stores = [self._crops[t] for t in tracklets if t in self._crops]
            clip = np.empty(CLIP_SHAPE, dtype=np.float32)
            black = fill_clip(chosen, lambda n: next((s[n] for s in stores if n in s), None), clip)
            target.visual[key] = None
            if not black:
                self._jobs.append((target, key, clip))
        record.target = target
        self._targets.append(target)
        self._last_target = number

    def _forget_before(self, oldest: int) -> None:
        for tracklet in list(self._crops):
            store = self._crops[tracklet]
            for number in [n for n in store if n < oldest]:
                del store[number]
            if not store:
                del self._crops[tracklet]

    def _caught_up(self) -> bool:
        return self.source is None or self.source.backlog == 0

    def _adapt_stride(self) -> None:
        """Live sources: double the stride while more than ``_BEHIND_S`` of frames wait, halve it
        back once none have waited for ``_HOLD_S``; at most one change per ``_HOLD_S``."""
        if self.source is None or not self.source.paced:
            return
        now = time.monotonic()
        backlog = self.source.backlog
        self._caught_up_since = (self._caught_up_since or now) if backlog == 0 else None
        if now - self._stride_changed < _HOLD_S:
            return
        if backlog > _BEHIND_S / self._frame_interval() and self.stride < MAX_STRIDE:
            self.stride, self._stride_changed = min(MAX_STRIDE, 2 * self.stride), now
        elif self._caught_up_since is not None and now - self._caught_up_since >= _HOLD_S:
            if self.stride > self.options.stride:
                self.stride, self._stride_changed = max(self.options.stride, self.stride // 2), now

    def _frame_interval(self) -> float:
        """The recent frame interval in seconds (1/30 until two frames arrived)."""
        if len(self._frames) >= 2:
            return max(1e-3, (self._frames[-1].time - self._frames[0].time) / (len(self._frames) - 1))
        return 1 / 30

    # --- network ---------------------------------------------------------------------------------

    def _run_visual(self) -> None:
        if not self._jobs:
            return
        clips = np.stack([clip for _, _, clip in self._jobs])
        features = self.engine.visual(clips, black=np.zeros(len(clips), dtype=bool))
        for (target, key, _), row in zip(self._jobs, features):
            target.visual[key] = row
        self._jobs.clear()

    def _black(self) -> np.ndarray:
        """The visual features of the black clip (someone absent), computed once."""
        if self._black_features is None:
            clip = constant_inputs()["clip"]
            self._black_features = self.engine.visual(clip, black=np.ones(1, dtype=bool))[0]
        return self._black_features

    def _run_aural(self, final: bool) -> None:
        """Logits of the targets, in order, whose audio is there (their clips go through the visual
        stream first where they still wait for it), ``batch_size`` at a time."""
        while True:
            ready: list[_Target] = []
            for target in self._targets:
                if len(ready) == self.options.batch_size or not self._audio_ready(target):
                    break
                ready.append(target)
            if not ready or (len(ready) < self.options.batch_size and not final and not self._caught_up()):
                return
            if any(job[0] in ready for job in self._jobs):
                self._run_visual()
            self._fuse(ready)

    def _fuse(self, ready: list[_Target]) -> None:
        times = [t.time for t in ready]
        horizons = None
        if self.live.audio_lookahead < MAX_LOOKAHEAD_S:  # the window hears silence past its look-ahead
            horizons = [self._horizon(t) for t in authors_timestamps(times)]
        windows = self.windows.frame_windows(times, horizons)
        aural = self.engine.aural(windows, silent=self.windows.frame_silent(times, horizons))
        # One fusion row per target and key, plus (--person all) one for someone absent.
        owners = [(i, key) for i, t in enumerate(ready) for key in t.visual]
        if self.options.person == "all":
            owners += [(i, None) for i in range(len(ready))]
        visual = [None if key is None else ready[i].visual[key] for i, key in owners]
        visual = [self._black() if v is None else v for v in visual]
        logits = self.engine.fusion(aural[[i for i, _ in owners]], np.stack(visual))
        for (i, key), row in zip(owners, logits):
            if key is None:
                ready[i].absent = row
            else:
                ready[i].logits[key] = row
        for target in ready:
            target.done = True
            self._targets.popleft()
        self._discard_audio()

    def _discard_audio(self) -> None:
        """Audio before the segment of the oldest frame still to be computed is not read again (nor,
        for an overlay, what is passed on with the frames)."""
        pending = self._targets[0].time if self._targets else self._frames[-1].time if self._frames else None
        if pending is not None:
            mark = self.windows.first_sample(pending)
            self.track.discard_before(min(mark, self._audio_passed) if self._passes_audio else mark)

    @property
    def _passes_audio(self) -> bool:
        return self.keep_pictures and self.source is not None and self.source.has_audio

    def _audio_until(self, time_s: float) -> np.ndarray | None:
        """The track's final samples from where the last passed on up to ``time_s``, for the overlay
        (None where pictures are not kept or the source has no audio). Audio arriving late (a
        lagging camera) follows with a later frame: the samples stay end to end."""
        if not self._passes_audio:
            return None
        stop = min(self.track.final, round(time_s * SAMPLE_RATE))
        start = self._audio_passed
        # A clock that jumps far ahead would make the gap hours of silence in memory: beyond the
        # track's own bound the gap closes up (the later sound then plays that much early).
        start = max(start, stop - int(LIVE_AUDIO_HOLD_S * SAMPLE_RATE))
        self._audio_passed = max(start, stop)
        return self.track[start : self._audio_passed]

    def audio_tail(self) -> np.ndarray | None:
        """Once the stream has ended: the sound after the last frame's time, to the end of the audio
        and at most the model's look-ahead (5 s) past that frame, for the overlay; None as for
        :attr:`LiveFrame.audio`."""
        if self.track is None or not self.track.finished or not self._passes_audio:
            return None
        return self._audio_until(self._newest_time + MAX_LOOKAHEAD_S)

    # --- output ----------------------------------------------------------------------------------

    def _emit(self, final: bool) -> Iterator[LiveFrame]:
        """Every frame up to the last target with logits, interpolated between targets."""
        if self.track is None:
            return
        self._run_aural(final)
        while True:
            end = next((i for i, f in enumerate(self._frames) if f.target is not None), None)
            if end is None or not self._frames[end].target.done:
                return
            right = self._frames[end].target
            stretch = [self._frames.popleft() for _ in range(end + 1)]
            yield from self._stretch_frames(stretch, self._previous, right)
            self._previous = right

    def _stretch_frames(self, stretch: list[_Frame], left: _Target | None, right: _Target) -> Iterator[LiveFrame]:
        """The frames after ``left`` up to ``right``, their logits interpolated in time."""
        now = time.monotonic()
        keys = {key for frame in stretch for key in frame.faces}
        values: dict[str | None, np.ndarray] = {}
        times = np.array([f.time for f in stretch] if left is None else [left.time] + [f.time for f in stretch])
        for key in keys | ({None} if self.options.person == "all" else set()):
            if left is None:  # the stream's first target: a stretch of its own frame only
                values[key] = np.repeat(_logits_of(right, key)[None], len(stretch), axis=0)
            else:
                ends = np.stack([_logits_of(left, key), _logits_of(right, key)])
                values[key] = interpolate_logits(times, np.array([0, len(stretch)]), ends)[1:]
        for i, frame in enumerate(stretch):
            entries = [LiveEntry(key, person, face, values[key][i]) for key, (person, face) in frame.faces.items()]
            absent = values[None][i] if None in values else None
            audio = self._audio_until(frame.time)
            yield LiveFrame(
                frame.index, frame.time, now - frame.arrived, right.stride, entries, absent, frame.rgb, audio
            )

    def _finish(self) -> Iterator[LiveFrame]:
        """The stream ended: the last frame becomes a target (as annotate's always is), the audio
        track's end is known, and every pending frame is made final."""
        if self.track is None:
            return
        self.track.finish()
        if self._frames and self._frames[-1].target is None:
            self._add_target(self._frames[-1], self._frames[-1].index, self._last_chosen)
        self._run_visual()
        yield from self._emit(final=True)


def _logits_of(target: _Target, key: str | None) -> np.ndarray:
    if key is None or key not in target.logits:
        return target.absent
    return target.logits[key]


def _close_on(stop: threading.Event, done: threading.Event, source: LiveSource) -> None:
    """Close ``source`` once ``stop`` is set; end with the stream (``done``) otherwise."""
    while not done.is_set():
        if stop.wait(_POLL_S):
            source.close()
            return
