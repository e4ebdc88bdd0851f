"""prefetch: a background producer that keeps order, hands errors over and stops with its consumer."""

from __future__ import annotations

import threading

import pytest

from tsav_deploy.pipeline.prefetch import prefetch


def test_items_arrive_in_order_from_another_thread():
    threads = set()

    def items():
        for i in range(50):
            threads.add(threading.get_ident())
            yield i

    assert list(prefetch(items(), depth=3)) == list(range(50))
    assert threads and threading.get_ident() not in threads


def test_a_producer_error_is_raised_in_the_consumer():
    def items():
        yield 1
        raise ValueError("bad frame")

    out = []
    with pytest.raises(ValueError, match="bad frame"):
        for item in prefetch(items(), depth=2):
            out.append(item)
    assert out == [1]


def test_stopping_early_closes_the_producer():
    closed = threading.Event()

    def items():
        try:
            for i in range(10_000):
                yield i
        finally:
            closed.set()

    for item in prefetch(items(), depth=2):
        if item == 3:
            break
    assert closed.wait(5)
