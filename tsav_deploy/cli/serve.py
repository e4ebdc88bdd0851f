"""``tsav serve``: the model as an HTTP service (runs/serving/), until Ctrl-C or SIGTERM."""

from __future__ import annotations

import pathlib
from dataclasses import fields
from typing import Annotated, Optional

import typer
from rich.markup import escape

from tsav_deploy.cli.app import PredictorOptions, app, console, err_console, user_errors, with_predictor_options
from tsav_deploy.runs.serving.settings import ServeOptions

SERVED = ServeOptions()  # the defaults
Host = Annotated[
    str, typer.Option("--host", help="Address to listen on; any but a loopback address needs --token-file.")
]
Port = Annotated[int, typer.Option("--port", help="Port to listen on.")]
Replicas = Annotated[int, typer.Option("--replicas", help="Network replicas (the model deployment), 0.5 CPU each.")]
MaxBatch = Annotated[
    int,
    typer.Option(
        "--max-batch", help="Callers' network batches (each up to --batch-size frames) joined into one network run."
    ),
]
BatchWaitMs = Annotated[
    float,
    typer.Option("--batch-wait-ms", help="How long a network run waits for other callers' batches once one is there."),
]
MaxQueue = Annotated[
    int,
    typer.Option(
        "--max-queue", help="Requests and jobs held at once (running or waiting); the next gets 503 with Retry-After."
    ),
]
MaxUploadMb = Annotated[float, typer.Option("--max-upload-mb", help="Largest upload in MiB (413 above it).")]
TokenFile = Annotated[
    Optional[pathlib.Path],
    typer.Option("--token-file", help="A file holding the token callers send as 'Authorization: Bearer <token>'."),
]
MediaRoot = Annotated[
    Optional[pathlib.Path],
    typer.Option("--media-root", help="A folder whose files callers may name with ?path= instead of uploading them."),
]
WorkDir = Annotated[
    Optional[pathlib.Path],
    typer.Option("--work-dir", help="Where uploads wait while they are annotated (default: a new temporary folder)."),
]
JobTtl = Annotated[float, typer.Option("--job-ttl", help="Seconds a finished job's result is kept unfetched.")]
RayAddress = Annotated[
    str,
    typer.Option(
        "--ray", help="local (Ray started for the service) or a running cluster: auto, HOST:PORT, ray://HOST:PORT."
    ),
]


@app.command()
@user_errors
@with_predictor_options()
def serve(
    options: PredictorOptions,
    host: Host = SERVED.host,
    port: Port = SERVED.port,
    replicas: Replicas = SERVED.replicas,
    max_batch: MaxBatch = SERVED.max_batch,
    batch_wait_ms: BatchWaitMs = SERVED.batch_wait_ms,
    max_queue: MaxQueue = SERVED.max_queue,
    max_upload_mb: MaxUploadMb = SERVED.max_upload_mb,
    token_file: TokenFile = SERVED.token_file,
    media_root: MediaRoot = SERVED.media_root,
    work_dir: WorkDir = SERVED.work_dir,
    job_ttl_s: JobTtl = SERVED.job_ttl_s,
    ray: RayAddress = SERVED.ray,
) -> None:
    """Serve the model over HTTP: POST /v1/annotate, /v1/jobs, GET /healthz, /readyz, /metrics (README "Serving").

    --person, --stride, --au-threshold and --no-face are the defaults of requests, which may set their own.
    """
    from tsav_deploy.runs.serving.launch import Service

    values = locals()
    settings = ServeOptions(**{field.name: values[field.name] for field in fields(ServeOptions)})
    with err_console.status("starting the service (Ray, the model)"):
        service = Service(options, settings)
    with service:
        console.print(
            f"serving on {escape(service.url)} ({settings.replicas} network replicas; {escape(service.description)}); "
            "Ctrl-C stops",
            highlight=False,
        )
        try:
            service.wait()
        except KeyboardInterrupt:
            err_console.print("stopping", highlight=False)
