"""`tsav annotate` end to end on real recordings: ABAW files, table, plot, overlay, resumable runs and
bad inputs. Frame counts are checked against an independent PyAV decode."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import av
import numpy as np
import pandas as pd
import pytest

from tsav_deploy.pipeline.offline import interpolate_logits, target_frames

from helpers.annotate_outputs import check_outputs, run_cli

VIDEOS = (
    "pexels_woman_silent_audio.mp4",
    "webcam_man_mp3.mp4",
    "face_then_cartoon_hevc.mov",
    "cartoon_no_face.mp4",
    "talking_head_vfr.mp4",
    "stage_and_audience.mp4",
)


def decoded_frames(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def has_audio(path) -> bool:
    with av.open(str(path)) as container:
        return bool(container.streams.audio)


def test_target_frames_cover_every_kth_and_the_last():
    assert target_frames(10, 1).tolist() == list(range(10))
    assert target_frames(10, 4).tolist() == [0, 4, 8, 9]
    assert target_frames(9, 4).tolist() == [0, 4, 8]
    assert target_frames(0, 3).tolist() == []


def test_interpolation_is_linear_in_time_between_targets():
    times = np.array([0.0, 0.1, 0.3, 0.4])  # uneven spacing: interpolation follows time, not index
    targets = np.array([0, 3])
    logits = np.array([[0.0] * 17, [4.0] * 17], dtype=np.float32)
    full = interpolate_logits(times, targets, logits)
    np.testing.assert_allclose(full[:, 5], [0.0, 1.0, 3.0, 4.0], rtol=1e-6)


@pytest.mark.slow
def test_every_recording_with_an_authors_checkpoint(media_dir, authors_checkpoint, tmp_path):
    """The issue's acceptance run: every shared recording, embedded face backend, authors' format."""
    out = tmp_path / "out"
    # The paper-size network runs at about one frame/s in PyTorch on 2 cores: stride 64 keeps this
    # test short (every video still runs it on at least two frames); the stride changes which frames
    # run the network, not how many lines are written.
    result = run_cli(
        "annotate",
        str(media_dir),
        "--weights",
        str(authors_checkpoint),
        "--faces",
        "dlib",
        "--out",
        str(out),
        "--overlay",
        "--stride",
        "64",
        "--batch-size",
        "4",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())["videos"]
    assert set(summary) == {v.rsplit(".", 1)[0] for v in VIDEOS}
    for video in VIDEOS:
        name = video.rsplit(".", 1)[0]
        n = decoded_frames(media_dir / video)
        check_outputs(out, name, n)
        overlay = out / f"{name}.overlay.mp4"
        assert decoded_frames(overlay) == n
        assert has_audio(overlay) == has_audio(media_dir / video)
        assert summary[name]["frames"] == n and summary[name]["face_backend"] == "dlib"
    assert summary["cartoon_no_face"]["faces_found"] == {"main": 0}
    assert summary["webcam_man_mp3"]["faces_found"]["main"] >= 0.95 * 72
    assert not list(out.rglob("*.partial*"))


def test_onnx_openvino_and_pytorch_engines_write_the_same_files(media_dir, small_checkpoint, small_export, tmp_path):
    video = str(media_dir / "webcam_man_mp3.mp4")
    assert (
        run_cli(
            "annotate", video, "--weights", str(small_checkpoint), "--out", str(tmp_path / "torch"), "--no-plot"
        ).exit_code
        == 0
    )
    for engine in ("onnx", "openvino"):
        result = run_cli(
            "annotate",
            video,
            "--model",
            str(small_export),
            "--engine",
            engine,
            "--out",
            str(tmp_path / engine),
            "--no-plot",
        )
        assert result.exit_code == 0
    for engine in ("onnx", "openvino"):
        for task in ("VA_Set", "EXPR_Set", "AU_Set"):
            torch_lines = (tmp_path / "torch" / task / "webcam_man_mp3.txt").read_text().splitlines()
            lines = (tmp_path / engine / task / "webcam_man_mp3.txt").read_text().splitlines()
            if task == "VA_Set":  # 3 decimals: fp32 differences may flip the last digit, nothing more
                a = np.array([[float(x) for x in line.split(",")] for line in torch_lines[1:]])
                b = np.array([[float(x) for x in line.split(",")] for line in lines[1:]])
                assert np.abs(a - b).max() <= 0.0011, engine
            else:
                assert torch_lines == lines, engine
    engines = [
        json.loads((tmp_path / d / "summary.json").read_text())["videos"]["webcam_man_mp3"]["engine"]
        for d in ("torch", "onnx", "openvino")
    ]
    assert engines == ["torch", "onnxruntime", "openvino"]


SECOND = "stage_twice.mp4"


def _videos_dir(media_dir, tmp_path):
    """The short cartoon, then (in name order) the stage clip twice over (20 s, whose face pass
    alone takes seconds): a Ctrl-C sent while the second is under way lands inside it."""
    from helpers.stream_sender import repeat

    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(media_dir / "cartoon_no_face.mp4", folder / "cartoon_no_face.mp4")
    repeat(str(media_dir / "stage_and_audience.mp4"), str(folder / SECOND), copies=2)
    return folder


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_interrupted_run_leaves_no_partial_file_and_rerun_finishes_the_rest(media_dir, small_checkpoint, tmp_path):
    folder, out = _videos_dir(media_dir, tmp_path), tmp_path / "out"
    args = ["annotate", str(folder), "--weights", str(small_checkpoint), "--out", str(out)]
    args += ["--faces", "dlib", "--detector", "hog", "--stride", "3"]
    cmd = [sys.executable, "-m", "tsav_deploy.cli", *args]
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # piped: plain progress lines
    # Ctrl-C as at a terminal: a test run started in the background (`pytest &`) ignores SIGINT, and
    # a child would inherit that.
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_sigint_default
    )
    records = out / ".tsav"
    try:
        # Ctrl-C as soon as the second video starts: the first is done, and the whole of the
        # second (its face pass alone takes seconds) lies ahead.
        for line in proc.stderr:
            if line.startswith(f"{SECOND}: started"):
                break
        proc.send_signal(signal.SIGINT)
        proc.stderr.read()
        assert proc.wait(timeout=60) != 0
    finally:
        proc.kill()
    done_first = sorted(p.stem for p in records.glob("*.json"))
    assert done_first == ["cartoon_no_face"]
    assert not list(out.rglob("*.partial*"))
    # A hard kill (SIGKILL) cannot clean up: a stale temporary file of a process that is gone must
    # not survive the rerun.
    gone = subprocess.Popen(["true"])
    gone.wait()
    (out / "VA_Set" / f"{SECOND.removesuffix('.mp4')}.txt.partial-{gone.pid}.txt").write_text("half")
    mtimes = {p.name: p.stat().st_mtime_ns for p in records.glob("*.json")}
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    assert result.output.count("skipped") == len(done_first)
    assert {p.name: p.stat().st_mtime_ns for p in records.glob("*.json") if p.name in mtimes} == mtimes
    for video in folder.iterdir():
        check_outputs(out, video.stem, decoded_frames(video))


def _audio_only(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        samples = (0.1 * np.sin(np.arange(44100) / 10)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 44100
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def test_bad_inputs_get_one_line_each_and_the_good_video_completes(media_dir, small_checkpoint, tmp_path):
    good = tmp_path / "good.mp4"
    shutil.copy(media_dir / "webcam_man_mp3.mp4", good)
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video\n" * 100)
    raw = (media_dir / "talking_head_vfr.mp4").read_bytes()
    (tmp_path / "corrupt.mp4").write_bytes(raw[: len(raw) // 4])
    _audio_only(tmp_path / "audio_only.m4a")
    bad = ["missing.mp4", "empty.mp4", "text.mp4", "corrupt.mp4", "audio_only.m4a"]
    args = [str(tmp_path / b) for b in bad] + [str(good)]
    result = run_cli("annotate", *args, "--weights", str(small_checkpoint), "--out", str(tmp_path / "out"), "--no-plot")
    assert result.exit_code == 1, result.output  # some videos failed: a script must be able to tell
    assert "5 of 6 failed" in " ".join(result.output.split())
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    for name in bad:
        assert sum(name in line for line in errors) >= 1, (name, result.output)
    assert len(errors) == len(bad)
    check_outputs_no_plot = (tmp_path / "out" / "VA_Set" / "good.txt").read_text().splitlines()
    assert len(check_outputs_no_plot) == 73
    assert not list((tmp_path / "out").rglob("*.partial*"))
    # Nothing at all could be done: non-zero exit, still one line per input.
    result = run_cli(
        "annotate",
        *[str(tmp_path / b) for b in bad],
        "--weights",
        str(small_checkpoint),
        "--out",
        str(tmp_path / "out2"),
    )
    assert result.exit_code != 0 and len(
        [line for line in result.output.splitlines() if line.startswith("error:")]
    ) == len(bad)


def test_unwritable_output_and_missing_weights_are_one_line(media_dir, small_checkpoint, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli(
        "annotate",
        str(media_dir / "webcam_man_mp3.mp4"),
        "--weights",
        str(small_checkpoint),
        "--out",
        str(blocker / "sub"),
    )
    assert result.exit_code == 2 and "cannot write results" in result.output
    result = run_cli("annotate", str(media_dir / "webcam_man_mp3.mp4"))
    assert result.exit_code == 2 and "--weights" in result.output and len(result.output.strip().splitlines()) == 1


def test_every_person_gets_its_own_files(media_dir, small_checkpoint, tmp_path):
    video = media_dir / "stage_and_audience.mp4"
    out = tmp_path / "out"
    result = run_cli(
        "annotate",
        str(video),
        "--weights",
        str(small_checkpoint),
        "--person",
        "all",
        "--detector",
        "hog",
        "--stride",
        "8",
        "--out",
        str(out),
        "--no-plot",
    )
    assert result.exit_code == 0, result.output
    people = json.loads((out / "summary.json").read_text())["videos"]["stage_and_audience"]["faces_found"]
    assert len(people) >= 2
    n = decoded_frames(video)
    table = pd.read_csv(out / "stage_and_audience.csv")
    rows = table[table["face_found"] == 1].groupby("person")
    if len(people) == 2:  # Aff-Wild2's names: _left is the person whose mean box centre is further left
        centre = ((rows["x1"].mean() + rows["x2"].mean()) / 2).to_dict()
        assert set(people) == {"left", "right"} and centre["left"] < centre["right"]
    else:  # _person1 is seen in most frames, then _person2, ...
        assert list(people) == [f"person{k + 1}" for k in range(len(people))]
        counts = [people[f"person{k + 1}"] for k in range(len(people))]
        assert counts == sorted(counts, reverse=True) and counts == [int(rows.size()[p]) for p in people]
    for suffix, found in people.items():
        lines = (out / "VA_Set" / f"stage_and_audience_{suffix}.txt").read_text().splitlines()
        assert len(lines) == n + 1 and 0 < found <= n
    table = (out / "stage_and_audience.csv").read_text().splitlines()
    assert len(table) == len(people) * n + 1  # one row per frame and person


def test_pass_two_runs_on_the_calling_thread_with_a_cpu_engine(media_dir, small_checkpoint, monkeypatch):
    """On the CPU the runtime takes every core, so the frontend does not run in a thread beside it."""
    import threading

    from tsav_deploy.faces import get_backend
    from tsav_deploy.pipeline import frontend
    from tsav_deploy.pipeline.offline import AnnotateOptions, annotate_video
    from tsav_deploy.runtime import Engine

    threads = set()
    crop = frontend.encoded_face

    def recording_crop(image, landmarks):
        threads.add(threading.get_ident())
        return crop(image, landmarks)

    monkeypatch.setattr(frontend, "encoded_face", recording_crop)
    engine = Engine.load(small_checkpoint)
    assert engine.device.type == "cpu"
    result = annotate_video(media_dir / "webcam_man_mp3.mp4", engine, get_backend("dlib"), AnnotateOptions(stride=8))
    assert result.persons[0].face_found.all()
    assert threads == {threading.get_ident()}


def test_the_engine_gets_each_frames_clip_and_authors_window(media_dir, small_checkpoint, monkeypatch):
    """Frame i's inputs are its own: the clip of frames chosen for i (built here from the crops and
    clip_frame_indices, not by the pipeline's ClipAssembler) and spec_window(wave, t_i) with t_i
    the frame's timestamp on the authors' millisecond grid; a real recording with speech and a
    variable frame rate. One frame off, either input differs."""
    from tsav_deploy.faces import get_backend
    from tsav_deploy.inputs.clips import clip_frame_indices, normalize_clip
    from tsav_deploy.inputs.windows import authors_timestamps, spec_window
    from tsav_deploy.media.audio import read_audio
    from tsav_deploy.pipeline import frontend
    from tsav_deploy.pipeline.offline import AnnotateOptions, annotate_video
    from tsav_deploy.runtime import Engine

    video = media_dir / "talking_head_vfr.mp4"
    engine = Engine.load(small_checkpoint)
    specs, clips = [], []
    aural, visual = engine.aural, engine.visual
    monkeypatch.setattr(engine, "aural", lambda spec, **flags: specs.append(np.array(spec)) or aural(spec, **flags))
    monkeypatch.setattr(engine, "visual", lambda clip, **flags: clips.append(np.array(clip)) or visual(clip, **flags))
    backend = get_backend("dlib")
    result = annotate_video(video, engine, backend, AnnotateOptions())
    specs, clips = np.concatenate(specs), np.concatenate(clips)
    assert len(specs) == len(clips) == len(result.times) > 100
    wave, _ = read_audio(video)
    times = authors_timestamps(result.times)
    timeline = frontend.scan_faces(video, backend)
    crops = [crop and crop.decode() for _, (crop,) in frontend.iter_crops(video, timeline, [timeline.main_track_id])]
    for i in (0, 1, 2, 40, 77, len(times) - 2, len(times) - 1):
        neighbour = i + 1 if i + 1 < len(times) else i - 1
        np.testing.assert_allclose(specs[i], spec_window(wave, times[i]), atol=1e-6)
        assert np.abs(specs[i] - spec_window(wave, times[neighbour])).max() > 0.05
        own = normalize_clip([None if k is None else crops[k] for k in clip_frame_indices(i)])
        np.testing.assert_array_equal(clips[i], own)
        assert not np.array_equal(clips[i], clips[neighbour])


def test_inputs_are_checked_before_anything_loads_and_failed_ones_are_in_the_summary(
    media_dir, small_checkpoint, tmp_path
):
    """Inputs that name nothing are found before the model loads (weights that do not exist are
    never reached), nothing claims results, and no folder is made; in a run that has a video, the
    failed inputs are in summary.json with their line."""
    missing = [str(tmp_path / "missing.mp4"), str(tmp_path / "no_folder"), str(tmp_path / "*.mkv")]
    out = tmp_path / "out"
    result = run_cli("annotate", *missing, "--weights", str(tmp_path / "absent.pt"), "--out", str(out))
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 3 and not any("absent.pt" in line for line in errors), result.output
    assert "results in" not in result.output and not out.exists()

    good = tmp_path / "good.mp4"
    shutil.copy(media_dir / "webcam_man_mp3.mp4", good)
    result = run_cli("annotate", missing[0], str(good), "--weights", str(small_checkpoint), "-o", str(out), "--no-plot")
    assert result.exit_code == 1, result.output
    summary = json.loads((out / "summary.json").read_text())["videos"]
    assert "no such file or folder" in summary["missing"]["error"] and "error" not in summary["good"]
