"""Nothing outside its folders is touched, no user file is lost, records and caches are data: what a
hostile review of the released commands tried, each class of failure with more than its example.
Real files, real links, real processes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from tsav_deploy import atomic
from tsav_deploy.api import Annotation, Predictor
from tsav_deploy.artifacts.manifest import read_manifest
from tsav_deploy.artifacts.weights import REGISTRY, verify
from tsav_deploy.atomic import partial_path, try_lock, unlock, write_text
from tsav_deploy.cli import app
from tsav_deploy.errors import ArtifactError, TsavError
from tsav_deploy.export import Exporter
from tsav_deploy.outputs.records import OutputOptions, check_output_folder, save_outputs

from helpers.hostile_media import SOURCE
from helpers.synthetic_annotation import synthetic_result


def run_cli(*args: str, input: str | None = None):
    result = CliRunner().invoke(app, list(args), input=input)
    assert "Traceback" not in result.output, result.output
    return result


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def tree(folder: pathlib.Path) -> dict[str, str]:
    """Every entry under ``folder`` (links as where they point) and its content's hash."""
    found = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            found[key] = "-> " + os.readlink(path)
        elif path.is_file():
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[key] = "dir"
    return found


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert isinstance(error.value, TsavError) and "\n" not in message, message
    return message


@pytest.fixture(scope="module")
def annotation(media_dir, small_export):
    """One real annotation of a short recording (72 frames), saved again by each test."""
    return Predictor(model=small_export, detector="hog").predict(media_dir / SOURCE)


TSAV = [sys.executable, "-m", "tsav_deploy.cli"]
ENV = {**os.environ, "COLUMNS": "400"}
ALL_OUTPUTS = OutputOptions(overlay=True, plot=True, table="both", report=True)


# --- 1. deleting what is not ours -----------------------------------------------------------------


def _foreign_manifest(out: pathlib.Path) -> None:
    (out / "manifest.json").write_text('{"name": "my project", "version": 3}')
    (out / "main.py").write_text("print('mine')")


def _extra_file(out: pathlib.Path) -> None:
    (out / "notes.txt").write_text("keep me")


def _changed_artifact(out: pathlib.Path) -> None:
    (out / "fusion.onnx").write_bytes(b"my own graph")


def _subfolder(out: pathlib.Path) -> None:
    (out / "data").mkdir()
    (out / "data" / "x.bin").write_bytes(b"1")


def _linked_artifact(out: pathlib.Path) -> None:
    victim = out.parent / "elsewhere.onnx"
    shutil.move(out / "fusion.onnx", victim)
    (out / "fusion.onnx").symlink_to(victim)


def _not_json(out: pathlib.Path) -> None:
    (out / "manifest.json").write_text("not json {")


@pytest.mark.parametrize(
    "plant", [_foreign_manifest, _extra_file, _changed_artifact, _subfolder, _linked_artifact, _not_json]
)
def test_export_replaces_only_a_folder_its_manifest_proves_to_be_an_export(
    plant, small_checkpoint, small_export, tmp_path
):
    out = pathlib.Path(shutil.copytree(small_export, tmp_path / "export", symlinks=True))
    plant(out)
    before = tree(tmp_path)
    with pytest.raises(TsavError) as error:
        Exporter(["onnx"])(small_checkpoint, out)
    assert "which no tsav export made" in one_line(error)
    assert tree(tmp_path) == before


def test_export_still_replaces_an_earlier_export_whole(small_checkpoint, small_export, tmp_path):
    out = pathlib.Path(shutil.copytree(small_export, tmp_path / "export"))
    Exporter(["onnx"])(small_checkpoint, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["manifest.json", "visual.onnx", "aural.onnx", "fusion.onnx", "parity_reference.npz"]
    )


def _cache_with_record(home: pathlib.Path, checkpoint: pathlib.Path, recorded_name) -> pathlib.Path:
    """The real registry's tnt-sub1 folder: its archive (holding ``checkpoint``) and a record that
    names ``recorded_name`` as the extracted checkpoint (with a hash nothing matches)."""
    entry = REGISTRY["tnt-sub1"]
    folder = home / entry.name
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / entry.url.rsplit("/", 1)[1]
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(checkpoint, "aff2model_tnt/TSAV416k.pth.tar")
    record = {
        "url": entry.url,
        "sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
        "checkpoint": {"name": recorded_name, "sha256": "0" * 64},
    }
    (folder / "sha256.json").write_text(json.dumps(record))
    return folder


@pytest.mark.parametrize("name", ["{absolute}", "{relative}", "sub/../{relative}", "./{relative}", "../{beside}"])
def test_a_cache_record_never_points_a_removal_outside_its_folder(name, tmp_path, monkeypatch, small_checkpoint):
    home = tmp_path / "cache" / "home"
    victim = tmp_path / "victim.pth.tar"
    victim.write_bytes(b"the user's own checkpoint")
    beside = home / "victim.pth.tar"  # in the cache, but not in the entry's own folder
    beside.parent.mkdir(parents=True)
    beside.write_bytes(b"another entry's file")
    monkeypatch.setenv("TSAV_HOME", str(home))
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "insightface"))
    relative = os.path.relpath(victim, home / "tnt-sub1")
    _cache_with_record(home, small_checkpoint, name.format(absolute=victim, relative=relative, beside=beside.name))
    result = run_cli("weights", "verify")
    assert result.exit_code == 0, result.output
    assert victim.read_bytes() == b"the user's own checkpoint" and beside.read_bytes() == b"another entry's file"
    assert "TSAV416k.pth.tar verified" in result.output  # the archive is extracted as if no record named one


