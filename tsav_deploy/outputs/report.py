"""The interactive HTML report: one self-contained page per video (player, valence/arousal curves,
expression ribbon, AU heat map, circumplex) and an index over an output folder.

Each page is a single file that works offline from disk: CSS and JavaScript inline (the files in
``report_assets/``), the video referenced by a relative path, and the per-frame table embedded as
JSON in ``<script type="application/json" id="tsav-data">``, one object per frame and person with
the CSV's columns and values (docs/report.md). The page draws at most one value range per pixel
column, so the drawing cost follows the screen's width while the embedded data stay exact.
"""

from __future__ import annotations

import html
import json
import os
import pathlib
import re
import shutil
import urllib.parse
from dataclasses import dataclass
from importlib import resources

import pandas as pd

from tsav_deploy import __version__
from tsav_deploy.atomic import atomic_path, write_text
from tsav_deploy.contract import ACTION_UNITS, EXPRESSIONS
from tsav_deploy.errors import shown
from tsav_deploy.outputs.palette import AROUSAL_COLOUR, EXPRESSION_COLOURS, VALENCE_COLOUR
from tsav_deploy.results.table import AUDIO_ONLY

# What the page shows of a video's record, in this order, with the label it gets.
PROVENANCE = (
    ("video", "input video"),
    ("frames", "frames"),
    ("seconds", "duration (s)"),
    ("checkpoint_sha256", "checkpoint SHA-256"),
    ("network", "network"),
    ("engine", "engine"),
    ("face_backend", "face backend"),
    ("detector", "face detector"),
    ("stride", "stride"),
    ("au_threshold", "AU threshold"),
    ("no_face", "frames without a face"),
    ("tsav_version", "tsav-deploy version"),
    ("warnings", "warnings"),
)
_PLACEHOLDER = re.compile(r"@@([A-Z_]+)@@")


@dataclass(frozen=True)
class ReportVideo:
    """The video a report plays: ``src`` relative to the report (None: no video to show),
    ``offset_s`` the player's time of the table's time 0 (the container's start time of the first
    frame: browsers play on the container's clock), ``made`` a link or copy made for the report."""

    src: str | None
    offset_s: float = 0.0
    made: pathlib.Path | None = None


def report_video(
    out: pathlib.Path, name: str, overlay: bool, source: pathlib.Path | None, start_s: float | None
) -> ReportVideo:
    """The overlay when there is one (its clock starts at frame 0), else the input itself when it
    lies in ``out``, else the input hard-linked (or symlinked, or copied where neither works) next
    to the report as ``<name>.input<suffix>``. ``start_s``: the input's first-frame time (probed
    when None)."""
    if overlay and (out / f"{name}.overlay.mp4").is_file():
        return ReportVideo(_href(f"{name}.overlay.mp4"))
    if source is None or not source.is_file():
        return ReportVideo(None)
    if start_s is None:
        from tsav_deploy.media.probe import probe

        start_s = probe(source).start_time_s
    if source.resolve().parent == out.resolve():
        return ReportVideo(_href(source.name), start_s)
    target = out / f"{name}.input{source.suffix}"
    with atomic_path(target) as tmp:
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)  # no copy, and it survives moving the folder
        except OSError:
            try:
                os.symlink(source.resolve(), tmp)
            except OSError:
                shutil.copyfile(source, tmp)
    return ReportVideo(_href(target.name), start_s, target)


def _href(filename: str) -> str:
    """A relative link to a file of the folder, by its bytes (a name need not be UTF-8)."""
    return urllib.parse.quote(os.fsencode(filename))


def write_report(path: pathlib.Path, table: pd.DataFrame, record: dict, video: ReportVideo) -> pathlib.Path:
    """Write the report page of one video (its per-frame table, every person) atomically."""
    return write_text(path, report_html(path.stem, table, record, video))


def report_html(name: str, table: pd.DataFrame, record: dict, video: ReportVideo) -> str:
    """The page: ``table`` (the per-frame table, as ``Annotation.to_pandas`` or ``read_table``
    give it) embedded whole, ``record`` (the video's record) as provenance."""
    table = table.drop(columns=["video"], errors="ignore")
    people = list(dict.fromkeys(table["person"].astype(str)))
    name = shown(name)
    meta = {
        "name": name,
        "video": None if video.src is None else {"src": video.src, "offset_s": video.offset_s},
        "people": people,
        "expressions": list(EXPRESSIONS),
        "action_units": list(ACTION_UNITS),
        "expression_colours": list(EXPRESSION_COLOURS),
        "valence_colour": VALENCE_COLOUR,
        "arousal_colour": AROUSAL_COLOUR,
        "provenance": {key: _shown_value(record.get(key)) for key, _ in PROVENANCE},
    }
    if video.src is None:
        player = f'<p class="missing">No video to play: {html.escape(shown(str(record.get("video", name))))} is not at hand. The curves still seek.</p>'
    else:
        player = f'<video id="video" src="{html.escape(video.src)}" controls preload="auto" playsinline></video>'
    return _page(
        "report.html",
        f"{name}: tsav report",
        NAME=html.escape(name),
        PLAYER=player,
        LEGEND=_legend(),
        AU_LABELS="".join(f"<div>{au}</div>" for au in ACTION_UNITS),
        PROVENANCE=_provenance(record),
        META=_script_json(json.dumps(meta)),
        # pandas writes the rounded values as they are (NaN as null, bools as true/false), fast enough
        # for 100k rows.
        DATA=_script_json(table.to_json(orient="records", double_precision=15)),
        SCRIPT=_asset("report.js"),
    )


