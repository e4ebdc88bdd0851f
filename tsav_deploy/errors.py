"""User-facing errors: one line that says what is wrong and what to do.

The CLI prints ``str(error)`` for these and never a traceback; anything else is a bug.
"""

from __future__ import annotations


class TsavError(Exception):
    """Base class for errors caused by the user's input (files, options, environment)."""


class CheckpointError(TsavError):
    """A file is not a usable TSAV checkpoint."""


class MediaError(TsavError):
    """A media file cannot be decoded (missing, empty, corrupt, no video stream)."""


class ArtifactError(TsavError):
    """An export directory or engine file is missing, corrupt or does not match the contract."""


class LabelError(TsavError):
    """An annotation or prediction file is malformed (the message names the file and line)."""
