"""Annotating many videos: inputs to files, outputs written safely, reruns that finish the rest.

Each video's outputs are written under temporary names and renamed; its record
``<out>/.tsav/<name>.json`` is written last, so a video counts as done only when the record and
every file it lists exist. A bad file costs one line and the run goes on; ``summary.json``
gathers the records of all videos in the output folder.
"""
from __future__ import annotations

import glob
import json
import os
import pathlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .annotate import AnnotateOptions, Progress, annotate_video
from .atomic import PARTIAL_SUFFIX, write_text
from .errors import MediaError, TsavError
from .faces import FaceBackend
from .overlay import write_overlay
from .plot import write_plot
from .runtime import Engine
from .writers import write_abaw, write_table

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts", ".mts"}
RECORDS = ".tsav"


@dataclass
class OutputOptions:
    overlay: bool = False
    plot: bool = True
    overwrite: bool = False


@dataclass
class Outcome:
    video: pathlib.Path
    status: str  # "done", "skipped" (already complete), "failed"
    message: str = ""
    record: dict = field(default_factory=dict)


def expand_inputs(inputs: Iterable[str]) -> tuple[list[pathlib.Path], list[Outcome]]:
    """Files, directories (their videos, recursively) and globs, in order and without repeats;
    inputs that name nothing become failed outcomes (one line each)."""
    videos: list[pathlib.Path] = []
    problems: list[Outcome] = []
    for text in inputs:
        path = pathlib.Path(text).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
            if not found:
                problems.append(Outcome(path, "failed", f"{path}: no video files in this folder"))
            videos += found
        elif path.exists():
            videos.append(path)
        elif glob.has_magic(text):
            found = sorted(pathlib.Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True) if pathlib.Path(p).is_file())
            if not found:
                problems.append(Outcome(path, "failed", f"{text}: the pattern matches no file"))
            videos += found
        else:
            problems.append(Outcome(path, "failed", f"{path}: no such file or folder"))
    unique = list(dict.fromkeys(p.resolve() for p in videos))
    return unique, problems


def check_output_folder(out: pathlib.Path) -> None:
    """Fail early, in one line, when results could not be written at all."""
    try:
        (out / RECORDS).mkdir(parents=True, exist_ok=True)
        probe = out / RECORDS / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise TsavError(f"{out}: cannot write results there ({exc.strerror or exc}); choose another --out") from None


def record_path(out: pathlib.Path, name: str) -> pathlib.Path:
    return out / RECORDS / f"{name}.json"


def is_complete(out: pathlib.Path, name: str, outputs: OutputOptions) -> bool:
    """Done before, with every file its record lists and every file asked for this time."""
    record = record_path(out, name)
    if not record.exists():
        return False
    try:
        files = json.loads(record.read_text())["outputs"]
    except (ValueError, KeyError):
        return False
    wanted = [f"{name}.overlay.mp4"] * outputs.overlay + [f"{name}.png"] * outputs.plot
    return all((out / f).exists() for f in [*files, *wanted])


def remove_partials(out: pathlib.Path, name: str) -> None:
    """Temporary files a hard-killed run (SIGKILL, power loss) left for this video."""
    for path in out.rglob(f"{name}*{PARTIAL_SUFFIX}*"):
        if path.is_file():
            path.unlink()


def write_outputs(out: pathlib.Path, video: pathlib.Path, result, options: OutputOptions) -> list[pathlib.Path]:
    written = write_abaw(out, result)
    written.append(write_table(out / f"{result.name}.csv", result))
    if options.plot:
        written.append(write_plot(out / f"{result.name}.png", result))
    if options.overlay:
        written.append(write_overlay(out / f"{result.name}.overlay.mp4", video, result))
    return written


def annotate_one(
    video: pathlib.Path,
    out: pathlib.Path,
    engine: Engine,
    backend: FaceBackend,
    options: AnnotateOptions,
    outputs: OutputOptions,
    progress: Progress | None = None,
) -> Outcome:
    name = video.stem
    if not outputs.overwrite and is_complete(out, name, outputs):
        return Outcome(video, "skipped", "outputs complete (use --overwrite to redo)", json.loads(record_path(out, name).read_text()))
    remove_partials(out, name)
    started = time.perf_counter()
    try:
        if video.stat().st_size == 0:
            raise MediaError(f"{video}: the file is empty (0 bytes)")
        result = annotate_video(video, engine, backend, options, progress)
        written = write_outputs(out, video, result, outputs)
    except TsavError as exc:
        return Outcome(video, "failed", str(exc))
    record = {
        "video": str(video),
        **result.info,
        "wall_s": round(time.perf_counter() - started, 3),
        "outputs": [str(p.relative_to(out)) for p in written],
    }
    write_text(record_path(out, name), json.dumps(record, indent=1))
    return Outcome(video, "done", "", record)


def write_summary(out: pathlib.Path) -> pathlib.Path:
    """``summary.json``: the records of every video annotated into ``out`` (this run and earlier)."""
    records = {}
    for path in sorted((out / RECORDS).glob("*.json")):
        try:
            records[path.stem] = json.loads(path.read_text())
        except ValueError:
            continue
    return write_text(out / "summary.json", json.dumps({"videos": records}, indent=1))


def annotate_many(
    inputs: Iterable[str],
    out: pathlib.Path,
    engine: Engine,
    backend: FaceBackend,
    options: AnnotateOptions,
    outputs: OutputOptions,
    *,
    on_start: Callable[[pathlib.Path], Progress | None] | None = None,
    on_done: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Annotate every input video into ``out``; never stops at a bad file."""
    videos, outcomes = expand_inputs(inputs)
    for outcome in outcomes:
        if on_done:
            on_done(outcome)
    check_output_folder(out)
    names: dict[str, pathlib.Path] = {}
    for video in videos:
        if video.stem in names:
            outcome = Outcome(video, "failed", f"{video}: same name as {names[video.stem]}; ABAW files are named by video, annotate it into another --out")
        else:
            names[video.stem] = video
            progress = on_start(video) if on_start else None
            outcome = annotate_one(video, out, engine, backend, options, outputs, progress)
        outcomes.append(outcome)
        if on_done:
            on_done(outcome)
    write_summary(out)
    return outcomes
