"""The bounds of every numeric option, checked before anything runs: one line that names the option,
its range and the value given (``--batch-size 1000000`` is refused up front, not per video as "out of
memory")."""

from __future__ import annotations

import math
from numbers import Real

from tsav_deploy.errors import MediaError, TsavError

# (lowest, highest) of each option; why each upper bound is where it is, in the README's "Reliability".
BATCH_SIZE = (1, 256)  # frames per network batch: beyond it memory grows and speed does not
STRIDE = (1, 300)  # 10 s of a 30 fps video between network runs
MAX_BATCH = (1, 4096)  # the TensorRT profiles' upper bound
WORKERS = (1, 4096)
CPUS_PER_WORKER = (0.0, 1024.0)  # above 0
GPUS_PER_WORKER = (0.0, 64.0)
SPLIT_SECONDS = (1.0, 86400.0)
# tsav serve: its port, network replicas, callers' batches joined into one network run, requests
# held at once (each runs its pipeline in a thread of its own), upload size (MiB: 64 GiB, a few
# hours of HD video) and how long a finished job's result waits to be fetched (a week).
PORT = (1, 65535)
REPLICAS = (1, 1024)
SERVE_BATCH = (1, 256)
BATCH_WAIT_MS = (0.0, 10000.0)
QUEUE = (1, 1024)
UPLOAD_MB = (1.0, 65536.0)
JOB_TTL_S = (1.0, 604800.0)
# The largest picture decoded (8192x8192: DCI 8K fits): 192 MiB as RGB, so that no frame of a file
# or stream (a 64 kB file can declare 16384x16000) sizes memory beyond what the tool can hold.
MAX_FRAME_PIXELS = 8192 * 8192


def check_frame(name: str, width: int, height: int) -> None:
    """A one-line ``MediaError`` for a picture of no size or above :data:`MAX_FRAME_PIXELS`."""
    if not width or not height or width * height > MAX_FRAME_PIXELS:
        raise MediaError(
            f"{name}: a frame of {width}x{height} pixels, above the {MAX_FRAME_PIXELS // 1_000_000} megapixels "
            "this tool decodes (8192x8192); the file is damaged, or scale the video down first"
        )


def check_whole(option: str, value: object, bounds: tuple[int, int]) -> int:
    """``value`` when it is a whole number within ``bounds`` (both included), else a one-line error."""
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) and not _integral(value) or not low <= value <= high:
        raise TsavError(f"{option} must be a whole number from {low} to {high}, not {value!r}")
    return int(value)


def check_number(option: str, value: object, bounds: tuple[float, float], *, above_low: bool = False) -> float:
    """``value`` when it is a finite number within ``bounds`` (the lower one excluded where
    ``above_low``), else a one-line error."""
    low, high = bounds
    valid = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if not valid or not (low < value if above_low else low <= value) or not value <= high:
        lower = f"above {low:g}" if above_low else f"from {low:g}"
        raise TsavError(f"{option} must be a number {lower} to {high:g}, not {value!r}")
    return float(value)


def _integral(value: object) -> bool:
    """NumPy's integers count as whole numbers."""
    return type(value).__name__.startswith(("int", "uint")) and hasattr(value, "dtype")
