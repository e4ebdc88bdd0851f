"""Annotation: one video in, per-frame predictions for its people out (then the writers).

media → faces (pass 1) → crops and clips + aural windows (pass 2) → engine → predictions. Clips and
windows are batched across frames and people; with ``stride`` K the network runs on every K-th frame
(and the last) and the logits of the frames between are interpolated linearly in time (K=1: exact).
"""

from __future__ import annotations

import os
import pathlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from tsav_deploy import __version__
from tsav_deploy.bounds import BATCH_SIZE, STRIDE, check_whole
from tsav_deploy.contract import CLIP_SHAPE, N_OUTPUTS
from tsav_deploy.errors import TsavError
from tsav_deploy.faces import PERSON_CHOICES, FaceBackend, Track, select_tracks
from tsav_deploy.inputs.clips import first_clip_frame
from tsav_deploy.inputs.windows import SpecWindows
from tsav_deploy.media.probe import VideoInfo, probe
from tsav_deploy.pipeline.frontend import FaceTimeline, Progress, audio_track, iter_clips, scan_faces, video_duration
from tsav_deploy.pipeline.prefetch import prefetch
from tsav_deploy.results.predictions import DEFAULT_AU_THRESHOLD, decode
from tsav_deploy.results.table import NO_FACE_POLICIES
from tsav_deploy.results.video_result import PersonResult, VideoResult
from tsav_deploy.runtime import Engine
from tsav_deploy.stages import stage


@dataclass(frozen=True)
class AnnotateOptions:
    person: str = "main"  # "main" or "all"
    stride: int = 1
    batch_size: int = 8
    au_threshold: float = DEFAULT_AU_THRESHOLD
    no_face: str = "keep"  # one of NO_FACE_POLICIES (results/table.py)

    def __post_init__(self) -> None:
        # Checked here, once, so that a bad value stops a run before any video is touched.
        check_whole("stride", self.stride, STRIDE)
        check_whole("batch_size", self.batch_size, BATCH_SIZE)
        if (
            isinstance(self.au_threshold, bool)
            or not isinstance(self.au_threshold, (int, float))
            or not 0.0 < self.au_threshold < 1.0
        ):
            raise TsavError(f"au_threshold must be a probability strictly between 0 and 1, not {self.au_threshold!r}")
        if self.person not in PERSON_CHOICES:
            raise TsavError(f"person must be one of {', '.join(PERSON_CHOICES)}, not {self.person!r}")
        if self.no_face not in NO_FACE_POLICIES:
            raise TsavError(f"no_face must be one of {', '.join(NO_FACE_POLICIES)}, not {self.no_face!r}")


def target_frames(n_frames: int, stride: int) -> np.ndarray:
    """Frames the network runs on: every ``stride``-th one and always the last."""
    if n_frames == 0:
        return np.zeros(0, dtype=np.int64)
    targets = np.arange(0, n_frames, stride, dtype=np.int64)
    return targets if targets[-1] == n_frames - 1 else np.append(targets, n_frames - 1)


