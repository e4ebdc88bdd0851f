"""What a request brings, checked before any work: the token, its options, the format it accepts, a
place among the requests the service holds, and its video (an upload spooled to the service's own
folder under the size limit, or a path under the media root). Each refusal is a
:class:`ServiceError`: a status and one line, the CLI's line where the CLI has one."""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import io
import os
import pathlib
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

from tsav_deploy.api.predictor import check_source
from tsav_deploy.atomic import confined, create_new
from tsav_deploy.errors import TsavError, shown
from tsav_deploy.pipeline.offline import AnnotateOptions
from tsav_deploy.results.table import csv_text, frame_table, json_rows
from tsav_deploy.results.video_result import VideoResult

# The request's options (query fields) that change the annotation, and those that say where the video is.
ANNOTATION_FIELDS = ("person", "stride", "au_threshold", "no_face")
VIDEO_FIELDS = ("path", "filename")
RETRY_AFTER_S = 5
FORMATS = {
    "application/json": "json",
    "text/csv": "csv",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
}
MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}


class ServiceError(Exception):
    """A refused request: its HTTP status, one line, and headers (``Retry-After``)."""

    def __init__(self, status: int, line: str, headers: dict[str, str] | None = None):
        super().__init__(line)
        self.status, self.line, self.headers = status, line, headers or {}


def authorize(token: str | None, header: str | None) -> None:
    """401 unless the request carries ``Authorization: Bearer <token>`` (where the service has one)."""
    if token is None:
        return
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise ServiceError(
            401,
            "missing or wrong token: send 'Authorization: Bearer <token>' with the service's token",
            {"WWW-Authenticate": "Bearer"},
        )


def annotate_options(query: dict[str, str], defaults: AnnotateOptions) -> AnnotateOptions:
    """The request's annotation options over the service's (400 with the option's own line)."""
    unknown = sorted(set(query) - set(ANNOTATION_FIELDS) - set(VIDEO_FIELDS))
    if unknown:
        known = ", ".join(ANNOTATION_FIELDS + VIDEO_FIELDS)
        raise ServiceError(400, f"unknown option {unknown[0]!r}; the options are {known}")
    values: dict[str, object] = {}
    for name, parse in (("person", str), ("stride", int), ("au_threshold", float), ("no_face", str)):
        if name in query:
            try:
                values[name] = parse(query[name])
            except ValueError:
                values[name] = query[name]  # refused below, in the option's own words
    try:
        return dataclasses.replace(defaults, **values)
    except TsavError as exc:
        raise ServiceError(400, str(exc)) from None


def response_format(accept: str | None) -> str:
    """``json``, ``csv`` or ``parquet`` from the ``Accept`` header, first named first (406 for none of them)."""
    for part in (accept or "*/*").split(","):
        media = part.split(";")[0].strip().lower()
        if media in ("*/*", "application/*", ""):
            return "json"
        if media in FORMATS:
            return FORMATS[media]
    raise ServiceError(
        406, f"Accept: {accept}: the table comes as application/json, text/csv or application/vnd.apache.parquet"
    )


def render(result: VideoResult, fmt: str, name: str) -> tuple[bytes | dict, str]:
    """The per-frame table in ``fmt`` (results/table.py renders every form) and its media type."""
    if fmt == "csv":
        return csv_text(result).encode(), MEDIA_TYPES["csv"]
    if fmt == "parquet":
        buffer = io.BytesIO()
        frame_table(result).to_parquet(buffer, engine="pyarrow", index=False)
        return buffer.getvalue(), MEDIA_TYPES["parquet"]
    return {"video": name, "summary": result.info, "rows": json_rows(result)}, MEDIA_TYPES["json"]


@dataclass
class Admission:
    """At most ``limit`` requests and jobs held at once; the next gets 503 with ``Retry-After``.
    ``report(n)`` hears the count after each change."""

    limit: int
    report: Callable[[int], None]
    held: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> None:
        with self.lock:
            if self.held >= self.limit:
                raise ServiceError(
                    503,
                    f"the service holds {self.limit} requests already (--max-queue); try again in {RETRY_AFTER_S} s",
                    {"Retry-After": str(RETRY_AFTER_S)},
                )
            self.held += 1
            self.report(self.held)

    def give(self) -> None:
        with self.lock:
            self.held -= 1
            self.report(self.held)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        self.take()
        try:
            yield
        finally:
            self.give()


@dataclass
class Video:
    """A request's video: ``path`` to annotate, ``name`` to show (never the service's own folder),
    and whether the service owns the file (an upload, removed after use)."""

    path: pathlib.Path
    name: str
    upload: bool

    def discard(self) -> None:
        if self.upload:
            self.path.unlink(missing_ok=True)

    def line(self, text: str) -> str:
        """``text`` with the service's file named as the caller named it."""
        return text.replace(str(self.path), self.name)


def named_video(media_root: pathlib.Path | None, relative: str) -> Video:
    """A file under ``--media-root`` named by ``relative`` (no ``..``, no absolute path, no link
    that leads outside: 403), which must be a file there (404)."""
    if media_root is None:
        raise ServiceError(
            403, "this service takes no paths (it runs without --media-root): send the video as the body"
        )
    root = media_root.resolve()
    path = confined(root, relative)
    resolved = path.resolve() if path is not None else None
    if resolved is None or root not in resolved.parents:
        raise ServiceError(403, f"path {relative!r}: not a file under the service's media root")
    try:
        check_source(resolved)
    except TsavError:
        raise ServiceError(404, f"path {relative!r}: no such file under the service's media root") from None
    if not resolved.is_file():
        raise ServiceError(404, f"path {relative!r}: not a file under the service's media root")
    return Video(resolved, relative, upload=False)


async def spooled(
    chunks: AsyncIterator[bytes], folder: pathlib.Path, limit: int, declared: int | None, filename: str | None
) -> Video:
    """The request body written to a new file of the service's folder, at most ``limit`` bytes
    (413 past it, nothing kept); an empty body is 400. The file's name is the service's own; the
    caller's ``filename`` only names it in lines and keeps its extension."""
    mb = limit / (1024 * 1024)
    too_large = ServiceError(413, f"the upload is larger than this service's limit of {mb:g} MB (--max-upload-mb)")
    if declared is not None and declared > limit:
        raise too_large
    suffix = pathlib.PurePosixPath(filename or "").suffix
    suffix = suffix if suffix[1:].isalnum() and len(suffix) <= 8 else ""
    path = folder / f"upload-{uuid.uuid4().hex}{suffix}"
    video = Video(path, _shown_name(filename), upload=True)
    fd = create_new(path, os.O_WRONLY, replace_stale=False)
    try:
        size = 0
        with os.fdopen(fd, "wb") as file:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise too_large
                file.write(chunk)
        if size == 0:
            raise ServiceError(
                400, "no video: send it as the request body (curl --data-binary @video.mp4) or name one with ?path="
            )
    except BaseException:
        video.discard()
        raise
    return video


def _shown_name(filename: str | None) -> str:
    name = shown(pathlib.PurePosixPath(filename or "").name)
    return name if name and name not in (".", "..") else "upload"