@pytest.mark.parametrize(
    "record",
    [
        {"checkpoint": ["TSAV416k.pth.tar"]},
        {"checkpoint": {"name": 7, "sha256": "0" * 64}},
        {"checkpoint": {"name": "TSAV416k.pth.tar", "sha256": 12}},
        {"checkpoint": {"name": "aff2model_tnt.zip", "sha256": "0" * 64}},  # the archive itself
        {"sha256": ["not", "a", "hash"]},
        {"sha256": "zz" * 32},
    ],
)
def test_a_cache_record_with_a_field_of_the_wrong_form_is_not_trusted(record, tmp_path, small_checkpoint):
    home = tmp_path / "home"
    folder = _cache_with_record(home, small_checkpoint, "TSAV416k.pth.tar")
    stored = json.loads((folder / "sha256.json").read_text())
    (folder / "sha256.json").write_text(json.dumps({**stored, **record}))
    archive = folder / "aff2model_tnt.zip"
    kept = archive.read_bytes()
    lines = verify(home)
    assert lines[0].startswith("tnt-sub1:") and lines[0].endswith("TSAV416k.pth.tar verified"), lines
    assert archive.read_bytes() == kept


# --- 2. writing through links and out of folders --------------------------------------------------


@pytest.mark.parametrize(
    "name, plain",
    [
        ("clip.mp4", True),
        ("a b.mp4", True),
        ("..", False),
        (".", False),
        ("", False),
        ("../x", False),
        ("/etc/passwd", False),
        ("a/b", False),
        ("x\0y", False),
        (7, False),
        (None, False),
    ],
)
def test_plain_names(name, plain):
    assert (atomic.plain_name(name) is not None) is plain


def test_confined_paths_stay_in_their_folder_also_through_links(tmp_path):
    out = tmp_path / "out"
    (out / "VA_Set").mkdir(parents=True)
    (out / "elsewhere").symlink_to(tmp_path)
    assert atomic.confined(out, "VA_Set/x.txt") == out / "VA_Set" / "x.txt"
    assert atomic.confined(out, "x.csv") == out / "x.csv"
    for bad in ("../x", "/abs/x", "VA_Set/../../x", "elsewhere/x", "", 3, ["x"], "a//b", "VA_Set/"):
        assert atomic.confined(out, bad) is None, bad


def test_temporary_and_lock_files_are_never_written_through_a_link(tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    target = out / "summary.json"
    partial_path(target).symlink_to(outside / "written")  # dangling: the link's target does not exist
    outside.mkdir()
    with pytest.raises(TsavError) as error:
        write_text(target, "{}")
    assert "symbolic link" in one_line(error)
    lock = out / "x.lock"
    lock.symlink_to(outside / "lock")
    with pytest.raises(TsavError):
        try_lock(lock, wait=False)
    log = out / "tsav-errors.log"
    log.symlink_to(outside / "log")
    with pytest.raises(TsavError):
        atomic.append_text(log, "x")
    assert list(outside.iterdir()) == []
    # Without a planted link all three work, and a stale regular file at our temporary name goes.
    partial_path(target).unlink()
    partial_path(target).write_text("stale")
    assert write_text(target, "{}").read_text() == "{}" and not partial_path(target).exists()
    lock.unlink()
    unlock(lock, try_lock(lock, wait=False))


WRITTEN = [
    "VA_Set/{}.txt",
    "EXPR_Set/{}.txt",
    "AU_Set/{}.txt",
    "{}.csv",
    "{}.parquet",
    "{}.png",
    "{}.overlay.mp4",
    "{}.html",
    ".tsav/{}.json",
]


@pytest.mark.parametrize("written", WRITTEN)
def test_a_link_planted_at_any_temporary_name_of_a_video_gets_nothing_written_outside(written, annotation, tmp_path):
    """A dangling link at the temporary name (``<name>.partial-<pid>.<ext>``) of each file a video
    writes, for this process's id (the one it writes under)."""
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    (out / "VA_Set").mkdir(parents=True)
    (out / ".tsav").mkdir()
    for task in ("EXPR_Set", "AU_Set"):
        (out / task).mkdir()
    planted = partial_path(out / written.format(annotation.name))
    planted.symlink_to(outside / "planted")
    # The link is removed, never written through.
    written = save_outputs(out, annotation._require(), annotation.video, annotation.info, ALL_OUTPUTS)
    assert list(outside.iterdir()) == [] and not planted.is_symlink()
    assert len(written) == 8 and all(p.is_file() and not p.is_symlink() for p in written)
    assert (out / ".tsav" / f"{annotation.name}.json").is_file()


@pytest.mark.parametrize("folder", [".tsav", "VA_Set", "EXPR_Set", "AU_Set"])
def test_a_folder_of_the_tool_linked_elsewhere_is_refused(folder, tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / folder).symlink_to(outside)
    with pytest.raises(TsavError) as error:
        check_output_folder(out)
    assert "symbolic link" in one_line(error)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("name", ["../x", "/tmp/abs", "a/b", "..", "."])
def test_live_name_must_be_a_plain_file_name(name, media_dir, small_export, tmp_path):
    out = tmp_path / "sub" / "out"
    result = run_cli("live", str(media_dir / SOURCE), "--model", str(small_export), "--out", str(out), "--name", name)
    assert result.exit_code == 2
    assert len(error_lines(result.output)) == 1 and "--name" in result.output
    assert not (tmp_path / "sub").exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", ["../outside.onnx", "/tmp/outside.onnx", "sub/x.onnx", ".."])
def test_a_manifest_naming_a_file_outside_its_folder_is_refused(name, small_export, tmp_path):
    out = pathlib.Path(shutil.copytree(small_export, tmp_path / "export"))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["artifacts"][name] = dict(manifest["artifacts"]["fusion.onnx"])
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError) as error:
        read_manifest(out)
    assert "not a file of the export folder" in one_line(error)


