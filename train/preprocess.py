"""``tsav preprocess``: run the shared frontend over every video once and fill the training cache.

Per video (the annotated main person): pass 1 finds and tracks the faces, pass 2 yields the aligned
RGB + mask crops exactly as ``tsav annotate`` builds them, and the whole audio track is kept as the
16-bit wave the aural windows are cut from (:mod:`tsav_deploy.pipeline.frontend`); :mod:`.cache` stores them. Videos run in parallel in a process pool; a
video whose ``entry.json`` exists is finished and skipped, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

from tsav_deploy.errors import TsavError
from tsav_deploy.train.cache import VideoCacheWriter, check_compatible, read_entry, video_folder, write_index
from tsav_deploy.train.labels import find_videos

_backend = None  # the face backend of this worker process, loaded once for all its videos


def _init_worker(faces: str, detector: str | None, threads: int | None) -> None:
    global _backend
    if threads is not None:  # one video per core: keep libraries from oversubscribing the machine
        import cv2
        import torch

        cv2.setNumThreads(threads)
        torch.set_num_threads(threads)
    from tsav_deploy.faces import get_backend

    _backend = get_backend(faces, detector=detector)


def preprocess_video(video: pathlib.Path, cache: pathlib.Path) -> dict:
    """Cache one video (main person) in this process; returns its entry. Needs :func:`_init_worker`."""
    from tsav_deploy.pipeline import frontend

    timeline = frontend.scan_faces(video, _backend)
    writer = VideoCacheWriter(video_folder(cache, video.stem))
    track = timeline.main_track_id
    if track is None:  # nobody found: the clips are black, the sound still teaches the aural stream
        for time in timeline.times:
            writer.add(time, None)
    else:
        for frame, (crop,) in frontend.iter_crops(video, timeline, [track]):
            writer.add(frame.time, crop)
    if len(writer.times) != len(timeline.times):
        raise TsavError(
            f"{video}: pass 2 decoded {len(writer.times)} frames, pass 1 {len(timeline.times)}; the file changed?"
        )
    wave, warnings = frontend.audio_track(video)
    entry = {"source": str(video), "main_track": track, "warnings": [*timeline.warnings, *warnings]}
    return writer.finish(wave, entry)


def _run_one(video: pathlib.Path, cache: pathlib.Path) -> tuple[str, dict | None, str | None]:
    """Worker entry: a user error (bad file) is reported for that video, the others go on."""
    try:
        return video.stem, preprocess_video(video, cache), None
    except TsavError as exc:
        return video.stem, None, str(exc)


@dataclass
class PreprocessReport:
    cache: pathlib.Path
    processed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # finished by an earlier run
    failed: dict[str, str] = field(default_factory=dict)  # stem -> one-line reason
    entries: dict[str, dict] = field(default_factory=dict)  # every finished video

    @property
    def frames(self) -> int:
        return sum(entry["frames"] for entry in self.entries.values())

    @property
    def bytes(self) -> int:
        return sum(entry["bytes"] for entry in self.entries.values())

    @property
    def bytes_per_frame(self) -> float:
        return self.bytes / self.frames if self.frames else 0.0

    @property
    def warnings(self) -> list[str]:
        return [w for entry in self.entries.values() for w in entry.get("warnings", [])]


def preprocess(
    videos_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    faces: str = "auto",
    detector: str | None = None,
    workers: int = 1,
    on_video: Callable[[str, str, int], None] | None = None,
) -> PreprocessReport:
    """Cache every video under ``videos_dir`` into ``out`` (see the module docstring); ``faces`` and
    ``detector`` choose the face stage as for annotation.

    ``on_video(stem, status, total)`` is called as each video ends (status "done", "skipped" or
    "failed"; ``total`` videos in all), for progress display. The index is written at the end,
    listing every finished video.
    """
    from tsav_deploy.faces import resolve_backend_name

    cache = pathlib.Path(out)
    faces = resolve_backend_name(faces)
    check_compatible(cache, faces)
    videos = find_videos(videos_dir)
    if not videos:
        raise TsavError(f"{videos_dir}: no video files found")
    report = PreprocessReport(cache=cache)
    todo = []
    for stem, path in videos.items():
        entry = read_entry(cache, stem)
        if entry is None:
            todo.append(path)
        else:
            report.skipped.append(stem)
            report.entries[stem] = entry
            if on_video:
                on_video(stem, "skipped", len(videos))

    def record(stem: str, entry: dict | None, error: str | None) -> None:
        if entry is None:
            report.failed[stem] = error or "failed"
        else:
            report.processed.append(stem)
            report.entries[stem] = entry
        if on_video:
            on_video(stem, "failed" if entry is None else "done", len(videos))

    _run_all(todo, cache, faces, detector, workers, record)
    write_index(cache, report.entries, faces)
    return report


def _run_all(
    todo: list[pathlib.Path],
    cache: pathlib.Path,
    faces: str,
    detector: str | None,
    workers: int,
    record: Callable[[str, dict | None, str | None], None],
) -> None:
    """Cache each video of ``todo``, in this process or in ``workers`` processes, handing each
    outcome to ``record`` as it ends."""
    if workers <= 1 or len(todo) <= 1:
        _init_worker(faces, detector, None)
        for path in todo:
            record(*_run_one(path, cache))
        return
    import multiprocessing

    # spawn, not fork: the parent may hold torch/OpenMP threads, which do not survive a fork.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        min(workers, len(todo)), mp_context=context, initializer=_init_worker, initargs=(faces, detector, 1)
    ) as pool:
        futures = [pool.submit(_run_one, path, cache) for path in todo]
        for future in as_completed(futures):
            record(*future.result())
