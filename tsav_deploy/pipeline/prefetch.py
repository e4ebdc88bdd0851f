"""Run an iterator in a background thread, a few items ahead of its consumer.

With a GPU engine, annotation's pass 2 decodes (PyAV), aligns (OpenCV) and normalizes (NumPy) frames
while the device runs the network: all of them release the GIL in their heavy parts, so a producer
thread keeps the host busy instead of leaving the device idle between batches. (On the CPU the
runtime takes every core itself; see :func:`~tsav_deploy.pipeline.offline.predict_people`.)
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_POLL_S = 0.1  # how often a blocked producer checks whether the consumer went away


_DONE = object()  # the producer's last entry, with the exception it ended on (or None)


def prefetch(items: Iterable[T], depth: int) -> Iterator[T]:
    """Yield ``items`` in order, produced by a background thread at most ``depth`` items ahead.

    An exception in the producer is raised in the consumer; when the consumer stops early (break,
    an exception, Ctrl-C) the producer stops at its next item and closes ``items``.
    """
    if depth < 1:
        raise ValueError("depth must be at least 1")
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    thread = threading.Thread(target=_produce, args=(items, buffer, stop), name="tsav-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _put(buffer: queue.Queue, stop: threading.Event, entry) -> bool:
    """Put ``entry`` once there is room; False when the consumer went away first."""
    while not stop.is_set():
        try:
            buffer.put(entry, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _produce(items: Iterable, buffer: queue.Queue, stop: threading.Event) -> None:
    iterator = iter(items)
    try:
        for item in iterator:
            if not _put(buffer, stop, (item, None)):
                return
        _put(buffer, stop, (_DONE, None))
    except BaseException as exc:  # handed to the consumer, which re-raises it
        _put(buffer, stop, (_DONE, exc))
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
