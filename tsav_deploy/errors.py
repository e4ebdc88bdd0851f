"""User-facing errors: one line that says what is wrong and what to do.

The CLI prints ``str(error)`` for these and never a traceback; anything else is a bug.
"""

from __future__ import annotations

import re

# What a name must not bring to a terminal, a log or a page as it is: control characters (C0, DEL,
# C1: escape sequences, newlines that forge lines), the marks that reorder text on screen, and the
# undecodable bytes of a name that is not UTF-8 (Python's surrogateescape).
_UNSHOWN = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def shown(text: str) -> str:
    """``text`` in its one visible form, everywhere a name is shown (console, logs, summary,
    reports): each such character as its escape (``\\x1b``, ``\\n``, ``\\u202e``), an undecodable
    byte as ``\\xNN``. The result holds none of them, so showing it again changes nothing."""
    return _UNSHOWN.sub(_escape, text)


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return _NAMED.get(match.group()) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


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
