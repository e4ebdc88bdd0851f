"""Hand-made ABAW files for the label and evaluation tests.

The headers are spelled out here rather than taken from the library, so a typo there fails the tests.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterable, Sequence

VA_HEADER = "valence,arousal"
EXPR_HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise"
AU_HEADER = "AU1,AU2,AU4,AU6,AU12,AU15,AU20,AU25"
HEADERS = {"VA_Set": VA_HEADER, "EXPR_Set": EXPR_HEADER, "AU_Set": AU_HEADER}


def write_rows(path: pathlib.Path, header: str, rows: Iterable[Sequence | str | int | float]) -> pathlib.Path:
    """Write a header and one line per row (a row is a string, a number or a sequence of numbers)."""
    lines = [header]
    for row in rows:
        lines.append(
            row if isinstance(row, str) else ",".join(str(v) for v in row) if isinstance(row, Sequence) else str(row)
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_task(folder: pathlib.Path, task: str, name: str, rows: Iterable) -> pathlib.Path:
    """``folder/<name>.txt`` with the header of ``task`` ("VA_Set", "EXPR_Set" or "AU_Set")."""
    return write_rows(folder / f"{name}.txt", HEADERS[task], rows)
