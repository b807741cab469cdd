"""Fetch a file once, verified by MD5, without ever leaving a half-written file behind."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from pathlib import Path

DOWNLOAD_TIMEOUT_S = 10  # per connection attempt and per read
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """No mirror delivered the file; the message has each mirror's reason."""


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(urls: list[str], dest: Path, md5: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Save the first of ``urls`` whose content has MD5 ``md5`` as ``dest``.

    Each download goes to a temporary file next to ``dest`` and is renamed onto ``dest``
    only once complete and verified. Raises `DownloadError` when every URL fails.
    """
    reasons = []
    for url in urls:
        try:
            _fetch_one(url, dest, md5, timeout)
            return
        except (OSError, ValueError, http.client.HTTPException) as exc:  # incl. URLError
            reasons.append(f"{url}: {exc}")
    raise DownloadError("; ".join(reasons))


def _fetch_one(url: str, dest: Path, md5: str, timeout: float) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise ValueError(f"checksum mismatch: md5 {digest.hexdigest()}, expected {md5}")
        os.replace(partial, dest)
    finally:
        Path(partial).unlink(missing_ok=True)
