"""No input, option or fault takes a batch down: hostile files alone and together, two runs into one
folder, a SIGKILL and a rerun, a disk that fills up, a bug of ours. Real files, real processes."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tsav_deploy.api import Predictor
from tsav_deploy.errors import TsavError
from tsav_deploy.faces.select import check_detector
from tsav_deploy.outputs.records import RECORDS, OutputOptions, write_summary
from tsav_deploy.runs.batch import ERROR_LOG, Batch

from helpers.annotate_outputs import check_outputs, run_cli
from helpers.hostile_media import SOURCE, build_corpus, decoded_frames

TSAV = [sys.executable, "-m", "tsav_deploy.cli"]
# The two outputs of every video whose bytes do not depend on when or how often it ran.
DETERMINISTIC = ("VA_Set/{}.txt", "EXPR_Set/{}.txt", "AU_Set/{}.txt", "{}.csv")


@pytest.fixture(scope="module")
def corpus(media_dir, tmp_path_factory) -> dict[str, pathlib.Path]:
    return build_corpus(media_dir, tmp_path_factory.mktemp("hostile"))


def error_lines(output: str) -> list[str]:
    """The error lines of a run (printed unwrapped, one line each)."""
    return [line for line in output.splitlines() if line.startswith("error:")]


def check_case(out: pathlib.Path, path: pathlib.Path, errors: list[str]) -> str:
    """A case either completed with one line per frame that plain PyAV decodes, or has exactly one
    error line naming it (and then no outputs); returns which."""
    mine = [line for line in errors if path.name in line or str(path) in line]
    abaw = out / "VA_Set" / f"{path.stem}.txt"
    if mine:
        assert len(mine) == 1, mine
        assert not abaw.exists() and not (out / f"{path.stem}.csv").exists()
        return "refused"
    frames = decoded_frames(path)
    assert frames, f"{path.name}: no error line, but plain PyAV decodes no frame"
    check_outputs(out, path.stem, frames)
    return "annotated"


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    [f"bitflip{k}" for k in range(8)]
    + [f"truncated{k}" for k in range(8)]
    + [f"truncated_faststart{k}" for k in range(4)]
    + ["zeroed_header", "zeroed_index", "photo_renamed", "animated", "one_frame", "tiny_16x8", "rotated_90"]
    + ["odd_name", "folder"],
)
def test_each_hostile_file_alone_is_annotated_or_refused_in_one_line(case, corpus, small_export, tmp_path):
    path = corpus[case]
    out = tmp_path / "out"
    result = run_cli(
        "annotate", str(path), "--model", str(small_export), "--detector", "hog", "--overlay", "-o", str(out)
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = error_lines(result.output)
    if case == "folder":  # a folder named like a video is searched for videos, and has none
        assert len(errors) == 1 and "no video files in this folder" in errors[0]
        assert result.exit_code == 1
        return
    outcome = check_case(out, path, errors)
    assert result.exit_code == (1 if outcome == "refused" else 0), result.output
    if outcome == "annotated":
        overlay = out / f"{path.stem}.overlay.mp4"
        assert decoded_frames(overlay) == decoded_frames(path)
    assert not list(out.rglob("*.partial*")) and not list(out.rglob("*.lock"))
    # What the cases are: the readable ones are annotated, the unreadable ones refused.
    expected = {
        "photo_renamed": "annotated",
        "animated": "annotated",
        "one_frame": "annotated",
        "tiny_16x8": "annotated",
        "rotated_90": "annotated",
        "odd_name": "annotated",
        "zeroed_index": "refused",
        "truncated0": "refused",
    }
    if case in expected:
        assert outcome == expected[case]
    if case == "rotated_90":  # stored sideways, shown upright: the face is found upright
        table = (out / f"{path.stem}.csv").read_text().splitlines()[1:]
        assert all(row.split(",")[3] == "1" for row in table)


@pytest.mark.slow
def test_all_hostile_files_in_one_run_beside_a_good_recording(corpus, media_dir, small_export, tmp_path):
    """One real ``tsav annotate`` process over the whole corpus: a good recording first, a file that
    disappears while the good one is annotated, an unreadable file; the good one completes, every
    case is annotated or gets its one line, and nothing prints a traceback."""
    good = tmp_path / "good.mp4"
    shutil.copyfile(media_dir / SOURCE, good)
    vanishing = tmp_path / "vanishing.mp4"
    shutil.copyfile(media_dir / SOURCE, vanishing)
    unreadable = tmp_path / "unreadable.mp4"
    shutil.copyfile(media_dir / SOURCE, unreadable)
    unreadable.chmod(0)
    out = tmp_path / "out"
    inputs = [good, vanishing, unreadable, *corpus.values()]
    process = subprocess.Popen(
        [*TSAV, "annotate", *map(str, inputs), "--model", str(small_export), "--detector", "hog", "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
    )
    try:
        # The run lists its inputs before it starts the first; the good video's claim is taken
        # once the listing is done, so the second file vanishes between listing and opening.
        deadline = time.monotonic() + 120
        while not (out / RECORDS / "good.lock").exists() and process.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        vanishing.unlink()
        stdout, stderr = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Traceback" not in stdout + stderr, stderr
    errors = error_lines(stderr)
    assert process.returncode == 1
    check_outputs(out, "good", decoded_frames(good))
    assert any("vanishing.mp4" in line and "no such file" in line for line in errors), errors
    if os.geteuid() != 0:  # root reads a chmod 000 file all the same
        assert any("unreadable.mp4" in line and "permission denied" in line for line in errors), errors
    outcomes = {name: check_case(out, path, errors) for name, path in corpus.items() if path.is_file()}
    assert outcomes["rotated_90"] == "annotated" and outcomes["zeroed_index"] == "refused"
    refused = sum(v == "refused" for v in outcomes.values())
    assert len(errors) == refused + 1 + (os.geteuid() != 0) + 1  # + vanishing, unreadable, the folder
    assert not list(out.rglob("*.partial*")) and not list(out.rglob("*.lock"))


# --- an output folder shared, interrupted, full --------------------------------------------------


@pytest.fixture(scope="module")
def two_videos(media_dir, tmp_path_factory) -> list[pathlib.Path]:
    folder = tmp_path_factory.mktemp("two")
    videos = [folder / "a_webcam.mp4", folder / "b_talking.mp4"]
    shutil.copyfile(media_dir / SOURCE, videos[0])
    shutil.copyfile(media_dir / "talking_head_vfr.mp4", videos[1])
    return videos


def annotate_command(videos, model, out, *extra: str) -> list[str]:
    return [*TSAV, "annotate", *map(str, videos), "--model", str(model), "--detector", "hog", "-o", str(out), *extra]


@pytest.fixture(scope="module")
def reference_run(two_videos, small_export, tmp_path_factory) -> pathlib.Path:
    """A plain, undisturbed run of the two videos with overlays: what every other run must equal."""
    out = tmp_path_factory.mktemp("reference") / "out"
    subprocess.run(annotate_command(two_videos, small_export, out, "--overlay"), check=True, capture_output=True)
    return out


def assert_same_outputs(out: pathlib.Path, reference: pathlib.Path, videos) -> None:
    for video in videos:
        for pattern in DETERMINISTIC:
            name = pattern.format(video.stem)
            assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert not list(out.rglob("*.partial*")) and not list(out.rglob("*.lock"))


@pytest.mark.slow
def test_two_runs_at_once_into_one_folder_equal_a_single_run(two_videos, small_export, reference_run, tmp_path):
    out = tmp_path / "out"
    command = annotate_command(two_videos, small_export, out, "--overlay")
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [run.communicate(timeout=600) for run in runs]
    for run, (_, stderr) in zip(runs, results):
        assert run.returncode == 0, stderr
        assert "Traceback" not in stderr
    assert_same_outputs(out, reference_run, two_videos)
    # Each video was annotated once: the other run waited for it and then found it finished.
    skipped = sum(stdout.count("skipped") for stdout, _ in results)
    assert skipped == len(two_videos)
    summary = (out / "summary.json").read_text()
    assert all(video.stem in summary for video in two_videos)


@pytest.mark.slow
def test_sigkill_in_the_middle_then_rerun_equals_a_clean_run(two_videos, small_export, reference_run, tmp_path):
    out = tmp_path / "out"
    command = annotate_command(two_videos, small_export, out, "--overlay")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        # Killed while the second video's overlay is being written: a file half-written on disk.
        while not list(out.glob(f"{two_videos[1].stem}.overlay.mp4.partial*")):
            assert process.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert list(out.rglob("*.partial*"))  # the kill did leave a temporary file behind
    rerun = subprocess.run(command, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "skipped" in rerun.stdout  # the first video was finished before the kill
    assert_same_outputs(out, reference_run, two_videos)
    overlay = out / f"{two_videos[1].stem}.overlay.mp4"
    assert decoded_frames(overlay) == decoded_frames(two_videos[1])


@contextlib.contextmanager
def small_disk(folder: pathlib.Path, size: int):
    """A tmpfs of ``size`` bytes at ``folder``; skips where this machine does not let us mount."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.mark.slow
