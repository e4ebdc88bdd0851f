"""Parity of every exported artifact with the PyTorch network, and integrity of every file.

The PyTorch network's outputs on the seeded probe sets are stored at export time
(``parity_reference.npz``, hashed in the manifest), so a directory can be verified anywhere — on the
GPU machine that runs its TensorRT engines, say — without the checkpoint. Errors are relative to the
output scale: ``max |artifact - pytorch| / max |pytorch|`` over a probe set.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from tsav_deploy.artifacts.manifest import REFERENCE_FILE, Manifest, read_manifest
from tsav_deploy.errors import ArtifactError, TsavError
from tsav_deploy.export.probes import OUTPUTS, probe_inputs
from tsav_deploy.results.predictions import decode
from tsav_deploy.runtime.backend import Backend
from tsav_deploy.runtime.engine import ARTIFACT_FORMAT, open_backend, parse_device


@dataclass(frozen=True)
class Tolerance:
    relative: float  # on features and logits, relative to the output scale
    probability: float | None = None  # absolute, on expression/AU probabilities and clipped valence/arousal


FP32 = Tolerance(relative=1e-4)
# FP16 kernels keep ~3 significant digits; through ~20 layers that is ~1e-3 of the output scale,
# and a logit error of 1% of a typical trained logit range (~10) moves a probability by <= 0.025.
FP16 = Tolerance(relative=1e-2, probability=0.05)


@dataclass
class ParityRow:
    artifact: str
    output: str
    backend: str
    errors: dict[str, float] = field(default_factory=dict)  # probe set -> max relative error
    tolerance: float | None = None
    probability_error: float | None = None
    probability_tolerance: float | None = None
    status: str = "ok"  # ok | FAILED | skipped
    detail: str = ""

    @property
    def max_error(self) -> float | None:
        return max(self.errors.values()) if self.errors else None

    def line(self) -> str:
        if self.detail:
            return f"{self.artifact}: {self.detail}"
        worst = max(self.errors, key=self.errors.get)
        text = f"{self.artifact} {self.output} on {self.backend}: max relative error {self.errors[worst]:.2e} > {self.tolerance:.0e} ({worst} probe)"
        if self.probability_tolerance is not None and self.probability_error > self.probability_tolerance:
            text += f", probability error {self.probability_error:.3f} > {self.probability_tolerance}"
        return text


@dataclass
class VerificationReport:
    folder: pathlib.Path
    rows: list[ParityRow]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[ParityRow]:
        return [row for row in self.rows if row.status == "FAILED"]

    @property
    def skipped(self) -> list[ParityRow]:
        return [row for row in self.rows if row.status == "skipped"]

    def failure_line(self) -> str:
        failures = self.failures
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        return failures[0].line() + more

    def raise_for_failure(self) -> None:
        if not self.ok:
            raise ArtifactError(f"verification of {self.folder} failed: {self.failure_line()}")

    def as_records(self) -> list[dict]:
        return [asdict(row) for row in self.rows]


def verify_export(folder: str | os.PathLike, *, device: str = "cpu") -> VerificationReport:
    """Check every file's hash, then every artifact's outputs against the stored PyTorch outputs.

    ONNX (in ONNX Runtime, and in OpenVINO on the CPU) and TorchScript run on ``device``; TensorRT
    engines on CUDA. A runtime missing here (TensorRT, a GPU, OpenVINO on CUDA) is skipped, not
    failed. Raises ``ArtifactError`` only for an unreadable manifest.
    """
    manifest = read_manifest(folder)
    dev = parse_device(device)
    rows, intact = [], set()
    for name in manifest.artifacts:
        try:
            manifest.checked_path(name)
            intact.add(name)
        except ArtifactError as exc:
            rows.append(ParityRow(name, "file", "-", status="FAILED", detail=str(exc).split(": ", 1)[-1]))
    if REFERENCE_FILE not in intact:
        return VerificationReport(manifest.folder, rows)
    probes, reference = _probes_and_reference(manifest)
    for engine in ("onnx", "openvino", "torchscript", "tensorrt"):
        files = manifest.files(ARTIFACT_FORMAT[engine])
        if not files or not set(files.values()) <= intact:
            continue
        try:
            backend = open_backend(
                manifest, engine, torch.device("cuda") if engine == "tensorrt" else dev, check_hashes=False
            )
        except ArtifactError as exc:
            rows.append(
                ParityRow(
                    ", ".join(sorted(set(files.values()))),
                    "load",
                    engine,
                    status="FAILED",
                    detail=str(exc).split(": ", 1)[-1],
                )
            )
            continue
        except TsavError as exc:  # the runtime is missing here (no TensorRT, no GPU): nothing to verify with
            rows.append(
                ParityRow(", ".join(sorted(set(files.values()))), "-", engine, status="skipped", detail=str(exc))
            )
            continue
        rows += _parity_rows(backend, manifest, files, probes, reference)
    return VerificationReport(manifest.folder, rows)


def _probes_and_reference(manifest: Manifest) -> tuple[dict, dict[str, np.ndarray]]:
    """The probe inputs the manifest names and the PyTorch outputs stored for them."""
    with np.load(manifest.folder / REFERENCE_FILE) as stored:
        reference = dict(stored)
    try:
        probes = {
            kind: probe_inputs(kind, spec["batch"], spec["seed"]) for kind, spec in manifest.data["probes"].items()
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ArtifactError(f"{manifest.folder}: the manifest's probe sets are malformed ({exc})") from None
    missing = [f"{kind}.{name}" for kind in probes for name in OUTPUTS if f"{kind}.{name}" not in reference]
    if missing:
        raise ArtifactError(f"{manifest.folder / REFERENCE_FILE}: lacks {', '.join(missing)}; re-export")
    return probes, reference


def _parity_rows(
    backend: Backend, manifest: Manifest, files: dict[str, str], probes: dict, reference: dict
) -> list[ParityRow]:
    label = backend.name + ("" if backend.name == "tensorrt" else f" {backend.describe()['device']}")
    fp16 = any(manifest.artifacts[name].get("precision") == "fp16" for name in files.values())
    tolerance = FP16 if fp16 else FP32
    # The whole network: one file (TorchScript) or the three parts chained ("*.onnx", "*.engine").
    whole = files["network"] if "network" in files else "*" + pathlib.PurePath(files["visual"]).suffix
    checks = {
        (files.get("visual", whole), "visual_features"): lambda clip, spec, ref: backend.visual(clip),
        (files.get("aural", whole), "aural_features"): lambda clip, spec, ref: backend.aural(spec),
        (files.get("fusion", whole), "logits"): lambda clip, spec, ref: backend.fusion(
            ref["aural_features"], ref["visual_features"]
        ),
        (whole, "network logits"): lambda clip, spec, ref: backend.network(clip, spec),
    }
    rows = []
    for (artifact, output), run in checks.items():
        row = ParityRow(
            artifact, output, label, tolerance=tolerance.relative, probability_tolerance=tolerance.probability
        )
        probability_errors = []
        for kind, (clip, spec) in probes.items():
            ref = {name: reference[f"{kind}.{name}"] for name in OUTPUTS}
            expected = ref[output.split()[-1]]
            actual = run(clip, spec, ref)
            row.errors[kind] = relative_error(actual, expected)
            if output.endswith("logits"):
                probability_errors.append(probability_error(actual, expected))
        row.probability_error = max(probability_errors) if probability_errors else None
        # Written as "not within", so that a NaN (which compares as nothing) fails.
        failed = not row.max_error <= tolerance.relative or (
            tolerance.probability is not None
            and row.probability_error is not None
            and not row.probability_error <= tolerance.probability
        )
        row.status = "FAILED" if failed else "ok"
        rows.append(row)
    return rows


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """``max |actual - expected| / max |expected|`` (inf for a shape mismatch or a NaN or infinite
    output)."""
    if actual.shape != expected.shape or not (np.isfinite(actual).all() and np.isfinite(expected).all()):
        return float("inf")
    scale = max(float(np.abs(expected).max()), 1e-12)
    return float(np.abs(actual.astype(np.float64) - expected).max() / scale)


def probability_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """Largest absolute difference in expression/AU probabilities and clipped valence/arousal (inf
    where either side is not a number)."""
    a, e = decode(actual), decode(expected)
    pairs = [
        (a.expression_probs, e.expression_probs),
        (a.au_probs, e.au_probs),
        (a.valence, e.valence),
        (a.arousal, e.arousal),
    ]
    error = float(max(np.abs(x - y).max() for x, y in pairs))
    return error if np.isfinite(error) else float("inf")
