"""``tsav serve`` as a caller meets it: a real service (Ray Serve, the model, HTTP on 127.0.0.1)
started by this module as a process of its own and stopped by its handle, every process it started
checked gone. Rows are compared with ``Predictor.predict`` on the same file in this process."""

from __future__ import annotations

import concurrent.futures
import importlib.util
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import av
import pandas as pd
import psutil
import pytest
from typer.testing import CliRunner

from tsav_deploy.api import Predictor
from tsav_deploy.cli import app
from tsav_deploy.errors import TsavError
from tsav_deploy.results.table import DECIMALS, csv_text, json_rows


def _has_serve() -> bool:
    """Whether Ray Serve is installed (found, not imported: the service imports it, not the tests)."""
    try:
        return importlib.util.find_spec("ray.serve") is not None
    except ImportError:  # no Ray at all
        return False


pytestmark = pytest.mark.skipif(
    not _has_serve(), reason="Ray Serve is an optional extra (pip install 'tsav-deploy[ray]')"
)

CLIP = "webcam_man_mp3.mp4"  # 72 frames, one face throughout: the job whose replica is killed
SHORT = "webcam_first_second.mp4"  # its first second (30 frames): every other request
FACES = ("--faces", "dlib", "--detector", "hog")
MAX_QUEUE = 8
TOKEN = "serve-test-token-0123456789abcdef"
STARTUP_S = 300  # bounds on waits, so that a broken service fails the test instead of hanging it
ANSWER_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The service's address, folders and process."""

    def __init__(self, process: subprocess.Popen, port: int, root: pathlib.Path, work: pathlib.Path, log: pathlib.Path):
        self.process, self.port, self.root, self.work, self.log = process, port, root, work, log
        self.url = f"http://127.0.0.1:{port}"
        self.started: dict[int, psutil.Process] = {}

    def note_processes(self) -> None:
        """Every process under the service's (Ray's servers and workers), kept to check at the end."""
        try:
            for child in psutil.Process(self.process.pid).children(recursive=True):
                self.started.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            pass

    def call(
        self, method: str, route: str, body: bytes | None = None, headers: dict | None = None, token: str | None = TOKEN
    ):
        """(status, headers, body) of one request."""
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.url + route, data=body, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=ANSWER_S) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()


@pytest.fixture(scope="module")
def short_clip(media_dir, tmp_path_factory) -> pathlib.Path:
    """The clip's first second, its packets copied up to there in decoding order (so every frame's
    references are in), audio included."""
    path = tmp_path_factory.mktemp("short") / SHORT
    with av.open(str(media_dir / CLIP)) as source, av.open(str(path), "w") as target:
        streams = {s.index: target.add_stream_from_template(s) for s in source.streams if s.type in ("video", "audio")}
        for packet in source.demux(*[source.streams[i] for i in streams]):
            if packet.dts is not None and packet.dts * packet.time_base < 1.0:
                packet.stream = streams[packet.stream.index]
                target.mux(packet)
    return path


@pytest.fixture(scope="module")
def server(media_dir, short_clip, small_checkpoint, tmp_path_factory):
    base = tmp_path_factory.mktemp("serve")
    root, work = base / "media", base / "work"
    (root / "clips").mkdir(parents=True)
    shutil.copy(media_dir / CLIP, root / "clips" / CLIP)
    shutil.copy(short_clip, root / "clips" / SHORT)
    (root / "outside.mp4").symlink_to(media_dir / CLIP)  # a link out of the media root
    (base / "token").write_text(TOKEN + "\n")
    port, log = _free_port(), base / "serve.log"
    args = ["serve", "--weights", str(small_checkpoint), *FACES, "--port", str(port), "--ray", "local"]
    args += ["--max-queue", str(MAX_QUEUE), "--max-batch", "8", "--batch-wait-ms", "200", "--max-upload-mb", "1"]
    args += ["--token-file", str(base / "token"), "--media-root", str(root), "--work-dir", str(work)]
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tsav_deploy.cli", *args], stdout=out, stderr=out, start_new_session=True
        )
    running = Server(process, port, root, work, log)
    try:
        _wait_ready(running)
        yield running
    finally:
        _stop(running)


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        assert server.process.poll() is None, "the service ended:\n" + server.log.read_text()
        try:
            if server.call("GET", "/readyz", token=None)[0] == 200:
                server.note_processes()
                return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(1)
    raise TimeoutError("the service did not become ready:\n" + server.log.read_text())


