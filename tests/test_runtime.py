"""The runtime: one Engine over PyTorch, TorchScript, ONNX Runtime (and TensorRT / CUDA where present),
on the reduced network; bad artifacts give one-line errors."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import shutil

import numpy as np
import pytest
import torch

from tsav_deploy.artifacts.checkpoint import file_sha256
from tsav_deploy.artifacts.manifest import write_json_atomic
from tsav_deploy.errors import ArtifactError, TsavError
from tsav_deploy.export import verify_export
from tsav_deploy.export.probes import probe_inputs
from tsav_deploy.model import TSAV, ModelConfig
from tsav_deploy.results.predictions import decode
from tsav_deploy.runtime import Engine

REDUCED = ModelConfig.reduced()
CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def inputs():
    """Realistic (frontend-like) and random inputs, 4 samples; different from the export's probes."""
    structured = probe_inputs("structured", 2, seed=7)
    rand = probe_inputs("random", 2, seed=8)
    return np.concatenate([structured[0], rand[0]]), np.concatenate([structured[1], rand[1]])


def backends_present(small_checkpoint, small_export) -> list[tuple[str, Engine]]:
    engines = [
        ("torch", Engine.load(small_checkpoint)),
        ("onnx", Engine.load(small_export, "onnx")),
        ("openvino", Engine.load(small_export, "openvino")),
        ("torchscript", Engine.load(small_export, "torchscript")),
    ]
    if CUDA:
        engines += [
            ("torch cuda", Engine.load(small_checkpoint, device="cuda")),
            ("torchscript cuda", Engine.load(small_export, "torchscript", device="cuda")),
        ]
    return engines


def rel_err(actual, expected) -> float:
    return float(np.abs(np.asarray(actual, np.float64) - expected).max() / np.abs(expected).max())


def test_every_backend_gives_the_same_predictions(small_checkpoint, small_export, inputs):
    clip, spec = inputs
    with torch.inference_mode():
        model = TSAV(REDUCED)
        model.load_state_dict(torch.load(small_checkpoint, weights_only=True)["state_dict"])
        expected = model.eval()(torch.from_numpy(clip), torch.from_numpy(spec)).numpy()
    want = decode(expected)
    for label, engine in backends_present(small_checkpoint, small_export):
        logits = engine(clip, spec)
        assert logits.dtype == np.float32 and logits.shape == (4, 17)
        assert rel_err(logits, expected) <= 1e-4, label
        # The streams one at a time give the same logits as the whole network.
        staged = engine.fusion(engine.aural(torch.from_numpy(spec)), engine.visual(torch.from_numpy(clip)))
        assert rel_err(staged, expected) <= 1e-4, label
        got = decode(logits)
        np.testing.assert_array_equal(got.expression, want.expression, err_msg=label)
        np.testing.assert_array_equal(got.au, want.au, err_msg=label)
        np.testing.assert_allclose(got.valence, want.valence, atol=1e-4, err_msg=label)


