"""Live annotation (``tsav live``, ``Predictor.stream``): against the offline pipeline, over a real
loopback network stream, and when the sender dies or the user presses Ctrl-C."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import av
import numpy as np
import pytest
from test_annotate import check_outputs, run_cli

from tsav_deploy.audio import SpecWindows
from tsav_deploy.constants import ACTION_UNITS, SAMPLE_RATE
from tsav_deploy.engine import Predictor
from tsav_deploy.faces.face import Face
from tsav_deploy.faces.online import OnlinePeople
from tsav_deploy.media import LiveTrack, read_audio
from tsav_deploy.writers import TABLE_COLUMNS

TSAV = [sys.executable, "-m", "tsav_deploy.cli"]
SENDER = [sys.executable, str(pathlib.Path(__file__).with_name("stream_sender.py"))]
ENV = {**os.environ, "COLUMNS": "400"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def read_rows(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def decoded_frames(path: pathlib.Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


# --- the audio track and people, fed piece by piece -------------------------------------------------


def test_live_track_windows_equal_the_whole_tracks(media_dir):
    """Windows cut from a LiveTrack fed in 0.37 s pieces, each as soon as its look-ahead arrived, with
    old samples discarded on the way, equal those of the whole track read at once; with a 1 s
    look-ahead, those of the whole track silenced after t + 1 s."""
    wave, _ = read_audio(media_dir / "talking_head_vfr.mp4", pcm16=True)
    whole = SpecWindows(wave)
    times = np.arange(0.0, len(wave) / SAMPLE_RATE, 0.3)
    track = LiveTrack(0.0)
    live = SpecWindows(track)
    piece = int(0.37 * SAMPLE_RATE)
    pending, cut_at_one_second = list(times), {}
    for start in range(0, len(wave), piece):
        track.add(start / SAMPLE_RATE, wave[start : start + piece])
        s = lambda t: int(np.floor(t * 1000 + 0.5) / 1000 * SAMPLE_RATE)  # noqa: E731
        while pending and s(pending[0]) + 5 * SAMPLE_RATE <= track.final:
            t = pending.pop(0)
            assert np.array_equal(live.frame_windows([t]), whole.frame_windows([t])), t
        for t in times:
            if t not in cut_at_one_second and s(t) + SAMPLE_RATE <= track.final and t > 1.5:
                cut_at_one_second[t] = live.frame_windows([t])
        if pending:
            track.discard_before(live.first_sample(pending[0]))
    track.finish()
    assert np.array_equal(live.frame_windows(pending), whole.frame_windows(pending))
    assert len(cut_at_one_second) > 5
    for t, window in cut_at_one_second.items():
        silenced = wave.copy()
        silenced[s(t) + SAMPLE_RATE :] = 0
        silenced = np.concatenate([silenced, np.zeros(5 * SAMPLE_RATE, np.int16)])  # the track runs on
        assert np.array_equal(window, SpecWindows(silenced).frame_windows([t])), t


def face(tracklet: int, x: float, embedding=None) -> Face:
    box = np.array([x, 10, x + 50, 60], dtype=np.float32)
    return Face(box, 0.9, np.zeros((68, 2), np.float32), embedding, tracklet)


def test_online_people_join_by_identity_never_two_at_once():
    rng = np.random.default_rng(0)
    anna, ben = rng.normal(size=128), rng.normal(size=128)
    people = OnlinePeople(identity_threshold=0.6 * np.linalg.norm(anna))
    for n in range(10):  # Anna, then gone for 5 frames, then back as a new tracklet
        assert set(people.update(n, [face(0, 0, anna if n == 0 else None)])) == {0}
    for n in range(10, 15):
        assert people.update(n, []) == {}
    assert set(people.update(15, [face(1, 5, anna + 0.01)])) == {0}
    # Someone else with Anna's embedding while she is in the frame is not Anna.
    seen = people.update(16, [face(1, 5), face(2, 200, anna)])
    assert set(seen) == {0, 2}  # ids are not reused: 1 was the second tracklet before it joined
    # Ben, far from both, is a new person; after 40 frames he is the main person.
    assert people.main == 0
    for n in range(17, 60):
        seen = people.update(n, [face(3, 400, ben if n == 17 else None)])
        assert set(seen) == {3}
    assert people.main == 3
    assert people.people[0].frames == 12


# --- against the offline pipeline -----------------------------------------------------------------


@pytest.mark.parametrize("stride", [1, 3])
def test_file_stream_equals_annotate(media_dir, small_checkpoint, stride):
    """A file read without --realtime gives `annotate --stride K`'s predictions (VA within 0.01,
    expression and AUs on 99% of frames; here exactly), one row per frame, final in order."""
    video = media_dir / "talking_head_vfr.mp4"  # 6.1 s of speech: windows wait for 5 s of audio
    predictor = Predictor(weights=small_checkpoint, engine="torch", faces="dlib", detector="hog", stride=stride)
    offline = predictor.predict(video).to_pandas()
    rows = list(predictor.stream(video))
    assert [row["frame"] for row in rows] == list(range(len(offline)))
    assert list(rows[0])[: len(TABLE_COLUMNS)] == TABLE_COLUMNS and {"latency_s", "stride"} <= set(rows[0])
    assert {row["stride"] for row in rows} == {stride}
    live = {column: np.array([row[column] for row in rows]) for column in rows[0]}
    for column in ("valence", "arousal"):
        assert np.abs(live[column] - offline[column].to_numpy()).max() <= 0.01
    assert np.mean(live["expression"] == offline["expression"].astype(str).to_numpy()) >= 0.99
    for au in ACTION_UNITS:
        assert np.mean(live[au] == offline[au].to_numpy()) >= 0.99
    assert np.array_equal(live["face_found"], offline["face_found"].to_numpy())
    assert np.all(live["latency_s"] >= 0)


# --- the command line -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, says",
    [
        (["no_such_video.mp4", "--jsonl", "-"], "no such file"),
        (["ftp://127.0.0.1/x", "--jsonl", "-"], "unknown stream scheme"),
        (["webcam:x", "--jsonl", "-"], "webcam:N"),
        (["/dev/video97", "--jsonl", "-"], "no such camera"),
        (["tcp://127.0.0.1:9?listen=1", "--jsonl", "-", "--audio-lookahead", "7"], "between 0 and 5"),
        (["tcp://127.0.0.1:9?listen=1"], "nothing to write"),
        (["tcp://127.0.0.1:9?listen=1", "--overlay-out", "ftp://127.0.0.1/x.ts", "-w", "x.pt"], "no such"),
    ],
)
def test_bad_live_input_is_one_line(args, says):
    result = run_cli("live", *args)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and says in lines[0], result.output


def live_command(source: str, small_export: pathlib.Path, tmp_path: pathlib.Path, *extra: str) -> list[str]:
    return [
        *TSAV,
        "live",
        source,
        "--model",
        str(small_export),
        "--detector",
        "hog",
        "--jsonl",
        str(tmp_path / "rows.jsonl"),
        "--out",
        str(tmp_path / "out"),
        *extra,
    ]


def test_tcp_stream_one_row_per_frame(media_dir, small_export, tmp_path):
    """A sender process streams a recording as MPEG-TS over loopback TCP at its real pace into
    `tsav live tcp://…?listen=1`: one row per frame, in order, each with its latency; the overlay
    goes out over a second TCP connection and arrives whole; --out has one ABAW line per frame."""
    video = media_dir / "webcam_man_mp3.mp4"
    port, overlay_port = free_port(), free_port()
    command = live_command(
        f"tcp://127.0.0.1:{port}?listen=1",
        small_export,
        tmp_path,
        "--name",
        "cam",
        "--overlay-out",
        f"tcp://127.0.0.1:{overlay_port}?listen=1",
    )
    receiver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        sender = subprocess.run([*SENDER, str(video), f"tcp://127.0.0.1:{port}"], capture_output=True, timeout=120)
        assert sender.returncode == 0, sender.stderr
        # The overlay's listener is the receiving end here: connect and read it while tsav sends.
        with av.open(f"tcp://127.0.0.1:{overlay_port}", timeout=(60, 30)) as overlay:
            overlay_frames = sum(1 for _ in overlay.decode(video=0))
        stdout, stderr = receiver.communicate(timeout=120)
    finally:
        receiver.kill()
    assert receiver.returncode == 0, stderr
    assert "Traceback" not in stderr
    rows = read_rows(tmp_path / "rows.jsonl")
    n = decoded_frames(video)
    assert [row["frame"] for row in rows] == list(range(n))
    assert all(row["latency_s"] >= 0 and row["stride"] >= 1 for row in rows)  # it rises where the machine lags
    assert sum(row["face_found"] for row in rows) > 0.9 * n
    assert overlay_frames == n
    check_outputs(tmp_path / "out", "cam", n)


def test_sender_killed_ends_cleanly(media_dir, small_export, tmp_path):
    """The sender dies 2 s into a 9 s stream: the run ends by itself, exit 0, with a row for every
    frame that arrived, the files for them, and nothing half-written."""
    video = media_dir / "stage_and_audience.mp4"
    port = free_port()
    overlay = tmp_path / "overlay.mp4"
    command = live_command(f"tcp://127.0.0.1:{port}?listen=1", small_export, tmp_path, "--overlay-out", str(overlay))
    receiver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    sender = subprocess.Popen([*SENDER, str(video), f"tcp://127.0.0.1:{port}"], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        deadline = time.monotonic() + 60
        while not (tmp_path / "rows.jsonl").exists() or not (tmp_path / "rows.jsonl").stat().st_size:
            assert time.monotonic() < deadline and receiver.poll() is None
            time.sleep(0.05)
        time.sleep(1.5)
        sender.kill()
        sender.wait()
        stdout, stderr = receiver.communicate(timeout=120)
    finally:
        sender.kill()
        receiver.kill()
    assert receiver.returncode == 0, stderr
    rows = read_rows(tmp_path / "rows.jsonl")
    assert 10 < len(rows) < decoded_frames(video)
    assert [row["frame"] for row in rows] == list(range(len(rows)))
    name = next((tmp_path / "out" / "VA_Set").iterdir()).stem
    check_outputs(tmp_path / "out", name, len(rows))
    assert decoded_frames(overlay) == len(rows)
    assert not [p for p in tmp_path.rglob("*") if ".partial" in p.name]


def test_ctrl_c_flushes_pending_frames(media_dir, small_export, tmp_path):
    """Ctrl-C in the middle of a --realtime file: every frame read so far gets its row (those still
    waiting for audio too), the overlay file is complete, exit 0."""
    video = media_dir / "talking_head_vfr.mp4"
    overlay = tmp_path / "overlay.mp4"
    command = live_command(str(video), small_export, tmp_path, "--realtime", "--overlay-out", str(overlay))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "rows.jsonl").exists() or not (tmp_path / "rows.jsonl").stat().st_size:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    rows = read_rows(tmp_path / "rows.jsonl")
    assert 0 < len(rows) < decoded_frames(video)
    assert [row["frame"] for row in rows] == list(range(len(rows)))
    assert decoded_frames(overlay) == len(rows)
    check_outputs(tmp_path / "out", "talking_head_vfr", len(rows))


def test_falling_behind_raises_the_stride(media_dir, tmp_path):
    """The paper-size network in eager PyTorch runs a few clips per second on a CPU, far fewer than
    the 30 frames per second a camera delivers: the stride rises for the stretch where it falls
    behind, every row says its stride, and every frame either has its row or is counted dropped."""
    import torch

    from tsav_deploy.checkpoint import save_checkpoint
    from tsav_deploy.model import TSAV, ModelConfig

    torch.manual_seed(0)
    paper = save_checkpoint(tmp_path / "paper.pt", TSAV(ModelConfig()))
    video = media_dir / "stage_and_audience.mp4"
    predictor = Predictor(weights=paper, engine="torch", faces="dlib", detector="hog")
    stream = predictor.stream_frames(video, realtime=True)
    frames = list(stream)
    strides = [frame.stride for frame in frames]
    assert max(strides) >= 4
    assert strides[0] == 1
    indices = [frame.index for frame in frames]
    assert indices == sorted(set(indices))
    assert len(frames) + stream.dropped == decoded_frames(video)