def _stop(server: Server) -> None:
    """SIGTERM to the service (it stops Serve and Ray in order), then every process it started must
    be gone; whatever is left is killed by its id and fails the test."""
    server.note_processes()
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()
    _, alive = psutil.wait_procs(list(server.started.values()), timeout=60)
    for process in alive:
        process.kill()
    assert not alive, f"left running after the service stopped: {[p.pid for p in alive]}"
    assert server.process.returncode == 0, server.log.read_text()


@pytest.fixture(scope="module")
def predictor(small_checkpoint):
    return Predictor(weights=small_checkpoint, faces="dlib", detector="hog")


@pytest.fixture(scope="module")
def reference(predictor, short_clip):
    """The independent reference: the same file through the Predictor in this process."""
    return predictor.predict(short_clip)


@pytest.fixture(scope="module")
def whole_reference(predictor, media_dir):
    return predictor.predict(media_dir / CLIP)


def one_line(body: bytes) -> str:
    """A refusal's body: JSON with one key, ``error``, whose value is one line."""
    answer = json.loads(body)
    assert list(answer) == ["error"] and "\n" not in answer["error"] and answer["error"], answer
    return answer["error"]


def test_rows_equal_the_predictors_value_for_value(server, reference, short_clip):
    from tsav_deploy.client import annotate

    status, _, body = server.call("POST", f"/v1/annotate?filename={SHORT}", short_clip.read_bytes())
    assert status == 200, body
    answer = json.loads(body)
    assert answer["video"] == SHORT and answer["rows"] == json_rows(reference.result)
    status, headers, body = server.call("POST", f"/v1/annotate?path=clips/{SHORT}", headers={"Accept": "text/csv"})
    assert status == 200 and headers["content-type"].startswith("text/csv")
    assert body.decode() == csv_text(reference.result)
    table = annotate(server.url, short_clip, token=TOKEN)
    pd.testing.assert_frame_equal(table, reference.to_pandas(), check_exact=True)
    assert os.listdir(server.work) == []  # every upload removed after use


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_concurrent_clients_all_get_their_rows_in_shared_batches(server, reference, short_clip):
    from tsav_deploy.client import annotate

    with concurrent.futures.ThreadPoolExecutor(MAX_QUEUE) as pool:
        tables = list(pool.map(lambda _: annotate(server.url, short_clip, token=TOKEN), range(MAX_QUEUE)))
    expected = reference.to_pandas()
    # A network run over other callers' rows too sums in another order (a batch of another size),
    # which can move a value by one unit of its last written decimal; all else is exact.
    for table in tables:
        pd.testing.assert_frame_equal(table, expected, check_exact=False, rtol=0, atol=10 ** -min(DECIMALS.values()))
        exact = [c for c in expected.columns if c not in DECIMALS or DECIMALS[c] != 4]
        pd.testing.assert_frame_equal(table[exact], expected[exact], check_exact=True)
    status, _, metrics = server.call("GET", "/metrics")
    text = metrics.decode()
    single = _metric(text, 'tsav_network_batch_callers_bucket{le="1.0"')
    assert _metric(text, "tsav_network_batch_callers_count") > single, "no network run joined two callers' batches"
    assert _metric(text, 'tsav_requests_total{code="200",route="annotate"}') >= MAX_QUEUE
    assert os.listdir(server.work) == []


def _library_line(predictor: Predictor, video: pathlib.Path) -> str:
    """The line ``tsav annotate`` and the Predictor give for a file."""
    with pytest.raises(TsavError) as raised:
        predictor.predict(video)
    return str(raised.value)


