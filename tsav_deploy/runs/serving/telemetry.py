"""The service's Prometheus metrics, kept in one Ray actor (no CPU) that the ingress and every
network replica report to, so ``GET /metrics`` shows the whole service, replica restarts included.

Metrics: requests answered (by route and status code), frames annotated and frames per second over
the last minute, the queue (requests and jobs held), request latency, and the network's batches: how
many callers' batches each run joined (``tsav_network_batch_callers``, > 1 is batching across
callers) and how many rows it ran.
"""

from __future__ import annotations

import collections
import time

# Seconds from a request to its answer: a short clip takes seconds, a long video minutes.
LATENCY_BUCKETS = (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CALLER_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64, 128, 256)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
RATE_WINDOW_S = 60.0


class ServiceStats:
    """The metrics registry (an actor: one per service)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        registry = self.registry = CollectorRegistry()
        self.requests = Counter(
            "tsav_requests", "Requests answered, by route and status code.", ["route", "code"], registry=registry
        )
        self.frames = Counter("tsav_frames", "Video frames annotated.", registry=registry)
        self.rate = Gauge(
            "tsav_frames_per_second", "Frames annotated per second over the last minute.", registry=registry
        )
        self.queue = Gauge(
            "tsav_queue_length", "Requests and jobs held (running or waiting for the network).", registry=registry
        )
        self.latency = Histogram(
            "tsav_request_seconds",
            "Seconds from a request to its answer (annotate) or to its result being ready (jobs).",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.callers = Histogram(
            "tsav_network_batch_callers",
            "Callers' batches joined into one network run, by stream (above 1: frames of several requests in one batch).",
            ["stream"],
            buckets=CALLER_BUCKETS,
            registry=registry,
        )
        self.rows = Histogram(
            "tsav_network_batch_rows",
            "Rows in one network run, by stream.",
            ["stream"],
            buckets=ROW_BUCKETS,
            registry=registry,
        )
        self.recent: collections.deque[tuple[float, int]] = collections.deque()

    def answered(self, route: str, code: int, seconds: float | None = None, frames: int = 0) -> None:
        self.requests.labels(route, str(code)).inc()
        if seconds is not None:
            self.latency.labels(route).observe(seconds)
        if frames:
            self.frames.inc(frames)
            self.recent.append((time.monotonic(), frames))

    def held(self, n: int) -> None:
        self.queue.set(n)

    def batch(self, stream: str, callers: int, rows: int) -> None:
        self.callers.labels(stream).observe(callers)
        self.rows.labels(stream).observe(rows)

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        from prometheus_client import generate_latest

        now = time.monotonic()
        while self.recent and self.recent[0][0] < now - RATE_WINDOW_S:
            self.recent.popleft()
        self.rate.set(sum(n for _, n in self.recent) / RATE_WINDOW_S)
        return generate_latest(self.registry)
