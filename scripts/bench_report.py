"""How the HTML report copes with a long video: a synthetic annotation of 100,000 frames (55 min at
30 fps, one person, a few stretches without a face) written as a report and opened in headless
Chromium. A benchmark, not a test.

    python scripts/bench_report.py [--frames 100000] [--people 1] [--runs 3] [--json]

Prints the time to build the table and write the page (Python), the page's size, and in the browser
(where /usr/bin/chromium exists): navigation until the page has drawn, the JSON parse, one full
draw of every track (the median of redraws at several widths), and the seek round trip (a real
click on the curves until the player's readout shows the new frame).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # helpers: the DevTools client and the synthetic annotation

from tsav_deploy.api import Annotation  # noqa: E402
from tsav_deploy.outputs.report import ReportVideo, write_report  # noqa: E402

from helpers.chromium import CHROMIUM, Browser  # noqa: E402
from helpers.synthetic_annotation import synthetic_result  # noqa: E402

DRAWN = "new Promise((r) => { const c = () => (window.tsavReport && window.tsavReport.draws > 0 ? r(true) : setTimeout(c, 5)); c(); })"


def bench(frames: int, people: int, runs: int) -> dict:
    times = np.arange(frames) / 30.0
    suffixes = ("",) if people == 1 else tuple(f"_person{k + 1}" for k in range(people))
    gaps = {k: [(frames // 5, frames // 5 + 900), (frames // 2, frames // 2 + 30)] for k in range(people)}
    annotation = Annotation(pathlib.Path("synthetic.mp4"), synthetic_result("synthetic", times, suffixes, gaps))
    figures: dict = {"frames": frames, "people": people}
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "synthetic.html"
        started = time.perf_counter()
        table = annotation.to_pandas()
        figures["table_s"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        write_report(path, table, {"frames": frames}, ReportVideo(None))
        figures["write_s"] = round(time.perf_counter() - started, 3)
        figures["page_mb"] = round(path.stat().st_size / 1e6, 1)
        if not CHROMIUM.exists():
            figures["browser"] = f"skipped: {CHROMIUM} is absent"
            return figures
        loads, parses, draws, seeks = [], [], [], []
        with Browser(width=1920, height=1080) as browser:
            version = browser.call("Browser.getVersion")["product"]
            for _ in range(runs):
                started = time.perf_counter()
                page = browser.open(path.as_uri(), timeout=300)
                page.evaluate(DRAWN)
                loads.append(time.perf_counter() - started)
                parses.append(page.evaluate("window.tsavReport.parseMs") / 1000)
                for width in (1000, 1280, 1500, 1100, 1400):  # each changes the plots' width
                    count = page.evaluate("window.tsavReport.draws")
                    browser.call(
                        "Emulation.setDeviceMetricsOverride",
                        page.session,
                        width=width,
                        height=1080,
                        deviceScaleFactor=1,
                        mobile=False,
                    )
                    page.evaluate(
                        f"new Promise((r) => {{ const c = () => (window.tsavReport.draws > {count} ? r(true) : setTimeout(c, 5)); c(); }})"
                    )
                    draws.append(page.evaluate("window.tsavReport.drawMs") / 1000)
                box = json.loads(page.evaluate("JSON.stringify(document.getElementById('va').getBoundingClientRect())"))
                for fraction in (0.1, 0.35, 0.6, 0.85):
                    before = page.evaluate("document.getElementById('now-frame').textContent")
                    started = time.perf_counter()
                    page.click(box["x"] + fraction * box["width"], box["y"] + 20)
                    page.evaluate(
                        f"new Promise((r) => {{ const c = () => (document.getElementById('now-frame').textContent !== {before!r} ? r(true) : setTimeout(c, 1)); c(); }})"
                    )
                    seeks.append(time.perf_counter() - started)
                assert page.errors == [], page.errors
                page.close()
        figures.update(
            {
                "load_to_drawn_s": [round(x, 2) for x in loads],
                "json_parse_s": [round(x, 2) for x in parses],
                "full_draw_ms_median": round(1000 * statistics.median(draws), 1),
                "full_draw_ms_max": round(1000 * max(draws), 1),
                "seek_round_trip_ms_median": round(1000 * statistics.median(seeks), 1),
                "chromium": version,
            }
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--people", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = bench(args.frames, args.people, args.runs)
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>28}: {value}")


if __name__ == "__main__":
    main()
