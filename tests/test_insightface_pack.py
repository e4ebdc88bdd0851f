"""insightface's ``buffalo_l`` pack through the real fetch path (file:// URLs, archives made here):
published hashes enforced, half-finished packs fetched again, insightface's leftover zip used and
removed, and nothing bad kept. Each failure leaves a cache that the next run repairs by itself."""

from __future__ import annotations

import hashlib
import pathlib
import zipfile

import pytest

from tsav_deploy.atomic import partial_path
from tsav_deploy.download import DownloadError
from tsav_deploy.errors import TsavError
from tsav_deploy.faces import FaceBackendError, get_backend, insightface_pack
from tsav_deploy.faces.insightface_pack import PackSource, archive_path, check_files, ensure, pack_dir

# Stand-ins for the pack's five models (the real ones are 280 MB and cannot be downloaded here).
MODELS = {
    name: f"{name} model bytes ".encode() * 50
    for name in ("1k3d68.onnx", "2d106det.onnx", "det_10g.onnx", "genderage.onnx", "w600k_r50.onnx")
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _archive(path, models=MODELS):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in models.items():
            zf.writestr(name, data)
    return path


@pytest.fixture
def source(tmp_path) -> PackSource:
    """A release like upstream's: the archive and two models with published hashes."""
    (tmp_path / "server").mkdir()
    archive = _archive(tmp_path / "server" / "buffalo_l.zip")
    published = {name: _sha(MODELS[name]) for name in ("det_10g.onnx", "w600k_r50.onnx")}
    return PackSource(archive.as_uri(), _sha(archive.read_bytes()), published)


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert isinstance(error.value, TsavError) and "\n" not in message
    return message


def _intact(root) -> bool:
    folder = pack_dir(root)
    return all((folder / name).read_bytes() == data for name, data in MODELS.items())


def test_upstream_source_is_the_installed_insightface_url_with_the_published_hashes():
    from insightface.utils import storage

    source = insightface_pack.upstream_source()
    expected_url = (
        storage.model_zoo_download_url("buffalo_l.zip")
        if hasattr(storage, "model_zoo_download_url")
        else f"{storage.BASE_REPO_URL}/buffalo_l.zip"
    )
    assert source.url == expected_url
    # deepinsight/insightface server/backend/insightface_server/models/packages.py (BUFFALO_L)
    assert source.file_sha256 == {
        "det_10g.onnx": "5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91",
        "w600k_r50.onnx": "4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43",
    }
    v07 = "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip"
    assert source.archive_sha256 == (
        "80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f" if source.url == v07 else None
    )


def test_download_extracts_verifies_records_and_removes_the_zip(tmp_path, source):
    root = tmp_path / "home"
    assert ensure(root, progress=False, source=source) == pack_dir(root)
    assert _intact(root) and not archive_path(root).exists()
    assert check_files(pack_dir(root), source) == []
    # The models without a published hash were recorded from the checked archive and are verified on use.
    (pack_dir(root) / "1k3d68.onnx").write_bytes(b"swapped")
    assert check_files(pack_dir(root), source) == ["1k3d68.onnx did not match its recorded SHA-256 (removed)"]


@pytest.mark.parametrize("damage", ["missing", "short", "altered published"])
def test_a_half_finished_pack_is_fetched_again(tmp_path, source, damage):
    root = tmp_path / "home"
    ensure(root, progress=False, source=source)
    folder = pack_dir(root)
    if damage == "missing":
        (folder / "1k3d68.onnx").unlink()
    elif damage == "short":
        (folder / "w600k_r50.onnx").write_bytes(MODELS["w600k_r50.onnx"][:100])
    else:
        (folder / "det_10g.onnx").write_bytes(b"x" * len(MODELS["det_10g.onnx"]))
    ensure(root, progress=False, source=source)
    assert _intact(root) and not archive_path(root).exists()


def test_insightface_leftover_zip_repairs_the_pack_offline_and_is_removed(tmp_path, source):
    root = tmp_path / "home"
    ensure(root, progress=False, source=source)
    _archive(archive_path(root))  # what insightface's own download leaves beside the folder
    (pack_dir(root) / "det_10g.onnx").unlink()
    offline = PackSource((tmp_path / "nowhere.zip").as_uri(), source.archive_sha256, source.file_sha256)
    ensure(root, download_missing=False, progress=False, source=offline)
    assert _intact(root) and not archive_path(root).exists()
    _archive(archive_path(root))  # beside a complete pack it is only 289 MB of nothing
    ensure(root, download_missing=False, progress=False, source=offline)
    assert not archive_path(root).exists()


def test_wrong_archive_hash_keeps_nothing_and_the_next_run_repairs(tmp_path, source):
    root = tmp_path / "home"
    wrong = PackSource(source.url, "0" * 64, source.file_sha256)
    with pytest.raises(DownloadError) as error:
        ensure(root, progress=False, source=wrong)
    assert "is not the published 0000000000000000" in _one_line(error) and "nothing was kept" in str(error.value)
    assert not archive_path(root).exists() and not pack_dir(root).exists()
    ensure(root, progress=False, source=source)
    assert _intact(root)


def test_a_model_differing_from_its_published_hash_keeps_nothing(tmp_path, source):
    root = tmp_path / "home"
    other = PackSource(source.url, None, {**source.file_sha256, "w600k_r50.onnx": "f" * 64})
    with pytest.raises(FaceBackendError) as error:
        ensure(root, progress=False, source=other)
    assert "its w600k_r50.onnx has SHA-256" in _one_line(error) and "not the published ffffffffffffffff" in str(
        error.value
    )
    assert not archive_path(root).exists() and not (pack_dir(root) / "w600k_r50.onnx").exists()
    ensure(root, progress=False, source=source)
    assert _intact(root)


def test_error_pages_and_archives_without_the_models_are_refused(tmp_path, source):
    root = tmp_path / "home"
    page = tmp_path / "server" / "page.zip"
    page.write_bytes(b"<!DOCTYPE html><html><body>rate limited</body></html>")
    with pytest.raises(DownloadError) as error:
        ensure(root, progress=False, source=PackSource(page.as_uri(), None, source.file_sha256))
    assert "an HTML page of 53 bytes (an error page?), not a zip archive; nothing was kept" in _one_line(error)
    assert not archive_path(root).exists()
    partial = _archive(tmp_path / "server" / "partial.zip", {"det_10g.onnx": MODELS["det_10g.onnx"]})
    with pytest.raises(DownloadError, match="a zip archive without 1k3d68.onnx, w600k_r50.onnx, not the buffalo_l"):
        ensure(root, progress=False, source=PackSource(partial.as_uri(), None, source.file_sha256))
    assert not archive_path(root).exists()


def test_the_backend_refuses_a_damaged_pack_in_one_line_without_downloading(tmp_path):
    """Through ``get_backend`` (upstream's published hashes): a pack whose detector is not upstream's is
    removed, the message says what to do, and ``auto`` then falls back to dlib."""
    folder = pack_dir(tmp_path)
    folder.mkdir(parents=True)
    for name, data in MODELS.items():
        (folder / name).write_bytes(data)
    with pytest.raises(FaceBackendError) as error:
        get_backend("insightface", root=tmp_path, download=False)
    message = _one_line(error)
    assert "det_10g.onnx did not match its published SHA-256 (removed)" in message
    assert "w600k_r50.onnx did not match its published SHA-256 (removed)" in message
    assert get_backend("auto", root=tmp_path).name == "dlib"


def test_verify_says_what_it_repaired_and_removed(tmp_path, source):
    root = tmp_path / "home"
    assert insightface_pack.verify(root, source) is None  # nothing there: nothing to say
    ensure(root, progress=False, source=source)
    (pack_dir(root) / "1k3d68.onnx").write_bytes(b"changed")
    _archive(archive_path(root))
    partial_path(archive_path(root)).write_bytes(b"half a download")
    partial_path(pack_dir(root) / "det_10g.onnx").write_bytes(b"half an extraction")  # insightface would load it
    assert insightface_pack.verify(root, source) == (
        f"insightface buffalo_l: removed the unfinished download {partial_path(pathlib.Path('det_10g.onnx'))}; "
        f"removed the unfinished download {partial_path(pathlib.Path('buffalo_l.zip'))}; "
        "1k3d68.onnx did not match its recorded SHA-256 (removed); extracted again from insightface's buffalo_l.zip; "
        f"{pack_dir(root)} verified; removed insightface's leftover buffalo_l.zip"
    )
    assert _intact(root)
    assert insightface_pack.verify(root, source) == f"insightface buffalo_l: {pack_dir(root)} verified"
