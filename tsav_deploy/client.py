"""A Python client of ``tsav serve`` (README "Serving"): one video in, its per-frame table out.

    from tsav_deploy.client import annotate
    df = annotate("http://127.0.0.1:8000", "video.mp4")

The table comes as Parquet, which keeps the DataFrame's dtypes (``Annotation.to_pandas``'s: int64
frames, bool ``face_found``, category ``person`` and ``expression``), so no column is re-declared
here. The standard library's HTTP client only: nothing to install beyond the package's own.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import urllib.error
import urllib.parse
import urllib.request

import pandas as pd

from tsav_deploy.errors import TsavError

PARQUET = "application/vnd.apache.parquet"


def annotate(
    url: str,
    path: str | os.PathLike | None = None,
    *,
    media_path: str | None = None,
    token: str | None = None,
    person: str | None = None,
    stride: int | None = None,
    au_threshold: float | None = None,
    timeout: float = 3600.0,
) -> pd.DataFrame:
    """The per-frame table of the video at ``path`` (uploaded), or of ``media_path`` (a file under
    the service's ``--media-root``), as annotated by the service at ``url``. The options left None
    are the service's. A refusal raises ``TsavError`` with the service's line and status."""
    if (path is None) == (media_path is None):
        raise TsavError("give either path (a file to upload) or media_path (a file under the service's --media-root)")
    options = {"person": person, "stride": stride, "au_threshold": au_threshold, "path": media_path}
    if path is not None:
        options["filename"] = pathlib.Path(path).name
    query = urllib.parse.urlencode({k: v for k, v in options.items() if v is not None})
    headers = {"Accept": PARQUET}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    endpoint = f"{url.rstrip('/')}/v1/annotate?{query}"
    if path is None:
        return _table(urllib.request.Request(endpoint, data=b"", headers=headers, method="POST"), timeout)
    with open(path, "rb") as body:
        headers["Content-Length"] = str(os.fstat(body.fileno()).st_size)
        headers["Content-Type"] = "application/octet-stream"
        return _table(urllib.request.Request(endpoint, data=body, headers=headers, method="POST"), timeout)


def _table(request: urllib.request.Request, timeout: float) -> pd.DataFrame:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return pd.read_parquet(io.BytesIO(response.read()))
    except urllib.error.HTTPError as exc:
        raise TsavError(f"{exc.code}: {_line(exc.read())}") from None
    except urllib.error.URLError as exc:
        raise TsavError(f"{request.full_url}: cannot reach the service ({exc.reason})") from None


def _line(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace").strip()[:300] or "no answer"
