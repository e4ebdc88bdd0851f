"""Export: the paper-size network from an authors'-format checkpoint to ONNX + TorchScript, checked
against the authors' own logits (../shared/reference/model_io.json), PyTorch and the manifest.

The paper-size export (~25 s on 2 cores) runs once per module; everything else uses the reduced
network.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from tsav_deploy.artifacts.checkpoint import file_sha256, load_checkpoint
from tsav_deploy.artifacts.manifest import write_json_atomic
from tsav_deploy.cli import app
from tsav_deploy.contract import CLIP_MEAN, CLIP_STD
from tsav_deploy.errors import ArtifactError, TsavError
from tsav_deploy.export import Exporter, verify_export
from tsav_deploy.inputs.windows import spec_windows
from tsav_deploy.model import ModelConfig
from tsav_deploy.results.predictions import decode
from tsav_deploy.runtime import Engine

PAPER_PARAMETERS = 42_489_995
REDUCED = ModelConfig.reduced()
runner = CliRunner()


def rel_err(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def run_cli(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    return result


# --- paper size, authors' format ------------------------------------------------------------------


@pytest.fixture(scope="module")
def authors_checkpoint(tmp_path_factory, reference) -> pathlib.Path:
    """Seeded paper-size weights saved like the authors' TSAV416k.pth.tar (legacy serialization)."""
    spec = reference.load_json("tsav_state_dict.json")
    state = {k: torch.from_numpy(v) for k, v in reference.seeded_state_dict(spec, 0).items()}
    path = tmp_path_factory.mktemp("authors") / "TSAV416k.pth.tar"
    torch.save({"state_dict": state, "epoch": 7}, path, _use_new_zipfile_serialization=False)
    return path


@pytest.fixture(scope="module")
def paper_export(authors_checkpoint, tmp_path_factory) -> tuple[pathlib.Path, str]:
    out = tmp_path_factory.mktemp("paper") / "export"
    result = run_cli("export", str(authors_checkpoint), "--out", str(out), "--onnx", "--torchscript")
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.fixture(scope="module")
def authors_io(reference):
    """The seeded inputs and the authors' network's outputs for them."""
    clip, spec = reference.seeded_inputs(2, 1)
    return clip, spec, reference.load_json("model_io.json")


@pytest.fixture(scope="module")
def pytorch_logits(authors_checkpoint, authors_io):
    clip, spec, _ = authors_io
    with torch.inference_mode():
        return load_checkpoint(authors_checkpoint).build_model()(torch.from_numpy(clip), torch.from_numpy(spec)).numpy()


@pytest.fixture(scope="module")
def real_inputs(reference):
    """Realistic inputs: the authors' aligned face crop of ../media/single_face.jpg with their
    landmark masks (jittered over the 8 frames, as landmarks jitter in video), and the aural windows
    of a speech-like signal at four points of the authors' rule (start, 5-10 s, centred, end)."""
    face = reference.load_npz("face_ref.npz")
    windows = spec_windows(reference.synthetic_speechlike(12.0), [0.6, 7.3, 10.0, 11.9])[:, 0]
    rgb = face["aligned_rgb"].transpose(2, 0, 1).astype(np.float32)  # [3, 112, 112]
    masks = face["masks"].astype(np.float32)
    clips = []
    for sample in range(len(windows)):
        frames = [np.concatenate([rgb, masks[(sample * 8 + k) % len(masks)][None]]) for k in range(8)]
        clips.append(np.stack(frames, axis=1) / 255.0)  # [4, 8, 112, 112]
    mean = np.asarray(CLIP_MEAN, np.float32)[:, None, None, None]
    std = np.asarray(CLIP_STD, np.float32)[:, None, None, None]
    clip = ((np.stack(clips) - mean) / std).astype(np.float32)
    return clip, windows[:, None].astype(np.float32)


