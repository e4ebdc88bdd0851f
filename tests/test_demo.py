"""`tsav demo` on this machine, offline: every file its closing lines name is there, the report's
link to the folder index resolves, and summary.json lists the video."""

from __future__ import annotations

import json
import re

from helpers.annotate_outputs import run_cli


def test_the_demo_leaves_every_file_it_names(tmp_path):
    result = run_cli("demo", "--out", str(tmp_path / "demo"), "--steps", "2")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "demo" / "annotations"
    [record] = (folder / ".tsav").glob("*.json")
    name = record.stem
    for file in (f"{name}.csv", f"{name}.png", f"{name}.overlay.mp4", f"{name}.html", "index.html", "summary.json"):
        assert (folder / file).is_file(), file
    links = re.findall(r'href="([^"#?]+)"', (folder / f"{name}.html").read_text())
    links = [link for link in links if ":" not in link]  # files, not data: or web addresses
    assert "index.html" in links and all((folder / link).exists() for link in links), links
    assert name in json.loads((folder / "summary.json").read_text())["videos"]
    assert "tsav weights download" in " ".join(result.output.split())
