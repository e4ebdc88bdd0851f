"""tsav bench: every stage measured, a ceiling from counted FLOPs and a bound on the machine's rate;
int8 export agrees with fp32.

No timed assertions: speed targets live in the benchmark's output, never in tests.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tsav_deploy.cli import app
from tsav_deploy.model import ModelConfig
from tsav_deploy.runs.bench import FRONTEND_STAGES, NETWORK_STAGES, count_flops, network_flops
from tsav_deploy.runs.cpu_peak import cpu_peak


def test_bench_json_has_every_stage_and_a_ceiling(media_dir, small_checkpoint):
    video = media_dir / "webcam_man_mp3.mp4"
    result = CliRunner().invoke(app, ["bench", str(video), "--weights", str(small_checkpoint), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["frames"] == 72 and report["targets"] == 72
    for stage in (*FRONTEND_STAGES, *NETWORK_STAGES, "writers"):
        assert report["stages"][stage]["fps"] > 0, stage
    for stage in NETWORK_STAGES:
        assert report["stages"][stage]["items"] == 72
    ceiling = report["ceiling"]
    flops = network_flops(ModelConfig.reduced())
    assert ceiling["gflop_per_frame"] == pytest.approx(sum(flops.values()) / 1e9, rel=1e-3)
    assert ceiling["network"].startswith("reduced") and ceiling["fps"] > 0
    assert report["end_to_end"]["fps"] > 0 and 0 < report["end_to_end"]["fraction_of_ceiling"]
    assert report["stages"]["faces"]["seconds"] >= report["stages"]["tracking"]["seconds"]  # tracking is part of it
    assert report["frontend"]["fps"] > 0 and report["peak_rss_mb"] > 0
    _check_the_ceiling_bounds_every_rate(report)


def _check_the_ceiling_bounds_every_rate(report: dict) -> None:
    """The ceiling is at least every rate measured in the run (a bound holds whatever the load), and
    only the network's stages are set against it."""
    ceiling = report["ceiling"]
    assert {"torch", "onnxruntime", "openvino"} <= set(ceiling["measured_gflops"])
    rates = [*ceiling["measured_gflops"].values(), *(report["stages"][s]["gflops"] for s in NETWORK_STAGES)]
    if ceiling["cpu_peak"] is not None:
        rates.append(ceiling["cpu_peak"]["gflops"])
    assert ceiling["gflops"] >= max(rates) > 0
    assert ceiling["fps"] == pytest.approx(ceiling["gflops"] / ceiling["gflop_per_frame"], rel=1e-2)
    for name, stage in report["stages"].items():
        if name in NETWORK_STAGES:
            assert 0 < stage["x_ceiling"] <= 1 and stage["fps"] <= stage["ceiling_fps"], name
        else:
            assert not {key for key in stage if "ceiling" in key or key == "gflops"}, name
    assert not [key for key in report["frontend"] if "ceiling" in key]


CPUINFO = """processor\t: {n}
vendor_id\t: {vendor}
cpu family\t: {family}
model name\t: {name}
cpu MHz\t\t: {mhz}
flags\t\t: {flags}
"""


def _cpuinfo(cores: int, vendor: str, family: int, name: str, mhz: str, flags: str) -> str:
    return "\n".join(
        CPUINFO.format(n=n, vendor=vendor, family=family, name=name, mhz=mhz, flags=flags) for n in range(cores)
    )


XEON = _cpuinfo(
    2,
    "GenuineIntel",
    6,
    "Intel Xeon",
    "2100.000",
    "fpu sse2 avx fma avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8",
)
ZEN4 = _cpuinfo(4, "AuthenticAMD", 25, "AMD EPYC 9654", "2400.000", "sse2 avx fma avx2 avx512f avx512_vnni avx512_bf16")
ZEN5 = _cpuinfo(4, "AuthenticAMD", 26, "AMD EPYC 9755", "2700.000", "sse2 avx fma avx2 avx512f avx512_vnni")
AVX2 = _cpuinfo(2, "AuthenticAMD", 25, "AMD EPYC", "2445.434", "sse2 avx fma avx2")
AVX = _cpuinfo(1, "GenuineIntel", 6, "Intel Xeon E5-2670", "2600.000", "sse2 avx")


