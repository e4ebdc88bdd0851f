"""What a live stream's frames become: one row (dict) per frame and person, with the per-frame
table's columns, and at the stream's end a :class:`~tsav_deploy.results.video_result.VideoResult` of
everything that arrived (ABAW files, table, plot)."""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from tsav_deploy import __version__
from tsav_deploy.faces import Face
from tsav_deploy.pipeline.frontend import video_duration
from tsav_deploy.pipeline.stream import LiveEntry, LiveFrame
from tsav_deploy.results.predictions import Predictions, decode
from tsav_deploy.results.table import json_rows
from tsav_deploy.results.video_result import PersonResult, VideoResult

LIVE_COLUMNS = ("latency_s", "stride")  # after the table's columns


def live_rows(frame: LiveFrame, au_threshold: float, no_face: str = "keep") -> list[dict]:
    """The frame's rows: the per-frame table's rows (``results/table.py``, one per entry, None
    where the table has NaN: no face, and its predictions under ``no_face`` "nan"), numbered by the
    frame's place in the stream, then ``latency_s`` and ``stride``."""
    live = {"latency_s": round(frame.latency_s, 3), "stride": frame.stride}
    rows = json_rows(_entries_result(frame, au_threshold, no_face))
    return [row | {"frame": frame.index} | live for row in rows]


def _entries_result(frame: LiveFrame, au_threshold: float, no_face: str) -> VideoResult:
    """The frame as a one-frame result with one person per entry, in entry order, the face's box
    and score as they came (no copy into the recording's float32 arrays)."""
    predictions = decode(np.stack([entry.logits for entry in frame.entries]), au_threshold)
    people = []
    for k, entry in enumerate(frame.entries):
        face = entry.face
        found = np.array([face is not None])
        box = np.full((1, 4), np.nan) if face is None else np.asarray(face.box)[None]
        score = np.array([np.nan if face is None else face.score], dtype=np.float64)
        one = Predictions(*(getattr(predictions, f.name)[k : k + 1] for f in fields(Predictions)))
        suffix = "" if entry.person == "main" else f"_{entry.person}"
        people.append(PersonResult(suffix, entry.track_id, found, box, score, one))
    return VideoResult("", np.array([frame.time], dtype=np.float64), people, no_face=no_face)


class LiveRecording:
    """Keeps what every frame of a stream needs for the files ``tsav annotate`` writes (logits,
    boxes; no pictures), to make one :class:`~tsav_deploy.results.video_result.VideoResult` of the stream when it ends."""

    def __init__(self, name: str, au_threshold: float, no_face: str = "keep"):
        self.name, self.au_threshold, self.no_face = name, au_threshold, no_face
        self.frames: list[LiveFrame] = []

    def add(self, frame: LiveFrame) -> None:
        """Keep the frame's logits, boxes and scores (not its picture, landmarks or embeddings)."""
        entries = [
            LiveEntry(e.person, e.track_id, None if e.face is None else _box_only(e.face), e.logits)
            for e in frame.entries
        ]
        self.frames.append(LiveFrame(frame.index, frame.time, frame.latency_s, frame.stride, entries, frame.absent))

    def result(self, info: dict | None = None, dropped: list[tuple[int, float]] = ()) -> VideoResult:
        """The stream as one video, one row per frame of the source: one person (main), or with
        ``--person all`` everyone seen, ``_person<id>``, with the absent prediction on frames
        without their row. ``dropped`` (``(index, time)`` of the frames the source dropped while
        falling behind): each repeats the prediction of the frame before it, without a face.
        ``info`` goes into the summary before what the frames say (frames, seconds, faces found)."""
        frames = _with_dropped(self.frames, dropped)
        n = len(frames)
        keys: list[str] = []
        for frame in frames:
            keys += [e.person for e in frame.entries if e.person not in keys]
        if len(keys) > 1:
            keys = [k for k in keys if k != "main"]  # the face-less row before anyone was seen
        people = []
        for key in keys:
            found = np.zeros(n, dtype=bool)
            boxes = np.full((n, 4), np.nan, dtype=np.float32)
            scores = np.full(n, np.nan, dtype=np.float32)
            ids = np.full(n, -1, dtype=np.int64)
            logits = np.empty((n, 17), dtype=np.float32)
            for i, frame in enumerate(frames):
                entry = next((e for e in frame.entries if e.person == key), None)
                logits[i] = entry.logits if entry is not None else frame.absent
                if entry is not None and entry.face is not None:
                    found[i], boxes[i], scores[i], ids[i] = True, entry.face.box, entry.face.score, entry.track_id
            suffix = "" if key == "main" else f"_{key}"
            people.append(PersonResult(suffix, ids, found, boxes, scores, decode(logits, self.au_threshold)))
        times = np.array([f.time for f in frames], dtype=np.float64)
        summary = {
            **(info or {}),
            "frames": n,
            "seconds": round(video_duration(times), 3),
            "faces_found": {p.suffix.lstrip("_") or "main": int(p.face_found.sum()) for p in people},
            "no_face": self.no_face,
            "tsav_version": __version__,
        }
        return VideoResult(self.name, times, people, summary, no_face=self.no_face)


def _with_dropped(frames: list[LiveFrame], dropped: list[tuple[int, float]]) -> list[LiveFrame]:
    """``frames`` with the dropped ones put back in order, each a face-less copy of its predecessor
    (of its successor before the first frame that has a row)."""
    if not dropped or not frames:
        return frames
    merged: list[LiveFrame] = []
    pending = sorted(dropped)
    k = 0
    for frame in frames:
        while k < len(pending) and pending[k][0] < frame.index:
            merged.append(_stand_in(merged[-1] if merged else frame, *pending[k]))
            k += 1
        merged.append(frame)
    merged += [_stand_in(merged[-1], index, time) for index, time in pending[k:]]
    return merged


_NO_LANDMARKS = np.zeros((0, 2), dtype=np.float32)


def _box_only(face: Face) -> Face:
    return Face(face.box, face.score, _NO_LANDMARKS)


def _stand_in(source: LiveFrame, index: int, time: float) -> LiveFrame:
    entries = [LiveEntry(e.person, -1, None, e.logits) for e in source.entries]
    return LiveFrame(index, time, 0.0, source.stride, entries, source.absent)


def frame_result(frame: LiveFrame, au_threshold: float, no_face: str = "keep") -> VideoResult:
    """One frame as a one-frame :class:`VideoResult` (what the overlay draws)."""
    recording = LiveRecording("", au_threshold, no_face)
    recording.add(frame)
    return recording.result()
