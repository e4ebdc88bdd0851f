"""The one frontend that annotation and training share: video → people → aligned crops, and
audio → the wave the aural windows are cut from. A preprocessing difference between training and
inference is the costliest bug a deployment toolkit can have, so both call these functions and
nothing else.

Two passes over the video keep memory flat: pass 1 (:func:`scan_faces`) finds and follows faces and
keeps only boxes, landmarks and a few identity vectors per frame; once the whole video is seen, the
people are known (who is the main person needs the whole video); pass 2 (:func:`iter_crops`) decodes
again and aligns only the chosen people's faces, each frame once.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from tsav_deploy.contract import CLIP_SHAPE
from tsav_deploy.faces import EncodedCrop, Face, FaceBackend, Track, detect_video, encoded_face, main_track, track_faces
from tsav_deploy.inputs.clips import ClipAssembler
from tsav_deploy.media.audio import read_audio
from tsav_deploy.media.frames import iter_frames
from tsav_deploy.media.probe import VideoFrame, VideoInfo
from tsav_deploy.stages import stage, timed_iter

# (stage, frames just done): "faces" in pass 1, "network" in pass 2; first ("frames", the count the
# container declares) so that a progress bar can size itself.
Progress = Callable[[str, int], None]


@dataclass
class FaceTimeline:
    """Pass 1's result: every decoded frame's time and the people found across the video."""

    times: np.ndarray  # [N] float64 seconds, frame 0 at 0.0
    tracks: list[Track]
    frame_shape: tuple[int, int]  # (height, width) of the decoded frames
    warnings: list[str] = field(default_factory=list)
    info: VideoInfo | None = None  # the file's probe, for the stages after pass 1

    @property
    def frames(self) -> int:
        return len(self.times)

    @property
    def main_track_id(self) -> int | None:
        main = main_track(self.tracks)
        return None if main is None else main.id

    def track(self, track_id: int) -> Track:
        return next(t for t in self.tracks if t.id == track_id)

    def face_found(self, track_id: int) -> np.ndarray:
        found = np.zeros(self.frames, dtype=bool)
        found[list(self.track(track_id).faces)] = True
        return found


def scan_faces(
    video: str | os.PathLike, backend: FaceBackend, *, progress: Progress | None = None, info: VideoInfo | None = None
) -> FaceTimeline:
    """Pass 1: decode, detect/follow faces, then group them into people (tracks). ``info`` (the
    file's probe) travels with the timeline to the later stages."""
    times: list[float] = []
    per_frame: list[list[Face]] = []
    shape = (0, 0)

    def frames(stream) -> Iterator[np.ndarray]:
        nonlocal shape
        for frame in timed_iter("decode", stream):
            times.append(frame.time)
            shape = frame.rgb.shape[:2]
            yield frame.rgb

    with stage("pass 1"):
        with iter_frames(video) as stream:
            for faces in detect_video(backend, frames(stream)):
                per_frame.append(faces)
                if progress is not None:
                    progress("faces", 1)
            warnings = list(stream.warnings)
        with stage("tracking"):
            tracks = track_faces(per_frame, backend.identity_threshold)
    timeline = FaceTimeline(np.asarray(times, dtype=np.float64), tracks, shape, warnings, info)
    release_free_memory()
    return timeline


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows): nothing to do
        return None


def release_free_memory() -> None:
    """Hand memory that is free but still held by glibc's malloc back to the system.

    Pass 1's detection thread allocates its scratch images in a malloc arena of its own, which glibc
    does not shrink by itself, so pass 2 would allocate its buffers on top of it. Measured on a
    10-minute video: the process held 464 MB after pass 1, 314 MB after this call.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def face_crop(image_rgb: np.ndarray, face: Face) -> np.ndarray:
    """One clip frame: the aligned RGB crop and its landmark mask after the authors' JPEG round
    trip, uint8 [112, 112, 4] (:mod:`tsav_deploy.faces.crop`)."""
    return encoded_face(image_rgb, face.landmarks68).decode()


def iter_crops(
    video: str | os.PathLike,
    timeline: FaceTimeline,
    track_ids: Sequence[int],
    frames: tuple[int, int] | None = None,
) -> Iterator[tuple[VideoFrame, list[EncodedCrop | None]]]:
    """Pass 2: every decoded frame (those in ``frames`` ``[a, b)`` where given) with the encoded
    clip frame of each requested person (None where absent): the bytes the training cache keeps,
    which decode to what the network receives."""
    tracks = [timeline.track(t) for t in track_ids]
    first, stop = frames or (0, None)
    with iter_frames(video, first=first, times=timeline.times) as stream:
        for frame in timed_iter("pass 2 decode", stream):
            if stop is not None and frame.index >= stop:
                return
            crops = []
            for track in tracks:
                face = track.faces.get(frame.index)
                with stage("alignment+mask"):
                    crops.append(None if face is None else encoded_face(frame.rgb, face.landmarks68))
            yield frame, crops


def iter_clips(
    video: str | os.PathLike,
    timeline: FaceTimeline,
    track_ids: Sequence[int],
    is_target: np.ndarray,
    slot: Callable[[], np.ndarray] | None = None,
    frames: tuple[int, int] | None = None,
) -> Iterator[tuple[int, float, np.ndarray | None, np.ndarray]]:
    """Pass 2 for the network: ``(index, time, clips, black)`` for every decoded frame, where
    ``clips`` is ``[people, 4, 8, 112, 112]`` float32 on frames marked in ``is_target`` (None on the
    others) and ``black`` ``[people]`` bool says which of them are the black clip.

    Every frame goes through each person's :class:`ClipAssembler` (a clip looks back 42 frames); with no
    person, one face-less stream of black clips, so the audio still gets a prediction per frame.
    ``slot``: where each target frame's clips are assembled (a batch slot, read before the next
    frame is asked for); without it each gets an array of its own. ``frames`` ``[a, b)``: only
    those frames; the clips of targets from :func:`~tsav_deploy.inputs.clips.first_clip_frame` of a target
    on are those of a whole decode.
    """
    n_people = max(1, len(track_ids))
    assemblers = [ClipAssembler() for _ in range(n_people)]
    for frame, crops in iter_crops(video, timeline, track_ids, frames):
        if frame.index >= len(is_target):  # a second decode never yields more, but guard the arrays
            return
        crops = crops or [None]
        clips = None
        if is_target[frame.index]:
            clips = slot() if slot is not None else np.empty((n_people,) + CLIP_SHAPE, dtype=np.float32)
        with stage("clips"):
            for k, crop in enumerate(crops):
                pixels = None if crop is None else crop.decode()
                assemblers[k].push(frame.index, pixels, out=None if clips is None else clips[k])
        yield frame.index, frame.time, clips, np.array([a.black for a in assemblers])


def audio_track(video: str | os.PathLike, info: VideoInfo | None = None) -> tuple[np.ndarray, list[str]]:
    """The whole audio track as the authors' WAV holds it: int16 mono 44.1 kHz, sample 0 at the
    first video frame, running to the audio's own end (not the video's); with warnings about it. A
    file without audio gives silence. The aural windows are cut from it (``SpecWindows``)."""
    with stage("audio"):
        return read_audio(video, pcm16=True, info=info)


def video_duration(times: np.ndarray) -> float:
    """Seconds covered by frames at ``times``: the last frame lasts one median frame interval."""
    if len(times) == 0:
        return 0.0
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1 / 30
    return float(times[-1] + step)
