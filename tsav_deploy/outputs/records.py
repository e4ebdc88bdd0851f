"""An output folder: each video's files written safely, and the records that make reruns resume.

Each video's outputs are written under temporary names and renamed; its record
``<out>/.tsav/<name>.json`` is written last, so a video counts as done only when the record and
every file it lists exist. ``summary.json`` gathers the records of all videos in the folder.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import pathlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import av

from tsav_deploy.atomic import (
    PARTIAL_SUFFIX,
    confined,
    create_new,
    is_stale_partial,
    locked,
    partial_path,
    plain_name,
    try_lock,
    unlock,
    write_text,
)
from tsav_deploy.download import file_sha256
from tsav_deploy.errors import TsavError, shown
from tsav_deploy.failures import machine_limit
from tsav_deploy.outputs.overlay import write_overlay
from tsav_deploy.outputs.plot import write_plot
from tsav_deploy.outputs.report import report_video, write_report
from tsav_deploy.outputs.writers import ABAW_TASKS, write_abaw, write_parquet, write_table
from tsav_deploy.results.table import frame_table
from tsav_deploy.results.video_result import VideoResult
from tsav_deploy.stages import stage

RECORDS = ".tsav"
ERROR_LOG = "tsav-errors.log"
# Files of the folder itself, never a video's.
FOLDER_FILES = ("summary.json", "index.html", ERROR_LOG)
_PERSON_SUFFIX = re.compile(r"_(left|right|person[0-9]+)$")


@dataclass(frozen=True)
class OutputOptions:
    overlay: bool = False
    plot: bool = True
    overwrite: bool = False
    table: str = "csv"  # "csv", "parquet" or "both"
    report: bool = False  # <name>.html, the interactive report
    landmarks: bool = False  # the table also holds the 68 landmarks of each row's face

    def wanted(self, name: str) -> list[str]:
        """Files asked for this time beyond the ABAW files."""
        tables = {"csv": [f"{name}.csv"], "parquet": [f"{name}.parquet"], "both": [f"{name}.csv", f"{name}.parquet"]}[
            self.table
        ]
        return (
            tables
            + [f"{name}.png"] * self.plot
            + [f"{name}.overlay.mp4"] * self.overlay
            + [f"{name}.html"] * self.report
        )


def check_output_folder(out: pathlib.Path) -> None:
    """Fail early, in one line, when results could not be written at all, or where a folder of the
    tool's own in ``out`` (records, ABAW folders) is a link that would send them elsewhere."""
    for folder in (RECORDS, *ABAW_TASKS):
        if (out / folder).is_symlink():
            raise TsavError(
                f"{out / folder}: a symbolic link where tsav-deploy keeps a folder of its own; remove it or choose another --out"
            )
    try:
        (out / RECORDS).mkdir(parents=True, exist_ok=True)
        probe = partial_path(out / RECORDS / ".write-test")  # one per process: runs may share the folder
        os.close(create_new(probe, os.O_WRONLY))
        probe.unlink()
    except OSError as exc:
        raise TsavError(f"{out}: cannot write results there ({exc.strerror or exc}); choose another --out") from None


# The longest name a video's files can carry: a file name has 255 bytes, and the longest derived
# one (a person's ABAW file or the overlay, under its temporary name) adds 40 to the video's name.
MAX_NAME_BYTES = 215


def output_name(name: str, what: str = "the name") -> str:
    """``name`` when it can name a video's files in an output folder (one plain file name, so that
    nothing is written beside or outside the folder, short enough for every file derived from it),
    else a one-line error."""
    if plain_name(name) is None:
        raise TsavError(
            f"{what} '{shown(name)}' is not a plain file name (no folders, not '.' or '..'); choose another"
        )
    size = len(os.fsencode(name))
    if size > MAX_NAME_BYTES:
        raise TsavError(
            f"{what} '{shown(name)}' has {size} bytes; the files named after it need names of at most "
            f"{MAX_NAME_BYTES} bytes: rename it"
        )
    return name