def interpolate_logits(times: np.ndarray, targets: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Logits for every frame from those at ``targets``: linear in time between target frames."""
    if len(targets) == len(times):
        return logits
    return np.stack([np.interp(times, times[targets], logits[:, j]) for j in range(logits.shape[1])], axis=1).astype(
        np.float32
    )


def person_suffixes(tracks: list[Track], person: str) -> list[str]:
    """ABAW file suffixes: none for the main person; in ``all`` mode Aff-Wild2's ``_left``/``_right``
    for two people (by mean box centre), ``_person1``… (most frames first) for more."""
    if person == "main" or len(tracks) == 1:
        return [""] * len(tracks)
    if len(tracks) == 2:
        centres = [np.mean([(f.box[0] + f.box[2]) / 2 for f in t.faces.values()]) for t in tracks]
        return ["_left", "_right"] if centres[0] <= centres[1] else ["_right", "_left"]
    return [f"_person{k + 1}" for k in range(len(tracks))]


@dataclass
class NetworkBatch:
    """The network's inputs for up to ``batch_size`` target frames of one video (every person of
    each frame), as pass 2 hands them to the engine. ``clips`` is a view of a buffer that the next
    batch overwrites: use it before asking for the next."""

    frames: np.ndarray  # [b] int64 target frame indices
    times: np.ndarray  # [b] float64 seconds
    clips: np.ndarray  # [b, people, 4, 8, 112, 112] float32
    black: np.ndarray  # [b, people] bool: the black clip (no face in any of its 8 frames)
    windows: np.ndarray  # [b, 1, 64, 1001] float32, one aural window per frame, shared by its people
    silent: np.ndarray  # [b] bool: the window is digital silence


def run_network(engine: Engine, batch: NetworkBatch) -> np.ndarray:
    """Logits ``[b, people, 17]`` of one batch: one aural pass per frame, one visual pass per clip."""
    b, n_people = batch.black.shape
    aural = engine.aural(batch.windows, silent=batch.silent)
    visual = engine.visual(batch.clips.reshape((b * n_people,) + CLIP_SHAPE), black=batch.black.reshape(-1))
    return engine.fusion(np.repeat(aural, n_people, axis=0), visual).reshape(b, n_people, N_OUTPUTS)


@dataclass
class PeopleFound:
    """Pass 1's result for one video: what probe found, the faces over time, the people the
    network runs for (most frames first) and how long finding them took."""

    info: VideoInfo
    timeline: FaceTimeline
    tracks: list[Track]
    seconds: float


def find_people(
    video: str | os.PathLike, face_backend: FaceBackend, options: AnnotateOptions, progress: Progress | None = None
) -> PeopleFound:
    """Pass 1: probe, find and follow faces, choose the people (raises MediaError for unusable files)."""
    started = time.perf_counter()
    # Probed once: the timeline and the result carry what probe found to audio, writers and overlay.
    info = probe(video)
    if progress is not None:
        progress("frames", info.frame_count)  # the container's count, for progress bars
    timeline = scan_faces(video, face_backend, progress=progress, info=info)
    # Most frames first: in ``all`` mode the main person is _person1 (or the first slot).
    tracks = sorted(select_tracks(timeline.tracks, options.person), key=lambda t: -len(t.faces))
    return PeopleFound(info, timeline, tracks, time.perf_counter() - started)


def network_batches(
    video: str | os.PathLike,
    people: PeopleFound,
    options: AnnotateOptions,
    frames: tuple[int, int] | None = None,
    progress: Progress | None = None,
    ahead: bool = False,
) -> tuple[Iterator[NetworkBatch], list[str]]:
    """Pass 2 over the frames ``[a, b)`` (default: all): the network's inputs of the target frames in
    the range, batch by batch, and the audio track's warnings. With no track, one face-less
    "person" (black clips + audio) so every frame still gets a prediction. Decoding starts at the
    first frame the range's first clip looks back to, so any cut of a video into ranges gives the
    inputs of the whole video. ``ahead``: decoding, alignment and clip assembly run a batch ahead in
    a thread (for engines on an accelerator, which leave the host free)."""
    wave, warnings = audio_track(video, people.timeline.info)  # a window needs the track up to t + 5 s
    return _batches(video, people, options, SpecWindows(wave), frames, progress, ahead), warnings


def _batches(video, people, options, spec, frames, progress, ahead) -> Iterator[NetworkBatch]:
    timeline, tracks = people.timeline, people.tracks
    a, b = frames or (0, timeline.frames)
    targets = target_frames(timeline.frames, options.stride)
    in_range = targets[(targets >= a) & (targets < b)]
    is_target = np.zeros(timeline.frames, dtype=bool)
    is_target[in_range] = True
    first = first_clip_frame(int(in_range[0])) if len(in_range) else a
    n_people = max(1, len(tracks))
    clips = np.empty((options.batch_size, n_people) + CLIP_SHAPE, dtype=np.float32)
    black = np.zeros((options.batch_size, n_people), dtype=bool)
    picked: list[tuple[int, float]] = []
    # Without a thread each clip is assembled straight into its batch slot; a thread running ahead
    # writes clips of its own that are copied in.
    slot = None if ahead else (lambda: clips[len(picked)])
    items = iter_clips(video, timeline, [t.id for t in tracks], is_target, slot=slot, frames=(first, b))
    if ahead:
        items = prefetch(items, depth=2 * options.batch_size)
    if progress is not None and first > a:
        progress("network", first - a)  # a stride longer than the look-back skips the range's first frames
    for index, t, frame_clips, frame_black in items:
        if frame_clips is not None:
            if ahead:
                clips[len(picked)] = frame_clips
            black[len(picked)] = frame_black
            picked.append((index, t))
            if len(picked) == options.batch_size:
                yield _batch(picked, clips, black, spec)
                picked.clear()
        if progress is not None and index >= a:
            progress("network", 1)
    if picked:
        yield _batch(picked, clips, black, spec)


def _batch(picked: list[tuple[int, float]], clips: np.ndarray, black: np.ndarray, spec: SpecWindows) -> NetworkBatch:
    b = len(picked)
    times = np.array([t for _, t in picked], dtype=np.float64)
    with stage("mel", b):
        windows, silent = spec.frame_windows(times), spec.frame_silent(times)
    frames = np.array([index for index, _ in picked], dtype=np.int64)
    return NetworkBatch(frames, times, clips[:b], black[:b].copy(), windows, silent)


@dataclass(frozen=True)
class NetworkInput:
    """What the network receives for one target frame and person (``Predictor.network_inputs``)."""

    frame: int
    time: float
    person: str  # the per-frame table's person: "main", or "left"/"right"/"personK" with person="all"
    clip: np.ndarray  # [4, 8, 112, 112] float32, normalized
    window: np.ndarray  # [1, 64, 1001] float32, normalized log-mel


def network_inputs(video: str | os.PathLike, people: PeopleFound, options: AnnotateOptions) -> Iterator[NetworkInput]:
    """Every target frame's inputs, person by person, from the batches :func:`range_logits` runs."""
    batches, _ = network_batches(video, people, options)
    names = [suffix.lstrip("_") or "main" for suffix in person_suffixes(people.tracks, options.person)] or ["main"]
    for batch in batches:
        for j, frame in enumerate(batch.frames.tolist()):
            for k, name in enumerate(names):
                clip, window = batch.clips[j, k].copy(), batch.windows[j].copy()
                yield NetworkInput(frame, float(batch.times[j]), name, clip, window)


