"""The HTTP side of ``tsav serve``: a FastAPI app as a Ray Serve ingress deployment (its OpenAPI
schema at ``/openapi.json``, pages at ``/docs``).

Each request's pipeline is the one pipeline (``Predictor.from_parts``) in a worker thread of the
ingress replica, with its own face backend per thread and the network in the network deployment
(:class:`~tsav_deploy.runs.serving.replica.RemoteEngine`), where concurrent requests' batches meet.

No ``from __future__ import annotations`` here: FastAPI reads the routes' parameter types at run
time, and Serve's class-based ingress hands it the methods without this module's names.
"""

import asyncio
import logging
import pathlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray import serve
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from tsav_deploy import __version__
from tsav_deploy.api import Annotation, Predictor
from tsav_deploy.api.predictor import check_options
from tsav_deploy.errors import TsavError
from tsav_deploy.faces import get_backend
from tsav_deploy.failures import describe_failure
from tsav_deploy.runs.serving.intake import (
    RETRY_AFTER_S,
    Admission,
    ServiceError,
    Video,
    annotate_options,
    authorize,
    named_video,
    render,
    response_format,
    spooled,
)
from tsav_deploy.runs.serving.jobs import Job, JobStore
from tsav_deploy.runs.serving.replica import RemoteEngine, ReplicaLost

logger = logging.getLogger("ray.serve")
TABLE = "The per-frame table (README 'Formats'): JSON {video, summary, rows} by default, CSV or Parquet by Accept."
app = FastAPI(
    title="tsav serve",
    version=__version__,
    description="Valence, arousal, expressions and action units per video frame (README 'Serving'). "
    "Send 'Authorization: Bearer <token>' where the service has a token (all routes but /healthz, /readyz).",
)
ERRORS = {code: {"description": "One line: {'error': '...'}"} for code in (400, 401, 403, 404, 406, 409, 413, 422, 503)}
# The video is the raw body (any language's HTTP client sends a file so; nothing to encode).
BODY = {
    "requestBody": {
        "required": False,
        "description": "The video file's bytes (none with ?path=).",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
TABLES = {200: {"content": {"application/json": {}, "text/csv": {}, "application/vnd.apache.parquet": {}}}}


@dataclass
class RequestFields:
    """The query fields of ``/v1/annotate`` and ``/v1/jobs``, declared once for the OpenAPI schema.
    Their values are read by intake (``annotate_options``, ``named_video``), which checks each and
    refuses fields not declared here in one line, as the CLI refuses a bad flag."""

    person: Optional[str] = Query(None, description="main (the person seen in most frames) | all; default: --person.")
    stride: Optional[str] = Query(None, description="Run the network every K-th frame, interpolate between (1-300).")
    au_threshold: Optional[str] = Query(None, description="AU probability threshold, strictly between 0 and 1.")
    no_face: Optional[str] = Query(
        None, description="Rows without a face: keep (audio-only predictions) or nan (empty prediction cells)."
    )
    path: Optional[str] = Query(None, description="A file under the service's --media-root, instead of a body.")
    filename: Optional[str] = Query(None, description="The upload's file name: its extension, and its name in errors.")


@app.exception_handler(ServiceError)
async def _refused(request: Request, exc: ServiceError) -> JSONResponse:
    return JSONResponse({"error": exc.line}, status_code=exc.status, headers=exc.headers)


@app.exception_handler(HTTPException)
async def _http(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"error": f"{request.method} {request.url.path}: {exc.detail}"}, status_code=exc.status_code)


@app.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=400)


@app.exception_handler(Exception)
async def _bug(request: Request, exc: Exception) -> JSONResponse:
    line = describe_failure(f"{request.method} {request.url.path}", exc).line
    logger.error("%s\n%s", line, describe_failure("", exc).traceback)
    return JSONResponse({"error": line}, status_code=500)