def test_a_disk_that_fills_up_costs_one_line_and_keeps_what_was_finished(
    two_videos, small_export, reference_run, tmp_path
):
    first, second = two_videos
    needed = sum(p.stat().st_size for p in reference_run.rglob(f"{first.stem}*") if p.is_file())
    overlay = (reference_run / f"{second.stem}.overlay.mp4").stat().st_size
    # Room for the first video's files and records, not for the second's overlay.
    size = (needed + 64 * 1024 + overlay // 2) // 4096 * 4096
    with small_disk(tmp_path / "disk", size) as out:
        result = subprocess.run(
            annotate_command(two_videos, small_export, out, "--overlay"), capture_output=True, text=True
        )
        assert "Traceback" not in result.stderr
        errors = error_lines(result.stderr)
        assert result.returncode == 1, result.stderr
        assert len(errors) == 1 and second.name in errors[0] and "disk is full" in errors[0], errors
        for pattern in DETERMINISTIC:  # the first video is intact
            name = pattern.format(first.stem)
            assert (out / name).read_bytes() == (reference_run / name).read_bytes()
        # No half-written output: whatever of the second video is on disk is complete.
        for path in out.rglob(f"{second.stem}*"):
            if path.parent.name == RECORDS:  # its record says why it failed, so the rerun redoes it
                assert "disk is full" in path.read_text()
                continue
            assert path.read_bytes() == (reference_run / path.relative_to(out)).read_bytes(), path
        assert not list(out.rglob("*.partial*")) and not list(out.rglob("*.lock"))


# --- the library side: a bug of ours, a bad record, options -----------------------------------------


def test_a_bug_costs_its_video_one_line_and_a_logged_traceback(media_dir, small_export, tmp_path):
    """An exception nobody planned for (here raised by the progress callback of the one video, as a
    caller's own code may) fails that video with one line naming the log, and the rest complete."""
    videos = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    for video in videos:
        shutil.copyfile(media_dir / SOURCE, video)
    predictor = Predictor(model=small_export, faces="dlib", detector="hog")
    current = []

    def progress(stage: str, n: int) -> None:
        if current[-1] == videos[0] and stage == "network":
            raise KeyError("no such bar")

    out = tmp_path / "out"
    outcomes = list(
        Batch(out, OutputOptions()).run(
            videos, lambda todo: predictor.predict_many(todo, progress), on_start=current.append
        )
    )
    assert [o.status for o in outcomes] == ["failed", "done"]
    line = outcomes[0].error
    assert "\n" not in line and "a.mp4" in line and "internal error" in line and str(out / ERROR_LOG) in line
    log = (out / ERROR_LOG).read_text()
    assert "Traceback" in log and "KeyError: 'no such bar'" in log and "a.mp4" in log
    check_outputs(out, "b", 72)
    summary = write_summary(out).read_text()
    assert "internal error" in summary  # the failure is listed, not left out


def test_a_corrupt_record_is_listed_and_its_video_redone(media_dir, small_export, tmp_path):
    video = tmp_path / "clip.mp4"
    shutil.copyfile(media_dir / SOURCE, video)
    out = tmp_path / "out"
    (out / RECORDS).mkdir(parents=True)
    (out / RECORDS / "clip.json").write_text('{"outputs": ["VA_Set/clip.txt"')  # cut off mid-write
    assert "unreadable record" in write_summary(out).read_text()
    result = run_cli(
        "annotate", str(video), "--model", str(small_export), "--detector", "hog", "-o", str(out), "--isolate"
    )
    assert result.exit_code == 0 and "done" in result.output  # through the supervised worker
    check_outputs(out, "clip", 72)


def test_a_dlib_detector_is_refused_where_auto_chooses_insightface(tmp_path):
    from tsav_deploy.faces.insightface_pack import FILES, pack_dir

    folder = pack_dir(tmp_path)
    folder.mkdir(parents=True)
    for name in FILES:
        (folder / name).write_bytes(np.zeros(16, np.uint8).tobytes())
    assert check_detector("auto", None, tmp_path) == "insightface"
    with pytest.raises(TsavError, match="the insightface backend has its own .*faces auto"):
        check_detector("auto", "hog", tmp_path)
    assert check_detector("auto", "hog", tmp_path / "elsewhere") == "dlib"


@pytest.mark.slow
def test_a_crashed_worker_costs_its_video_and_a_fresh_one_takes_the_next(media_dir, small_export, tmp_path):
    """``--isolate``: the worker process dies of a real SIGSEGV in the middle of the first video;
    that video gets its one line, a new worker annotates the second exactly as a plain run does."""
    from tsav_deploy.runs.isolated import IsolatedPredictor

    videos = [tmp_path / "crashing.mp4", tmp_path / "after.mp4"]
    for video in videos:
        shutil.copyfile(media_dir / SOURCE, video)
    options = {"model": small_export, "faces": "dlib", "detector": "hog"}
    current = []
    with IsolatedPredictor(**options) as isolated:
        first_pid = isolated.pid

        def progress(stage: str, n: int) -> None:
            if current[-1] == videos[0] and stage == "network" and isolated.pid is not None:
                os.kill(isolated.pid, signal.SIGSEGV)

        out = tmp_path / "out"
        outcomes = list(
            Batch(out, OutputOptions()).run(videos, lambda todo: isolated.predict_many(todo, progress), current.append)
        )
        second_pid = isolated.pid
    assert [o.status for o in outcomes] == ["failed", "done"]
    assert "crashed" in outcomes[0].error and "SIGSEGV" in outcomes[0].error and "\n" not in outcomes[0].error
    assert second_pid is not None and second_pid != first_pid
    plain = tmp_path / "plain"
    list(Batch(plain, OutputOptions()).run(videos[1:], Predictor(**options).predict_many))
    for pattern in DETERMINISTIC:
        name = pattern.format("after")
        assert (out / name).read_bytes() == (plain / name).read_bytes()
    assert not (out / "VA_Set" / "crashing.txt").exists()


def test_partials_are_removed_only_for_their_own_video_and_dead_writers(tmp_path):
    """A rerun cleans what a killed run left of this video, never another video's (clip1 is not
    clip10) nor a file whose writer still runs (two runs share the folder)."""
    from tsav_deploy.outputs.records import remove_partials

    gone = subprocess.Popen(["true"])
    gone.wait()
    running = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "VA_Set").mkdir()
        stale = [
            tmp_path / f"clip1.csv.partial-{gone.pid}.csv",
            tmp_path / "VA_Set" / f"clip1_left.txt.partial-{gone.pid}.txt",
        ]
        kept = [
            tmp_path / f"clip10.csv.partial-{gone.pid}.csv",  # another video's
            tmp_path / f"clip1.png.partial-{running.pid}.png",  # its writer runs
            tmp_path / f"summary.json.partial-{gone.pid}.json",
        ]
        for path in stale + kept:
            path.write_text("half")
        remove_partials(tmp_path, "clip1")
        assert [p.exists() for p in stale] == [False, False]
        assert all(p.exists() for p in kept)
    finally:
        running.kill()
        running.wait()


def test_a_worker_that_died_while_idle_is_replaced(media_dir, small_export, tmp_path):
    from tsav_deploy.runs.isolated import IsolatedPredictor

    video = tmp_path / "clip.mp4"
    shutil.copyfile(media_dir / SOURCE, video)
    with IsolatedPredictor(model=small_export, faces="dlib", detector="hog") as isolated:
        idle = isolated.pid
        os.kill(idle, signal.SIGKILL)  # the out-of-memory killer picks the idle worker
        time.sleep(0.5)
        (annotation,) = isolated.predict_many([video])
        assert annotation.ok, annotation.error
        assert isolated.pid not in (None, idle)
