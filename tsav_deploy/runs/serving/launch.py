"""Starting and stopping the service: Ray (started for it, or a cluster joined), Ray Serve's HTTP
proxy on ``--host``/``--port``, the metrics actor, the network deployment (``--replicas``) and the
ingress; everything the service started ends with :meth:`Service.close`, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator

from tsav_deploy.api import PredictorOptions
from tsav_deploy.errors import TsavError
from tsav_deploy.runs.batch import check_predictor
from tsav_deploy.runs.cluster import init_ray
from tsav_deploy.runs.serving.settings import ServeOptions, read_token

APP = "tsav"
INSTALL_HINT = "tsav serve needs Ray Serve, an optional extra: pip install 'tsav-deploy[ray]'"
# What each network replica asks Ray for: a fraction, so that replicas fit beside the ingress (whose
# face pass and decoding take the remaining cores) on a small machine; a CUDA device takes a GPU.
REPLICA_CPUS = 0.5
# Room beyond --max-queue for status, result and metrics calls in the ingress.
EXTRA_CALLS = 64


class Service:
    """A running ``tsav serve``: built from the Predictor's options and the service's, everything
    checked before Ray starts; use as a context manager (or call :meth:`close`)."""

    def __init__(self, predictor: PredictorOptions, options: ServeOptions):
        check_predictor(predictor)
        self.predictor, self.options = predictor, options
        self.token = read_token(options.token_file)
        self.ray = _import_serve()
        self._started_ray = self._started_serve = False
        self._made_work = options.work_dir is None
        work = options.work_dir or tempfile.mkdtemp(prefix="tsav-serve-")
        self.work_dir = pathlib.Path(work).expanduser().resolve()
        self.stats = None
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        host = self.options.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.options.port}"

    def _start(self) -> None:
        import logging

        from ray import serve

        # Serve's progress lines would fill the console; its warnings and errors still show.
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        if not self.ray.is_initialized():
            init_ray(self.options.ray)
            self._started_ray = True
        self._check_resources()
        serve.start(http_options={"host": self.options.host, "port": self.options.port})
        self._started_serve = True
        stats_name = f"tsav-serve-stats-{uuid.uuid4().hex}"
        from tsav_deploy.runs.serving.telemetry import ServiceStats

        self.stats = self.ray.remote(num_cpus=0)(ServiceStats).options(name=stats_name).remote()
        serve.run(self._application(stats_name), name=APP, route_prefix="/", blocking=False)
        described = serve.get_deployment_handle("network", APP).hello.remote().result()
        if described["error"]:
            raise TsavError(described["error"])
        self.description = f"engine: {described['selection'] or described['name']}; faces: {self.predictor.faces}"

    def _application(self, stats_name: str):
        import torch
        from ray import serve

        from tsav_deploy.runs.serving.ingress import Ingress
        from tsav_deploy.runs.serving.replica import NetworkReplica

        o = self.options
        predictor = {k: (str(v) if k in ("weights", "model") and v else v) for k, v in self.predictor.asdict().items()}
        network = serve.deployment(
            NetworkReplica,
            name="network",
            num_replicas=o.replicas,
            max_ongoing_requests=max(o.max_queue, o.max_batch) + 1,
            ray_actor_options={"num_cpus": REPLICA_CPUS, "num_gpus": self._gpus()},
        ).bind(predictor, stats_name, (o.max_batch, o.batch_wait_ms / 1000), torch.get_num_threads())
        service = {
            "token": self.token,
            "media_root": str(o.media_root.resolve()) if o.media_root else None,
            "work_dir": str(self.work_dir),
            "max_upload_bytes": o.max_upload_bytes,
            "max_queue": o.max_queue,
            "job_ttl_s": o.job_ttl_s,
            "threads": torch.get_num_threads(),
        }
        return Ingress.options(max_ongoing_requests=o.max_queue + EXTRA_CALLS).bind(
            predictor, service, stats_name, network
        )

    def _gpus(self) -> float:
        return 1.0 if self.predictor.device.startswith("cuda") else 0.0

    def _check_resources(self) -> None:
        resources = self.ray.cluster_resources()
        n = self.options.replicas
        for name, amount in (("CPU", n * REPLICA_CPUS), ("GPU", n * self._gpus())):
            if amount > resources.get(name, 0) + 1e-9:
                raise TsavError(
                    f"--replicas {n} need {amount:g} {name}s in all ({REPLICA_CPUS:g} CPU each, and a GPU each with "
                    f"--device cuda); the Ray cluster has {resources.get(name, 0):g}: use fewer replicas"
                )

    def wait(self) -> None:
        """Serve until Ctrl-C or SIGTERM."""
        with _sigterm_interrupts():
            while True:
                time.sleep(3600)

    def close(self) -> None:
        from ray import serve

        if self._started_serve:
            with contextlib.suppress(Exception):
                serve.delete(APP) if not self._started_ray else serve.shutdown()
            self._started_serve = False
        if self.stats is not None:
            with contextlib.suppress(Exception):
                self.ray.kill(self.stats)
            self.stats = None
        if self._started_ray:
            self.ray.shutdown()
            self._started_ray = False
        if self._made_work:
            shutil.rmtree(self.work_dir, ignore_errors=True)  # a folder of our own, made above

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _import_serve():
    """Ray, once Ray Serve and its web framework are known to be there (else one line)."""
    try:
        import fastapi  # noqa: F401
        import ray
        from ray import serve  # noqa: F401
    except ImportError:
        raise TsavError(INSTALL_HINT) from None
    return ray


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM ends the service as Ctrl-C does (everything stopped in order)."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    kept = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, kept)