@pytest.mark.parametrize(
    "cpuinfo, max_mhz, cores, precision, gflops",
    [
        (XEON, 3800.0, 2, "fp32", 2 * 16 * 2 * 3.8 * 2),  # 2 FMA ports x 16 fp32 lanes x 2 FLOP x GHz x cores
        (XEON, 3800.0, 2, "int8", 2048 * 3.8 * 2),  # AMX-INT8
        (XEON, 3800.0, 2, "bf16", 1024 * 3.8 * 2),  # AMX-BF16
        (XEON, None, 1, "fp32", 64 * 2.1),  # no maximum: cpuinfo's clock
        (ZEN4, None, 4, "fp32", 2 * 8 * 2 * 2.4 * 4),  # 512-bit work on 2 FMA pipes of 256 bits
        (ZEN4, None, 4, "int8", 4 * 32 * 2.4 * 4),  # VNNI: 4 int8 multiply-adds per fp32 lane
        (ZEN4, None, 4, "bf16", 2 * 32 * 2.4 * 4),  # vdpbf16ps
        (ZEN5, None, 4, "fp32", 2 * 16 * 2 * 2.7 * 4),  # 512-bit pipes
        (AVX2, None, 2, "fp32", 2 * 8 * 2 * 2.445434 * 2),
        (AVX2, None, 2, "bf16", 32 * 2.445434 * 2),  # no bf16 instructions: fp32's rate
        (AVX, None, 1, "fp32", 16 * 2.6),  # no FMA
    ],
)
def test_cpu_peak_from_flags_and_clock(cpuinfo, max_mhz, cores, precision, gflops):
    peak = cpu_peak(precision, cpuinfo, max_mhz=max_mhz, cores=cores)
    assert peak.gflops == pytest.approx(gflops, rel=1e-6)
    assert peak.cores == cores and peak.clock == ("maximum clock" if max_mhz else "/proc/cpuinfo cpu MHz")


def test_cpu_peak_needs_a_clock():
    assert cpu_peak("fp32", AVX2.replace("2445.434", "0"), cores=2) is None


