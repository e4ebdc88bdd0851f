"""The published-weights path (download, cache, checksum, archive extraction) on local files, and
training initialisation from torchvision-format backbone files."""

from __future__ import annotations

import hashlib
import zipfile

import pytest
import torch

from tsav_deploy.checkpoint import load_checkpoint
from tsav_deploy.errors import CheckpointError
from tsav_deploy.model import TSAV, R2Plus1D18, ResNet18
from tsav_deploy.model.pretrained import init_aural_from_imagenet, init_visual_from_kinetics
from tsav_deploy.weights import REGISTRY, Published, fetch, resolve


def _zip_with_checkpoint(tmp_path, authors_checkpoint):
    archive = tmp_path / "server" / "aff2model_tnt.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("aff2model_tnt/readme.txt", "weights")
        zf.write(authors_checkpoint, "aff2model_tnt/TSAV416k.pth.tar")
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


def test_archive_download_extracts_and_records_checksum(tmp_path, authors_checkpoint):
    archive = _zip_with_checkpoint(tmp_path, authors_checkpoint)
    entry = Published("tnt-test", archive.as_uri(), "test", member_suffixes=(".pth.tar",))
    path = fetch(entry, progress=False, root=tmp_path / "cache")
    assert path.name == "TSAV416k.pth.tar"
    assert path.read_bytes() == authors_checkpoint.read_bytes()
    record = (tmp_path / "cache" / "tnt-test" / "sha256.json").read_text()
    assert hashlib.sha256(archive.read_bytes()).hexdigest() in record
    assert load_checkpoint(path).kind == "authors"
    # Second use: no download (the server copy is gone), verified against the recorded hash.
    archive.unlink()
    assert fetch(entry, progress=False, root=tmp_path / "cache") == path
    # A cached file that changed afterwards is caught.
    cached = tmp_path / "cache" / "tnt-test" / "aff2model_tnt.zip"
    cached.write_bytes(cached.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        fetch(entry, progress=False, root=tmp_path / "cache")


def test_published_checksum_is_enforced_on_first_download(tmp_path, authors_checkpoint):
    entry = Published("bad-hash", authors_checkpoint.as_uri(), "test", sha256="0" * 64)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        fetch(entry, progress=False, root=tmp_path)
    assert not list((tmp_path / "bad-hash").glob("*.pth.tar*"))  # nothing half-kept


def test_unreachable_url_gives_one_line_and_no_partial_file(tmp_path):
    entry = Published("gone", (tmp_path / "nowhere.zip").as_uri(), "test")
    with pytest.raises(CheckpointError, match="could not download .* --weights PATH"):
        fetch(entry, progress=False, root=tmp_path)
    assert not list((tmp_path / "gone").iterdir())


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
