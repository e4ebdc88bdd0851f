"""One entry point for every export format (in the spirit of ultralytics' Exporter).

Everything is written into a staging folder beside the output directory and verified there; only a
verified export is renamed into place, so a failed export leaves the output directory as it was.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import pathlib
import platform
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tsav_deploy import __version__
from tsav_deploy.artifacts.checkpoint import Checkpoint, file_sha256, load_checkpoint
from tsav_deploy.artifacts.manifest import (
    CONSTANT_FEATURES_FILE,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    REFERENCE_FILE,
    TIMING_CACHE,
    constant_inputs,
    contract,
    file_entry,
    write_json_atomic,
)
from tsav_deploy.artifacts.weights import resolve
from tsav_deploy.bounds import MAX_BATCH, check_whole
from tsav_deploy.contract import preprocessing_dict
from tsav_deploy.errors import ArtifactError, TsavError
from tsav_deploy.export.onnx_export import DEFAULT_OPSET, check_opset, export_onnx
from tsav_deploy.export.probes import PROBES, reference_outputs
from tsav_deploy.export.torchscript_export import export_torchscript
from tsav_deploy.export.verify import FP16, FP32, VerificationReport, verify_export
from tsav_deploy.model import TSAV

FORMATS = ("onnx", "torchscript", "tensorrt")
DEFAULT_FORMATS = ("onnx", "torchscript")
DEFAULT_MAX_BATCH = 32


@dataclass
class ExportResult:
    folder: pathlib.Path
    manifest: dict
    report: VerificationReport

    @property
    def files(self) -> list[str]:
        return [MANIFEST, *self.manifest["artifacts"]]


class Exporter:
    """``Exporter(formats, opset=, max_batch=, fp16=)(checkpoint, out)`` -> :class:`ExportResult`.

    ``tensorrt`` engines are built from the ONNX graphs, so it implies ``onnx``; ``fp16`` and
    ``max_batch`` (the optimisation profile's upper bound) apply to the engines. ``int8`` adds
    statically quantized visual and aural graphs (implies ``onnx``), calibrated on the frontend's
    inputs from the ``calibration`` videos; their agreement with float32 goes into the manifest.
    """

    def __init__(
        self,
        formats: Iterable[str] = DEFAULT_FORMATS,
        *,
        opset: int = DEFAULT_OPSET,
        max_batch: int = DEFAULT_MAX_BATCH,
        fp16: bool = False,
        int8: bool = False,
        calibration: Sequence[str | os.PathLike] = (),
    ):
        formats = set(formats)
        unknown = formats - set(FORMATS)
        if unknown or not formats:
            raise TsavError(
                f"export formats must be among {', '.join(FORMATS)} (got {', '.join(sorted(unknown)) or 'none'})"
            )
        if "tensorrt" in formats or int8:
            formats.add("onnx")
        if int8 and not calibration:
            raise TsavError("--int8 needs real recordings to calibrate on: add --calibrate VIDEO (repeat for several)")
        if fp16 and "tensorrt" not in formats:
            raise TsavError("--fp16 applies to TensorRT engines; add --trt")
        check_whole("--max-batch", max_batch, MAX_BATCH)
        check_opset(opset)
        self.formats = tuple(f for f in FORMATS if f in formats)
        self.opset = opset
        self.max_batch = max_batch
        self.fp16 = fp16
        self.int8 = int8
        self.calibration = [pathlib.Path(v) for v in calibration]
        self._int8_record: dict = {}

    def __call__(self, checkpoint: str | os.PathLike | Checkpoint, out: str | os.PathLike) -> ExportResult:
        if "tensorrt" in self.formats:
            from tsav_deploy.export.tensorrt_build import check_tensorrt

            check_tensorrt()  # before minutes of export work
        ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(resolve(checkpoint))
        ckpt.require_current_preprocessing()
        model = ckpt.build_model()
        out = pathlib.Path(out).expanduser().resolve()  # "." has no name and no sibling to swap with
        _check_target(out)
        # Everything is made and verified in a sibling folder; only a verified export replaces DIR,
        # by renaming, so a failure at any point leaves DIR as it was.
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.tsav-export-", dir=out.parent))
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would become the export's own permissions
        try:
            artifacts = self._write_artifacts(model, out, staging)
            manifest = self._manifest(ckpt, model, artifacts)
            write_json_atomic(staging / MANIFEST, manifest)
            report = verify_export(staging)
            if not report.ok:
                raise ArtifactError(f"parity check failed, nothing was written to {out}: {report.failure_line()}")
            manifest["parity"] = report.as_records()
            write_json_atomic(staging / MANIFEST, manifest)
            _swap_in(staging, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        report.folder = out
        return ExportResult(out, manifest, report)

    def _write_artifacts(self, model: TSAV, out: pathlib.Path, staging: pathlib.Path) -> dict[str, dict]:
        """Write each format into ``staging``; returns the manifest's description of each file."""
        artifacts: dict[str, dict] = {}
        if "onnx" in self.formats:
            onnx_files = export_onnx(model, staging, self.opset)
            artifacts |= {
                p.name: {"format": "onnx", "part": part, "opset": self.opset} for part, p in onnx_files.items()
            }
        if self.int8:
            artifacts |= self._write_int8(model, onnx_files, staging)
        if "torchscript" in self.formats:
            path = export_torchscript(model, staging)
            artifacts[path.name] = {
                "format": "torchscript",
                "part": "network",
                "methods": ["forward", "visual", "aural", "fusion"],
            }
        if "tensorrt" in self.formats:
            from tsav_deploy.export.tensorrt_build import build_engines

            if (out / TIMING_CACHE).exists():  # reuse the timings of an earlier export on this GPU
                shutil.copyfile(out / TIMING_CACHE, staging / TIMING_CACHE)
            engines = build_engines(onnx_files, staging, max_batch=self.max_batch, fp16=self.fp16)
            profile = {"min": 1, "opt": max(1, self.max_batch // 2), "max": self.max_batch}
            precision = "fp16" if self.fp16 else "fp32"
            artifacts |= {
                p.name: {"format": "tensorrt", "part": part, "precision": precision, "profile": profile}
                for part, p in engines.items()
            }
            artifacts[TIMING_CACHE] = {"format": "tensorrt-timing-cache"}
        np.savez(staging / REFERENCE_FILE, **reference_outputs(model))
        artifacts[REFERENCE_FILE] = {"format": "parity-reference", "probes": list(PROBES)}
        return {name: file_entry(staging / name, **info) for name, info in artifacts.items()}

    def _write_int8(self, model: TSAV, onnx_files: dict[str, pathlib.Path], staging: pathlib.Path) -> dict[str, dict]:
        """Quantize on every other calibration sample; measure agreement on the samples in between."""
        from tsav_deploy.export.int8 import agreement, calibration_inputs, quantize_streams

        inputs = calibration_inputs(self.calibration)
        calibrate = {name: x[::2] for name, x in inputs.items()}
        held_out = {name: x[1::2] for name, x in inputs.items()}
        files = quantize_streams(onnx_files, staging, calibrate)
        with torch.inference_mode():
            reference = model(torch.from_numpy(held_out["clip"]), torch.from_numpy(held_out["spec"])).numpy()
        self._int8_record = {
            "calibration": {"videos": [v.name for v in self.calibration], "samples": len(calibrate["clip"])},
            "agreement": agreement(reference, _int8_logits(model, files, held_out["clip"], held_out["spec"])),
        }
        constant = {name: torch.from_numpy(x) for name, x in constant_inputs().items()}
        with torch.inference_mode():
            np.savez(
                staging / CONSTANT_FEATURES_FILE,
                visual=model.visual(constant["clip"]).numpy(),
                aural=model.aural(constant["spec"]).numpy(),
            )
        return {
            **{p.name: {"format": "onnx-int8", "part": part, "precision": "int8"} for part, p in files.items()},
            CONSTANT_FEATURES_FILE: {"format": "constant-features", "part": "constants", "precision": "fp32"},
        }

    def _manifest(self, ckpt: Checkpoint, model: TSAV, artifacts: dict[str, dict]) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "source": {"path": str(ckpt.path) if ckpt.path else None, "sha256": ckpt.sha256, "kind": ckpt.kind},
            "model_config": model.config.to_dict(),
            "parameters": sum(p.numel() for p in model.parameters()),
            "contract": contract(model.config),
            "preprocessing": preprocessing_dict(),
            "batch": {"dynamic": True, "max": self.max_batch},
            "options": {"formats": list(self.formats), "opset": self.opset, "fp16": self.fp16, "int8": self.int8},
            **({"int8": self._int8_record} if self.int8 else {}),
            "artifacts": artifacts,
            "probes": PROBES,
            "tolerances": {"fp32": vars(FP32), "fp16": vars(FP16)},
            "versions": versions(),
        }


def _int8_logits(model: TSAV, files: dict[str, pathlib.Path], clip: np.ndarray, spec: np.ndarray) -> np.ndarray:
    """Logits with the int8 streams (ONNX Runtime, one sample at a time) and the float32 fusion head."""
    import onnxruntime as ort

    visual, aural = (
        ort.InferenceSession(str(files[part]), providers=["CPUExecutionProvider"]) for part in ("visual", "aural")
    )
    features = [
        (aural.run(None, {"spec": s[None]})[0], visual.run(None, {"clip": c[None]})[0]) for c, s in zip(clip, spec)
    ]
    with torch.inference_mode():
        return model.fusion(*(torch.from_numpy(np.concatenate(f)) for f in zip(*features))).numpy()


def versions() -> dict[str, str | None]:
    """Versions of everything that made or can read the artifacts (None: not installed)."""
    found: dict[str, str | None] = {
        "tsav_deploy": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    for package in ("onnx", "onnxruntime", "openvino", "tensorrt"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def _check_target(out: pathlib.Path) -> None:
    """DIR must be new, empty or an earlier export (which the new one replaces whole). An earlier
    export is proven, not assumed: a manifest of this tool's format, and every entry of DIR either
    that manifest or a file it lists with its size and SHA-256. Nothing else is ever replaced."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise TsavError(f"{out}: exists and is not a directory")
    foreign = _not_exported(out) if out.is_dir() else None
    if foreign is not None:
        raise TsavError(f"{out}: holds {foreign}, which no tsav export made; export into a new or empty folder")


def _not_exported(out: pathlib.Path) -> str | None:
    """The first entry of ``out`` that an export manifest there does not vouch for (None: all)."""
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    ours = isinstance(data, dict) and data.get("format") == FORMAT and isinstance(data.get("artifacts"), dict)
    artifacts = data["artifacts"] if ours else {}
    for path in sorted(out.iterdir()):
        if path.is_symlink() or not path.is_file():
            return path.name
        if path.name == MANIFEST and ours:
            continue
        entry = artifacts.get(path.name)
        if not isinstance(entry, dict):
            return path.name
        if path.stat().st_size != entry.get("bytes") or file_sha256(path) != entry.get("sha256"):
            return f"{path.name} (changed since it was exported)"
    return None


def _swap_in(staging: pathlib.Path, out: pathlib.Path) -> None:
    """Put the verified ``staging`` folder's files in ``out``. A new ``out`` is the renamed folder;
    an existing one keeps its inode (it may be the shell's working folder) and has its files
    exchanged: the old manifest leaves first and the new one arrives last, so a reader never sees a
    manifest whose files are missing, and a failure puts the earlier export back."""
    if not out.exists():
        os.replace(staging, out)
        return
    old = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.tsav-old-", dir=out.parent))
    manifest_last = lambda folder: sorted(folder.iterdir(), key=lambda p: p.name == MANIFEST)  # noqa: E731
    for path in sorted(out.iterdir(), key=lambda p: p.name != MANIFEST):
        os.replace(path, old / path.name)
    try:
        for path in manifest_last(staging):
            os.replace(path, out / path.name)
    except OSError as exc:
        for path in out.iterdir():
            path.unlink()
        for path in manifest_last(old):
            os.replace(path, out / path.name)
        raise TsavError(
            f"{out}: could not put the new export in place ({exc.strerror or exc}); the earlier one is back"
        ) from None
    finally:
        shutil.rmtree(old, ignore_errors=True)