def test_stride_lowers_the_work_per_frame(media_dir, small_checkpoint):
    """Frontend only (no model): the ceiling is the paper network's, divided among strided frames."""
    video = media_dir / "webcam_man_mp3.mp4"
    result = CliRunner().invoke(app, ["bench", str(video), "--stride", "8", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert "end_to_end" not in report and report["engine"] is None
    assert not [stage for stage in report["stages"].values() if "x_ceiling" in stage]
    assert report["targets"] == 10  # frames 0, 8, ..., 64 and the last, 71
    assert report["ceiling"]["network"] == "paper"
    assert report["ceiling"]["gflop_per_frame"] == pytest.approx(
        sum(network_flops(ModelConfig()).values()) * 10 / 72 / 1e9, rel=1e-3
    )


def test_flop_counter_matches_a_hand_count():
    conv2d = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_flops(conv2d, torch.zeros(1, 3, 10, 10)) == 2 * (8 * 10 * 10) * (3 * 3 * 3)
    conv3d = torch.nn.Conv3d(4, 6, (3, 1, 1), stride=(1, 2, 2), padding=(1, 0, 0), bias=False)
    assert count_flops(conv3d, torch.zeros(2, 4, 8, 6, 6)) == 2 * (2 * 6 * 8 * 3 * 3) * (4 * 3)
    linear = torch.nn.Linear(5, 7)
    assert count_flops(linear, torch.zeros(2, 5)) == 2 * 2 * 5 * 7


def test_paper_network_costs_the_issues_45_gflop_per_frame():
    flops = network_flops(ModelConfig())
    assert flops["visual"] / 1e9 == pytest.approx(40.5, rel=0.01)
    assert sum(flops.values()) / 1e9 == pytest.approx(45.2, rel=0.01)
    reduced = network_flops(ModelConfig.reduced())
    assert sum(reduced.values()) < sum(flops.values()) / 40


def test_int8_export_of_the_reduced_network_agrees_with_float32(media_dir, small_checkpoint, tmp_path):
    """Calibrated on 16 frames of a real recording, checked on all its frames through both int8 engines."""
    from tsav_deploy.artifacts.manifest import read_manifest
    from tsav_deploy.export.exporter import Exporter
    from tsav_deploy.faces import get_backend
    from tsav_deploy.pipeline.offline import AnnotateOptions, annotate_video
    from tsav_deploy.runtime import Engine

    result = Exporter(["onnx"], int8=True, calibration=[media_dir / "webcam_man_mp3.mp4"])(
        small_checkpoint, tmp_path / "export"
    )
    manifest = read_manifest(tmp_path / "export")
    assert set(manifest.files("onnx-int8")) == {"visual", "aural"}
    assert result.manifest["int8"]["calibration"]["samples"] > 0
    fp32 = Engine.load(tmp_path / "export", engine="onnx")
    backend = get_backend("dlib")
    video = media_dir / "webcam_man_mp3.mp4"
    a = annotate_video(video, fp32, backend, AnnotateOptions()).persons[0].predictions
    for name in ("onnx-int8", "openvino-int8"):
        int8 = Engine.load(tmp_path / "export", engine=name)
        assert (fp32.backend.precision, int8.backend.precision) == ("fp32", "int8")
        b = annotate_video(video, int8, backend, AnnotateOptions()).persons[0].predictions
        assert np.mean(a.expression == b.expression) >= 0.9, name
        assert np.mean(a.au == b.au) >= 0.9, name
        assert np.abs(a.valence - b.valence).max() < 0.1 and np.abs(a.arousal - b.arousal).max() < 0.1, name
        assert not np.array_equal(a.au_probs, b.au_probs), name  # the int8 graphs really ran
        _check_constant_inputs_get_float32_features(int8, small_checkpoint)


def _check_constant_inputs_get_float32_features(int8, checkpoint) -> None:
    """Rows the frontend flags as the black clip or the silent window get the float32 network's
    features (which the int8 graphs alone would shift); the other rows are the int8 graphs' own."""
    from tsav_deploy.artifacts.checkpoint import load_checkpoint
    from tsav_deploy.artifacts.manifest import constant_inputs

    model = load_checkpoint(checkpoint).build_model()
    for part, name in (("visual", "clip"), ("aural", "spec")):
        constant = constant_inputs()[name]
        other = constant + np.float32(0.25)
        with torch.inference_mode():
            expected = getattr(model, part)(torch.from_numpy(constant)).numpy()[0]
        flag = {"visual": "black", "aural": "silent"}[part]
        out = getattr(int8, part)(np.concatenate([other, constant, other]), **{flag: np.array([False, True, False])})
        unflagged = getattr(int8, part)(np.concatenate([other, constant, other]))  # no flags: int8 throughout
        np.testing.assert_allclose(unflagged[1], getattr(int8.backend, part)(constant)[0], rtol=0, atol=1e-5)
        np.testing.assert_allclose(out[1], expected, rtol=0, atol=1e-6, err_msg=part)
        assert np.abs(getattr(int8.backend, part)(constant)[0] - expected).max() > 1e-4, part  # int8 alone differs
        np.testing.assert_allclose(
            out[[0, 2]], np.repeat(getattr(int8.backend, part)(other), 2, axis=0), rtol=0, atol=1e-5, err_msg=part
        )


def test_annotation_marks_exactly_the_stages_bench_reports(media_dir, small_checkpoint, tmp_path):
    """One code path: a plain annotation (no bench wrappers) marks exactly PIPELINE_STAGES, so a
    stage added to the pipeline or dropped from it fails here until bench reports it."""
    from tsav_deploy.api import Annotation
    from tsav_deploy.faces import get_backend
    from tsav_deploy.pipeline.offline import AnnotateOptions, annotate_video
    from tsav_deploy.runs.bench import PIPELINE_STAGES
    from tsav_deploy.runtime import Engine
    from tsav_deploy.stages import measure

    video = media_dir / "webcam_man_mp3.mp4"
    with measure() as clock:
        result = annotate_video(
            video, Engine.load(small_checkpoint), get_backend("dlib", detector="hog"), AnnotateOptions(stride=4)
        )
        Annotation(video, result).save(tmp_path)
    assert set(clock.seconds) == set(PIPELINE_STAGES)
    assert clock.items["mel"] == 19  # one window per target frame: 0, 4, ..., 68 and the last
    assert all(seconds > 0 for seconds in clock.seconds.values())
