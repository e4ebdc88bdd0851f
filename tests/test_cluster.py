"""Annotation over Ray (real Ray, no mocks): the files of a plain single-process run, byte for byte,
with Ray started for the run, on a two-node cluster this module starts on 127.0.0.1, after a worker
is killed in the middle, and for a video cut into ranges across workers."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tsav_deploy.api import Predictor
from tsav_deploy.cli import app
from tsav_deploy.contract import ACTION_UNITS

try:
    import ray
except ImportError:  # the tests of a run on Ray skip; the one line without Ray is still checked
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason="Ray is an optional extra (pip install 'tsav-deploy[ray]')")
SHORT = ("webcam_man_mp3.mp4", "cartoon_no_face.mp4")  # one face throughout; none at all
LONG = "stage_and_audience.mp4"  # 275 frames, several people, audio longer than video
FACES = ("--faces", "dlib", "--detector", "hog")


def files(folder: pathlib.Path, name: str) -> dict[str, bytes]:
    """Everything a video's annotation wrote except the timings (summary.json)."""
    paths = [f"{s}/{name}.txt" for s in ("VA_Set", "EXPR_Set", "AU_Set")] + [f"{name}.csv"]
    return {p: (folder / p).read_bytes() for p in paths}


@pytest.fixture(scope="module")
def plain(media_dir, small_export, tmp_path_factory) -> pathlib.Path:
    """The independent reference: every video annotated in this process, one after another."""
    out = tmp_path_factory.mktemp("plain")
    predictor = Predictor(model=small_export, faces="dlib", detector="hog")
    for name in (*SHORT, LONG):
        predictor.predict(media_dir / name).save(out, plot=False)
    return out


def annotate(*args: str) -> str:
    result = CliRunner().invoke(app, ["annotate", *args, *FACES, "--no-plot"])
    assert result.exit_code == 0, result.output
    return result.output