def test_export_writes_every_file_and_a_complete_manifest(paper_export, authors_checkpoint):
    out, output = paper_export
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["artifacts"]) == {"visual.onnx", "aural.onnx", "fusion.onnx", "tsav.ts", "parity_reference.npz"}
    for name, entry in manifest["artifacts"].items():
        assert entry["sha256"] == file_sha256(out / name) and entry["bytes"] == (out / name).stat().st_size
    assert manifest["source"] == {
        "path": str(authors_checkpoint),
        "sha256": file_sha256(authors_checkpoint),
        "kind": "authors",
    }
    assert manifest["parameters"] == PAPER_PARAMETERS and manifest["model_config"]["widths"] == [64, 128, 256, 512]
    assert manifest["contract"]["visual"]["inputs"]["clip"]["shape"] == ["batch", 4, 8, 112, 112]
    assert manifest["contract"]["fusion"]["inputs"] == {
        "aural_features": {"shape": ["batch", 512], "dtype": "float32"},
        "visual_features": {"shape": ["batch", 512], "dtype": "float32"},
    }
    assert manifest["preprocessing"]["audio"]["sample_rate"] == 44_100
    assert {"torch", "onnx", "onnxruntime", "tensorrt"} <= manifest["versions"].keys()
    assert manifest["versions"]["onnxruntime"] == ort.__version__
    parity = manifest["parity"]
    assert {row["artifact"] for row in parity} == {"visual.onnx", "aural.onnx", "fusion.onnx", "*.onnx", "tsav.ts"}
    assert all(row["status"] == "ok" and max(row["errors"].values()) <= 1e-4 for row in parity)
    assert not list(out.parent.glob(f".{out.name}.tsav-*")), "the staging folder must be gone"
    assert "wrote manifest.json" in output


def test_onnx_graphs_have_a_dynamic_batch_axis(paper_export):
    out, _ = paper_export
    for name, inputs in (
        ("visual.onnx", ["clip"]),
        ("aural.onnx", ["spec"]),
        ("fusion.onnx", ["aural_features", "visual_features"]),
    ):
        graph = onnx.load(str(out / name), load_external_data=False).graph
        assert [i.name for i in graph.input] == inputs
        assert all(i.type.tensor_type.shape.dim[0].dim_param == "batch" for i in [*graph.input, *graph.output])


def test_onnxruntime_reproduces_the_authors_and_pytorch_logits(paper_export, authors_io, pytorch_logits):
    """The three ONNX files run with plain onnxruntime (not the project's runtime), at batch 2 and 1."""
    out, _ = paper_export
    clip, spec, reference = authors_io
    sessions = {
        p: ort.InferenceSession(str(out / f"{p}.onnx"), providers=["CPUExecutionProvider"])
        for p in ("visual", "aural", "fusion")
    }
    for batch in (2, 1):
        visual = sessions["visual"].run(None, {"clip": clip[:batch]})[0]
        aural = sessions["aural"].run(None, {"spec": spec[:batch]})[0]
        logits = sessions["fusion"].run(None, {"aural_features": aural, "visual_features": visual})[0]
        assert logits.shape == (batch, 17)
        assert rel_err(logits, pytorch_logits[:batch]) <= 1e-4
        assert rel_err(logits, np.asarray(reference["logits"])[:batch]) <= 1e-4
        assert rel_err(visual[:, :8], np.asarray(reference["visual_features_head"])[:batch]) <= 1e-4
        assert rel_err(aural[:, :8], np.asarray(reference["aural_features_head"])[:batch]) <= 1e-4


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_reproduces_the_authors_and_pytorch_logits(paper_export, authors_io, pytorch_logits):
    out, _ = paper_export
    clip, spec, reference = authors_io
    module = torch.jit.load(str(out / "tsav.ts"))
    with torch.inference_mode():
        logits = module(torch.from_numpy(clip), torch.from_numpy(spec)).numpy()
    assert rel_err(logits, pytorch_logits) <= 1e-4
    assert rel_err(logits, reference["logits"]) <= 1e-4