def test_the_schema_documents_every_field_intake_reads(server):
    """Both routes' query fields in /openapi.json are the ones intake accepts, no more, no fewer."""
    from tsav_deploy.runs.serving.intake import ANNOTATION_FIELDS, VIDEO_FIELDS

    status, _, body = server.call("GET", "/openapi.json", token=None)
    assert status == 200
    paths = json.loads(body)["paths"]
    for route in ("/v1/annotate", "/v1/jobs"):
        parameters = paths[route]["post"]["parameters"]
        assert [p["name"] for p in parameters] == [*ANNOTATION_FIELDS, *VIDEO_FIELDS]
        assert all(p["in"] == "query" and p.get("description") for p in parameters)


def test_bad_input_gets_its_status_and_one_line(server, predictor, short_clip, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 200)
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(short_clip.read_bytes()[:20_000])
    wrong = "wrong-token-0123456789"
    cases = [
        ("POST", "/v1/annotate", b"\0" * (1024 * 1024 + 1), TOKEN, 413),
        ("POST", "/v1/annotate?filename=notes.mp4", text.read_bytes(), TOKEN, 422),
        ("POST", "/v1/annotate?filename=cut.mp4", truncated.read_bytes(), TOKEN, 422),
        ("POST", f"/v1/annotate?path=clips/{SHORT}", None, wrong, 401),
        ("POST", f"/v1/annotate?path=clips/{SHORT}", None, None, 401),
        ("GET", "/metrics", None, None, 401),
        ("POST", "/v1/annotate?path=../token", None, TOKEN, 403),
        ("POST", "/v1/annotate?path=/etc/passwd", None, TOKEN, 403),
        ("POST", "/v1/annotate?path=outside.mp4", None, TOKEN, 403),
        ("POST", f"/v1/annotate?path=clips/{SHORT}&colour=red", None, TOKEN, 400),
        ("POST", f"/v1/annotate?path=clips/{SHORT}&stride=0", None, TOKEN, 400),
        ("POST", "/v1/annotate", b"", TOKEN, 400),
        ("GET", "/v1/jobs/nothing", None, TOKEN, 404),
    ]
    lines = {}
    for method, route, body, token, expected in cases:
        status, _, answer = server.call(method, route, body, token=token)
        assert status == expected, (route, status, answer)
        lines[route, expected] = one_line(answer)
    # The lines the CLI gives for the same files, the service's temporary name replaced by the caller's.
    assert lines["/v1/annotate?filename=notes.mp4", 422] == _library_line(predictor, text).replace(
        str(text), "notes.mp4"
    )
    assert lines["/v1/annotate?filename=cut.mp4", 422] == _library_line(predictor, truncated).replace(
        str(truncated), "cut.mp4"
    )
    assert (
        lines[f"/v1/annotate?path=clips/{SHORT}&stride=0", 400] == "stride must be a whole number from 1 to 300, not 0"
    )
    assert os.listdir(server.work) == []
    assert server.call("GET", "/healthz", token=None)[0] == 200


def test_a_full_queue_answers_503_with_retry_after_then_serves_again(server, reference):
    stalled = []
    try:
        for _ in range(MAX_QUEUE):  # uploads that never finish hold every place
            connection = socket.create_connection(("127.0.0.1", server.port))
            connection.sendall(
                f"POST /v1/annotate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Length: 100000\r\n\r\n".encode()
                + b"\0" * 100
            )
            stalled.append(connection)
        deadline = time.monotonic() + ANSWER_S
        while _metric(server.call("GET", "/metrics")[2].decode(), "tsav_queue_length") < MAX_QUEUE:
            assert time.monotonic() < deadline, "the stalled uploads never held their places"
            time.sleep(0.2)
        status, headers, body = server.call("POST", f"/v1/annotate?path=clips/{SHORT}")
        assert status == 503 and int(headers["retry-after"]) > 0
        assert "--max-queue" in one_line(body)
    finally:
        for connection in stalled:
            connection.close()
    deadline = time.monotonic() + ANSWER_S
    while _metric(server.call("GET", "/metrics")[2].decode(), "tsav_queue_length") > 0:
        assert time.monotonic() < deadline, "the places of the dropped uploads were never given back"
        time.sleep(0.2)
    status, _, body = server.call("POST", f"/v1/annotate?path=clips/{SHORT}")
    assert status == 200 and json.loads(body)["rows"] == json_rows(reference.result)
    assert os.listdir(server.work) == []


