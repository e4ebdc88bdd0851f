"""The HTML report in a real browser: headless Chromium driven through the DevTools protocol
(tests/helpers/chromium.py) loads the pages from disk and must show no error, ask for nothing but local
files, carry the CSV's values, seek the video by a click or a drag on the curves (checked against
the frame the decoder presents), draw the curves faded under an "audio only" band where there is no
face (none under --no-face nan) and switch people. Also
`tsav report` and the index from saved outputs. Skipped where Debian's chromium is absent."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import pathlib
import re
import statistics
import time
from html import escape

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from tsav_deploy.api import Annotation
from tsav_deploy.cli import app
from tsav_deploy.contract import ACTION_UNITS, EXPRESSIONS
from tsav_deploy.media.frames import iter_frames
from tsav_deploy.media.probe import probe
from tsav_deploy.outputs.records import OutputOptions, is_complete

from helpers.chromium import CHROMIUM, Browser
from helpers.synthetic_annotation import synthetic_result

NETWORK_SCHEMES = re.compile(r"\b(?:https?|wss?|ftp):", re.IGNORECASE)
# Resolves once the page has drawn and the video (if any) can show a frame.
READY = """new Promise((resolve, reject) => {
  const v = document.getElementById("video");
  if (v) v.addEventListener("error", () => reject(new Error("video: " + (v.error && v.error.message))));
  const check = () => (window.tsavReport && window.tsavReport.draws > 0 && (!v || v.readyState >= 2))
    ? resolve(true) : setTimeout(check, 20);
  check();
})"""
# The picture the player shows, as a PNG data URL.
SHOWN = """(() => {
  const v = document.getElementById("video");
  const c = document.createElement("canvas");
  c.width = v.videoWidth;
  c.height = v.videoHeight;
  c.getContext("2d").drawImage(v, 0, 0);
  return c.toDataURL("image/png");
})()"""
# The player's time once seeking has ended.
SETTLED = """new Promise((resolve) => {
  const v = document.getElementById("video");
  const check = () => (v.seeking ? setTimeout(check, 10) : resolve(v.currentTime));
  check();
})"""


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (Debian: apt-get install chromium; scripts/setup.sh does it as root)")
    # File pages may read their own video's pixels (SHOWN) only with file access between files.
    with Browser(width=1200, height=1000, flags=("--allow-file-access-from-files",)) as instance:
        yield instance


def run_cli(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    return result


def csv_rows(path: pathlib.Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def embedded_rows(html: str) -> list[dict]:
    """The page's tsav-data element, read from the file as any program would."""
    match = re.search(r'<script type="application/json" id="tsav-data">(.*?)</script>', html, re.S)
    return json.loads(match.group(1))


def assert_rows_equal(embedded: list[dict], expected: list[dict]) -> None:
    """Every CSV cell, exactly: numbers as numbers, empty cells as null, 0/1 face flags as booleans."""
    assert len(embedded) == len(expected)
    for k, (got, want) in enumerate(zip(embedded, expected)):
        assert set(want) <= set(got), k
        for key, text in want.items():
            if text == "":
                assert got[key] is None, (k, key)
            elif key in ("person", "modality", "expression"):
                assert got[key] == text, (k, key)
            elif key == "face_found":
                assert got[key] is bool(int(text)), (k, key)
            else:
                assert got[key] == float(text), (k, key, got[key], text)


def axis_end(times: list[float]) -> float:
    """The documented time axis: 0 to the end of the last frame (its time plus the mean interval)."""
    return times[-1] + (times[-1] - times[0]) / (len(times) - 1)


def plot_box(page) -> dict:
    return json.loads(page.evaluate("JSON.stringify(document.getElementById('va').getBoundingClientRect())"))


def x_of(page, t: float, end: float) -> float:
    box = plot_box(page)
    return box["x"] + t / end * box["width"]


def shown_frame(page, video: pathlib.Path, candidates: range) -> int:
    """Which of the ``candidates`` frames (PyAV's decode of ``video``) the player shows: the closest
    in pixels, compared at 160x90."""
    data = base64.b64decode(page.evaluate(SHOWN).split(",", 1)[1])
    shown = cv2.resize(
        cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1],
        (160, 90),
        interpolation=cv2.INTER_AREA,
    )
    distances = {}
    with iter_frames(video) as frames:
        for frame in frames:
            if frame.index in candidates:
                small = cv2.resize(frame.rgb, (160, 90), interpolation=cv2.INTER_AREA)
                distances[frame.index] = np.abs(small.astype(np.int16) - shown).mean()
    return min(distances, key=distances.get)


