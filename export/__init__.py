"""Export a checkpoint to ONNX / TorchScript / TensorRT artifacts with verified parity.

``Exporter(formats)(checkpoint, out)`` writes an export directory; ``verify_export(out)`` checks one.
Imported lazily: the runtime reads manifests through ``tsav_deploy.export.manifest`` while export
verification runs the runtime, so eager imports here would be circular.
"""
from __future__ import annotations

_LAZY = {
    "Exporter": "exporter",
    "ExportResult": "exporter",
    "FORMATS": "exporter",
    "verify_export": "verify",
    "VerificationReport": "verify",
    "ParityRow": "verify",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)


__all__ = list(_LAZY)
