"""Checkpoint loading: both formats, safely, with one clear line for every kind of bad file."""

from __future__ import annotations

import os
import pickle
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tsav_deploy import load_model
from tsav_deploy.artifacts.checkpoint import load_checkpoint, save_checkpoint
from tsav_deploy.cli import app
from tsav_deploy.errors import CheckpointError
from tsav_deploy.model import TSAV, ModelConfig

SMALL = ModelConfig.reduced()


def test_authors_legacy_file_loads_strictly_and_reproduces_their_logits(authors_checkpoint, reference):
    with open(authors_checkpoint, "rb") as fh:
        assert fh.read(2) != b"PK"  # legacy serialization, not a zip archive
    ckpt = load_checkpoint(authors_checkpoint)
    assert ckpt.kind == "authors" and ckpt.config.is_paper
    assert ckpt.provenance["epoch"] == 7 and ckpt.provenance["best_score"] == pytest.approx(0.5401)
    model = load_model(authors_checkpoint)
    assert not model.training and next(model.parameters()).device.type == "cpu"
    ref = reference.load_json("model_io.json")
    clip, spec = reference.seeded_inputs(ref["batch"], ref["inputs_seed"])
    with torch.no_grad():
        logits = model(torch.from_numpy(clip), torch.from_numpy(spec)).numpy()
    expected = np.asarray(ref["logits"])
    assert np.abs(logits - expected).max() / np.abs(expected).max() < 1e-5


def test_own_format_round_trip_keeps_config_and_provenance(tmp_path):
    model = TSAV(SMALL).eval()
    path = save_checkpoint(tmp_path / "small.pt", model, training={"lr": 1e-3, "steps": 10}, data={"videos": 3})
    ckpt = load_checkpoint(path)
    assert ckpt.kind == "tsav-deploy" and ckpt.config == SMALL
    assert ckpt.provenance["training"] == {"lr": 1e-3, "steps": 10}
    assert ckpt.preprocessing["audio"]["sample_rate"] == 44100
    loaded = ckpt.build_model()
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)
    assert not list(tmp_path.glob("*partial*"))


def test_checkpoint_trained_on_other_windows_is_refused_for_export_and_inference(tmp_path):
    """A tsav checkpoint whose recorded preprocessing lacks the authors' window rule: readable
    (``tsav info``, training), but export and inference refuse it in one line."""
    from tsav_deploy.export import Exporter
    from tsav_deploy.runtime import Engine

    path = save_checkpoint(tmp_path / "centred.pt", TSAV(SMALL).eval())
    payload = torch.load(path, weights_only=True)
    payload["preprocessing"]["audio"].pop("window_rule")
    torch.save(payload, path)
    assert load_checkpoint(path).build_model() is not None
    message = r"centred.pt: trained on inputs made with other preprocessing \(audio.window_rule: none recorded"
    with pytest.raises(CheckpointError, match=message):
        Engine.load(path)
    with pytest.raises(CheckpointError, match=message):
        Exporter()(path, tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_checkpoint_trained_on_time_based_clips_is_refused(tmp_path):
    """A tsav checkpoint trained on clips of the rule by time, with raw crops: refused in one line."""
    from tsav_deploy.runtime import Engine

    path = save_checkpoint(tmp_path / "by_time.pt", TSAV(SMALL).eval())
    payload = torch.load(path, weights_only=True)
    clip = payload["preprocessing"]["clip"]
    for key in ("step_frames", "rule", "decode_colorspace", "warp", "crop_codec"):
        del clip[key]
    clip["step_s"] = 0.2
    torch.save(payload, path)
    message = (
        r"by_time.pt: trained on inputs made with other preprocessing \(clip.step_frames: none recorded, this version 6"
    )
    with pytest.raises(CheckpointError, match=message):
        Engine.load(path)


def test_dataparallel_prefix_is_accepted(tmp_path):
    model = TSAV(SMALL)
    path = tmp_path / "dp.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    with pytest.raises(CheckpointError, match="has shape"):
        load_checkpoint(path).build_model()  # the authors' format means the paper's network
    ckpt = load_checkpoint(path)
    ckpt.config = SMALL
    ckpt.build_model()


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def _bad_files(tmp_path, authors_checkpoint):
    full = authors_checkpoint.read_bytes()
    state = TSAV(SMALL).state_dict()
    wrong_shape = dict(state)
    wrong_shape["fc.1.weight"] = torch.zeros(17, 3)
    cases = {
        "empty": (b"", "empty"),
        "text": (b"hello, I am not a checkpoint\n" * 10, "not a PyTorch checkpoint"),
        "truncated": (full[: len(full) // 3], "not a PyTorch checkpoint or truncated"),
        "exploit": (pickle.dumps({"state_dict": _Exploit()}), "refusing to unpickle"),
    }
    for name, (data, _) in cases.items():
        (tmp_path / name).write_bytes(data)
    torch.save([1, 2, 3], tmp_path / "list")
    torch.save({"weights": 1}, tmp_path / "nostate")
    torch.save({"state_dict": {k: v for k, v in state.items() if "layer4" not in k}}, tmp_path / "missing")
    torch.save({"state_dict": {**state, "extra.weight": torch.zeros(1)}}, tmp_path / "unexpected")
    torch.save(
        {"format": "tsav-deploy/checkpoint", "state_dict": wrong_shape, "model_config": SMALL.to_dict()},
        tmp_path / "shape",
    )
    return {
        **{k: v[1] for k, v in cases.items()},
        "list": "not a checkpoint dictionary",
        "nostate": "without 'state_dict'",
        "missing": "missing",
        "unexpected": "unexpected",
        "shape": "fc.1.weight has shape [17, 3]",
        "does-not-exist.pth": "no such file",
    }


def test_bad_checkpoints_raise_one_clear_line(tmp_path, authors_checkpoint, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, message in _bad_files(tmp_path, authors_checkpoint).items():
        path = tmp_path / name
        with pytest.raises(CheckpointError, match=re.escape(message)) as info:
            if name in ("missing", "unexpected", "shape"):
                ckpt = load_checkpoint(path)
                ckpt.config = SMALL
                ckpt.build_model()
            else:
                load_checkpoint(path)
        assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert not (tmp_path / "pwned").exists()


def test_cli_reports_bad_checkpoint_in_one_line(tmp_path, authors_checkpoint):
    _bad_files(tmp_path, authors_checkpoint)
    runner = CliRunner()
    for name in ("empty", "truncated", "exploit", "does-not-exist.pth"):
        result = runner.invoke(app, ["info", str(tmp_path / name)])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        assert isinstance(result.exception, SystemExit) and result.exception.code == 2  # typer.Exit, not a crash
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), result.output


def test_cli_info_on_authors_file(authors_checkpoint):
    result = CliRunner().invoke(app, ["info", str(authors_checkpoint), "--json"])
    assert result.exit_code == 0, result.output
    assert '"parameters": 42489995' in result.output and '"format": "authors"' in result.output