# --- 4. losing a user's file ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _nobody_listening(tmp_path: pathlib.Path) -> str:
    return f"tcp://127.0.0.1:{free_port()}"


def _not_a_video(tmp_path: pathlib.Path) -> str:
    path = tmp_path / "notes.mp4"
    path.write_text("not a video")
    return str(path)


def _missing_file(tmp_path: pathlib.Path) -> str:
    return str(tmp_path / "missing.mp4")


@pytest.mark.parametrize("source", [_nobody_listening, _not_a_video, _missing_file])
def test_a_source_that_fails_to_open_costs_no_existing_output(source, small_export, tmp_path):
    """Every output of ``tsav live`` already there (the JSONL, the overlay, an --out folder of an
    earlier run), and a source that fails: each is left byte for byte as it was."""
    mine = tmp_path / "mine"
    (mine / "out" / "VA_Set").mkdir(parents=True)
    (mine / "rows.jsonl").write_text('{"frame": 0}\n')
    (mine / "overlay.mp4").write_bytes(b"an earlier overlay")
    (mine / "out" / "VA_Set" / "cam.txt").write_text("valence,arousal\n0.1,0.2\n")
    before = tree(mine)
    result = run_cli(
        "live", source(tmp_path), "--model", str(small_export), "--name", "cam",
        "--jsonl", str(mine / "rows.jsonl"), "--overlay-out", str(mine / "overlay.mp4"), "--out", str(mine / "out"),
    )  # fmt: skip
    assert result.exit_code == 2 and len(error_lines(result.output)) == 1, result.output
    after = tree(mine)
    assert {k: v for k, v in after.items() if not k.startswith("out/.tsav")} == before


