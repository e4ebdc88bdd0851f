"""What the exporter writes and the runtime reads: the I/O contract of every network part, the export
directory's manifest (what each file is, its hash, how it was verified), and the frontend's constant
inputs whose float32 features int8 exports store.

``manifest.json`` is written last (atomically) and read first: a runtime trusts a file only if the
manifest names it and its SHA-256 still matches, so a half-finished or tampered export is never run.
"""

from __future__ import annotations

import json
import os
import pathlib
from dataclasses import dataclass

import numpy as np

from tsav_deploy.artifacts.checkpoint import file_sha256
from tsav_deploy.atomic import plain_name, write_text
from tsav_deploy.contract import CLIP_SHAPE, N_OUTPUTS, SPEC_SHAPE, preprocessing_differences
from tsav_deploy.errors import ArtifactError
from tsav_deploy.inputs.clips import ClipAssembler
from tsav_deploy.inputs.windows import silent_window
from tsav_deploy.model import ModelConfig

FORMAT = "tsav-deploy/export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PARTS = ("visual", "aural", "fusion")

# File names inside an export directory, by format and network part.
ONNX_FILES = {part: f"{part}.onnx" for part in PARTS}
ENGINE_FILES = {part: f"{part}.engine" for part in PARTS}
INT8_FILES = {part: f"{part}.int8.onnx" for part in ("visual", "aural")}  # the fusion head stays float32
TORCHSCRIPT_FILE = "tsav.ts"
TIMING_CACHE = "timing.cache"
REFERENCE_FILE = "parity_reference.npz"
CONSTANT_FEATURES_FILE = "constant_features.npz"  # float32 features of the frontend's constant inputs


def contract(config: ModelConfig) -> dict:
    """Input/output names, shapes ("batch" = the dynamic axis) and dtypes of every part."""
    features = {"shape": ["batch", config.widths[3]], "dtype": "float32"}
    clip = {"shape": ["batch", *CLIP_SHAPE], "dtype": "float32"}
    spec = {"shape": ["batch", *SPEC_SHAPE], "dtype": "float32"}
    logits = {"shape": ["batch", N_OUTPUTS], "dtype": "float32"}
    return {
        "visual": {"inputs": {"clip": clip}, "outputs": {"visual_features": features}},
        "aural": {"inputs": {"spec": spec}, "outputs": {"aural_features": features}},
        # Aural first, as in the authors' concatenation.
        "fusion": {"inputs": {"aural_features": features, "visual_features": features}, "outputs": {"logits": logits}},
        "network": {"inputs": {"clip": clip, "spec": spec}, "outputs": {"logits": logits}},
    }


def write_json_atomic(path: pathlib.Path, data: dict) -> None:
    """Readers see the old manifest or the whole new one (``atomic.write_text``)."""
    write_text(path, json.dumps(data, indent=1, sort_keys=False) + "\n")


def file_entry(path: pathlib.Path, **info) -> dict:
    return {**info, "sha256": file_sha256(path), "bytes": path.stat().st_size}


@dataclass
class Manifest:
    """A validated ``manifest.json`` and the directory it describes."""

    folder: pathlib.Path
    data: dict

    @property
    def config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.data["model_config"])

    @property
    def artifacts(self) -> dict[str, dict]:
        return self.data["artifacts"]

    def files(self, fmt: str) -> dict[str, str]:
        """``{part: file name}`` of the artifacts in format ``fmt`` ("onnx", "torchscript", "tensorrt")."""
        return {entry["part"]: name for name, entry in self.artifacts.items() if entry.get("format") == fmt}

    def checked_path(self, name: str) -> pathlib.Path:
        """The artifact's path after checking it exists and still has the hash the manifest records."""
        entry = self.artifacts.get(name)
        if entry is None:
            raise ArtifactError(f"{self.folder}: the manifest lists no {name}; re-export with the format that makes it")
        path = self.folder / name
        if not path.is_file():
            raise ArtifactError(f"{path}: missing (the manifest lists it); re-export or copy the whole directory")
        if path.stat().st_size != entry["bytes"] or file_sha256(path) != entry["sha256"]:
            raise ArtifactError(
                f"{path}: sha256 mismatch with {MANIFEST} (file changed or corrupted since export); re-export"
            )
        return path


def read_manifest(folder: str | os.PathLike) -> Manifest:
    """Load and validate an export directory's manifest; every problem is one ``ArtifactError`` line."""
    folder = pathlib.Path(folder)
    path = folder / MANIFEST
    data = _read_manifest_json(folder, path)
    try:
        manifest = Manifest(folder, data)
        expected = contract(manifest.config)
        artifacts = manifest.artifacts
        recorded_contract, recorded_preprocessing = data["contract"], data["preprocessing"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{path}: incomplete manifest ({type(exc).__name__}: {exc})") from None
    _check_contract(path, expected, recorded_contract, recorded_preprocessing)
    _check_artifacts(path, artifacts)
    return manifest


def _read_manifest_json(folder: pathlib.Path, path: pathlib.Path) -> dict:
    """The manifest's JSON, once it is a tsav-deploy export manifest of this format version."""
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: not an export directory (run `tsav export CHECKPOINT --out {folder}`)")
    if not path.is_file():
        raise ArtifactError(f"{folder}: no {MANIFEST}; not a finished export (re-run `tsav export`)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a tsav-deploy export manifest")
    if data.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: export format version {data.get('format_version')}, this tsav-deploy reads version {FORMAT_VERSION}; re-export"
        )
    return data


def _check_contract(path: pathlib.Path, expected: dict, recorded_contract: dict, recorded_preprocessing) -> None:
    """The recorded contract and preprocessing are this version's."""
    for part, spec in expected.items():
        if _normalised(recorded_contract.get(part)) != _normalised(spec):
            raise ArtifactError(
                f"{path}: the contract of '{part}' ({recorded_contract.get(part)}) is not this version's ({spec})"
            )
    # A preprocessing difference between export and inference silently ruins predictions: refuse it.
    differences = preprocessing_differences(recorded_preprocessing)
    if differences:
        raise ArtifactError(
            f"{path}: exported with other preprocessing than this tsav-deploy feeds the network ({differences[0]}"
            f"{f' and {len(differences) - 1} more' if len(differences) > 1 else ''}); re-export from the checkpoint"
        )


def _check_artifacts(path: pathlib.Path, artifacts) -> None:
    """The artifacts table lists files of the export folder, each with its hash and size."""
    if not isinstance(artifacts, dict) or not all(
        isinstance(e, dict) and {"sha256", "bytes"} <= e.keys() for e in artifacts.values()
    ):
        raise ArtifactError(f"{path}: malformed 'artifacts' table")
    outside = next((name for name in artifacts if plain_name(name) is None), None)
    if outside is not None:
        raise ArtifactError(f"{path}: names {outside!r}, which is not a file of the export folder; re-export")


def _normalised(value):
    """JSON round trip, so tuples and lists (and int/float keys) compare alike."""
    return json.loads(json.dumps(value))


def constant_inputs() -> dict[str, np.ndarray]:
    """One of each: ``"clip"``, the black clip of a face-less stretch (42 frames without the person), and
    ``"spec"``, the window of digital silence (or of a file without audio), whatever the length of
    its segment.

    Even calibrated on them, the int8 streams compute their features with an error that does not
    average out (it is the same on every such frame): +0.09 on the arousal logit of every frame of a
    silent clip with a trained paper-size network. So the export stores their float32 features
    (``constant_features.npz``) and the int8 engines use those instead.
    """
    return {"clip": ClipAssembler().push(0, None)[None], "spec": silent_window()}
