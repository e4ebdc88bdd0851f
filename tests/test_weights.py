"""The published-weights path (download, content check, cache, checksums, archive extraction,
``tsav weights verify``) on local files and a loopback HTTP server, and training initialisation from
torchvision-format backbone files.

Every failure case checks three things: one line that says what is wrong, nothing of the bad download
kept, and a cache that the next run (with a good server) repairs by itself."""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import socket
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from typer.testing import CliRunner

from tsav_deploy.artifacts.checkpoint import load_checkpoint
from tsav_deploy.artifacts.weights import REGISTRY, Published, fetch, resolve, verify
from tsav_deploy.cli import app
from tsav_deploy.download import DownloadError
from tsav_deploy.errors import CheckpointError, TsavError
from tsav_deploy.model import TSAV, R2Plus1D18, ResNet18
from tsav_deploy.model.pretrained import init_aural_from_imagenet, init_visual_from_kinetics

ERROR_PAGE = b"<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head><body>busy</body></html>\n"


class _Server:
    """A loopback HTTP server answering each path with the bytes (and status) a test sets."""

    def __init__(self) -> None:
        routes: dict[str, tuple[int, bytes, int | None]] = {}
        self.routes = routes
        self.requests: list[str] = []
        self.delay = 0.0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests.append(self.path)
                time.sleep(server.delay)
                status, body, length = routes.get(self.path, (404, b"not found", None))
                self.send_response(status)
                self.send_header("Content-Length", str(length if length is not None else len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def serve(self, path: str, body: bytes, status: int = 200, length: int | None = None) -> str:
        self.routes[path] = (status, body, length)
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server():
    srv = _Server()
    yield srv
    srv.stop()


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert isinstance(error.value, TsavError) and "\n" not in message
    return message


def _torch_file(path, seed: int = 0):
    """A small torchvision-style state_dict file; returns its SHA-256."""
    torch.manual_seed(seed)
    torch.save({"conv1.weight": torch.randn(4, 3, 3, 3), "fc.bias": torch.randn(4)}, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _zip_with_checkpoint(tmp_path, checkpoint):
    archive = tmp_path / "server" / "aff2model_tnt.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("aff2model_tnt/readme.txt", "weights")
        zf.write(checkpoint, "aff2model_tnt/TSAV416k.pth.tar")
    return archive


def test_registry_entries_say_how_each_download_is_checked():
    """Every entry is verifiable: torchvision's file names carry the prefix of the SHA-256 that is
    checked, archives name the member that is the checkpoint, and every URL is HTTPS."""
    for entry in REGISTRY.values():
        assert entry.url.startswith("https://"), entry.name
        if entry.sha256_prefix is not None:
            assert entry.url.rsplit("/", 1)[1].endswith(f"-{entry.sha256_prefix}.pth"), entry.name
        if entry.url.endswith(".zip"):
            assert entry.member_suffixes, entry.name
    assert {"tnt-sub1", "tnt-sub4"} <= set(REGISTRY)


def test_archive_download_extracts_and_records_both_checksums(tmp_path, small_checkpoint):
    archive = _zip_with_checkpoint(tmp_path, small_checkpoint)
    entry = Published("tnt-test", archive.as_uri(), "test", member_suffixes=(".pth.tar",))
    path = fetch(entry, progress=False, root=tmp_path / "cache")
    assert path.name == "TSAV416k.pth.tar"
    assert path.read_bytes() == small_checkpoint.read_bytes()
    record = json.loads((tmp_path / "cache" / "tnt-test" / "sha256.json").read_text())
    assert record["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert record["checkpoint"] == {
        "name": "TSAV416k.pth.tar",
        "sha256": hashlib.sha256(small_checkpoint.read_bytes()).hexdigest(),
    }
    assert load_checkpoint(path).sha256 == record["checkpoint"]["sha256"]
    # Second use: no download (the server copy is gone), the checkpoint verified against its record.
    server_copy = archive.read_bytes()
    archive.unlink()
    assert fetch(entry, progress=False, root=tmp_path / "cache") == path
    # A checkpoint changed after extraction is extracted again from the verified archive.
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    assert fetch(entry, progress=False, root=tmp_path / "cache").read_bytes() == small_checkpoint.read_bytes()
    # Both changed: one line, the archive removed; with the server back, the next run repairs the cache.
    cached = tmp_path / "cache" / "tnt-test" / "aff2model_tnt.zip"
    cached.write_bytes(cached.read_bytes()[:-10] + b"0123456789")
    path.write_bytes(b"changed")
    with pytest.raises(DownloadError) as error:
        fetch(entry, progress=False, root=tmp_path / "cache")
    assert "is not" in _one_line(error) and "recorded at its first download; removed it" in str(error.value)
    assert not cached.exists() and not path.exists()
    archive.write_bytes(server_copy)
    assert fetch(entry, progress=False, root=tmp_path / "cache").read_bytes() == small_checkpoint.read_bytes()


def test_published_checksum_is_enforced_on_first_download(tmp_path):
    _torch_file(tmp_path / "weights.pth")
    entry = Published("bad-hash", (tmp_path / "weights.pth").as_uri(), "test", sha256="0" * 64)
    with pytest.raises(DownloadError) as error:
        fetch(entry, progress=False, root=tmp_path / "cache")
    assert "is not the published 0000000000000000" in _one_line(error) and "nothing was kept" in str(error.value)
    assert not (tmp_path / "cache" / "bad-hash").exists()  # nothing half-kept


def test_torchvision_prefix_mismatch_is_refused_and_a_match_accepted(tmp_path):
    """torchvision names files ``<name>-<first 8 hex of the SHA-256>.pth``: a file whose hash does not
    start with the name's prefix is refused on download and, if changed later, on use."""
    digest = _torch_file(tmp_path / "source.pth")
    wrong = "0" * 8 if not digest.startswith("0" * 8) else "f" * 8
    bad_name = tmp_path / f"resnet18-{wrong}.pth"
    (tmp_path / "source.pth").rename(bad_name)
    bad = Published("prefix-bad", bad_name.as_uri(), "test", sha256_prefix=wrong)
    with pytest.raises(DownloadError) as error:
        fetch(bad, progress=False, root=tmp_path / "cache")
    assert f"SHA-256 {digest[:16]}… is not the published {wrong}" in _one_line(error)
    assert not (tmp_path / "cache" / "prefix-bad").exists()

    good_name = bad_name.rename(tmp_path / f"resnet18-{digest[:8]}.pth")
    good = Published("prefix-good", good_name.as_uri(), "test", sha256_prefix=digest[:8])
    path = fetch(good, progress=False, root=tmp_path / "cache")
    assert path.read_bytes() == good_name.read_bytes()
    torch.save({"fc.bias": torch.zeros(4)}, path)  # swapped afterwards: refused on use, removed
    with pytest.raises(DownloadError) as error:
        fetch(good, progress=False, root=tmp_path / "cache")
    assert "removed it: its next use downloads it again" in _one_line(error)
    assert fetch(good, progress=False, root=tmp_path / "cache").read_bytes() == good_name.read_bytes()


def test_error_page_answered_with_200_is_refused_and_not_kept(tmp_path, server, small_checkpoint):
    """The authors' server answering 200 with an HTML page: refused in one line for an archive and
    for a torch file, no hash recorded, and the next run with the real file succeeds."""
    url = server.serve("/aff2model_tnt.zip", ERROR_PAGE)
    entry = Published("tnt-html", url, "test", member_suffixes=(".pth.tar", ".pth", ".pt"))
    with pytest.raises(DownloadError) as error:
        fetch(entry, progress=False, root=tmp_path / "cache")
    message = _one_line(error)
    assert message.startswith(f"{url}: an HTML page of {len(ERROR_PAGE)} bytes (an error page?), not a zip archive")
    assert "nothing was kept" in message
    assert not (tmp_path / "cache" / "tnt-html").exists()  # neither the page nor a record nor its folder

    torch_url = server.serve("/resnet18.pth", ERROR_PAGE)
    with pytest.raises(DownloadError, match="HTML page .*, not a PyTorch weight file; nothing was kept"):
        fetch(Published("torch-html", torch_url, "test"), progress=False, root=tmp_path / "cache")
    assert not (tmp_path / "cache" / "torch-html").exists()

    server.serve("/aff2model_tnt.zip", _zip_with_checkpoint(tmp_path, small_checkpoint).read_bytes())
    path = fetch(entry, progress=False, root=tmp_path / "cache")
    assert path.read_bytes() == small_checkpoint.read_bytes()


def test_an_error_page_recorded_as_trusted_by_an_older_cache_is_removed_on_use(tmp_path, server, small_checkpoint):
    """A cache whose record vouches for an error page (what downloads without a content check left):
    one line, page and record removed, and the next run downloads and records the real archive."""
    url = server.serve("/aff2model_tnt.zip", _zip_with_checkpoint(tmp_path, small_checkpoint).read_bytes())
    entry = Published("tnt-old", url, "test", member_suffixes=(".pth.tar",))
    folder = tmp_path / "cache" / "tnt-old"
    folder.mkdir(parents=True)
    (folder / "aff2model_tnt.zip").write_bytes(ERROR_PAGE)
    (folder / "sha256.json").write_text(json.dumps({"url": url, "sha256": hashlib.sha256(ERROR_PAGE).hexdigest()}))
    with pytest.raises(DownloadError) as error:
        fetch(entry, progress=False, root=tmp_path / "cache")
    assert _one_line(error) == (
        f"{folder / 'aff2model_tnt.zip'}: an HTML page of {len(ERROR_PAGE)} bytes (an error page?), not a zip "
        "archive; removed it: its next use downloads it again"
    )
    assert not list(folder.iterdir())
    assert fetch(entry, progress=False, root=tmp_path / "cache").read_bytes() == small_checkpoint.read_bytes()


def test_archives_without_a_checkpoint_or_damaged_are_refused(tmp_path, server):
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("readme.txt", "no weights here")
    url = server.serve("/other.zip", other.read_bytes())
    with pytest.raises(DownloadError, match="a zip archive of 1 other files, not a zip archive holding a checkpoint"):
        fetch(Published("no-member", url, "test", member_suffixes=(".pth.tar",)), progress=False, root=tmp_path)
    assert not (tmp_path / "no-member").exists()
    with zipfile.ZipFile(other, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("model.pth.tar", b"A" * 4096)
    damaged = other.read_bytes().replace(b"A" * 64, b"B" * 64, 1)  # the member's CRC no longer matches
    url = server.serve("/damaged.zip", damaged)
    with pytest.raises(DownloadError, match="a zip archive whose member model.pth.tar is damaged"):
        fetch(Published("damaged", url, "test", member_suffixes=(".pth.tar",)), progress=False, root=tmp_path)
    assert not (tmp_path / "damaged").exists()


def test_a_connection_closed_early_keeps_nothing(tmp_path, server):
    url = server.serve("/resnet18.pth", b"x" * 100, length=1000)  # promises 1000 bytes, sends 100
    with pytest.raises(DownloadError) as error:
        fetch(Published("short", url, "test"), progress=False, root=tmp_path)
    assert _one_line(error).startswith(f"could not download {url}")
    assert not (tmp_path / "short").exists()


def test_a_replaced_file_is_not_trusted_over_the_recorded_hash(tmp_path):
    """Trust on first use: once recorded, a different file from the same URL is refused, and the
    message says how to accept it deliberately."""
    source = tmp_path / "weights.pth"
    _torch_file(source, seed=0)
    entry = Published("tofu", source.as_uri(), "test")
    path = fetch(entry, progress=False, root=tmp_path / "cache")
    path.unlink()
    _torch_file(source, seed=1)
    with pytest.raises(DownloadError) as error:
        fetch(entry, progress=False, root=tmp_path / "cache")
    record = tmp_path / "cache" / "tofu" / "sha256.json"
    assert f"if the publisher replaced the file, delete {record} to accept the new one" in _one_line(error)
    record.unlink()
    assert fetch(entry, progress=False, root=tmp_path / "cache").read_bytes() == source.read_bytes()


def test_simultaneous_first_uses_download_once(tmp_path, server, small_checkpoint):
    """Two workers asking for the same weights at once (DDP ranks, data-loader processes) take turns:
    one download, and both get the same verified checkpoint."""
    url = server.serve("/aff2model_tnt.zip", _zip_with_checkpoint(tmp_path, small_checkpoint).read_bytes())
    server.delay = 0.5  # the first download is still running when the second worker asks
    entry = Published("tnt-twice", url, "test", member_suffixes=(".pth.tar",))
    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda _: fetch(entry, progress=False, root=tmp_path / "cache"), range(2)))
    assert server.requests == ["/aff2model_tnt.zip"]
    assert paths[0] == paths[1] and paths[0].read_bytes() == small_checkpoint.read_bytes()


def test_unreachable_url_gives_one_line_and_no_partial_file(tmp_path):
    entry = Published("gone", (tmp_path / "nowhere.zip").as_uri(), "test")
    with pytest.raises(DownloadError, match="could not download .* --weights PATH"):
        fetch(entry, progress=False, root=tmp_path)
    assert not (tmp_path / "gone").exists()


def test_tsav_weights_verify_repairs_what_it_can_and_removes_the_rest(tmp_path, monkeypatch, small_checkpoint):
    """The real registry's cache folders, filled by hand: an archive never checked (checked, recorded,
    extracted), a killed download's leftover (removed), a file that is not torchvision's (removed).
    A second run finds the repaired cache verified."""
    home = tmp_path / "home"
    monkeypatch.setenv("TSAV_HOME", str(home))
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "insightface"))
    sub1 = home / "tnt-sub1"
    sub1.mkdir(parents=True)
    shutil.copy(_zip_with_checkpoint(tmp_path, small_checkpoint), sub1 / "aff2model_tnt.zip")
    (sub1 / "aff2model_tnt.zip.partial.zip").write_bytes(b"half a download")
    resnet = home / "resnet18-imagenet" / "resnet18-f37072fd.pth"
    resnet.parent.mkdir()
    digest = _torch_file(resnet)

    result = CliRunner().invoke(app, ["weights", "verify"])
    assert result.exit_code == 0, result.output
    checkpoint = sub1 / "TSAV416k.pth.tar"
    fetch_hint = "nothing verified is cached; `tsav weights download resnet18-imagenet` fetches it"
    assert result.output.splitlines() == [
        "tnt-sub1: removed the unfinished download aff2model_tnt.zip.partial.zip; extracted TSAV416k.pth.tar "
        f"from the verified aff2model_tnt.zip; {checkpoint} verified",
        f"resnet18-imagenet: {resnet}: SHA-256 {digest[:16]}… is not the published f37072fd…; removed it: its "
        f"next use downloads it again; {fetch_hint}",
    ]
    assert checkpoint.read_bytes() == small_checkpoint.read_bytes() and not resnet.exists()
    assert (
        json.loads((sub1 / "sha256.json").read_text())["checkpoint"]["sha256"]
        == hashlib.sha256(small_checkpoint.read_bytes()).hexdigest()
    )

    result = CliRunner().invoke(app, ["weights", "verify"])
    assert result.output.splitlines() == [f"tnt-sub1: {checkpoint} verified"]  # the emptied folder: nothing to say
    assert verify(home) == result.output.splitlines()