def test_a_live_run_replaces_an_existing_jsonl_whole(media_dir, small_export, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("an earlier run's rows, longer than one frame's row would be " * 200 + "\n")
    result = run_cli("live", str(media_dir / SOURCE), "--model", str(small_export), "--jsonl", str(rows))
    assert result.exit_code == 0, result.output
    lines = rows.read_text().splitlines()
    assert len(lines) == 72 and all(json.loads(line)["person"] == "main" for line in lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]


# --- 10. quiet endings ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mpegts_bytes(media_dir) -> bytes:
    """The recording as MPEG-TS, as a sender would put it on the wire."""
    buffer = io.BytesIO()
    with av.open(str(media_dir / SOURCE)) as source, av.open(buffer, "w", format="mpegts") as out:
        streams = [s for s in source.streams if s.type in ("video", "audio")]
        outputs = {s.index: out.add_stream_from_template(s) for s in streams}
        for packet in source.demux(streams):
            if packet.dts is not None:
                packet.stream = outputs[packet.stream.index]
                out.mux(packet)
    return buffer.getvalue()


@pytest.mark.parametrize("sent", [0, 188, 940])
def test_a_sender_that_ends_before_its_first_picture_is_one_line_and_a_failure(
    sent, mpegts_bytes, small_export, tmp_path
):
    """A real ``tsav live`` process listening; a sender that connects, sends the first bytes of a
    stream (no whole picture) and hangs up."""
    port = free_port()
    command = [*TSAV, "live", f"tcp://127.0.0.1:{port}?listen=1", "--model", str(small_export)]
    process = subprocess.Popen(
        [*command, "--jsonl", str(tmp_path / "rows.jsonl")], stderr=subprocess.PIPE, text=True, env=ENV
    )
    try:
        assert "engine:" in process.stderr.readline()
        sender = _connect(port)
        sender.sendall(mpegts_bytes[:sent])
        sender.close()
        stderr = process.communicate(timeout=120)[1]
    finally:
        process.kill()
    assert process.returncode in (1, 2), stderr
    assert len(error_lines(stderr)) == 1 and "Traceback" not in stderr, stderr
    assert not (tmp_path / "rows.jsonl").exists()


def _connect(port: int) -> socket.socket:
    """A connection to the listening ``tsav live`` (it listens once the model is loaded)."""
    for _ in range(600):
        try:
            return socket.create_connection(("127.0.0.1", port))
        except ConnectionRefusedError:
            time.sleep(0.1)
    raise AssertionError("tsav live never listened")


# --- 3. trusting records and caches ---------------------------------------------------------------


def _saved_pair(media_dir: pathlib.Path, folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """Two videos (copies of a recording) with synthetic predictions saved into ``folder / "out"``."""
    out = folder / "out"
    videos = []
    for name in ("good", "bad"):
        video = folder / f"{name}.mp4"
        shutil.copyfile(media_dir / SOURCE, video)
        Annotation(video, synthetic_result(name, np.arange(72) / 30)).save(out, plot=False)
        videos.append(video)
    return out, videos[1]


def _edit_record(out: pathlib.Path, change) -> None:
    path = out / ".tsav" / "bad.json"
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


RECORD_EDITS = {
    "frames as text": lambda r: r.update(frames="many"),
    "frames as a list": lambda r: r.update(frames=[72]),
    "video as a number": lambda r: r.update(video=5),
    "outputs as text": lambda r: r.update(outputs="bad.csv"),
    "outputs of numbers": lambda r: r.update(outputs=[1, 2]),
    "outputs outside": lambda r: r.update(outputs=[*r["outputs"], "../../etc/passwd"]),
    "outputs absolute": lambda r: r.update(outputs=[*r["outputs"], "/etc/passwd"]),
    "stride as a dict": lambda r: r.update(stride={"k": 1}),
    "seconds as a bool": lambda r: r.update(seconds=True),
    "input hash as a list": lambda r: r.update(input_sha256=["x"]),
    "warnings as text": lambda r: r.update(warnings="none"),
    "neither outputs nor error": lambda r: r.pop("outputs"),
}


@pytest.mark.parametrize("edit", list(RECORD_EDITS))
def test_a_record_with_a_field_of_the_wrong_form_costs_its_video_one_line(edit, media_dir, tmp_path):
    out, _ = _saved_pair(media_dir, tmp_path)
    _edit_record(out, RECORD_EDITS[edit])
    result = run_cli("report", str(out))
    assert result.exit_code == 1, result.output
    errors = error_lines(result.output)
    assert len(errors) == 1 and "bad" in errors[0], result.output
    assert (out / "good.html").is_file() and (out / "index.html").is_file() and not (out / "bad.html").exists()
    summary = json.loads((out / "summary.json").read_text())["videos"]
    assert "outputs" in summary["good"] and "unreadable record" in summary["bad"]["error"]


TABLE_EDITS = {
    "a word for a number": lambda rows: rows[3].__setitem__(10, "abc"),
    "a list for a number": lambda rows: rows[5].__setitem__(11, "[1, 2]"),
    "an unknown expression": lambda rows: rows[2].__setitem__(19, "Boredom"),
    "a column missing": lambda rows: [row.pop(10) for row in rows],
    "a track id as text": lambda rows: rows[1].__setitem__(4, "first"),
}


@pytest.mark.parametrize("edit", list(TABLE_EDITS))
def test_a_table_edited_to_hold_what_the_writer_never_writes_costs_its_video_one_line(edit, media_dir, tmp_path):
    out, _ = _saved_pair(media_dir, tmp_path)
    path = out / "bad.csv"
    rows = [line.split(",") for line in path.read_text().splitlines()]
    TABLE_EDITS[edit](rows)
    path.write_text("\n".join(",".join(row) for row in rows) + "\n")
    result = run_cli("report", str(out))
    assert result.exit_code == 1, result.output
    errors = error_lines(result.output)
    assert len(errors) == 1 and "bad" in errors[0] and "annotate the video again" in errors[0], result.output
    assert (out / "good.html").is_file() and (out / "index.html").is_file()


def _any_other_file(tmp_path: pathlib.Path, video: pathlib.Path) -> pathlib.Path:
    secret = tmp_path / "private" / "id_rsa"
    secret.parent.mkdir()
    secret.write_text("-----BEGIN PRIVATE KEY-----")
    return secret


def _another_video(tmp_path: pathlib.Path, video: pathlib.Path) -> pathlib.Path:
    other = tmp_path / "private" / "holiday.mp4"
    other.parent.mkdir()
    shutil.copyfile(pathlib.Path(video).with_name("good.mp4"), other)
    with open(other, "ab") as file:
        file.write(b"\0")  # a different file that decodes alike
    return other


def _input_replaced(tmp_path: pathlib.Path, video: pathlib.Path) -> pathlib.Path:
    video.write_text("no longer a video")
    return video


@pytest.mark.parametrize("named", [_any_other_file, _another_video, _input_replaced])
def test_a_record_naming_another_file_never_brings_it_into_the_folder(named, media_dir, tmp_path):
    out, video = _saved_pair(media_dir, tmp_path)
    target = named(tmp_path, video)
    _edit_record(out, lambda r: r.update(video=str(target)))
    result = run_cli("report", str(out))
    assert result.exit_code == 0, result.output
    assert all(not os.path.samefile(p, target) for p in out.rglob("*") if p.is_file())
    assert not (out / "bad.input.mp4").exists() and not (out / "bad.input").exists()
    assert "<video" not in (out / "bad.html").read_text() and "<video" in (out / "good.html").read_text()


# --- 5. two videos, one file ----------------------------------------------------------------------


def _synthetic(folder: pathlib.Path, name: str, suffixes: tuple[str, ...] = ("",)) -> Annotation:
    return Annotation(folder / f"{name}.mp4", synthetic_result(name, np.arange(24) / 30, suffixes))


@pytest.mark.parametrize(
    "first, second",
    [
        (("two", ("_left", "_right")), ("two_left", ("",))),
        (("two_left", ("",)), ("two", ("_left", "_right"))),
        (("two", ("_left", "_right")), ("two_right", ("",))),
        (("crowd", ("_person1", "_person2", "_person3")), ("crowd_person2", ("",))),
        (("crowd_person3", ("",)), ("crowd", ("_person1", "_person2", "_person3"))),
    ],
)
def test_two_videos_never_write_one_file(first, second, tmp_path):
    out = tmp_path / "out"
    _synthetic(tmp_path, *first).save(out)
    before = tree(out)
    with pytest.raises(TsavError) as error:
        _synthetic(tmp_path, *second).save(out)
    assert "output names must differ" in one_line(error) and first[0] in str(error.value)
    assert tree(out) == before  # nothing of the second video was written


def test_names_that_only_look_alike_do_not_clash(tmp_path):
    out = tmp_path / "out"
    for name, suffixes in (("two", ("_left", "_right")), ("two_leftover", ("",)), ("two_person", ("",))):
        _synthetic(tmp_path, name, suffixes).save(out)
    _synthetic(tmp_path, "two", ("_left", "_right")).save(out)  # a video redone replaces its own files


@pytest.mark.parametrize("report", [True, False])
def test_a_video_named_like_a_file_of_the_folder(report, tmp_path):
    out = tmp_path / "out"
    if not report:
        assert "index.html" not in [p.name for p in _synthetic(tmp_path, "index").save(out, report=False)]
        return
    with pytest.raises(TsavError) as error:
        _synthetic(tmp_path, "index").save(out, report=True)
    assert "output folder's own index.html" in one_line(error)
    assert not (out / "index.csv").exists()


@pytest.mark.parametrize("spelling", [".", "**/*.mp4", "*"])
def test_annotating_a_folder_twice_never_takes_its_own_outputs_for_videos(
    spelling, media_dir, small_export, tmp_path, monkeypatch
):
    """The default ``tsav_out/`` inside the folder annotated: the second run finds its overlay, the
    linked input and every file it wrote, and annotates none of them."""
    shutil.copyfile(media_dir / SOURCE, tmp_path / "clip.mp4")
    monkeypatch.chdir(tmp_path)
    first = run_cli("annotate", ".", "--model", str(small_export), "--detector", "hog", "--overlay", "--report")
    assert first.exit_code == 0, first.output
    (tmp_path / "tsav_out" / "clip.overlay.mp4.partial-1.mp4").write_bytes(b"another run's temporary file")
    second = run_cli("annotate", spelling, "--model", str(small_export), "--detector", "hog", "--overlay", "--report")
    assert second.exit_code == 0, second.output
    records = sorted(p.name for p in (tmp_path / "tsav_out" / ".tsav").iterdir())
    assert records == ["clip.json"], records
    assert "skipped" in second.output


# --- 7. weights that are not numbers --------------------------------------------------------------


def _poisoned_checkpoint(small_checkpoint: pathlib.Path, folder: pathlib.Path, key: str, value: float) -> pathlib.Path:
    import torch

    from tsav_deploy.artifacts.checkpoint import load_checkpoint, save_checkpoint

    model = load_checkpoint(small_checkpoint).build_model()
    with torch.no_grad():
        model.state_dict()[key].view(-1)[3] = value
    return save_checkpoint(folder / f"poisoned-{key}-{value}.pt", model)


POISONS = [
    ("fc.1.weight", float("nan")),
    ("fc.1.bias", float("inf")),
    ("audio_model.resnet.conv1.weight", float("-inf")),
    ("audio_model.resnet.bn1.running_var", float("nan")),
]


@pytest.mark.parametrize("key, value", POISONS)
def test_a_checkpoint_with_weights_that_are_not_numbers_is_refused_in_one_line(
    key, value, small_checkpoint, media_dir, tmp_path
):
    path = _poisoned_checkpoint(small_checkpoint, tmp_path, key, value)
    for command in (
        ["annotate", str(media_dir / SOURCE), "--weights", str(path), "--overlay", "-o", str(tmp_path / "out")],
        ["export", str(path), "--out", str(tmp_path / "export")],
    ):
        result = run_cli(*command)
        assert result.exit_code == 2, result.output
        [line] = error_lines(result.output)
        assert key in line and "not numbers" in line
    assert not (tmp_path / "out" / "VA_Set").exists() and not (tmp_path / "export").exists()


def test_an_export_whose_network_answers_nan_costs_each_video_one_line(small_export, media_dir, tmp_path):
    """A TorchScript file with a NaN weight, re-hashed into the manifest (so only its outputs can
    tell): every video gets one line, no file says ``nan``; verification fails it."""
    import torch

    from tsav_deploy.artifacts.manifest import file_entry, write_json_atomic
    from tsav_deploy.export import verify_export
    from tsav_deploy.export.torchscript_export import export_torchscript
    from tsav_deploy.model import TSAV

    folder = pathlib.Path(shutil.copytree(small_export, tmp_path / "export"))
    manifest = json.loads((folder / "manifest.json").read_text())
    model = TSAV(read_manifest(folder).config).eval()
    with torch.no_grad():
        model.fc[1].weight[0, 0] = float("nan")
    path = export_torchscript(model, folder)
    entry = manifest["artifacts"][path.name]
    manifest["artifacts"][path.name] = file_entry(
        path, **{k: v for k, v in entry.items() if k not in ("sha256", "bytes")}
    )
    write_json_atomic(folder / "manifest.json", manifest)
    out = tmp_path / "out"
    video = media_dir / SOURCE
    result = run_cli(
        "annotate", str(video), "--model", str(folder), "--engine", "torchscript", "--overlay", "-o", str(out)
    )
    assert result.exit_code == 1, result.output
    [line] = error_lines(result.output)
    assert "not numbers" in line and "bug" not in line
    assert not (out / "VA_Set" / f"{video.stem}.txt").exists()
    report = verify_export(folder)
    assert not report.ok and any(row.artifact == path.name for row in report.failures)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_parity_counts_a_value_that_is_not_a_number_as_a_failure(bad):
    from tsav_deploy.export.verify import probability_error, relative_error

    expected = np.linspace(-1, 1, 34, dtype=np.float32).reshape(2, 17)
    for actual, reference in ((expected.copy(), expected.copy()), (expected.copy(), expected.copy())[::-1]):
        actual[1, 5] = bad
        assert relative_error(actual, reference) == float("inf")
        assert relative_error(reference, actual) == float("inf")
        assert probability_error(actual, reference) > 1e-3
    assert relative_error(expected, expected) == 0.0


# --- 8. an optional output failing costs the video -------------------------------------------------


def _encode_clip(
    path: pathlib.Path,
    media_dir: pathlib.Path,
    *,
    gap_s: float = 0.0,
    audio_rate: int = 48000,
    audio_gap_s: float = 0.0,
) -> None:
    """24 frames of a recording (the second half ``gap_s`` later) with a tone at ``audio_rate``
    (PCM in a .mov for 192 kHz, AAC otherwise) whose second half is ``audio_gap_s`` later."""
    from fractions import Fraction

    from helpers.hostile_media import source_frames

    frames = source_frames(media_dir, 24, 3)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        video.codec_context.time_base = Fraction(1, 1000)
        audio = out.add_stream("pcm_s16le" if audio_rate > 96000 else "aac", rate=audio_rate, layout="mono")
        for i, picture in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = round((i * 0.04 + (gap_s if i >= 12 else 0)) * 1000), Fraction(1, 1000)
            out.mux(video.encode(frame))
        n = audio_rate // 25
        for i in range(24):
            tone = np.sin(2 * np.pi * 440 * (np.arange(n) + i * n) / audio_rate)
            s16 = audio_rate > 96000
            samples = (tone * 8000).astype(np.int16) if s16 else tone.astype(np.float32) * 0.2
            frame = av.AudioFrame.from_ndarray(samples[None], format="s16" if s16 else "fltp", layout="mono")
            frame.sample_rate, frame.pts = audio_rate, i * n + (round(audio_gap_s * audio_rate) if i >= 12 else 0)
            out.mux(audio.encode(frame))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))


