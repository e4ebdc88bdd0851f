"""Run an iterator in a background thread, a few items ahead of its consumer.

Annotation's pass 2 decodes (PyAV), aligns (OpenCV) and normalizes (NumPy) frames while the network
runs (ONNX Runtime, PyTorch): all of them release the GIL in their heavy parts, so a producer thread
overlaps the frontend with inference instead of leaving the cores idle between network batches.

The producer runs at a lower scheduling priority (Linux). The runtimes split each layer over all
cores and wait for the slowest share, so a producer that takes a core from one of their threads
stalls the others too; at a lower priority it mostly fills the gaps between batches. Measured on 2
cores, paper network, OpenVINO: 1-4% faster end to end in each of 3 interleaved pairs.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_POLL_S = 0.1  # how often a blocked producer checks whether the consumer went away
PRODUCER_NICENESS = 10  # added to the producer thread's nice value (Linux: nice is per thread)


def _lower_own_priority() -> None:
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + PRODUCER_NICENESS)
        except OSError:  # a sandbox that forbids it: the producer keeps the default priority
            pass


def prefetch(items: Iterable[T], depth: int) -> Iterator[T]:
    """Yield ``items`` in order, produced by a background thread at most ``depth`` items ahead.

    An exception in the producer is raised in the consumer; when the consumer stops early (break,
    an exception, Ctrl-C) the producer stops at its next item and closes ``items``.
    """
    if depth < 1:
        raise ValueError("depth must be at least 1")
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        _lower_own_priority()
        iterator = iter(items)
        try:
            for item in iterator:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put((done, exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="tsav-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()
