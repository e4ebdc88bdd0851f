"""Checkpoints: the project's own format and the authors' ``{'state_dict': ...}`` files, loaded safely.

Nothing is ever unpickled without restriction: ``torch.load(weights_only=True)`` with a short
allow-list of NumPy scalar/array types, which the authors' PyTorch 1.4 files (legacy, non-zip
serialization) may carry next to the weights (epoch, best score). Everything that can go wrong with
a user's file becomes one ``CheckpointError`` line.
"""

from __future__ import annotations

import datetime as _dt
import pathlib
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tsav_deploy import __version__
from tsav_deploy.atomic import atomic_path
from tsav_deploy.contract import preprocessing_dict, preprocessing_differences
from tsav_deploy.download import file_sha256
from tsav_deploy.errors import CheckpointError
from tsav_deploy.model import TSAV, ModelConfig

FORMAT = "tsav-deploy/checkpoint"
FORMAT_VERSION = 1


def _numpy_safe_globals() -> list:
    """NumPy types that old checkpoints pickle for plain numbers and small arrays.

    Old files name them ``numpy.core.multiarray.*`` (NumPy < 2), new ones ``numpy._core.*``; both
    spellings are allowed. Object arrays stay safe: their elements are separate pickle globals that
    still have to pass the same allow-list.
    """
    core = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    allowed: list = [np.dtype, np.ndarray, core.scalar, core._reconstruct]
    allowed += [
        (core.scalar, "numpy.core.multiarray.scalar"),
        (core._reconstruct, "numpy.core.multiarray._reconstruct"),
    ]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return allowed


def _torch_load(path: pathlib.Path) -> Any:
    with torch.serialization.safe_globals(_numpy_safe_globals()), warnings.catch_warnings():
        # A plain pickle file triggers a protocol warning before it fails; the failure is what we report.
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        return torch.load(path, map_location="cpu", weights_only=True)


@dataclass
class Checkpoint:
    """A loaded checkpoint: weights plus what is known of how they were made."""

    state_dict: dict[str, torch.Tensor]
    config: ModelConfig = field(default_factory=ModelConfig)
    kind: str = "tsav-deploy"  # or "authors"
    preprocessing: dict = field(default_factory=preprocessing_dict)
    provenance: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)  # e.g. pseudo-label histograms, training state
    path: pathlib.Path | None = None
    sha256: str | None = None

    def require_current_preprocessing(self) -> None:
        """Refuse, in one line, weights trained on inputs that this version does not make (export
        and inference call this; ``tsav info`` and training still read such a file)."""
        differences = preprocessing_differences(self.preprocessing)
        if differences:
            more = f" and {len(differences) - 1} more" if len(differences) > 1 else ""
            raise CheckpointError(
                f"{self.path}: trained on inputs made with other preprocessing ({differences[0]}{more}); "
                "train again from a cache made by this version"
            )

    def build_model(self) -> TSAV:
        """The network in eval mode on the CPU with these weights (strict: every key, every shape)."""
        model = TSAV(self.config)
        _load_strict(model, self.state_dict, self.path)
        return model.eval()


def load_checkpoint(path: str | pathlib.Path) -> Checkpoint:
    """Read either format; raises ``CheckpointError`` with one line for anything unusable."""
    path = pathlib.Path(path)
    name = str(path)
    if not path.exists():
        raise CheckpointError(f"{name}: no such file; pass a checkpoint path or a published name (tsav weights list)")
    if path.is_dir():
        raise CheckpointError(
            f"{name}: is a directory; pass the checkpoint file itself (an export directory goes to --model)"
        )
    if path.stat().st_size == 0:
        raise CheckpointError(f"{name}: the file is empty; download or copy it again")
    try:
        obj = _torch_load(path)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc) or "allowlist" in str(exc) or "Weights only" in str(exc):
            raise CheckpointError(
                f"{name}: contains Python objects that are not weights ({_first_line(exc)}); refusing to unpickle it"
            ) from None
        raise CheckpointError(f"{name}: not a PyTorch checkpoint or truncated ({_first_line(exc)})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError, IndexError, TypeError) as exc:
        raise CheckpointError(f"{name}: not a PyTorch checkpoint or truncated ({_first_line(exc)})") from None

    checkpoint = _interpret(obj, name)
    checkpoint.path = path
    checkpoint.sha256 = file_sha256(path)
    return checkpoint


def _interpret(obj: Any, name: str) -> Checkpoint:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{name}: holds a {type(obj).__name__}, not a checkpoint dictionary")
    if obj.get("format") == FORMAT:
        return Checkpoint(
            state_dict=_tensors(obj.get("state_dict"), name),
            config=ModelConfig.from_dict(obj.get("model_config")),
            kind="tsav-deploy",
            preprocessing=dict(obj.get("preprocessing") or preprocessing_dict()),
            provenance=dict(obj.get("provenance") or {}),
            extras=dict(obj.get("extras") or {}),
        )
    # The authors' files: {'state_dict': ..., maybe 'epoch', 'optimizer', ...}; a bare state_dict too.
    raw = obj.get("state_dict", obj if _looks_like_state_dict(obj) else None)
    if raw is None:
        raise CheckpointError(
            f"{name}: a dictionary without 'state_dict' (keys: {', '.join(map(str, list(obj)[:6]))}); not a TSAV checkpoint"
        )
    state = _tensors(raw, name)
    # Weights saved from nn.DataParallel carry a 'module.' prefix.
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    info = {k: v for k, v in obj.items() if k != "state_dict" and isinstance(v, (int, float, str, np.generic))}
    return Checkpoint(
        state_dict=state,
        kind="authors",
        provenance={"source": "authors' release format", **{k: _plain(v) for k, v in info.items()}},
    )


def _looks_like_state_dict(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _tensors(raw: Any, name: str) -> dict[str, torch.Tensor]:
    if not isinstance(raw, Mapping) or not raw:
        raise CheckpointError(f"{name}: 'state_dict' is empty or not a dictionary")
    bad = [k for k, v in raw.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{name}: 'state_dict' entry {bad[0]!r} is not a tensor")
    return {str(k): v for k, v in raw.items()}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    for line in text:
        if "Unsupported global" in line:  # name the offending global, drop torch's advice to bypass safety
            return line.split("WeightsUnpickler error:")[-1].split(" was not an allowed")[0].strip()
    return (text[0] if text else type(exc).__name__)[:160]


def _load_strict(model: TSAV, state: dict[str, torch.Tensor], path: pathlib.Path | None) -> None:
    """``load_state_dict(strict=True)`` with the mismatch reported as one readable line."""
    name = str(path) if path else "checkpoint"
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise CheckpointError(f"{name}: keys do not match the TSAV network: {'; '.join(parts)}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{name}: {key} has shape {list(state[key].shape)}, the network expects {list(tensor.shape)}"
            )
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"{name}: {key} holds {bad} value(s) that are not numbers (NaN or infinity); "
                "the weights are damaged: use another checkpoint"
            )
    model.load_state_dict(state, strict=True)


def save_checkpoint(
    path: str | pathlib.Path,
    model: TSAV,
    *,
    training: dict | None = None,
    data: dict | None = None,
    extras: dict | None = None,
) -> pathlib.Path:
    """Write the project's format atomically: weights + preprocessing constants + provenance."""
    path = pathlib.Path(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_config": model.config.to_dict(),
        "preprocessing": preprocessing_dict(),
        "provenance": {
            "tsav_deploy": __version__,
            "torch": str(torch.__version__),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "training": training or {},
            "data": data or {},
        },
        "extras": extras or {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path