@pytest.mark.parametrize("case", ["192 kHz PCM", "40-hour gap"])
def test_valid_media_the_overlay_writer_cannot_mux_keeps_its_predictions(case, media_dir, small_export, tmp_path):
    video = tmp_path / ("pcm192.mov" if case == "192 kHz PCM" else "gap.mkv")
    _encode_clip(video, media_dir, **({"audio_rate": 192000} if case == "192 kHz PCM" else {"gap_s": 40 * 3600}))
    out = tmp_path / "out"
    result = run_cli(
        "annotate",
        str(video),
        "--model",
        str(small_export),
        "--detector",
        "hog",
        "--overlay",
        "--report",
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert error_lines(result.output) == []
    [warning] = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert f"{video.stem}.overlay.mp4: the overlay could not be written" in warning and "bug" not in warning
    assert len((out / "VA_Set" / f"{video.stem}.txt").read_text().splitlines()) == 25
    assert (out / f"{video.stem}.html").is_file() and not (out / f"{video.stem}.overlay.mp4").exists()
    record = json.loads((out / ".tsav" / f"{video.stem}.json").read_text())
    assert record["output_failures"] == [warning.removeprefix("warning: ")]
    assert not [p for p in out.rglob("*") if ".partial" in p.name]


@pytest.mark.parametrize("blocked", ["{}.png", "{}.overlay.mp4", "{}.html"])
def test_each_optional_output_that_fails_costs_only_itself(blocked, annotation, tmp_path):
    """A folder where the output's final name is (the rename onto it fails): that output is one
    line, every other file and the record are written."""
    out = tmp_path / "out"
    (out / blocked.format(annotation.name)).mkdir(parents=True)
    written = save_outputs(out, annotation._require(), annotation.video, annotation.info, ALL_OUTPUTS)
    [line] = annotation.info.pop("output_failures")
    assert line.startswith(str(out / blocked.format(annotation.name))) and "predictions are kept" in line
    assert {str(p.relative_to(out)) for p in written} == {
        w.format(annotation.name) for w in WRITTEN if w not in (blocked, ".tsav/{}.json")
    } | ({f"{annotation.name}.input.mp4"} if blocked == "{}.overlay.mp4" else set())
    assert json.loads((out / ".tsav" / f"{annotation.name}.json").read_text())["output_failures"] == [line]


# --- 9. names that speak to the terminal ----------------------------------------------------------

HOSTILE_NAMES = {
    "osc52": b"clip\x1b]52;c;aGVsbG8=\x07",  # a clipboard write
    "clear": b"clip\x1b[2J\x1b[H",  # a screen clear
    "newline": b"clip\nerror: forged line",
    "c1": "clip\x9b31m".encode(),
    "bidi": "clip\u202eevil".encode(),
    "latin1": b"caf\xe9",  # not UTF-8
    "markup": b"clip[bold red]x",
}
UNSHOWN = (b"\x1b", b"\x07", b"\xc2\x9b", "\u202e".encode())


def _name_of(raw: bytes) -> str:
    return os.fsdecode(raw)


def test_hostile_names_reach_no_terminal_log_summary_or_page_raw(media_dir, small_export, tmp_path):
    """A real ``tsav annotate`` process over videos whose names carry escape sequences, newlines,
    reordering marks and undecodable bytes, one of them not a video and one too long: every name is
    shown escaped, every file is written, the failures are one line each and in summary.json."""
    folder = tmp_path / "in"
    folder.mkdir()
    _encode_clip(folder / "base.mp4", media_dir)
    for raw in HOSTILE_NAMES.values():
        shutil.copyfile(folder / "base.mp4", folder / _name_of(raw + b".mp4"))
    (folder / "base.mp4").unlink()
    (folder / _name_of(b"bad\x1b[2J\nerror: forged.mp4")).write_text("not a video")
    long_name = "x" * 246 + ".mp4"
    shutil.copyfile(folder / _name_of(HOSTILE_NAMES["latin1"] + b".mp4"), folder / long_name)
    out = tmp_path / "out"
    process = subprocess.run(
        [*TSAV, "annotate", str(folder), "--model", str(small_export), "--detector", "hog", "--report", "-o", str(out)],
        capture_output=True,
        env=ENV,
        timeout=600,
    )
    console = process.stdout + process.stderr
    assert process.returncode == 1, console
    assert not any(code in console for code in UNSHOWN), console
    text = console.decode("utf-8")  # strictly: no undecodable byte either
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and not any(line.startswith("error: forged") for line in text.splitlines()), text
    assert any("bad\\x1b[2J\\nerror: forged.mp4" in line for line in errors)
    assert any("246 bytes" in line or "250 bytes" in line for line in errors) and "caf\\xe9" in text
    for raw in HOSTILE_NAMES.values():
        name = _name_of(raw)
        for file in (f"VA_Set/{name}.txt", f"{name}.csv", f"{name}.png", f"{name}.html"):
            assert (out / file).is_file(), file
        page = (out / f"{name}.html").read_bytes()
        assert not any(code in page for code in UNSHOWN) and page.decode("utf-8")
    summary = (out / "summary.json").read_bytes()
    videos = json.loads(summary)["videos"]
    assert len(videos) == len(HOSTILE_NAMES) + 2
    failures = [v["error"] for v in videos.values() if "error" in v]
    assert len(failures) == 2 and all("\n" not in line and "\x1b" not in line for line in failures)
    index = (out / "index.html").read_bytes()
    assert not any(code in index for code in UNSHOWN) and index.decode("utf-8")


@pytest.mark.parametrize("raw", list(HOSTILE_NAMES.values()))
def test_shown_escapes_every_unshown_character_once(raw):
    from tsav_deploy.errors import shown

    text = shown(_name_of(raw))
    assert not any(code in text.encode("utf-8") for code in UNSHOWN) and "\n" not in text
    assert shown(text) == text


# --- 11. bounds and network exposure ---------------------------------------------------------------

PAST_BOUNDS = [
    ("--batch-size", "0"),
    ("--batch-size", "257"),
    ("--batch-size", "1000000"),
    ("--stride", "0"),
    ("--stride", "-3"),
    ("--stride", "301"),
    ("--workers", "0"),
    ("--workers", "5000"),
    ("--cpus-per-worker", "0"),
    ("--cpus-per-worker", "inf"),
    ("--cpus-per-worker", "nan"),
    ("--gpus-per-worker", "-1"),
    ("--gpus-per-worker", "65"),
    ("--split-seconds", "0.5"),
    ("--split-seconds", "1e9"),
]


@pytest.mark.parametrize("option, value", PAST_BOUNDS)
def test_each_option_past_its_bound_is_one_line_before_any_work(option, value, media_dir, small_export, tmp_path):
    ray = (
        ["--ray", "local"]
        if option in ("--workers", "--cpus-per-worker", "--gpus-per-worker", "--split-seconds")
        else []
    )
    out = tmp_path / "out"
    result = run_cli(
        "annotate", str(media_dir / SOURCE), "--model", str(small_export), option, value, *ray, "-o", str(out)
    )
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("error:") and option.lstrip("-").replace("-", "_") in line.replace("-", "_"), line
    assert not out.exists()


@pytest.mark.parametrize("max_batch", ["0", "4097"])
def test_export_max_batch_past_its_bound(max_batch, small_checkpoint, tmp_path):
    result = run_cli("export", str(small_checkpoint), "--out", str(tmp_path / "e"), "--max-batch", max_batch)
    assert result.exit_code == 2 and "--max-batch must be a whole number from 1 to 4096" in result.output


def test_options_at_their_bounds_are_accepted():
    from tsav_deploy.pipeline.offline import AnnotateOptions
    from tsav_deploy.runs.cluster import ClusterOptions

    for stride, batch_size in ((1, 1), (300, 256), (np.int64(300), np.int32(256))):
        AnnotateOptions(stride=stride, batch_size=batch_size)
    ClusterOptions("local", workers=1, cpus_per_worker=0.25, gpus_per_worker=0.0, split_seconds=1.0)
    ClusterOptions("local", workers=4096, cpus_per_worker=1024, gpus_per_worker=64, split_seconds=86400)
    for bad in (True, 2.0, "2"):
        with pytest.raises(TsavError):
            AnnotateOptions(stride=bad)


def test_joining_a_cluster_without_its_token_says_how_to_pass_it(media_dir, small_export, tmp_path):
    """The README's sequence where a token exists (``ray get-auth-token --generate``, as any earlier
    ``--ray local`` leaves one in ``~/.ray``; this test's HOME is its own): ``ray start --head`` then
    protects the cluster, and ``--ray HEAD:PORT`` without RAY_AUTH_MODE=token is one line saying how
    to pass the token; with it, the video is annotated."""
    pytest.importorskip("ray")
    port = free_port()
    ray_cli = str(pathlib.Path(sys.executable).parent / "ray")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env |= {"HOME": str(tmp_path / "home"), "RAY_memory_monitor_refresh_ms": "0", "COLUMNS": "400"}
    (tmp_path / "home").mkdir()
    subprocess.run([ray_cli, "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=120)
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--port", str(port), "--block", "--node-ip-address", "127.0.0.1",
         "--num-cpus", "1", "--include-dashboard", "false", "--disable-usage-stats", "--object-store-memory", "100000000"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        video = tmp_path / "clip.mp4"
        _encode_clip(video, media_dir)
        command = [*TSAV, "annotate", str(video), "--model", str(small_export), "--detector", "hog"]
        command += ["--ray", f"127.0.0.1:{port}", "--workers", "1", "-o", str(tmp_path / "out")]
        _wait_for_head(port, head)
        refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert refused.returncode == 2, refused.stderr
        [line] = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
        assert "RAY_AUTH_MODE=token" in line and "~/.ray/auth_token" in line
        joined = subprocess.run(
            command, env={**env, "RAY_AUTH_MODE": "token"}, capture_output=True, text=True, timeout=300
        )
        assert joined.returncode == 0, joined.stderr
        assert len((tmp_path / "out" / "VA_Set" / "clip.txt").read_text().splitlines()) == 25
    finally:
        os.killpg(head.pid, signal.SIGKILL)  # the head's process group, by its id
        head.wait()


def _wait_for_head(port: int, head: subprocess.Popen) -> None:
    """Until the head's GCS accepts connections on ``port``."""
    for _ in range(900):
        assert head.poll() is None, "the Ray head ended"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the Ray head never listened")


# --- 6. memory sized by the input -----------------------------------------------------------------

MEMORY_LIMIT = 4 << 30  # address space of the annotating process (a plain run of a recording fits)


def _png_frames(path: pathlib.Path, sizes: list[tuple[int, int]]) -> None:
    """A .mov of black PNG frames of the given sizes (each PNG carries its own size: one stream
    that switches sizes mid-file, as a damaged or hostile file can)."""
    from fractions import Fraction

    with av.open(str(path), "w") as out:
        stream = out.add_stream("png", rate=25)
        stream.width, stream.height, stream.pix_fmt = sizes[0][0], sizes[0][1], "gray"
        for i, (width, height) in enumerate(sizes):
            codec = av.CodecContext.create("png", "w")
            codec.width, codec.height, codec.pix_fmt, codec.time_base = width, height, "gray", Fraction(1, 25)
            frame = av.VideoFrame(width, height, "gray")
            frame.planes[0].update(bytes(frame.planes[0].buffer_size))
            for packet in codec.encode(frame):
                packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, 25)
                out.mux(packet)


def _limited(command: list[str]) -> tuple[int, str, int]:
    """Run ``command`` with its address space capped at MEMORY_LIMIT: exit code, stderr and its
    peak resident memory in bytes (the kernel's count for this process, by its id)."""
    import resource

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, preexec_fn=cap)
    stderr = process.stderr.read().decode("utf-8", "replace")
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, stderr, usage.ru_maxrss * 1024


@pytest.mark.parametrize(
    "sizes",
    [[(16384, 16000)] * 3, [(64, 48)] * 5 + [(16384, 16000)] * 2, [(64, 48)] * 5 + [(8200, 8200)]],
    ids=["three 16384x16000 frames", "64x48 then 16384x16000", "64x48 then just above the limit"],
)
def test_frames_above_the_pixel_limit_are_refused_in_one_line_under_a_memory_limit(sizes, small_export, tmp_path):
    video = tmp_path / "huge.mov"
    _png_frames(video, sizes)
    assert video.stat().st_size < 2 << 20  # a small file that declares enormous pictures
    command = [*TSAV, "annotate", str(video), "--model", str(small_export), "--detector", "hog", "--overlay"]
    code, stderr, peak = _limited([*command, "-o", str(tmp_path / "out")])
    assert code == 1, stderr
    [line] = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert "above the 67 megapixels this tool decodes (8192x8192)" in line, line
    assert peak < 2 << 30, peak  # measured: 0.76 GB (a plain run of a recording: 0.68 GB)


def test_a_live_queue_is_bounded_in_bytes_when_the_frame_size_grows(tmp_path):
    """A source that starts with tiny frames and switches to 4K: the frames queued never hold more
    than the queue's bytes (each frame counted at its own size), however slowly they are taken."""
    from tsav_deploy.media.sources import _QUEUE_BYTES, Arrival, LiveSource, parse_source

    video = tmp_path / "switch.mov"
    _png_frames(video, [(64, 48)] * 20 + [(3840, 2160)] * 40)
    taken = []
    with LiveSource(parse_source(str(video))) as source:
        for item in source:
            if isinstance(item, Arrival):
                taken.append(item.frame.rgb.shape[:2])
                time.sleep(0.01)  # a slow consumer: the reader fills the queue
        peak = source.budget.peak
    assert len(taken) == 60 and taken[-1] == (2160, 3840)
    assert 0 < peak <= _QUEUE_BYTES


def test_a_live_stream_whose_audio_jumps_hours_ahead_keeps_its_memory(media_dir, small_export, tmp_path):
    """The audio's timestamps jump 20 hours ahead halfway (the video's do not): the jump starts a
    new stretch of held audio instead of 20 hours of silence in memory."""
    video = tmp_path / "audio_jump.mkv"
    _encode_clip(video, media_dir, audio_gap_s=20 * 3600)
    rows = tmp_path / "rows.jsonl"
    command = [*TSAV, "live", str(video), "--model", str(small_export), "--detector", "hog", "--jsonl", str(rows)]
    code, stderr, peak = _limited(command)
    assert code == 0, stderr
    assert error_lines(stderr) == []
    assert sorted({json.loads(line)["frame"] for line in rows.read_text().splitlines()}) == list(range(24))
    assert peak < 2 << 30, peak


def test_a_file_whose_audio_jumps_hours_ahead_keeps_its_memory_and_says_so(media_dir, small_export, tmp_path):
    video = tmp_path / "audio_jump.mkv"
    _encode_clip(video, media_dir, audio_gap_s=20 * 3600)
    out = tmp_path / "out"
    command = [*TSAV, "annotate", str(video), "--model", str(small_export), "--detector", "hog", "-o", str(out)]
    code, stderr, peak = _limited(command)
    assert code == 0, stderr
    record = json.loads((out / ".tsav" / "audio_jump.json").read_text())
    assert any("audio timestamps jumped forwards 1 time(s)" in w for w in record["warnings"]), record["warnings"]
    assert len((out / "VA_Set" / "audio_jump.txt").read_text().splitlines()) == 25
    assert peak < 2 << 30, peak