def test_every_runtime_backend_predicts_alike_on_real_preprocessed_inputs(
    paper_export, authors_checkpoint, real_inputs
):
    out, _ = paper_export
    clip, spec = real_inputs
    expected = Engine.load(authors_checkpoint, engine="torch")(clip, spec)
    want = decode(expected)
    for engine in ("onnx", "torchscript"):
        logits = Engine.load(out, engine=engine)(clip, spec)
        assert rel_err(logits, expected) <= 1e-4, engine
        got = decode(logits)
        np.testing.assert_array_equal(got.expression, want.expression)
        np.testing.assert_array_equal(got.au, want.au)
        np.testing.assert_allclose(got.valence, want.valence, atol=1e-4)
        np.testing.assert_allclose(got.arousal, want.arousal, atol=1e-4)


def test_verify_reports_parity_per_artifact(small_export):
    """``tsav export --verify`` on a finished export (the paper-size one's parity rows, from the same
    verification, are checked in its manifest above)."""
    result = run_cli("export", "--verify", str(small_export))
    assert result.exit_code == 0, result.output
    for artifact in ("visual.onnx", "aural.onnx", "fusion.onnx", "*.onnx", "tsav.ts"):
        assert artifact in result.output
    assert "FAILED" not in result.output and "within tolerance" in result.output and "skipped" not in result.output


# --- reduced network ------------------------------------------------------------------------------


@pytest.fixture
def export_copy(small_export, tmp_path) -> pathlib.Path:
    return pathlib.Path(shutil.copytree(small_export, tmp_path / "copy"))


def flip_byte(path: pathlib.Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["visual.onnx", "tsav.ts", "parity_reference.npz"])
def test_a_corrupted_artifact_fails_verification_with_one_clear_line(export_copy, name):
    flip_byte(export_copy / name)
    result = run_cli("export", "--verify", str(export_copy))
    assert result.exit_code == 2
    error = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and name in error[0] and "sha256 mismatch" in error[0]
    assert not verify_export(export_copy).ok


def test_a_missing_artifact_fails_verification(export_copy):
    (export_copy / "fusion.onnx").unlink()
    report = verify_export(export_copy)
    assert [row.artifact for row in report.failures] == ["fusion.onnx"]
    assert "missing" in report.failure_line()


def test_verification_catches_artifacts_that_disagree_with_pytorch(export_copy):
    """Reference outputs that no longer match the artifacts (re-hashed, so only parity can tell)."""
    stored = dict(np.load(export_copy / "parity_reference.npz"))
    stored["random.logits"] = stored["random.logits"] * 1.01
    np.savez(export_copy / "parity_reference.npz", **stored)
    manifest = json.loads((export_copy / "manifest.json").read_text())
    entry = manifest["artifacts"]["parity_reference.npz"]
    entry.update(
        sha256=file_sha256(export_copy / "parity_reference.npz"),
        bytes=(export_copy / "parity_reference.npz").stat().st_size,
    )
    write_json_atomic(export_copy / "manifest.json", manifest)
    report = verify_export(export_copy)
    failed = {(row.artifact, row.output) for row in report.failures}
    assert failed == {
        ("fusion.onnx", "logits"),
        ("*.onnx", "network logits"),
        ("tsav.ts", "logits"),
        ("tsav.ts", "network logits"),
    }
    assert all(row.errors["random"] > 1e-4 and row.errors["structured"] <= 1e-4 for row in report.failures)
    with pytest.raises(ArtifactError, match=r"max relative error .* > 1e-04 \(random probe\)"):
        report.raise_for_failure()


def test_re_export_replaces_a_previous_export_consistently(small_checkpoint, export_copy):
    result = Exporter(["onnx"])(small_checkpoint, export_copy)
    assert set(result.manifest["artifacts"]) == {"visual.onnx", "aural.onnx", "fusion.onnx", "parity_reference.npz"}
    assert verify_export(export_copy).ok
    assert Engine.load(export_copy).name == "openvino"
    with pytest.raises(ArtifactError, match="no TorchScript file"):
        Engine.load(export_copy, engine="torchscript")  # the old tsav.ts is no longer claimed


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"formats": ["pdf"]}, "export formats must be among"),
        ({"fp16": True}, "--fp16 applies to TensorRT engines"),
        ({"max_batch": 0}, "--max-batch must be a whole number from 1 to 4096"),
        ({"opset": 21}, "supported opsets are 13-20"),
    ],
)
def test_bad_export_options_are_one_line_errors(kwargs, message):
    with pytest.raises(TsavError, match=message) as info:
        Exporter(**kwargs)
    assert "\n" not in str(info.value)