def _job_until_finished(server: Server, job_id: str, on_progress=None) -> dict:
    deadline = time.monotonic() + ANSWER_S
    while True:
        status, _, body = server.call("GET", f"/v1/jobs/{job_id}")
        assert status == 200, body
        job = json.loads(body)
        if job["status"] in ("done", "failed"):
            return job
        if on_progress is not None:
            on_progress(job)
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']} ({job['progress']})"
        time.sleep(0.2)


def test_a_job_reports_progress_and_keeps_its_result_until_fetched(server, reference, short_clip):
    status, headers, body = server.call("POST", f"/v1/jobs?filename={SHORT}", short_clip.read_bytes())
    assert status == 202, body
    job = json.loads(body)
    assert headers["location"] == f"/v1/jobs/{job['id']}"
    fractions = []
    finished = _job_until_finished(server, job["id"], lambda j: fractions.append(j["progress"]["fraction"]))
    assert finished["status"] == "done" and finished["progress"]["fraction"] == 1.0
    assert fractions == sorted(fractions) and all(0 <= f <= 1 for f in fractions)
    status, _, body = server.call("GET", f"/v1/jobs/{job['id']}/result", headers={"Accept": "text/csv"})
    assert status == 200 and body.decode() == csv_text(reference.result)
    status, _, body = server.call("GET", f"/v1/jobs/{job['id']}/result")
    assert status == 404 and "kept until it is fetched" in one_line(body)
    assert os.listdir(server.work) == []


def _network_replica(server: Server) -> psutil.Process:
    for child in psutil.Process(server.process.pid).children(recursive=True):
        try:
            if "ServeReplica:tsav:network" in " ".join(child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    raise AssertionError("no network replica among the service's processes")


def test_a_replica_killed_mid_request_costs_a_retry_not_the_service(server, whole_reference):
    replica = _network_replica(server)
    status, _, body = server.call("POST", f"/v1/jobs?path=clips/{CLIP}")
    assert status == 202, body
    job_id = json.loads(body)["id"]
    killed = []

    def kill_in_the_network_pass(job: dict) -> None:
        if not killed and job["progress"]["network_done"] > 0:
            replica.kill()
            killed.append(replica.pid)

    finished = _job_until_finished(server, job_id, kill_in_the_network_pass)
    assert killed, "the job finished before its network pass was seen"
    status, _, body = server.call("GET", f"/v1/jobs/{job_id}/result")
    if finished["status"] == "done":  # retried on the restarted replica
        assert status == 200 and json.loads(body)["rows"] == json_rows(whole_reference.result)
    else:  # or failed cleanly, in one line
        assert status == 503 and "lost" in one_line(body)
    server.note_processes()
    assert _network_replica(server).pid != killed[0]
    status, _, body = server.call("POST", f"/v1/annotate?path=clips/{CLIP}")
    assert status == 200 and json.loads(body)["rows"] == json_rows(whole_reference.result)
    assert os.listdir(server.work) == []


@pytest.mark.parametrize(
    "args, line",
    [
        (["--host", "0.0.0.0"], "--host 0.0.0.0 listens beyond this machine: pass --token-file FILE"),
        (["--token-file", "/nonexistent/token"], "--token-file /nonexistent/token: no such file"),
        (["--max-queue", "0"], "--max-queue must be a whole number from 1 to 1024, not 0"),
    ],
)
def test_a_bad_start_is_one_line_before_anything_runs(small_checkpoint, args, line):
    result = CliRunner().invoke(app, ["serve", "--weights", str(small_checkpoint), *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {line}"), result.output