def text(page, element: str) -> str:
    return page.evaluate(f"document.getElementById({element!r}).textContent")


@pytest.fixture(scope="module")
def annotated(media_dir, small_export, tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("report")
    video = media_dir / "webcam_man_mp3.mp4"
    result = run_cli(
        "annotate", str(video), "--model", str(small_export), "--faces", "dlib", "--detector", "hog",
        "--overlay", "--report", "--no-plot", "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def test_annotate_report_is_one_offline_file_with_the_csv_values(annotated, small_checkpoint):
    name = "webcam_man_mp3"
    html = (annotated / f"{name}.html").read_text()
    record = json.loads((annotated / ".tsav" / f"{name}.json").read_text())
    assert f"{name}.html" in record["outputs"] and (annotated / "index.html").is_file()
    assert not NETWORK_SCHEMES.findall(html)
    assert f'<video id="video" src="{name}.overlay.mp4"' in html  # the overlay, by a relative path
    # The weights the export came from, named by their hash.
    assert record["checkpoint_sha256"] == hashlib.sha256(small_checkpoint.read_bytes()).hexdigest()
    assert_rows_equal(embedded_rows(html), csv_rows(annotated / f"{name}.csv"))
    # What made it, legible: the reduced toy network as such, the face backend and its detector,
    # and the video's warnings (none for this recording).
    assert record["network"] == "reduced (widths 8, 16, 32, 64)" and record["detector"] == "hog"
    for label, value in (("network", record["network"]), ("face detector", "hog"), ("face backend", "dlib")):
        assert f"<dt>{label}</dt><dd>{value}</dd>" in html, label
    assert record["warnings"] == [] and "<dt>warnings</dt><dd>none</dd>" in html


def test_the_report_shows_each_warning_whole_and_escaped(tmp_path):
    from tsav_deploy.api import Annotation
    from tsav_deploy.outputs.report import ReportVideo, report_html

    from helpers.synthetic_annotation import synthetic_result

    warnings = ["clip.mp4: audio starts 0.30 s after the first video frame; padded with silence", "<b>x</b>\x1b[2J"]
    table = Annotation(tmp_path / "clip.mp4", synthetic_result("clip", np.arange(30) / 30)).to_pandas()
    html = report_html("clip", table, {"warnings": warnings}, ReportVideo(None, 0.0))
    assert escape(warnings[0]) in html and "&lt;b&gt;x&lt;/b&gt;\\x1b[2J" in html and "<b>x</b>" not in html


def test_annotate_report_loads_offline_carries_the_csv_and_seeks(annotated, browser, tmp_path):
    name = "webcam_man_mp3"
    page_path = annotated / f"{name}.html"
    record = json.loads((annotated / ".tsav" / f"{name}.json").read_text())
    rows = csv_rows(annotated / f"{name}.csv")

    page = browser.open(page_path.as_uri())
    page.evaluate(READY)
    assert_rows_equal(page.evaluate("JSON.parse(document.getElementById('tsav-data').textContent)"), rows)
    assert record["checkpoint_sha256"] in page.evaluate("document.body.innerText")

    times = [float(r["time"]) for r in rows]
    end = axis_end(times)
    y = plot_box(page)["y"] + 40
    # A click in the middle of frame 18 seeks there: the player's clock, the readout and the frame
    # the decoder presents all agree.
    target = (times[18] + times[19]) / 2
    page.click(x_of(page, target, end), y)
    now = page.evaluate(SETTLED)
    pixel = end / plot_box(page)["width"]
    assert abs(now - target) <= pixel + 1e-6
    assert text(page, "now-frame") == "18"
    assert shown_frame(page, annotated / f"{name}.overlay.mp4", range(14, 23)) == 18
    # A drag ends where the pointer is released.
    target = (times[60] + times[61]) / 2
    page.drag([(x_of(page, t, end), y) for t in (times[10], times[30], times[50], target)])
    now = page.evaluate(SETTLED)
    assert abs(now - target) <= pixel + 1e-6 and text(page, "now-frame") == "60"
    assert page.evaluate("document.getElementById('cursor').getBoundingClientRect().x") == pytest.approx(
        x_of(page, target, end), abs=1.5
    )

    # Playing, the cursor and the readout follow the player's clock.
    page.evaluate(
        "new Promise((r) => { const v = document.getElementById('video'); v.currentTime = 0.2;"
        " v.play().then(() => setTimeout(() => { v.pause(); setTimeout(r, 100); }, 700)); })"
    )
    # The readout follows the pause's own timeupdate event, which a loaded machine may deliver late.
    deadline = time.monotonic() + 3
    while True:
        now = page.evaluate("document.getElementById('video').currentTime")
        playing = max(k for k, t in enumerate(times) if t <= now + 1e-4)
        if text(page, "now-frame") == str(playing) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert now > 0.5
    assert text(page, "now-frame") == str(playing)
    assert page.evaluate("document.getElementById('cursor').getBoundingClientRect().x") == pytest.approx(
        x_of(page, now, end), abs=1.5
    )
    # The picture the README shows, once Chrome's seek spinner has faded (it lingers about 0.5 s).
    page.evaluate(
        "new Promise((r) => { const v = document.getElementById('video'); v.currentTime = 1.0;"
        " const c = () => (v.seeking ? setTimeout(c, 10) : setTimeout(r, 1000)); setTimeout(c, 10); })"
    )
    shot = page.screenshot()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 10_000
    (tmp_path / "report.png").write_bytes(shot)
    if os.environ.get("TSAV_REPORT_SCREENSHOT"):  # how docs/report.png is made
        pathlib.Path(os.environ["TSAV_REPORT_SCREENSHOT"]).write_bytes(shot)
    assert page.errors == []
    assert all(url.startswith(("file://", "data:")) for url in page.requested_urls), page.requested_urls
    page.close()

    index = browser.open((annotated / "index.html").as_uri())
    assert index.evaluate("document.querySelector('a[href=\"webcam_man_mp3.html\"]') !== null")
    assert index.errors == []
    index.close()


def test_gaps_people_and_a_video_that_starts_late(media_dir, browser, tmp_path):
    """stage_and_audience.mp4's first frame is at 0.852 s on the container's clock, which browsers
    play on; a person without a face for frames 60-119 gets no curve there."""
    video = media_dir / "stage_and_audience.mp4"
    with iter_frames(video, max_side=64) as frames:
        times = np.array([frame.time for frame in frames])
    result = synthetic_result(video.stem, times, ("_left", "_right"), gaps={0: [(60, 120)]})
    Annotation(video, result).save(tmp_path, plot=False, report=True)
    record = json.loads((tmp_path / ".tsav" / f"{video.stem}.json").read_text())
    linked = tmp_path / f"{video.stem}.input.mp4"
    assert f"{video.stem}.input.mp4" in record["outputs"] and linked.read_bytes() == video.read_bytes()
    rows = csv_rows(tmp_path / f"{video.stem}.csv")

    page = browser.open((tmp_path / f"{video.stem}.html").as_uri())
    page.evaluate(READY)
    assert page.evaluate("[...document.getElementById('person').options].map(o => o.value)") == ["left", "right"]
    start = probe(video).start_time_s
    assert start > 0.8
    t = [float(r["time"]) for r in rows if r["person"] == "left"]
    end = axis_end(t)
    # Seek into frame 200: the decoder presents the frame whose time, less the start, is frame 200's.
    target = (t[200] + t[201]) / 2
    page.click(x_of(page, target, end), plot_box(page)["y"] + 30)
    assert page.evaluate(SETTLED) == pytest.approx(target + start, abs=end / plot_box(page)["width"] + 1e-6)
    assert text(page, "now-frame") == "200"
    assert shown_frame(page, video, range(194, 207)) == 200

    columns = saturation_columns(page)
    width = len(columns)

    def column(time: float) -> int:
        return int(time / end * width)

    # Frames 60-119 of the left person are audio only: their curves are there, but faded, under a band.
    inside = range(column(t[60]) + 1, column(t[119]) - 1)
    full = [columns[x] for x in [*range(column(t[5]), column(t[55])), *range(column(t[125]), column(t[-5]))]]
    faded = [columns[x] for x in inside]
    assert len(inside) > 20 and min(full) > 120 and min(faded) > 40 and statistics.median(faded) < 0.6 * min(full)
    assert page.evaluate("window.tsavReport.audioOnly") == [[60, 119]]
    assert "audio only" in page.evaluate("document.querySelector('.legend').textContent")
    page.click(x_of(page, (t[90] + t[91]) / 2, end), plot_box(page)["y"] + 30)
    left = [r for r in rows if r["person"] == "left"]
    assert text(page, "now-face") == "no: audio only"
    assert text(page, "now-valence").replace("−", "-") == f"{float(left[90]['valence']):+.3f}"
    assert page.evaluate("document.getElementById('readout').classList.contains('audio-only')")

    page.evaluate(
        "(() => { const s = document.getElementById('person'); s.value = 'right'; s.dispatchEvent(new Event('change')); })()"
    )
    assert min(saturation_columns(page)[x] for x in inside) > 120  # the other person has a face there
    assert page.evaluate("window.tsavReport.audioOnly") == []
    right = [r for r in rows if r["person"] == "right"]
    assert text(page, "now-frame") == "90"
    assert text(page, "now-valence").replace("−", "-") == f"{float(right[90]['valence']):+.3f}"
    assert text(page, "now-expression").startswith(right[90]["expression"])
    assert page.errors == []
    page.close()


def saturation_columns(page) -> list[int]:
    """Per canvas column of the curves, as seen over the page: the most saturated pixel's max - min
    channel (the grid, labels and band are greys, under 30; the arousal curve is sky blue, 147 at
    full strength)."""
    return page.evaluate("""(() => {
      const c = document.getElementById("va");
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      const out = [];
      for (let x = 0; x < c.width; x++) {
        let best = 0;
        for (let y = 0; y < c.height; y++) {
          const o = (y * c.width + x) * 4;
          const a = d[o + 3] / 255; // as seen: over the canvas's background, #f5f7fa
          const rgb = [0xf5, 0xf7, 0xfa].map((bg, k) => a * d[o + k] + (1 - a) * bg);
          best = Math.max(best, Math.round(Math.max(...rgb) - Math.min(...rgb)));
        }
        out.push(best);
      }
      return out;
    })()""")


def test_a_no_face_nan_report_draws_nothing_where_only_the_audio_was_heard(media_dir, browser, tmp_path):
    """Saved with no_face "nan", frames 30-39 have empty prediction cells: the page embeds them as
    null, marks them audio only, and draws no curve there."""
    video = media_dir / "webcam_man_mp3.mp4"
    result = synthetic_result(video.stem, np.arange(72) / 30, ("",), gaps={0: [(30, 40)]})
    result.no_face = "nan"
    Annotation(video, result).save(tmp_path, plot=False, report=True)
    rows = csv_rows(tmp_path / f"{video.stem}.csv")
    html = (tmp_path / f"{video.stem}.html").read_text(encoding="utf-8")
    embedded = embedded_rows(html)
    assert_rows_equal(embedded, rows)
    assert [r["modality"] for r in embedded] == ["audio+video"] * 30 + ["audio only"] * 10 + ["audio+video"] * 32
    assert all(r["valence"] is None and r["expression"] is None and r["AU1"] is None for r in embedded[30:40])
    page = browser.open((tmp_path / f"{video.stem}.html").as_uri())
    page.evaluate(READY)
    assert page.evaluate("window.tsavReport.audioOnly") == [[30, 39]]
    t = [float(r["time"]) for r in rows]
    end = axis_end(t)
    columns = saturation_columns(page)
    inside = range(int(t[30] / end * len(columns)) + 3, int(t[40] / end * len(columns)) - 2)
    assert len(inside) > 20 and max(columns[x] for x in inside) < 30  # greys only: no curve
    page.click(x_of(page, (t[35] + t[36]) / 2, end), plot_box(page)["y"] + 30)
    assert text(page, "now-face") == "no: audio only" and text(page, "now-valence") == "–"
    assert page.errors == []
    page.close()


def reported_folder(video: pathlib.Path, out: pathlib.Path) -> list[dict]:
    """A synthetic annotation of ``video`` (72 frames at 30 fps, no face in frames 30-39) saved
    without a report, then `tsav report` run on the folder twice; the CSV's rows."""
    result = synthetic_result(video.stem, np.arange(72) / 30, ("",), gaps={0: [(30, 40)]})
    Annotation(video, result).save(out, plot=False, table="both")
    assert not (out / f"{video.stem}.html").exists()
    for _ in range(2):  # a second run changes nothing but the files' contents
        outcome = run_cli("report", str(out))
        assert outcome.exit_code == 0, outcome.output
    return csv_rows(out / f"{video.stem}.csv")


def test_tsav_report_from_saved_outputs_and_the_index(media_dir, tmp_path):
    video = media_dir / "webcam_man_mp3.mp4"
    rows = reported_folder(video, tmp_path)
    record = json.loads((tmp_path / ".tsav" / f"{video.stem}.json").read_text())
    assert record["outputs"][-2:] == [f"{video.stem}.input.mp4", f"{video.stem}.html"]
    assert len(record["outputs"]) == len(set(record["outputs"]))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["videos"][video.stem]["outputs"] == record["outputs"]
    assert is_complete(tmp_path, video.stem, OutputOptions(report=True, table="both", plot=False))
    # Read from the Parquet table, equal to the CSV.
    assert_rows_equal(embedded_rows((tmp_path / f"{video.stem}.html").read_text()), rows)

    # The index's figures, recomputed from the CSV.
    index_html = (tmp_path / "index.html").read_text()
    assert not NETWORK_SCHEMES.findall(index_html)
    data = json.loads(re.search(r'id="tsav-index">(.*?)</script>', index_html, re.S).group(1))
    [summary] = data[video.stem]
    face = [r for r in rows if r["face_found"] == "1"]
    assert (summary["frames"], summary["with_face"]) == (72, 62)
    assert summary["valence_mean"] == pytest.approx(statistics.fmean(float(r["valence"]) for r in face), abs=1e-4)
    assert summary["arousal_mean"] == pytest.approx(statistics.fmean(float(r["arousal"]) for r in face), abs=1e-4)
    for e in EXPRESSIONS:
        assert summary["expression_shares"][e] == pytest.approx(sum(r["expression"] == e for r in face) / 62, abs=1e-4)
    for au in ACTION_UNITS:
        assert summary["au_rates"][au] == pytest.approx(sum(r[au] == "1" for r in face) / 62, abs=1e-4)


def test_the_index_and_a_page_whose_video_is_gone_in_the_browser(media_dir, browser, tmp_path):
    video = media_dir / "webcam_man_mp3.mp4"
    reported_folder(video, tmp_path)
    page = browser.open((tmp_path / "index.html").as_uri())
    assert page.evaluate("document.querySelectorAll('tbody tr').length") == 1
    assert page.evaluate(f"document.querySelector('a[href=\"{video.stem}.html\"]') !== null")
    assert page.errors == []
    page.close()

    # Without the video at hand the page still opens and its curves still seek.
    record_file = tmp_path / ".tsav" / f"{video.stem}.json"
    record = json.loads(record_file.read_text())
    (tmp_path / f"{video.stem}.input.mp4").unlink()
    record["video"] = str(tmp_path / "moved-away.mp4")
    record["outputs"].remove(f"{video.stem}.input.mp4")
    record_file.write_text(json.dumps(record))
    assert run_cli("report", str(tmp_path)).exit_code == 0
    html = (tmp_path / f"{video.stem}.html").read_text()
    assert "<video" not in html
    page = browser.open((tmp_path / f"{video.stem}.html").as_uri())
    page.evaluate(READY)
    times = list(np.arange(72) / 30)
    page.click(x_of(page, (times[50] + times[51]) / 2, axis_end(times)), plot_box(page)["y"] + 30)
    assert text(page, "now-frame") == "50" and page.errors == []
    page.close()


def test_tsav_report_refuses_a_folder_without_results_in_one_line(tmp_path):
    for folder, reason in ((tmp_path / "nowhere", "no such folder"), (tmp_path, "no finished videos")):
        result = run_cli("report", str(folder))
        assert result.exit_code == 2 and reason in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output


def test_a_checkpoint_engine_names_its_weights_by_hash(small_checkpoint):
    from tsav_deploy.runtime import Engine

    expected = hashlib.sha256(small_checkpoint.read_bytes()).hexdigest()
    assert Engine.load(small_checkpoint).checkpoint_sha256 == expected


def test_a_video_without_a_table_costs_one_line_and_the_others_get_reports(media_dir, tmp_path):
    video = media_dir / "webcam_man_mp3.mp4"
    Annotation(video, synthetic_result(video.stem, np.arange(72) / 30)).save(tmp_path, plot=False)
    (tmp_path / ".tsav" / "ghost.json").write_text(json.dumps({"video": "ghost.mp4", "outputs": []}))
    result = run_cli("report", str(tmp_path))
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "ghost" in errors[0] and "annotate the video again" in errors[0]
    assert (tmp_path / f"{video.stem}.html").is_file() and not (tmp_path / "ghost.html").exists()
    index = (tmp_path / "index.html").read_text()
    assert list(json.loads(re.search(r'id="tsav-index">(.*?)</script>', index, re.S).group(1))) == [video.stem]