@serve.deployment(name="ingress", ray_actor_options={"num_cpus": 0})
@serve.ingress(app)
class Ingress:
    """Routes: annotate, jobs, health, readiness and metrics (README 'Serving')."""

    def __init__(self, predictor_options: dict, service: dict, stats_name: str, network):
        import ray
        import torch

        torch.set_num_threads(service["threads"])  # as the network replica: Ray would give one thread

        self.network, self.stats = network, ray.get_actor(stats_name)
        self.defaults = check_options(**predictor_options)
        self.faces = (predictor_options["faces"], predictor_options["detector"])
        self.token = service["token"]
        self.media_root = pathlib.Path(service["media_root"]) if service["media_root"] else None
        self.work = pathlib.Path(service["work_dir"])
        self.work.mkdir(parents=True, exist_ok=True)
        self.limit = service["max_upload_bytes"]
        self.admission = Admission(service["max_queue"], lambda n: self.stats.held.remote(n))
        self.pool = ThreadPoolExecutor(max_workers=service["max_queue"], thread_name_prefix="tsav-request")
        self.local = threading.local()
        self.jobs = JobStore(service["job_ttl_s"])
        self.engine: Optional[RemoteEngine] = None
        self.tasks: set[asyncio.Task] = set()

    @app.get("/healthz", summary="The service answers.")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @app.get("/readyz", summary="The model is loaded and the network answers (503 until then).", responses=ERRORS)
    async def readyz(self) -> dict:
        engine = await self._engine()
        return {"status": "ready", "engine": engine.selection or engine.name, "faces": self.faces[0]}

    @app.get("/metrics", summary="Prometheus metrics.", response_class=Response)
    async def metrics(self, request: Request) -> Response:
        authorize(self.token, request.headers.get("authorization"))
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(await self.stats.exposition.remote(), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/v1/annotate",
        summary="Annotate one video (the body, or ?path=). " + TABLE,
        responses={**TABLES, **ERRORS},
        openapi_extra=BODY,
    )
    async def annotate(
        self,
        request: Request,
        query: RequestFields = Depends(),  # for the schema: intake reads and checks the fields
    ) -> Response:
        started = time.perf_counter()
        try:
            authorize(self.token, request.headers.get("authorization"))
            options = annotate_options(dict(request.query_params), self.defaults)
            fmt = response_format(request.headers.get("accept"))
            with self.admission.slot():
                video = await self._video(request)
                try:
                    annotation = await self._run(video, options, None)
                finally:
                    video.discard()
            body, media = render(annotation.result, fmt, video.name)
        except ServiceError as exc:
            self.stats.answered.remote("annotate", exc.status, time.perf_counter() - started)
            raise
        self.stats.answered.remote("annotate", 200, time.perf_counter() - started, annotation.result.frames)
        return JSONResponse(body) if isinstance(body, dict) else Response(body, media_type=media)

    @app.post(
        "/v1/jobs",
        status_code=202,
        summary="Start annotating one video; poll /v1/jobs/{id}.",
        responses=ERRORS,
        openapi_extra=BODY,
    )
    async def submit(
        self,
        request: Request,
        query: RequestFields = Depends(),  # for the schema: intake reads and checks the fields
    ) -> JSONResponse:
        authorize(self.token, request.headers.get("authorization"))
        options = annotate_options(dict(request.query_params), self.defaults)
        self.admission.take()
        try:
            video = await self._video(request)
        except BaseException:
            self.admission.give()
            raise
        job = self.jobs.new(video.name)
        task = asyncio.get_running_loop().create_task(self._job(job, video, options))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        answer = {
            **job.describe(self.jobs.ttl_s),
            "status_url": f"/v1/jobs/{job.id}",
            "result_url": f"/v1/jobs/{job.id}/result",
        }
        return JSONResponse(answer, status_code=202, headers={"Location": answer["status_url"]})

    @app.get("/v1/jobs/{job_id}", summary="A job's status and progress.", responses=ERRORS)
    async def job(self, request: Request, job_id: str) -> dict:
        authorize(self.token, request.headers.get("authorization"))
        return self._job_or_404(job_id).describe(self.jobs.ttl_s)

    @app.get(
        "/v1/jobs/{job_id}/result",
        summary="A finished job's table (then forgotten). " + TABLE,
        responses={**TABLES, **ERRORS},
    )
    async def result(self, request: Request, job_id: str) -> Response:
        authorize(self.token, request.headers.get("authorization"))
        fmt = response_format(request.headers.get("accept"))
        job = self._job_or_404(job_id)
        if job.status in ("queued", "running"):
            fraction = job.describe(self.jobs.ttl_s)["progress"]["fraction"]
            raise ServiceError(
                409,
                f"job {job_id} is {job.status} ({fraction:.0%} done); ask again later",
                {"Retry-After": str(RETRY_AFTER_S)},
            )
        self.jobs.pop(job_id)
        if job.error is not None:
            raise ServiceError(*job.error)
        body, media = render(job.result, fmt, job.name)
        return JSONResponse(body) if isinstance(body, dict) else Response(body, media_type=media)

    def _job_or_404(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            ttl = f"{self.jobs.ttl_s:g}"
            raise ServiceError(404, f"no job {job_id!r} here (a result is kept until it is fetched, or for {ttl} s)")
        return job

    async def _job(self, job: Job, video: Video, options) -> None:
        started = time.perf_counter()
        try:
            annotation = await self._run(video, options, job.progress)
        except ServiceError as exc:
            self.jobs.finish(job, error=(exc.status, exc.line))
            self.stats.answered.remote("jobs", exc.status, time.perf_counter() - started)
        else:
            self.jobs.finish(job, annotation.result)
            self.stats.answered.remote("jobs", 200, time.perf_counter() - started, annotation.result.frames)
        finally:
            video.discard()
            self.admission.give()

    async def _video(self, request: Request) -> Video:
        query, length = request.query_params, request.headers.get("content-length", "")
        if "path" in query:
            if length.isdigit() and int(length) > 0:
                raise ServiceError(400, "send the video either as the body or as ?path=, not both")
            return named_video(self.media_root, query["path"])
        declared = int(length) if length.isdigit() else None
        try:
            return await spooled(request.stream(), self.work, self.limit, declared, query.get("filename"))
        except ClientDisconnect:  # nobody hears the answer; the metrics count it
            raise ServiceError(400, "the caller hung up before the upload's last byte") from None

    async def _engine(self) -> RemoteEngine:
        if self.engine is None:
            described = await self.network.hello.remote()
            if described["error"]:
                raise ServiceError(503, described["error"])
            self.engine = RemoteEngine(self.network, described)
        return self.engine

    async def _run(self, video: Video, options, progress) -> Annotation:
        """The pipeline in a worker thread; its failure as a status and the CLI's line."""
        engine = await self._engine()
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self.pool, self._predict, engine, video, options, progress
            )
        except ReplicaLost as exc:
            raise ServiceError(503, str(exc), {"Retry-After": str(RETRY_AFTER_S)}) from None
        except Exception as exc:
            failure = describe_failure(video.path, exc)
            if failure.traceback:
                logger.error("%s\n%s", failure.line, failure.traceback)
            raise ServiceError(422 if isinstance(exc, TsavError) else 500, video.line(failure.line)) from None

    def _predict(self, engine: RemoteEngine, video: Video, options, progress) -> Annotation:
        backend = getattr(self.local, "faces", None)
        if backend is None:  # a face backend per thread: the detectors keep state of their own
            backend = self.local.faces = get_backend(self.faces[0], detector=self.faces[1])
        return Predictor.from_parts(engine, backend, options).predict(video.path, progress)
