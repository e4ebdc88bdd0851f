"""`tsav annotate` with its output piped, as in a script or a job log: plain progress lines while
it works, and nothing wrapped or cut (a long path stays on one line, a warning stays whole)."""

from __future__ import annotations

import os
import subprocess
import sys

from helpers.hostile_media import SOURCE


def test_piped_output_has_progress_lines_and_whole_lines(media_dir, small_export, tmp_path):
    folder = tmp_path / ("a_folder_with_a_long_name_" * 4)
    folder.mkdir()
    video = folder / "clip.mp4"
    video.write_bytes((media_dir / SOURCE).read_bytes())
    out = folder / "results"
    run = subprocess.run(
        [sys.executable, "-m", "tsav_deploy.cli", "annotate", str(video), "--model", str(small_export)]
        + ["--detector", "hog", "--no-plot", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "COLUMNS"},  # a pipe: no width to fit
    )
    assert run.returncode == 0, run.stderr
    progress = [line for line in run.stderr.splitlines() if line.startswith("clip.mp4: ")]
    assert progress[0] == "clip.mp4: started"
    assert any(line.startswith("clip.mp4: network") and line.endswith(" frames") for line in progress), progress
    assert any(line.startswith(f"results in {out}/") for line in run.stdout.splitlines()), run.stdout