def test_cli_errors_are_one_line(tmp_path, small_checkpoint, small_export):
    cases = [
        (["export", str(tmp_path / "missing.pth")], "no such file"),
        (["export"], "missing CHECKPOINT"),
        (["export", str(small_checkpoint), "--verify", str(small_export)], "not both"),
        (["export", "--verify", str(tmp_path)], "no manifest.json"),
        (["export", str(small_checkpoint), "--out", str(tmp_path / "o"), "--opset", "9"], "supported opsets"),
    ]
    for args, message in cases:
        result = run_cli(*args)
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert result.exit_code == 2 and len(errors) == 1 and message in errors[0], result.output


def test_trt_without_tensorrt_is_a_clear_error(small_checkpoint, tmp_path):
    if torch.cuda.is_available() and importlib.util.find_spec("tensorrt"):
        pytest.skip("this machine can build engines (covered by the TensorRT test)")
    result = run_cli("export", str(small_checkpoint), "--out", str(tmp_path / "o"), "--trt")
    assert result.exit_code == 2 and (
        "TensorRT is not installed" in result.output or "needs a CUDA GPU" in result.output
    )
    assert not (tmp_path / "o").exists(), "nothing is written before the TensorRT check"


@pytest.mark.gpu
def test_tensorrt_fp16_engines_export_and_verify(small_checkpoint, tmp_path):
    pytest.importorskip("tensorrt")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT engines need a CUDA GPU")
    result = Exporter(["tensorrt"], fp16=True, max_batch=4)(small_checkpoint, tmp_path / "trt")
    assert {"visual.engine", "aural.engine", "fusion.engine", "timing.cache"} <= set(result.manifest["artifacts"])
    rows = [row for row in result.report.rows if row.backend == "tensorrt"]
    assert rows and all(row.status == "ok" and row.tolerance == 1e-2 for row in rows)
    engine = Engine.load(tmp_path / "trt", device="cuda")
    assert engine.name == "tensorrt"
    clip = np.random.RandomState(0).standard_normal((6, 4, 8, 112, 112)).astype(np.float32)  # > max batch: chunked
    assert engine.visual(clip).shape == (6, 64)


def test_a_failed_export_leaves_the_folder_as_it_was(small_checkpoint, tmp_path, monkeypatch):
    from tsav_deploy.export import exporter as exporter_module

    out = tmp_path / "export"
    Exporter(["onnx"])(small_checkpoint, out)
    before = {p.name: file_sha256(p) for p in out.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(exporter_module, "export_torchscript", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        Exporter(["onnx", "torchscript"])(small_checkpoint, out)
    assert {p.name: file_sha256(p) for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no staging folder left
    monkeypatch.undo()
    Exporter(["onnx", "torchscript"])(small_checkpoint, out)  # a verified export replaces the old one whole
    assert "tsav.ts" in json.loads((out / "manifest.json").read_text())["artifacts"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    assert oct(out.stat().st_mode & 0o777) != oct(0o700)


def test_export_refuses_a_folder_of_other_files(small_checkpoint, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(TsavError, match="holds notes.txt, which no tsav export made"):
        Exporter(["onnx"])(small_checkpoint, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_export_into_the_current_folder(small_checkpoint, tmp_path, monkeypatch):
    """``--out .``: the folder is resolved first, so staging and the swap happen beside it."""
    out = tmp_path / "here"
    out.mkdir()
    monkeypatch.chdir(out)
    Exporter(["onnx"])(small_checkpoint, ".")
    Exporter(["onnx"])(small_checkpoint, ".")  # replacing an earlier export in place
    assert (out / "manifest.json").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["here"]
