"""Asynchronous annotation: a job per long video, its progress, and its result kept until it is
fetched or its time to live has passed (then forgotten: the service holds no result for ever)."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

from tsav_deploy.results.video_result import VideoResult


@dataclass
class Job:
    """One job: ``status`` queued, running, done or failed; progress in frames (pass 1 and pass 2
    each count every frame once); the result or the failure's status and line."""

    id: str
    name: str
    status: str = "queued"
    created: float = field(default_factory=time.time)
    finished: float | None = None
    frames: int = 0
    done: dict[str, int] = field(default_factory=dict)
    result: VideoResult | None = None
    error: tuple[int, str] | None = None

    def progress(self, stage: str, n: int) -> None:
        """The pipeline's progress callback (``frames``: the declared count; else frames done)."""
        if stage == "frames":
            self.frames = n
        else:
            self.status = "running"
            self.done[stage] = self.done.get(stage, 0) + n

    def describe(self, ttl_s: float) -> dict:
        """The job as ``GET /v1/jobs/{id}`` shows it."""
        total = 2 * self.frames
        done = min(total, sum(self.done.values())) if total else 0
        answer = {
            "id": self.id,
            "video": self.name,
            "status": self.status,
            "progress": {
                "frames": self.frames,
                "faces_done": self.done.get("faces", 0),
                "network_done": self.done.get("network", 0),
                "fraction": 1.0 if self.status == "done" else round(done / total, 4) if total else 0.0,
            },
            "created": round(self.created, 3),
        }
        if self.finished is not None:
            answer["expires_in_s"] = round(max(0.0, self.finished + ttl_s - time.time()), 1)
        if self.error is not None:
            answer["error"] = self.error[1]
        return answer


class JobStore:
    """The jobs of one ingress replica; finished ones are dropped ``ttl_s`` after they finished."""

    def __init__(self, ttl_s: float):
        self.ttl_s = ttl_s
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()

    def new(self, name: str) -> Job:
        job = Job(uuid.uuid4().hex, name)
        with self.lock:
            self.jobs[job.id] = job
        return job

    def get(self, job_id: str) -> Job | None:
        self.sweep()
        with self.lock:
            return self.jobs.get(job_id)

    def pop(self, job_id: str) -> None:
        with self.lock:
            self.jobs.pop(job_id, None)

    def finish(self, job: Job, result: VideoResult | None = None, error: tuple[int, str] | None = None) -> None:
        job.result, job.error = result, error
        job.status = "done" if error is None else "failed"
        job.finished = time.time()

    def sweep(self) -> None:
        now = time.time()
        with self.lock:
            for job_id in [j.id for j in self.jobs.values() if j.finished and j.finished + self.ttl_s < now]:
                del self.jobs[job_id]
