"""The network as a Ray Serve deployment, and the engine-shaped object that sends the pipeline's
network calls to it.

:class:`NetworkReplica` holds one :class:`~tsav_deploy.runtime.Engine`. Its ``visual`` and ``aural``
calls go through a :class:`Joiner` each: while the stream runs, the batches that other requests'
pipelines send wait, and the next run takes all of them (up to ``--max-batch``), so batches grow with
the load; an idle stream waits ``--batch-wait-ms`` for company. Each caller gets its own rows back.
(Serve's ``@serve.batch`` forms its next batch as soon as the first call arrives and then queues it
behind the running one, so its batches stay at one caller however long the network runs: 1.02-1.09
callers per run with 4-8 clients on the paper-size network.)

:class:`RemoteEngine` has the Engine's calls that the pipeline makes (``visual``, ``aural``,
``fusion``, and what the summary names), so the ingress runs the one pipeline through
``Predictor.from_parts`` with the network in this deployment. A call whose replica dies is sent
again (Serve routes it to a live or restarted replica); one lost twice fails its request in one line.
"""

from __future__ import annotations

import asyncio
import os

import numpy as np
import torch

from tsav_deploy.errors import TsavError
from tsav_deploy.model import ModelConfig

CALL_ATTEMPTS = 2
# A network call answers in seconds; this bounds a request whose replica hangs (and Serve's wait
# for a restarted replica).
CALL_TIMEOUT_S = 600.0
STREAMS = ("visual", "aural")


class ReplicaLost(TsavError):
    """The network replica running a request's batch was lost twice."""


class NetworkReplica:
    """One Engine built from the Predictor's options; a bad model is kept as an error line that the
    service raises at start (not a failed replica, whose error would be a remote traceback)."""

    def __init__(self, predictor_options: dict, stats_name: str, batching: tuple[int, float], threads: int):
        import ray

        from tsav_deploy.runtime import Engine

        # Ray gives an actor with less than one CPU one thread (OMP_NUM_THREADS=1); the network takes
        # the threads torch takes in `tsav serve` itself, as `tsav annotate` would on this machine.
        torch.set_num_threads(threads)
        self.stats = ray.get_actor(stats_name)
        self.engine, self.error = None, None
        try:
            source = predictor_options.get("model") or predictor_options.get("weights")
            self.engine = Engine.load(source, engine=predictor_options["engine"], device=predictor_options["device"])
        except TsavError as exc:
            self.error = str(exc)
        self.joiners = {stream: Joiner(self._runner(stream), *batching) for stream in STREAMS}

    def hello(self) -> dict:
        """What the ingress needs to stand in for the Engine, or the construction error."""
        if self.engine is None:
            return {"error": self.error, "pid": os.getpid()}
        engine = self.engine
        return {
            "error": None,
            "pid": os.getpid(),
            "name": engine.name,
            "selection": engine.selection,
            "config": engine.config.to_dict(),
            "checkpoint_sha256": engine.checkpoint_sha256,
            "device": str(engine.device),
        }

    async def visual(self, item: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return await self.joiners["visual"](item)

    async def aural(self, item: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return await self.joiners["aural"](item)

    async def fusion(self, item: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        # Not joined: a matrix product of another batch size changes the last bit of its sums, and
        # fusion is a few thousand multiply-adds per row next to the streams' hundreds of millions.
        return self.engine.fusion(*item)

    def _runner(self, stream: str):
        def run(items: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
            """One run of ``stream`` over every caller's rows, split back per caller."""
            sizes = [len(x) for x, _ in items]
            rows = np.concatenate([x for x, _ in items]) if len(items) > 1 else items[0][0]
            flags = np.concatenate([f for _, f in items]) if len(items) > 1 else items[0][1]
            out = getattr(self.engine, stream)(rows, flags)
            self.stats.batch.remote(stream, len(items), int(sum(sizes)))
            return np.split(out, np.cumsum(sizes)[:-1])

        return run


class Joiner:
    """Calls of one stream joined into runs: one run at a time (in a thread, so the replica keeps
    answering); a run takes every call that waits, up to ``max_batch``, and where only one waits,
    waits ``wait_s`` for more."""

    def __init__(self, run, max_batch: int, wait_s: float):
        self.run, self.max_batch, self.wait_s = run, max_batch, wait_s
        self.queue: asyncio.Queue | None = None
        self.worker: asyncio.Task | None = None

    async def __call__(self, item):
        if self.queue is None:  # made on the replica's event loop, at the first call
            self.queue = asyncio.Queue()
            self.worker = asyncio.get_running_loop().create_task(self._serve())
        answer = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((item, answer))
        return await answer

    async def _serve(self) -> None:
        while True:
            batch = await self._next_batch()
            try:
                outputs = await asyncio.to_thread(self.run, [item for item, _ in batch])
            except Exception as exc:  # each caller hears it (a NaN output's one line, a bug)
                for _, answer in batch:
                    if not answer.done():
                        answer.set_exception(exc)
                continue
            for (_, answer), output in zip(batch, outputs):
                if not answer.done():  # a caller that gave up has a cancelled future
                    answer.set_result(output)

    async def _next_batch(self) -> list:
        batch = [await self.queue.get()]
        deadline = asyncio.get_running_loop().time() + self.wait_s
        while len(batch) < self.max_batch:
            if not self.queue.empty():
                batch.append(self.queue.get_nowait())
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or len(batch) > 1:  # company found, or none came in time
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch


class RemoteEngine:
    """The Engine's calls the pipeline makes, answered by the network deployment (``handle``);
    ``described``: the replica's :meth:`NetworkReplica.hello`. Call from a worker thread (a handle's
    ``result()`` blocks)."""

    def __init__(self, handle, described: dict):
        self.handle = handle
        self.name = described["name"]
        self.selection = described["selection"]
        self.config = ModelConfig.from_dict(described["config"])
        self.checkpoint_sha256 = described["checkpoint_sha256"]
        self.device = torch.device(described["device"])

    @property
    def features(self) -> int:
        return self.config.widths[3]

    def visual(self, clip: np.ndarray, black: np.ndarray | None = None) -> np.ndarray:
        return self._call("visual", (np.ascontiguousarray(clip), _flags(black, len(clip))))

    def aural(self, spec: np.ndarray, silent: np.ndarray | None = None) -> np.ndarray:
        return self._call("aural", (np.ascontiguousarray(spec), _flags(silent, len(spec))))

    def fusion(self, aural: np.ndarray, visual: np.ndarray) -> np.ndarray:
        return self._call("fusion", (np.ascontiguousarray(aural), np.ascontiguousarray(visual)))

    def _call(self, method: str, item: tuple) -> np.ndarray:
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        reason = ""
        for _ in range(CALL_ATTEMPTS):
            try:
                return getattr(self.handle, method).remote(item).result(timeout_s=CALL_TIMEOUT_S)
            except RayTaskError as exc:  # raised by the engine itself: its one line where it has one
                cause = getattr(exc, "cause", None)
                raise cause if isinstance(cause, TsavError) else RuntimeError(str(exc).splitlines()[0]) from None
            except (RayActorError, GetTimeoutError, TimeoutError) as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReplicaLost(
            f"the network replica running this request was lost {CALL_ATTEMPTS} times ({reason[:160]}); try again"
        )


def _flags(flags: np.ndarray | None, n: int) -> np.ndarray:
    """Per-row constant-input flags as the replica joins them (none given: none constant)."""
    return np.zeros(n, dtype=bool) if flags is None else np.asarray(flags, dtype=bool).reshape(n)
