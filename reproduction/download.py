"""Fetching and locating dataset files: mirrors, checksums, atomic writes, one-line errors.

The original read its data through pylearn2 from ``${PYLEARN2_DATA_PATH}`` and never downloaded
anything (PAPER.md §2.3); this module is what lets the reproduction start from nothing. Its rules:

- a file at its final path is always complete: every write goes to a temporary file in the same
  folder and is ``os.replace``d into place only once it has passed every check;
- a download that is cut short (fewer bytes than ``Content-Length``), an HTML page served in place
  of the data (a captive portal, a 403/404 page returned with status 200) or an MD5 mismatch is a
  failed mirror, and the next mirror is tried;
- when nothing works, a :class:`DataError` says on one line what was tried, why each failed, and
  which file to fetch by hand and where to put it.
"""
from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from contextlib import contextmanager
from http.client import HTTPException
from pathlib import Path
from typing import Sequence

from reproduction import cache_dir
from reproduction.dataset import DataError
from reproduction.files import atomic_output

_CHUNK = 1 << 20
_USER_AGENT = "binarynet-reproduction (python urllib)"


def md5sum(path) -> str:
    """The hex MD5 of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


_HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<title", b"<?xml")


def looks_like_html(path_or_bytes) -> bool:
    """Whether a file (path) or its first bytes (``bytes``) are an HTML/XML page rather than data.

    Every format we read (IDX, gzip, tar.gz, MATLAB .mat, HDF5) begins with binary magic bytes, so
    a start of optional whitespace then ``<`` followed by an HTML tag is unambiguous. S3 error
    pages are XML, hence ``<?xml``.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        head = bytes(path_or_bytes[:1024])
    else:
        with open(path_or_bytes, "rb") as f:
            head = f.read(1024)
    head = head.lstrip(b"\xef\xbb\xbf").lstrip().lower()
    return head.startswith(b"<") and any(m in head for m in _HTML_MARKERS)


def find_data_dir(dataset: str, data_dir: str | Path | None, env_var: str) -> Path:
    """Where a dataset's files live: ``data_dir`` if given, else ``$env_var`` if set (and not
    empty), else ``reproduction.cache_dir() / "data" / dataset`` (``$BNN_CACHE_DIR`` or
    ``~/.cache/binarynet``)."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    from_env = os.environ.get(env_var)
    if from_env:
        return Path(from_env).expanduser()
    return cache_dir() / "data" / dataset


def download(urls: Sequence[str], dest: Path, md5: str | None = None, *, timeout: float = 30.0,
             progress: bool = True) -> Path:
    """Fetch ``dest`` from the first of ``urls`` that delivers a good file, and return ``dest``.

    Each URL is streamed into :func:`atomic_output`; the size is checked against Content-Length,
    an HTML page is rejected, and the MD5 is verified when given. If every mirror fails, raise
    :class:`DataError` naming the URLs tried, why each failed, and which file to fetch by hand and
    where to put it; its ``failures`` attribute lists the ``"URL: reason"`` parts. A tqdm
    progress bar is shown when ``progress`` and stderr is a terminal.
    """
    dest = Path(dest)
    if not urls:
        raise DataError(f"{dest}: no download URL known; put the file there by hand")
    failures = []
    for url in urls:
        try:
            _fetch(url, dest, md5, timeout, progress)
            return dest
        except (DataError, urllib.error.URLError, HTTPException, OSError, ValueError) as e:
            failures.append(f"{url}: {_reason(e)}")
    error = DataError(
        f"{dest.name}: download failed from every mirror ({'; '.join(failures)}); "
        f"fetch {urls[0]} by hand (or from any mirror above) and save it as {dest}"
        + (f" (md5 {md5})" if md5 else ""))
    error.failures = failures  # "URL: reason" for each mirror, for callers composing their own message
    raise error


def _fetch(url: str, dest: Path, md5: str | None, timeout: float, progress: bool) -> None:
    """One attempt: stream ``url`` into ``dest`` atomically, raising on any check that fails."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response, \
            atomic_output(dest) as tmp, open(tmp, "wb") as out:
        content_type = (response.headers.get("Content-Type") or "").lower()
        if content_type.startswith(("text/html", "application/xhtml")):
            raise DataError(f"served an HTML page ({content_type}), not the data")
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        digest = hashlib.md5()
        received = 0
        with _progress_bar(progress, expected, dest.name) as bar:
            while chunk := response.read(_CHUNK):
                if received == 0 and looks_like_html(chunk):
                    raise DataError("served an HTML page, not the data")
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        # urllib does not raise when the server closes early; this comparison is what catches it.
        if expected is not None and received != expected:
            raise DataError(f"connection cut: received {received} of {expected} bytes")
        if received == 0:
            raise DataError("served an empty file")
        if md5 is not None and digest.hexdigest() != md5.lower():
            raise DataError(f"md5 mismatch: got {digest.hexdigest()}, expected {md5.lower()}")


@contextmanager
def _progress_bar(enabled: bool, total: int | None, name: str):
    if enabled and sys.stderr.isatty():
        from tqdm import tqdm
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                  leave=False) as bar:
            yield bar
    else:
        yield _NoBar()


class _NoBar:
    def update(self, n: int) -> None:
        pass


def _reason(e: BaseException) -> str:
    """A short one-line reason for a failed mirror."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return f"unreachable ({e.reason})"
    text = str(e) or type(e).__name__
    return " ".join(text.split())