def range_logits(
    video: str | os.PathLike,
    people: PeopleFound,
    engine: Engine,
    options: AnnotateOptions,
    frames: tuple[int, int] | None = None,
    progress: Progress | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Pass 2 over the frames ``[a, b)`` (default: all): logits ``[targets, people, 17]`` of the
    target frames in the range (:func:`network_batches` through the engine), and audio warnings."""
    # The host is free while an accelerator computes, so there the frontend runs a batch ahead in a
    # thread. Not on the CPU, where the runtime splits every layer over all cores and a frontend
    # thread beside it stalls them all at each layer's end (2 cores, paper network, OpenVINO fp32, 3
    # interleaved pairs: the visual stream ran 4-7 % slower with the thread, end to end 5-7 % slower).
    ahead = engine.device.type != "cpu"
    batches, warnings = network_batches(video, people, options, frames, progress, ahead)
    logits = [run_network(engine, batch) for batch in batches]
    n_people = max(1, len(people.tracks))
    logits = np.concatenate(logits) if logits else np.zeros((0, n_people, N_OUTPUTS), np.float32)
    timeline = people.timeline
    a, b = frames or (0, timeline.frames)
    targets = target_frames(timeline.frames, options.stride)
    expected = int(((targets >= a) & (targets < b)).sum())
    if len(logits) != expected:
        raise RuntimeError(f"{video}: the second decode yielded {len(logits)} of {expected} target frames")
    return logits, warnings


def people_logits(timeline: FaceTimeline, options: AnnotateOptions, logits: np.ndarray) -> np.ndarray:
    """``[people, N, 17]`` logits for every frame from those of all target frames, in order."""
    targets = target_frames(timeline.frames, options.stride)
    return np.stack([interpolate_logits(timeline.times, targets, logits[:, k]) for k in range(logits.shape[1])])


def predict_people(
    video: str | os.PathLike,
    people: PeopleFound,
    engine: Engine,
    options: AnnotateOptions,
    progress: Progress | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Pass 2 over the whole video: logits ``[people, N, 17]`` for every frame, and audio warnings."""
    logits, warnings = range_logits(video, people, engine, options, progress=progress)
    return people_logits(people.timeline, options, logits), warnings


def annotate_video(
    video: str | os.PathLike,
    engine: Engine,
    face_backend: FaceBackend,
    options: AnnotateOptions = AnnotateOptions(),
    progress: Progress | None = None,
) -> VideoResult:
    """Everything the writers need for one video (raises MediaError for unusable files)."""
    people = find_people(video, face_backend, options, progress)
    started = time.perf_counter()
    logits, audio_warnings = predict_people(video, people, engine, options, progress)
    network_s = time.perf_counter() - started
    return video_result(video, people, logits, audio_warnings, options, provenance(engine, face_backend), network_s)


def provenance(engine: Engine, face_backend: FaceBackend) -> dict:
    """What the summary records of the engine and face backend that made a result: which runtime,
    which weights, which network (the paper's, or a reduced toy network, with its widths), which
    face backend and detector."""
    config = engine.config
    network = "paper" if config is None or config.is_paper else f"reduced (widths {', '.join(map(str, config.widths))})"
    return {
        "engine": engine.name,
        "checkpoint_sha256": engine.checkpoint_sha256,
        "network": network,
        "face_backend": face_backend.name,
        "detector": getattr(face_backend, "detector", None),
    }


def video_result(
    video: str | os.PathLike,
    people: PeopleFound,
    logits: np.ndarray,
    audio_warnings: list[str],
    options: AnnotateOptions,
    made_by: dict,
    network_s: float,
) -> VideoResult:
    """The result from pass 1 and the ``[people, N, 17]`` logits of pass 2."""
    timeline, tracks = people.timeline, people.tracks
    result_people = []
    slots = tracks or [None]
    for k, (track, suffix) in enumerate(zip(slots, person_suffixes(tracks, options.person) or [""])):
        boxes = np.full((timeline.frames, 4), np.nan, dtype=np.float32)
        scores = np.full(timeline.frames, np.nan, dtype=np.float32)
        found = np.zeros(timeline.frames, dtype=bool)
        landmarks = np.full((timeline.frames, 68, 2), np.nan, dtype=np.float32)
        if track is not None:
            for index, face in track.faces.items():
                boxes[index], scores[index], found[index] = face.box, face.score, True
                landmarks[index] = face.landmarks68
        predictions = decode(logits[k], options.au_threshold)
        track_id = -1 if track is None else track.id
        result_people.append(PersonResult(suffix, track_id, found, boxes, scores, predictions, landmarks))
    summary = {
        "frames": timeline.frames,
        "seconds": round(video_duration(timeline.times), 3),
        "people": len(timeline.tracks),
        "faces_found": {p.suffix.lstrip("_") or "main": int(p.face_found.sum()) for p in result_people},
        **made_by,
        "stride": options.stride,
        "au_threshold": options.au_threshold,
        "no_face": options.no_face,
        "tsav_version": __version__,
        "timings_s": {"faces": round(people.seconds, 3), "network": round(network_s, 3)},
        "warnings": timeline.warnings + audio_warnings,
    }
    return VideoResult(pathlib.Path(video).stem, timeline.times, result_people, summary, people.info, options.no_face)
