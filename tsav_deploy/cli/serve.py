"""``tsav serve``: the model as an HTTP service (runs/serving/), until Ctrl-C or SIGTERM."""

from __future__ import annotations

import pathlib
from typing import Optional

import typer
from rich.markup import escape

from tsav_deploy.cli.app import (
    AuThreshold,
    BatchSize,
    Detector,
    Device,
    EngineName,
    ExportDir,
    FaceBackendName,
    NoFace,
    Person,
    Stride,
    Weights,
    app,
    console,
    declared,
    default,
    err_console,
    predictor_options,
    user_errors,
)


@app.command()
@user_errors
def serve(
    weights: Weights = default("weights"),
    model: ExportDir = default("model"),
    engine: EngineName = default("engine"),
    device: Device = default("device"),
    faces: FaceBackendName = default("faces"),
    detector: Detector = default("detector"),
    person: Person = default("person"),
    stride: Stride = default("stride"),
    batch_size: BatchSize = default("batch_size"),
    au_threshold: AuThreshold = default("au_threshold"),
    no_face: NoFace = default("no_face"),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on; any but a loopback address needs --token-file."
    ),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    replicas: int = typer.Option(1, "--replicas", help="Network replicas (the model deployment), 0.5 CPU each."),
    max_batch: int = typer.Option(
        8, "--max-batch", help="Callers' network batches (each up to --batch-size frames) joined into one network run."
    ),
    batch_wait_ms: float = typer.Option(
        20.0, "--batch-wait-ms", help="How long a network run waits for other callers' batches once one is there."
    ),
    max_queue: int = typer.Option(
        16,
        "--max-queue",
        help="Requests and jobs held at once (running or waiting); the next gets 503 with Retry-After.",
    ),
    max_upload_mb: float = typer.Option(512.0, "--max-upload-mb", help="Largest upload in MiB (413 above it)."),
    token_file: Optional[pathlib.Path] = typer.Option(
        None, "--token-file", help="A file holding the token callers send as 'Authorization: Bearer <token>'."
    ),
    media_root: Optional[pathlib.Path] = typer.Option(
        None, "--media-root", help="A folder whose files callers may name with ?path= instead of uploading them."
    ),
    work_dir: Optional[pathlib.Path] = typer.Option(
        None, "--work-dir", help="Where uploads wait while they are annotated (default: a new temporary folder)."
    ),
    job_ttl: float = typer.Option(3600.0, "--job-ttl", help="Seconds a finished job's result is kept unfetched."),
    ray_address: str = typer.Option(
        "local",
        "--ray",
        help="local (Ray started for the service) or a running cluster: auto, HOST:PORT, ray://HOST:PORT.",
    ),
) -> None:
    """Serve the model over HTTP: POST /v1/annotate, /v1/jobs, GET /healthz, /readyz, /metrics (README "Serving").

    --person, --stride, --au-threshold and --no-face are the defaults of requests, which may set their own.
    """
    from tsav_deploy.runs.serving import ServeOptions
    from tsav_deploy.runs.serving.launch import Service

    options = predictor_options(**declared(locals()))
    settings = ServeOptions(
        host=host,
        port=port,
        replicas=replicas,
        max_batch=max_batch,
        batch_wait_ms=batch_wait_ms,
        max_queue=max_queue,
        max_upload_mb=max_upload_mb,
        token_file=token_file,
        media_root=media_root,
        work_dir=work_dir,
        job_ttl_s=job_ttl,
        ray=ray_address,
    )
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
