"""Export a checkpoint to ONNX / TorchScript / TensorRT artifacts with verified parity.

``Exporter(formats)(checkpoint, out)`` writes an export directory; ``verify_export(out)`` checks one.
The manifest and I/O contract that the runtime also reads live in ``tsav_deploy.artifacts.manifest``.
"""

from __future__ import annotations

from tsav_deploy.export.exporter import FORMATS, Exporter, ExportResult
from tsav_deploy.export.verify import ParityRow, VerificationReport, verify_export

__all__ = ["Exporter", "ExportResult", "FORMATS", "verify_export", "VerificationReport", "ParityRow"]
