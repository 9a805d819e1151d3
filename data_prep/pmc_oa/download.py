"""Fetch OA packages over HTTP(S) from any base URL (the PMC FTP successor, a mirror, a local server).

A download goes to ``<file>.part`` and is renamed only when its size matches what the server announced;
a retry continues the partial file with an HTTP range request, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import http.client
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from infra.errors import UserError

CHUNK = 1 << 20


class DownloadError(UserError):
    """A package could not be fetched; ``permanent`` when retrying cannot help (the server says it has none)."""

    def __init__(self, message: str, permanent: bool):
        super().__init__(message)
        self.permanent = permanent


def _fetch_once(url: str, part: Path, timeout: float) -> int | None:
    """Append the rest of ``url`` to ``part``; returns the expected total size (None when not announced)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if have and response.status != 206:  # the server ignored the range: start again
            have = 0
        total = response.headers.get("Content-Length")
        total = int(total) + have if total is not None else None
        with part.open("ab" if have else "wb") as handle:
            while chunk := response.read(CHUNK):
                handle.write(chunk)
    return total


def download(url: str, path: str | Path, retries: int = 3, timeout: float = 60.0, wait: float = 1.0) -> Path:
    """Fetch ``url`` to ``path`` (kept if already there). Transient failures (a timeout, a connection cut,
    a short body, a 5xx) are retried ``retries`` times with doubling waits; the last one, or a 4xx,
    is a ``DownloadError`` naming the URL."""
    path = Path(path)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    problem, permanent = "", False
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(wait * 2 ** (attempt - 1))
        try:
            total = _fetch_once(url, part, timeout)
        except urllib.error.HTTPError as error:
            if error.code == 416 and part.exists():  # range past the end: the partial file is complete or bad
                part.unlink()
            problem = f"HTTP {error.code} {error.reason}"
            if 400 <= error.code < 500 and error.code not in (408, 416, 429):
                permanent = True
                break
            continue
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as error:
            problem = f"{type(error).__name__}: {getattr(error, 'reason', error)}"
            continue
        size = part.stat().st_size
        if total is not None and size != total:
            problem = f"received {size} of {total} bytes"
            if size > total:
                part.unlink()
            continue
        os.replace(part, path)
        return path
    raise DownloadError(f"download failed: {url}: {problem}", permanent)