def record_path(out: pathlib.Path, name: str) -> pathlib.Path:
    return out / RECORDS / f"{_record_stem(name)}.json"


def _record_stem(name: str) -> str:
    """The name of a video's record and lock: its own, or for a name too long to carry them (which
    is refused, and its failure recorded) one made from its hash."""
    encoded = os.fsencode(name)
    return name if len(encoded) <= MAX_NAME_BYTES else f"long-name-{hashlib.sha256(encoded).hexdigest()[:16]}"


def _load(path: pathlib.Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


# A record is data anyone with write access to the folder can edit: the form of each field the tool
# reads or shows (None allowed where a run may not know it), and every file it lists, are checked.
_NUMBER = (int, float)
_FIELDS: dict[str, tuple[type, ...]] = {
    "video": (str,),
    "error": (str,),
    "input_sha256": (str, type(None)),
    "frames": (int,),
    "seconds": (*_NUMBER, type(None)),
    "stride": (int, type(None)),
    "au_threshold": (*_NUMBER, type(None)),
    "no_face": (str, type(None)),
    "checkpoint_sha256": (str, type(None)),
    "engine": (str, type(None)),
    "face_backend": (str, type(None)),
    "network": (str, type(None)),
    "detector": (str, type(None)),
    "tsav_version": (str, type(None)),
    "outputs": (list,),
    "warnings": (list,),
}


def record_problem(out: pathlib.Path, record: dict) -> str | None:
    """Why ``record`` cannot be trusted (a field of the wrong form, a listed file that is not a
    file of ``out``), or None."""
    for key, kinds in _FIELDS.items():
        value = record.get(key)
        if key in record and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
            return f"its {key!r} is {type(value).__name__}, not {' or '.join(k.__name__ for k in kinds)}"
    outside = next((f for f in record.get("outputs", []) if confined(out, f) is None), None)
    if outside is not None:
        return f"it lists {outside!r}, which is not a file of {out}"
    if "outputs" not in record and "error" not in record:
        return "it has neither 'outputs' nor 'error'"
    return None


def _trusted(out: pathlib.Path, name: str) -> dict | None:
    record = _load(record_path(out, name))
    return record if record is not None and record_problem(out, record) is None else None


def read_record(out: pathlib.Path, name: str) -> dict | None:
    """A finished video's record, or None when there is none, it cannot be read or trusted, or it
    records a failure (then the video is redone)."""
    record = _trusted(out, name)
    return record if record is not None and "outputs" in record else None


def write_failure(out: pathlib.Path, video: pathlib.Path, line: str) -> None:
    """Record why a video failed, so that ``summary.json`` lists it; the next run redoes it."""
    write_text(record_path(out, video.stem), json.dumps({"video": str(video), "error": line}, indent=1))


def _lock_path(out: pathlib.Path, name: str) -> pathlib.Path:
    return out / RECORDS / f"{_record_stem(name)}.lock"


def claim(out: pathlib.Path, name: str, *, wait: bool) -> int | None:
    """Hold the lock on a video's outputs in ``out``, so that two runs into one folder never write
    the same video at once: a descriptor for :func:`release`, or None where another run holds it
    and ``wait`` is false."""
    return try_lock(_lock_path(out, name), wait=wait)


def release(out: pathlib.Path, name: str, fd: int) -> None:
    unlock(_lock_path(out, name), fd)


def holding(out: pathlib.Path, name: str) -> contextlib.AbstractContextManager[None]:
    """:func:`claim`, waiting for it, around a block."""
    return locked(_lock_path(out, name))


def is_complete(out: pathlib.Path, name: str, outputs: OutputOptions) -> bool:
    """Done before, with every file its record lists and every file asked for this time."""
    record = read_record(out, name)
    if record is None:
        return False
    return all((out / f).exists() for f in [*record["outputs"], *outputs.wanted(name)])


# A video's files are <name>.<ext> and, for its people, <name>_left, _right, _person<k>: patterns that
# never reach another video's files (clip1 is not clip10).
_OWN_FILES = ("{}.*", "{}_left.*", "{}_right.*", "{}_person[0-9]*.*")


def remove_partials(out: pathlib.Path, name: str) -> None:
    """Temporary files a hard-killed run (SIGKILL, power loss) left for this video, in the folders
    the tool writes (``out``, its ABAW folders, its records) and nowhere else; one whose writer still
    runs (its process id is in the name) is left alone."""
    stem = glob.escape(name)
    for folder in (out, *(out / task for task in ABAW_TASKS), out / RECORDS):
        if folder.is_symlink() or not folder.is_dir():
            continue
        for pattern in _OWN_FILES:
            for path in folder.glob(f"{pattern.format(stem)}{PARTIAL_SUFFIX}-*"):
                if is_stale_partial(path):
                    path.unlink(missing_ok=True)


def planned_files(result: VideoResult, options: OutputOptions) -> dict[str, list[str]]:
    """What saving ``result`` writes, relative to the output folder (the record aside), by the
    name each file carries: the video's own and each person's (``<name>_left``…)."""
    files = {result.name + person.suffix: [] for person in result.persons}
    for person in files:
        files[person] += [f"{task}/{person}.txt" for task in ABAW_TASKS]
    files.setdefault(result.name, []).extend(options.wanted(result.name))
    return files


def check_unclaimed(out: pathlib.Path, name: str, files: dict[str, list[str]]) -> None:
    """One line, before anything is written, where a file the video ``name`` is to write is a file
    of the folder itself or is vouched for by another video's record: a second person's
    ``two_left.txt`` and a video named ``two_left``, a video named ``index`` and the folder's index.
    A file named ``<stem>`` can belong to the video ``<stem>`` or, through a person's suffix
    (``_left``, ``_right``, ``_personK``), to the video without it: those records are read."""
    planned = [file for group in files.values() for file in group]
    shared = next((file for file in planned if file in FOLDER_FILES), None)
    if shared is not None:
        raise TsavError(f"{name}: its {shared} would be the output folder's own {shared}; rename the video")
    for owner in {stem for person in files for stem in (person, _PERSON_SUFFIX.sub("", person))} - {name}:
        record = read_record(out, owner)
        clash = next((file for file in planned if record is not None and file in record["outputs"]), None)
        if clash is not None:
            raise TsavError(
                f"{name}: its {clash} would replace the file of {record.get('video', owner)} (annotated into "
                f"{out}); output names must differ: annotate one of the two into another --out"
            )


def video_summary(video: pathlib.Path, result: VideoResult | None, info: dict, error: str | None = None) -> dict:
    """What ``summary.json`` records of a video: its path, what the run says of it (``result.info``),
    what the caller adds (``info``: output failures, timings), and why it failed, if it did."""
    return {
        "video": str(video),
        **(result.info if result else {}),
        **info,
        **({"error": error} if error else {}),
    }


def save_outputs(
    out: pathlib.Path, result: VideoResult, video: pathlib.Path, info: dict, options: OutputOptions
) -> list[pathlib.Path]:
    """Write the files of ``result`` (annotated from ``video``), then its record (which marks it
    complete); returns the files. ``info`` (an annotation's) goes into the record, and receives
    ``output_failures`` where an optional output could not be written."""
    with stage("writers"):
        return _save(out, result, video, info, options)


def _save(
    out: pathlib.Path, result: VideoResult, video: pathlib.Path, info: dict, options: OutputOptions
) -> list[pathlib.Path]:
    output_name(result.name)
    check_unclaimed(out, result.name, planned_files(result, options))
    out.mkdir(parents=True, exist_ok=True)
    # Until the new record is written the video is incomplete: a redo that fails halfway must not
    # leave the old record vouching for a mix of two runs' files.
    record_path(out, result.name).unlink(missing_ok=True)
    remove_partials(out, result.name)
    written: list[pathlib.Path] = []
    try:
        _write_files(out, result, video, info, options, written)
    except BaseException:
        # A video either has all its files or none: what a failed save wrote (a full disk at the
        # overlay, a damaged input found late) would read as results without a record.
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written


def _write_files(
    out: pathlib.Path,
    result: VideoResult,
    video: pathlib.Path,
    info: dict,
    options: OutputOptions,
    written: list[pathlib.Path],
) -> None:
    """Each file, then the record; ``written`` grows as they are written. The predictions (ABAW
    files, tables) are the video; an optional output (plot, overlay, report) that fails costs only
    itself, as one line in the record's and ``info``'s ``output_failures``."""
    written += write_abaw(out, result)
    if options.table in ("csv", "both"):
        written.append(write_table(out / f"{result.name}.csv", result, options.landmarks))
    if options.table in ("parquet", "both"):
        written.append(write_parquet(out / f"{result.name}.parquet", result, options.landmarks))
    failures: list[str] = []
    plot, overlay, page = (out / f"{result.name}{ext}" for ext in (".png", ".overlay.mp4", ".html"))
    if options.plot:
        written += _optional(plot, "plot", failures, lambda: [write_plot(plot, result)])
    if options.overlay:
        written += _optional(overlay, "overlay", failures, lambda: [write_overlay(overlay, video, result)])
    record = video_summary(video, result, info) | {"input_sha256": input_sha256(video)}
    if options.report:
        with_overlay = overlay in written
        written += _optional(page, "report", failures, lambda: _write_report(out, result, video, with_overlay, record))
    if failures:
        record["output_failures"] = info["output_failures"] = failures
    record["outputs"] = [str(p.relative_to(out)) for p in written]
    write_text(record_path(out, result.name), json.dumps(record, indent=1))


def _write_report(
    out: pathlib.Path, result: VideoResult, video: pathlib.Path, with_overlay: bool, record: dict
) -> list[pathlib.Path]:
    """The report page, playing the overlay written this time or else the input."""
    start_s = result.video_info.start_time_s if result.video_info else None
    page_video = report_video(out, result.name, with_overlay, video, start_s)
    made = [page_video.made] if page_video.made else []
    try:
        return [*made, write_report(out / f"{result.name}.html", frame_table(result), record, page_video)]
    except BaseException:
        for path in made:
            path.unlink(missing_ok=True)
        raise


def _optional(
    target: pathlib.Path, kind: str, failures: list[str], write: Callable[[], list[pathlib.Path]]
) -> list[pathlib.Path]:
    """The files ``write`` made, or none and one line in ``failures`` where it failed for any reason
    but the machine's own limits (a full disk stays the video's failure)."""
    try:
        return write()
    except Exception as exc:
        if machine_limit(exc):
            raise
        reason = " ".join(str(getattr(exc, "strerror", None) or exc).split())[:200]
        if not isinstance(exc, (TsavError, OSError, ValueError, av.FFmpegError)):  # not the data's doing
            reason = f"{type(exc).__name__}: {reason}; a bug in tsav-deploy, please report it"
        failures.append(f"{target}: the {kind} could not be written ({reason}); the predictions are kept")
        return []


def input_sha256(video: pathlib.Path) -> str | None:
    """The SHA-256 of an input file (None for a stream): what lets a later ``tsav report`` tell the
    file a record names from any other file put under that name."""
    return file_sha256(video) if video.is_file() else None


SUMMARY_LOCK = ".summary"  # not a video name: record names are video stems, lock names too


def write_summary(out: pathlib.Path) -> pathlib.Path:
    """``summary.json``: the records of every video annotated into ``out`` (this run and earlier),
    failures with their reason; a record that cannot be read is listed as such, not left out.
    Written under a lock, so that of two runs into one folder the later one lists both's videos."""
    with holding(out, SUMMARY_LOCK):
        records = {}
        for path in sorted((out / RECORDS).glob("*.json")):
            record = _load(path)
            problem = "not a JSON object" if record is None else record_problem(out, record)
            records[path.stem] = (
                record
                if problem is None
                else {"error": f"{path}: unreadable record ({problem}); the video is redone on the next run"}
            )
        return write_text(out / "summary.json", json.dumps({"videos": records}, indent=1))
