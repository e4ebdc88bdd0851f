"""Stage hooks: the pipeline marks the stages it runs; ``tsav bench`` installs a clock to time them.

Without a clock a mark costs one global read. With one (:func:`measure`), the time spent inside each
mark is added to its stage, from any thread (pass 1 runs detections in a thread of its own).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class StageClock:
    """Seconds and item counts per stage name."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.items: defaultdict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float, items: int = 0) -> None:
        with self._lock:
            self.seconds[name] += seconds
            self.items[name] += items


_clock: StageClock | None = None


@contextmanager
def stage(name: str, items: int = 0) -> Iterator[None]:
    """Mark the work inside the ``with`` block as stage ``name`` (``items``: clips, windows, rows)."""
    clock = _clock
    if clock is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        clock.add(name, time.perf_counter() - start, items)


def timed_iter(name: str, iterable: Iterable) -> Iterator:
    """The items of ``iterable``, the time spent producing each one marked as stage ``name``."""
    iterator = iter(iterable)
    while True:
        with stage(name):
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item


@contextmanager
def measure() -> Iterator[StageClock]:
    """Time every marked stage until the block ends (one measurement at a time per process)."""
    global _clock
    if _clock is not None:
        raise RuntimeError("a stage measurement is already running")
    _clock = StageClock()
    try:
        yield _clock
    finally:
        _clock = None