def person_summaries(table: pd.DataFrame) -> list[dict]:
    """Per person: frames, frames with a face, and over the frames with a face the mean valence
    and arousal, the share of each predicted expression and how often each AU is on."""
    summaries = []
    for person in dict.fromkeys(table["person"].astype(str)):
        rows = table[table["person"].astype(str) == person]
        face = rows[rows["face_found"].astype(bool)]
        n = len(face)

        def mean(column: str) -> float | None:
            return round(float(face[column].mean()), 4) if n else None

        expressions = face["expression"].astype(str).value_counts()
        summaries.append(
            {
                "person": person,
                "frames": len(rows),
                "with_face": n,
                "valence_mean": mean("valence"),
                "arousal_mean": mean("arousal"),
                "expression_shares": {e: round(int(expressions.get(e, 0)) / n, 4) if n else None for e in EXPRESSIONS},
                "au_rates": {au: mean(au) for au in ACTION_UNITS},
            }
        )
    return summaries


def write_index(path: pathlib.Path, videos: dict[str, list[dict]], pages: set[str]) -> pathlib.Path:
    """``index.html``: a row per video and person (``videos``: name -> :func:`person_summaries`),
    linking to the report of each video named in ``pages``."""
    rows = []
    for name, people in videos.items():
        for k, summary in enumerate(people):
            rows.append(_index_row(name, summary, name in pages, first=k == 0, span=len(people)))
    head = "".join(f"<th>{au}</th>" for au in ACTION_UNITS)
    page = _page(
        "index.html",
        f"{path.parent.name or 'tsav'}: tsav reports",
        AU_HEAD=head,
        ROWS="\n".join(rows),
        LEGEND=_legend(),
        DATA=_script_json(json.dumps({shown(name): people for name, people in videos.items()})),
    )
    return write_text(path, page)


def _index_row(name: str, s: dict, page: bool, first: bool, span: int) -> str:
    def number(value: float | None, digits: int = 2) -> str:
        return "–" if value is None else f"{value:+.{digits}f}"

    label = f'<a href="{_href(name + ".html")}">{html.escape(shown(name))}</a>' if page else html.escape(shown(name))
    link = f'<td rowspan="{span}">{label}</td>' if first else ""
    share = f"{s['with_face'] / s['frames']:.0%}" if s["frames"] else "–"
    bar = "".join(
        f'<span style="width:{100 * v:.2f}%;background:{c}" title="{e} {v:.1%}"></span>'
        for (e, v), c in zip(s["expression_shares"].items(), EXPRESSION_COLOURS)
        if v
    )
    aus = "".join(
        "<td>–</td>" if r is None else f'<td style="background:rgba(33,145,140,{r:.3f})">{r:.0%}</td>'
        for r in s["au_rates"].values()
    )
    return (
        f"<tr>{link}<td>{html.escape(s['person'])}</td><td>{s['frames']}</td>"
        f"<td>{s['with_face']} ({share})</td><td>{number(s['valence_mean'])}</td><td>{number(s['arousal_mean'])}</td>"
        f'<td><div class="shares">{bar}</div></td>{aus}</tr>'
    )


def _legend() -> str:
    swatches = "".join(
        f'<span class="swatch"><i style="background:{c}"></i>{e}</span>'
        for e, c in zip(EXPRESSIONS, EXPRESSION_COLOURS)
    )
    return (
        f'<span class="swatch"><i style="background:{VALENCE_COLOUR}"></i>valence</span>'
        f'<span class="swatch"><i style="background:{AROUSAL_COLOUR}"></i>arousal</span>{swatches}'
        '<span class="swatch"><i class="ramp"></i>P(AU) 0 → 1</span>'
        f'<span class="swatch"><i class="audio-only"></i>{AUDIO_ONLY}: no face</span>'
    )


def _shown_value(value: object) -> object:
    return shown(value) if isinstance(value, str) else value


def _provenance(record: dict) -> str:
    items = []
    for key, label in PROVENANCE:
        value = _shown_value(record.get(key))
        if value is None:
            items.append(f"<dt>{label}</dt><dd>not recorded</dd>")
        elif key == "warnings":  # one per line, each as the console shows it
            lines = [html.escape(shown(str(w))) for w in (value if isinstance(value, list) else [value])]
            items.append(f"<dt>{label}</dt><dd>{'<br>'.join(lines) or 'none'}</dd>")
        elif key == "video":  # the file's name; where it was, on hovering
            path = str(value)
            items.append(
                f'<dt>{label}</dt><dd title="{html.escape(path)}">{html.escape(pathlib.PurePath(path).name)}</dd>'
            )
        else:
            items.append(f"<dt>{label}</dt><dd>{html.escape(str(value))}</dd>")
    return f"<dl>{''.join(items)}</dl>"


def _script_json(text: str) -> str:
    """JSON safe inside a <script> element: '<' (which only strings can hold) as its escape, so
    nothing in a file name or label can close the element."""
    return text.replace("<", "\\u003c")


def _asset(name: str) -> str:
    return (resources.files(__package__) / "report_assets" / name).read_text(encoding="utf-8")


def _page(template: str, title: str, **values: str) -> str:
    """A page from its template: the shared head (title, stylesheet) and the template's values."""
    title = html.escape(title)
    head = _fill("head.html", TITLE=title, VERSION=__version__, CSS=_asset("report.css"))
    return _fill(template, HEAD=head, TITLE=title, **values)


def _fill(template: str, **values: str) -> str:
    """The template with each ``@@KEY@@`` replaced in one pass (inserted text is never rescanned)."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], _asset(template))