def test_openvino_splits_batches_over_its_streams_in_order(small_export, inputs):
    """Each stream gets a contiguous share of the batch; odd batches and single rows come back in place."""
    clip, _ = inputs
    engine = Engine.load(small_export, "openvino")
    whole = engine.visual(clip)
    rows = np.concatenate([engine.visual(clip[i : i + 1]) for i in range(len(clip))])
    np.testing.assert_allclose(engine.visual(clip[:3]), whole[:3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rows, whole, rtol=1e-5, atol=1e-6)
    assert not np.allclose(whole[0], whole[1])  # distinct rows, so an order mix-up would show


def test_auto_picks_openvino_on_cpu_and_says_so(small_checkpoint, small_export):
    engine = Engine.load(small_export)
    assert engine.name == "openvino"
    info = engine.describe()
    assert info["selection"].startswith("openvino (auto") and info["precision"] == "fp32"
    assert info["inference_threads"] >= 1 and info["model_config"]["widths"] == (8, 16, 32, 64)
    assert set(info["streams"]) == {"visual", "aural", "fusion"}
    assert all(1 <= n <= info["inference_threads"] for n in info["streams"].values())
    assert Engine.load(small_export, "onnx").describe()["providers"] == ["CPUExecutionProvider"]
    assert Engine.load(small_checkpoint).name == "torch"


def test_engine_checks_shapes_and_handles_empty_batches(small_export):
    engine = Engine.load(small_export)
    with pytest.raises(ValueError, match=r"clip must have shape \[B, 4, 8, 112, 112\], got \[2, 3, 8, 112, 112\]"):
        engine.visual(np.zeros((2, 3, 8, 112, 112), np.float32))
    with pytest.raises(ValueError, match="disagree on the batch size"):
        engine.fusion(np.zeros((2, 64), np.float32), np.zeros((3, 64), np.float32))
    assert engine.visual(np.zeros((0, 4, 8, 112, 112), np.float32)).shape == (0, 64)


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # inside torch.compile
def test_torch_compile_matches_eager(small_checkpoint):
    """Only the fusion head is compiled here: compiling a stream takes ~40 s on 2 CPU cores."""
    rng = np.random.RandomState(0)
    aural, visual = rng.standard_normal((2, 2, 64)).astype(np.float32)
    compiled = Engine.load(small_checkpoint, compile=True)
    assert compiled.describe()["compiled"] is True
    np.testing.assert_allclose(
        compiled.fusion(aural, visual), Engine.load(small_checkpoint).fusion(aural, visual), rtol=1e-5, atol=1e-5
    )


# --- bad artifacts ----------------------------------------------------------------------------------


def edit_manifest(folder: pathlib.Path, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    write_json_atomic(folder / "manifest.json", manifest)


def rehash(folder: pathlib.Path, name: str) -> None:
    """Record a replaced file's hash, so that only the contract checks can catch it."""

    def update(manifest):
        manifest["artifacts"][name].update(sha256=file_sha256(folder / name), bytes=(folder / name).stat().st_size)

    edit_manifest(folder, update)


def swap_in_aural_graph(folder):
    shutil.copyfile(folder / "aural.onnx", folder / "visual.onnx")
    rehash(folder, "visual.onnx")


def garbage_torchscript(folder):
    (folder / "tsav.ts").write_bytes(b"not a zip archive")
    rehash(folder, "tsav.ts")


def garbage_onnx(folder):
    (folder / "aural.onnx").write_bytes((folder / "aural.onnx").read_bytes()[:500])
    rehash(folder, "aural.onnx")


def flip_byte(folder, name="aural.onnx"):
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / name).write_bytes(bytes(data))


def set_clip_shape(manifest):
    manifest["contract"]["visual"]["inputs"]["clip"]["shape"] = ["batch", 3, 8, 112, 112]


def set_clip_mean(manifest):
    manifest["preprocessing"]["clip"]["mean"][0] = 0.5


def centred_windows(manifest):
    """An export from before the authors' window: its manifest records no window rule."""
    for key in ("window_rule", "segment_samples", "segment_lead_samples", "min_segment_samples", "wave_format"):
        del manifest["preprocessing"]["audio"][key]


def time_based_clips(manifest):
    """An export from before the authors' clip: frames by time, raw crops, tag-following decoding."""
    clip = manifest["preprocessing"]["clip"]
    for key in ("step_frames", "rule", "decode_colorspace", "warp", "crop_codec"):
        del clip[key]
    clip["step_s"] = 0.2


BAD_ARTIFACTS = {
    "missing file": (lambda f: (f / "fusion.onnx").unlink(), "onnx", "fusion.onnx: missing"),
    "checksum mismatch": (flip_byte, "onnx", "aural.onnx: sha256 mismatch"),
    "format version": (
        lambda f: edit_manifest(f, lambda m: m.update(format_version=2)),
        "auto",
        "export format version 2",
    ),
    "contract mismatch": (lambda f: edit_manifest(f, set_clip_shape), "auto", "the contract of 'visual'"),
    "preprocessing mismatch": (
        lambda f: edit_manifest(f, set_clip_mean),
        "auto",
        "other preprocessing than this tsav-deploy feeds the network (clip.mean: [0.5,",
    ),
    "centred windows": (
        lambda f: edit_manifest(f, centred_windows),
        "auto",
        "(audio.window_rule: none recorded, this version 'authors-segment' and 4 more); re-export",
    ),
    "time-based clips": (
        lambda f: edit_manifest(f, time_based_clips),
        "auto",
        "(clip.step_frames: none recorded, this version 6 and 4 more); re-export from the checkpoint",
    ),
    "wrong graph": (swap_in_aural_graph, "onnx", "visual.onnx: inputs ['spec'], the contract says ['clip']"),
    "wrong graph (openvino)": (
        swap_in_aural_graph,
        "openvino",
        "visual.onnx: inputs ['spec'], the contract says ['clip']",
    ),
    "not onnx (openvino)": (garbage_onnx, "openvino", "aural.onnx: OpenVINO cannot load it"),
    "not onnx (onnxruntime)": (garbage_onnx, "onnx", "aural.onnx: ONNX Runtime cannot load it"),
    "not torchscript": (garbage_torchscript, "torchscript", "tsav.ts: not a loadable TorchScript file"),
    "no manifest": (lambda f: (f / "manifest.json").unlink(), "auto", "no manifest.json"),
    "not json": (lambda f: (f / "manifest.json").write_text("{"), "auto", "not valid JSON"),
}


@pytest.mark.parametrize("case", list(BAD_ARTIFACTS))
def test_bad_artifacts_are_one_line_artifact_errors(case, small_export, tmp_path):
    damage, engine, message = BAD_ARTIFACTS[case]
    folder = pathlib.Path(shutil.copytree(small_export, tmp_path / "copy"))
    damage(folder)
    with pytest.raises(ArtifactError) as info:
        Engine.load(folder, engine=engine)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_engine_and_source_must_fit(small_checkpoint, small_export):
    with pytest.raises(ArtifactError, match="needs an export directory"):
        Engine.load(small_checkpoint, engine="onnx")
    with pytest.raises(ArtifactError, match="holds no PyTorch checkpoint"):
        Engine.load(small_export, engine="torch")
    with pytest.raises(ArtifactError, match="no TensorRT engine for visual, aural, fusion; export with --trt"):
        Engine.load(small_export, engine="tensorrt")
    with pytest.raises(TsavError, match="unknown engine"):
        Engine.load(small_export, engine="openvino-gpu")
    with pytest.raises(ArtifactError, match="no int8 graphs; export with --int8"):
        Engine.load(small_export, engine="openvino-int8")
    with pytest.raises(TsavError, match="compile=True applies to the torch engine"):
        Engine.load(small_export, engine="onnx", compile=True)


def test_missing_runtimes_are_clear_errors(small_export):
    if not CUDA:
        with pytest.raises(TsavError, match="sees no CUDA GPU"):
            Engine.load(small_export, device="cuda")
    with pytest.raises(TsavError, match="unknown device|not supported"):
        Engine.load(small_export, device="tpu")
    if CUDA:
        with pytest.raises(TsavError, match="openvino engine runs on the CPU"):
            Engine.load(small_export, engine="openvino", device="cuda")


@pytest.mark.gpu
def test_onnxruntime_cuda_matches_cpu(small_export, inputs):
    ort = pytest.importorskip("onnxruntime")
    if not CUDA or "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("needs onnxruntime-gpu and a CUDA GPU")
    clip, spec = inputs
    gpu = Engine.load(small_export, "onnx", device="cuda")
    assert "CUDAExecutionProvider" in gpu.describe()["providers"]
    assert rel_err(gpu(clip, spec), Engine.load(small_export, "onnx")(clip, spec)) <= 1e-3


def test_tensorrt_engines_without_tensorrt_are_skipped_by_verify_and_refused_by_load(small_export, tmp_path):
    """Engine files listed in a manifest on a machine that cannot run them (the case here)."""
    if CUDA and importlib.util.find_spec("tensorrt"):
        pytest.skip("this machine could run engines")
    folder = pathlib.Path(shutil.copytree(small_export, tmp_path / "copy"))
    for part in ("visual", "aural", "fusion"):
        (folder / f"{part}.engine").write_bytes(b"engine bytes built elsewhere")

    def add_engines(manifest):
        for part in ("visual", "aural", "fusion"):
            path = folder / f"{part}.engine"
            manifest["artifacts"][path.name] = {
                "format": "tensorrt",
                "part": part,
                "precision": "fp16",
                "sha256": file_sha256(path),
                "bytes": path.stat().st_size,
            }

    edit_manifest(folder, add_engines)
    report = verify_export(folder)
    assert report.ok and [row.backend for row in report.skipped] == ["tensorrt"]
    with pytest.raises(TsavError, match="TensorRT is not installed|needs a CUDA GPU") as info:
        Engine.load(folder, engine="tensorrt")
    assert "\n" not in str(info.value)
    assert Engine.load(folder).name == "openvino"  # auto passes over what cannot run here
