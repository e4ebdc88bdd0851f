"""HTML reports of a finished output folder (``tsav report``), made from its records and per-frame
tables, and the folder's ``index.html``."""

from __future__ import annotations

import json
import pathlib

from tsav_deploy.api.annotation import read_video_table
from tsav_deploy.atomic import write_text
from tsav_deploy.errors import TsavError
from tsav_deploy.failures import describe_failure
from tsav_deploy.outputs.records import RECORDS, holding, input_sha256, read_record, record_path, write_summary
from tsav_deploy.outputs.report import person_summaries, report_video, write_index, write_report

INDEX_LOCK = ".index"  # not a video name (record names are video stems)


def write_reports(out: pathlib.Path) -> tuple[list[pathlib.Path], list[str]]:
    """``<name>.html`` for every finished video in ``out`` and then ``index.html``; each record
    gains the files written for its video. Returns the pages and one line per video that could not
    get one (its record, table or input unusable): that costs the video, not the others."""
    if not out.is_dir():
        raise TsavError(f"{out}: no such folder; give the --out folder of `tsav annotate`")
    names = sorted(p.stem for p in (out / RECORDS).glob("*.json"))
    if not names:
        raise TsavError(f"{out}: no finished videos in it ({RECORDS}/<name>.json); run `tsav annotate ... --out {out}`")
    pages, problems, summaries = [], [], {}
    for name in names:
        with holding(out, name):  # not while a run into the same folder writes this video
            record = read_record(out, name)
            if record is None:
                problems.append(
                    f"{record_path(out, name)}: no finished annotation (it failed or the record is unreadable); annotate the video again"
                )
                continue
            try:
                table = read_video_table(out, name)
                summaries[name] = person_summaries(table)
                pages.append(_report(out, name, record, table))
            except (OSError, ValueError, KeyError) as exc:
                reason = " ".join(str(exc).split())  # one line, whatever the parser said
                problems.append(f"{out / name}: no readable per-frame table ({reason}); annotate the video again")
            except Exception as exc:  # whatever its input, when it is probed, turns out to be
                problems.append(describe_failure(out / name, exc).line)
    write_folder_index(out, summaries)
    write_summary(out)
    return pages, problems


def _report(out: pathlib.Path, name: str, record: dict, table) -> pathlib.Path:
    listed = record["outputs"]
    # The video as the record knows it: the overlay, an input linked by an earlier report, the input
    # (only where it is still the file that was annotated: a record can be edited to name any file).
    linked = [out / f for f in listed if f.startswith(f"{name}.input.") and (out / f).is_file()]
    source = linked[0] if linked else _annotated_input(record)
    video = report_video(out, name, f"{name}.overlay.mp4" in listed, source, None)
    page = write_report(out / f"{name}.html", table, record, video)
    new = [str(p.relative_to(out)) for p in (video.made, page) if p is not None]
    outputs = listed + [f for f in new if f not in listed]
    if outputs != listed:
        write_text(record_path(out, name), json.dumps({**record, "outputs": outputs}, indent=1))
    return page


def _annotated_input(record: dict) -> pathlib.Path | None:
    """The input file a record names, where its SHA-256 is the one recorded when it was annotated."""
    path = pathlib.Path(record["video"]) if record.get("video") else None
    if path is None or not path.is_file() or record.get("input_sha256") is None:
        return None
    return path if input_sha256(path) == record["input_sha256"] else None


def write_folder_index(out: pathlib.Path, summaries: dict[str, list[dict]] | None = None) -> pathlib.Path | None:
    """``index.html`` over every finished video in ``out`` whose table can be read (``summaries``:
    those already computed); None when there is none. Under a lock, so that of two runs into one
    folder the later one lists both's videos."""
    with holding(out, INDEX_LOCK):
        summaries = dict(summaries or {})
        for path in sorted((out / RECORDS).glob("*.json")):
            if path.stem not in summaries and read_record(out, path.stem) is not None:
                try:
                    summaries[path.stem] = person_summaries(read_video_table(out, path.stem))
                except (OSError, ValueError, KeyError):
                    continue  # listed by `tsav report`, which says why
        if not summaries:
            return None
        pages = {name for name in summaries if (out / f"{name}.html").is_file()}
        return write_index(out / "index.html", dict(sorted(summaries.items())), pages)
