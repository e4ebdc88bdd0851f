"""What ``tsav serve`` is started with, checked before Ray or the model is touched: each bound, the
token, the folders, and that a service listening beyond this machine asks its callers for a token."""

from __future__ import annotations

import ipaddress
import pathlib
from dataclasses import dataclass

from tsav_deploy.bounds import (
    BATCH_WAIT_MS,
    JOB_TTL_S,
    PORT,
    QUEUE,
    REPLICAS,
    SERVE_BATCH,
    UPLOAD_MB,
    check_number,
    check_whole,
)
from tsav_deploy.errors import TsavError

LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class ServeOptions:
    """The service's own options (the Predictor's are :class:`~tsav_deploy.api.PredictorOptions`).

    ``replicas``: network replicas (model deployment); ``max_batch``: callers' network batches joined
    into one run of the network, waiting at most ``batch_wait_ms`` for them; ``max_queue``: requests and jobs held at once (running or waiting);
    ``media_root``: the folder whose files callers may name by path (none: uploads only);
    ``work_dir``: where uploads are kept while they are annotated (none: a new temporary folder);
    ``ray``: ``local`` or the address of a running cluster."""

    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1
    max_batch: int = 8
    batch_wait_ms: float = 20.0
    max_queue: int = 16
    max_upload_mb: float = 512.0
    token_file: pathlib.Path | None = None
    media_root: pathlib.Path | None = None
    work_dir: pathlib.Path | None = None
    job_ttl_s: float = 3600.0
    ray: str = "local"

    def __post_init__(self) -> None:
        check_whole("--port", self.port, PORT)
        check_whole("--replicas", self.replicas, REPLICAS)
        check_whole("--max-batch", self.max_batch, SERVE_BATCH)
        check_number("--batch-wait-ms", self.batch_wait_ms, BATCH_WAIT_MS)
        check_whole("--max-queue", self.max_queue, QUEUE)
        check_number("--max-upload-mb", self.max_upload_mb, UPLOAD_MB)
        check_number("--job-ttl", self.job_ttl_s, JOB_TTL_S)
        if self.token_file is None and not is_loopback(self.host):
            raise TsavError(
                f"--host {self.host} listens beyond this machine: pass --token-file FILE (callers then send "
                "'Authorization: Bearer <token>'), or keep the default --host 127.0.0.1"
            )
        if self.media_root is not None and not self.media_root.is_dir():
            raise TsavError(f"--media-root {self.media_root}: no such folder")
        if self.work_dir is not None and self.work_dir.exists() and not self.work_dir.is_dir():
            raise TsavError(f"--work-dir {self.work_dir}: not a folder")
        if not self.ray:
            raise TsavError("--ray needs an address: local, auto, HOST:PORT or ray://HOST:PORT")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(path: pathlib.Path | None) -> str | None:
    """The token callers must send, from ``--token-file`` (its first line, stripped); one line for a
    missing, unreadable, empty or too short file."""
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TsavError(f"--token-file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TsavError(f"--token-file {path}: cannot be read ({exc.__class__.__name__}); check the file") from None
    lines = text.strip().splitlines()
    token = lines[0].strip() if lines else ""
    if len(token) < 16:
        raise TsavError(
            f"--token-file {path}: holds no token of at least 16 characters; write one into it, "
            "e.g. `openssl rand -hex 32 > FILE`"
        )
    return token