def test_resolve_passes_paths_through_and_rejects_unknown_names(tmp_path, authors_checkpoint):
    assert resolve(authors_checkpoint) == authors_checkpoint
    with pytest.raises(CheckpointError, match="published name"):
        resolve("tnt-sub9")


def test_kinetics_initialisation_copies_rgb_filters_into_the_4_channel_stem(tmp_path):
    torch.manual_seed(0)
    kinetics = R2Plus1D18(in_channels=3).state_dict()
    kinetics["fc.weight"], kinetics["fc.bias"] = torch.zeros(400, 512), torch.zeros(400)  # torchvision's head
    torch.save(kinetics, tmp_path / "r2plus1d_18.pth")
    model = TSAV()
    mask_filters = model.video_model.r2plus1d.stem[0].weight[:, 3].clone()
    copied = init_visual_from_kinetics(model, tmp_path / "r2plus1d_18.pth")
    stem = model.video_model.r2plus1d.stem[0].weight
    assert copied == len(kinetics) - 2
    torch.testing.assert_close(stem[:, :3], kinetics["stem.0.weight"])
    torch.testing.assert_close(stem[:, 3], mask_filters)
    torch.testing.assert_close(
        model.video_model.r2plus1d.layer4[1].conv2[1].running_var, kinetics["layer4.1.conv2.1.running_var"]
    )


def test_imagenet_initialisation_averages_rgb_into_one_channel(tmp_path):
    imagenet = ResNet18(in_channels=3).state_dict()
    torch.save(imagenet, tmp_path / "resnet18.pth")
    model = TSAV()
    init_aural_from_imagenet(model, tmp_path / "resnet18.pth")
    torch.testing.assert_close(model.audio_model.resnet.conv1.weight, imagenet["conv1.weight"].mean(1, keepdim=True))
    torch.save({"not": "weights"}, tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="not a torchvision state_dict"):
        init_aural_from_imagenet(model, tmp_path / "junk.pth")


@pytest.mark.parametrize("answer", ["404", "cut short", "nobody there"])
def test_a_failed_download_leaves_no_folder_in_the_cache(answer, tmp_path, server):
    """Whatever way the download fails, the cache holds nothing of it: no file, no record, no lock,
    no empty folder."""
    if answer == "404":
        url = server.serve("/missing.pth", b"not found", status=404)
    elif answer == "cut short":
        url = server.serve("/short.pth", b"x" * 1000, length=5000)
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}/gone.pth"  # closed again: nobody listens
    with pytest.raises(DownloadError):
        fetch(Published("failing", url, "test"), progress=False, root=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