def test_without_ray_the_option_says_how_to_install_it(media_dir, small_export, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where Ray is not installed
    video = str(media_dir / SHORT[0])
    result = CliRunner().invoke(
        app, ["annotate", video, "--model", str(small_export), "--out", str(tmp_path), "--ray", "local"]
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --ray needs Ray, an optional extra: pip install 'tsav-deploy[ray]'"
    ]


@needs_ray
def test_ray_local_writes_the_files_of_a_plain_run(media_dir, small_export, plain, tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video\n" * 100)
    videos = [str(media_dir / n) for n in (*SHORT, LONG)] + [str(tmp_path / "empty.mp4"), str(tmp_path / "text.mp4")]
    out = tmp_path / "out"
    # A process of its own, as a user runs it: a local Ray changes process-wide settings of Ray
    # (token authentication) that would carry over to the cluster tests below.
    run = subprocess.run(
        [sys.executable, "-m", "tsav_deploy.cli", "annotate", *videos, *FACES, "--no-plot"]
        + ["--model", str(small_export), "--out", str(out), "--ray", "local", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 1, run.stdout + run.stderr  # 1: some video (the two bad ones) failed
    for name in (*SHORT, LONG):
        assert files(out, pathlib.Path(name).stem) == files(plain, pathlib.Path(name).stem), name
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "empty.mp4" in errors[0] + errors[1] and "text.mp4" in errors[0] + errors[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head node and a second worker node on 127.0.0.1, one CPU each, as processes of their own
    (process groups of their own, ended by their ids at the end)."""
    port = _free_port()
    ray_cli = str(pathlib.Path(sys.executable).parent / "ray")
    # Without token authentication: Ray reads RAY_AUTH_MODE once, when it is imported, and sends its
    # token to an address named explicitly only in that mode (README: joining a protected cluster).
    env = {**os.environ, "RAY_memory_monitor_refresh_ms": "0", "RAY_AUTH_MODE": "disabled"}
    common = ["--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--object-store-memory", "100000000"]
    head_args = ["start", "--head", "--port", str(port), "--include-dashboard", "false", "--disable-usage-stats"]
    log = open(tmp_path_factory.mktemp("ray_nodes") / "nodes.log", "w")
    nodes = [subprocess.Popen([ray_cli, *head_args, *common], env=env, start_new_session=True, stdout=log, stderr=log)]
    address = f"127.0.0.1:{port}"
    try:
        _wait_for(address, cpus=1)
        nodes.append(
            subprocess.Popen(
                [ray_cli, "start", "--address", address, *common],
                env=env,
                start_new_session=True,
                stdout=log,
                stderr=log,
            )
        )
        _wait_for(address, cpus=2)
        yield address
    finally:
        # At once, by process group: a node given SIGTERM drains for up to 30 s first.
        for node in reversed(nodes):
            os.killpg(node.pid, signal.SIGKILL)
            node.wait()
        log.close()


def _wait_for(address: str, cpus: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
            found = ray.cluster_resources().get("CPU", 0)
            ray.shutdown()
            if found >= cpus:
                return
        except (ConnectionError, RuntimeError):
            pass
        time.sleep(1)
    raise TimeoutError(f"the Ray cluster at {address} did not reach {cpus} CPUs")


@needs_ray
def test_joining_a_two_node_cluster_writes_the_files_of_a_plain_run(media_dir, small_export, plain, cluster, tmp_path):
    videos = [str(media_dir / n) for n in SHORT]
    annotate(*videos, "--model", str(small_export), "--out", str(tmp_path), "--ray", cluster, "--workers", "2")
    for name in SHORT:
        assert files(tmp_path, pathlib.Path(name).stem) == files(plain, pathlib.Path(name).stem), name
    # A rerun finds every video complete and touches nothing.
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.txt")}
    annotate(*videos, "--model", str(small_export), "--out", str(tmp_path), "--ray", cluster, "--workers", "2")
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.txt")} == before


@needs_ray
def test_a_worker_killed_mid_run_costs_a_retry_not_the_run(media_dir, small_export, plain, cluster, tmp_path):
    from tsav_deploy.runs.cluster import ClusterOptions, RayAnnotator

    killed: list[int] = []

    def kill_once(status) -> None:
        if not killed and status.frames_done > 0:
            killed.append(status.worker_pids[0])
            os.kill(killed[0], signal.SIGKILL)

    options = dict(model=str(small_export), faces="dlib", detector="hog")
    with RayAnnotator(options, ClusterOptions(cluster, workers=2)) as annotator:
        annotations = list(annotator.predict_many([media_dir / LONG, media_dir / SHORT[0]], progress=kill_once))
        pids_after = set(annotator.pids.values())
    assert killed and killed[0] not in pids_after
    assert all(a.ok for a in annotations), [a.error for a in annotations]
    for annotation in annotations:
        annotation.save(tmp_path, plot=False)
        assert files(tmp_path, annotation.name) == files(plain, annotation.name), annotation.name


@needs_ray
def test_a_video_whose_worker_is_lost_twice_gets_its_error_line(media_dir, small_export, cluster):
    from tsav_deploy.runs.cluster import ClusterOptions, RayAnnotator

    killed: set[int] = set()
    state = {"round": 0, "baseline": 0}

    def kill_every_worker_twice(status) -> None:
        # Every worker dies once the video makes progress; again once both are back (new pids)
        # and the retry makes progress: the one running the video is among them both times.
        fresh = [pid for pid in status.worker_pids if pid not in killed]
        if state["round"] == 1 and len(fresh) == 2:
            state.update(round=2, baseline=status.frames_done)
        elif state["round"] in (0, 2) and status.frames_done > state["baseline"]:
            for pid in fresh:
                os.kill(pid, signal.SIGKILL)
            killed.update(fresh)
            state["round"] += 1

    options = dict(model=str(small_export), faces="dlib", detector="hog")
    with RayAnnotator(options, ClusterOptions(cluster, workers=2)) as annotator:
        (annotation,) = annotator.predict_many([media_dir / LONG], progress=kill_every_worker_twice)
    assert not annotation.ok and "lost 2 times" in annotation.error and "\n" not in annotation.error


@needs_ray
def test_a_long_video_cut_into_ranges_equals_the_whole_run(media_dir, small_export, plain, cluster):
    from tsav_deploy.runs.cluster import ClusterOptions, RayAnnotator, frame_ranges

    options = dict(model=str(small_export), faces="dlib", detector="hog")
    cut = ClusterOptions(cluster, workers=2, split_seconds=2.0)
    with RayAnnotator(options, cut) as annotator:
        (annotation,) = annotator.predict_many([media_dir / LONG])
        assert len(frame_ranges(annotation.result.frames, 29.97, 2.0, annotator.annotate_options)) >= 4
    whole = pd.read_csv(plain / f"{annotation.name}.csv")
    ranged = annotation.to_pandas()
    np.testing.assert_allclose(ranged[["valence", "arousal"]], whole[["valence", "arousal"]], atol=1e-4)
    assert (ranged["expression"].astype(str) == whole["expression"]).all()
    assert (ranged[list(ACTION_UNITS)] == whole[list(ACTION_UNITS)]).all().all()


LISTENERS = """
import json, sys, psutil
from tsav_deploy.runs.cluster import ClusterOptions, RayAnnotator

with RayAnnotator(dict(model=sys.argv[1], faces="dlib", detector="hog"), ClusterOptions("local", workers=1)):
    ours = [psutil.Process()] + psutil.Process().children(recursive=True)
    found = []
    for process in ours:
        try:
            found += [[process.name(), c.laddr.ip, c.laddr.port] for c in process.net_connections("inet")
                      if c.status == psutil.CONN_LISTEN]
        except psutil.NoSuchProcess:
            pass
    print(json.dumps(found))
"""


@needs_ray
def test_ray_local_listens_on_the_loopback_address_only(small_export):
    """Every socket the processes of a `--ray local` run listen on (the driver, Ray's GCS, raylet,
    agents and the actor, found as this run's own descendants) is bound to 127.0.0.1."""
    run = subprocess.run(
        [sys.executable, "-c", LISTENERS, str(small_export)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    import json

    listening = json.loads(run.stdout.strip().splitlines()[-1])
    names = {name for name, _, _ in listening}
    assert {"gcs_server", "raylet"} <= names, listening
    assert all(ip in ("127.0.0.1", "::ffff:127.0.0.1") for _, ip, _ in listening), listening
