"""Fetching and locating dataset files: mirrors, checksums, atomic writes, one-line errors.

The original read its data through pylearn2 from ``${PYLEARN2_DATA_PATH}`` and never downloaded
anything (SOURCES.md §2.3); this module is what lets the reproduction start from nothing. Its rules:

- a file at its final path is always complete: every write goes to a temporary file in the same
  folder and is ``os.replace``d into place only once it has passed every check;
- a download that is cut short (fewer bytes than ``Content-Length``), an HTML page served in place
  of the data (a captive portal, a 403/404 page returned with status 200) or an MD5 mismatch is a
  failed mirror, and the next mirror is tried;
- a mirror that sends nothing for ``timeout`` seconds (30 by default, connecting or receiving) is
  given up, with a line on stderr every 10 s of silence before that and one when it moves to the
  next mirror; a file not complete after ``deadline`` seconds (3 hours: 1.3 GB at 120 kB/s) is
  given up too. Away from a terminal, a line every 30 s tells how much has arrived;
- when nothing works, a :class:`DataError` says in its first line which file could not be
  fetched, then on the lines below what was tried, why each failed, and which file to fetch by hand
  and where to put it;
- a killed download or cache build leaves its temporary file (``.<name>.<random>.tmp``) in the data
  folder; :func:`remove_leftovers` deletes them at the next start. Writers hold a shared lock on
  the folder (:func:`writing_in`) and the cleanup runs only when it can take the lock exclusively,
  so it never deletes the temporary file of a download still running in another process.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
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
TIMEOUT = 30.0          # seconds without data before a mirror is given up
DEADLINE = 3 * 3600.0   # seconds for one file, all mirrors together
SILENCE_REPORT = 10.0   # a line on stderr after every this many seconds without data
PROGRESS_REPORT = 30.0  # away from a terminal, a progress line this often
#: The temporary files of ``reproduction.files.atomic_output`` (``tempfile.mkstemp``'s 8 random characters).
LEFTOVER = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


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
        head = read_head(path_or_bytes, 1024)
    head = head.lstrip(b"\xef\xbb\xbf").lstrip().lower()
    return head.startswith(b"<") and any(m in head for m in _HTML_MARKERS)


def read_head(path, n: int) -> bytes:
    """The first ``n`` bytes of a file; a file that cannot be read (permissions, a folder) is a
    :class:`DataError` naming it."""
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


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


def download(urls: Sequence[str], dest: Path, md5: str | None = None, *, timeout: float = TIMEOUT,
             deadline: float = DEADLINE, progress: bool = True) -> Path:
    """Fetch ``dest`` from the first of ``urls`` that delivers a good file, and return ``dest``.

    Each URL is streamed into :func:`atomic_output`; the size is checked against Content-Length,
    an HTML page is rejected, and the MD5 is verified when given. A mirror that sends nothing for
    ``timeout`` seconds is given up; so is the file after ``deadline`` seconds in all. If every
    mirror fails, raise :class:`DataError` naming the file, then (on the lines below) the URLs
    tried, why each failed, and which file to fetch by hand and where to put it; its ``failures``
    attribute lists the ``"URL: reason"`` parts. A tqdm progress bar is shown when ``progress`` and
    stderr is a terminal; plain progress lines when ``progress`` elsewhere.
    """
    dest = Path(dest)
    if not urls:
        raise DataError(f"{dest}: no download URL known; put the file there by hand")
    failures = []
    give_up_at = time.monotonic() + deadline
    dest.parent.mkdir(parents=True, exist_ok=True)
    with writing_in(dest.parent):
        for k, url in enumerate(urls):
            try:
                _fetch(url, dest, md5, timeout, give_up_at, deadline, progress)
                return dest
            except (DataError, urllib.error.URLError, HTTPException, OSError, ValueError) as e:
                reason = _reason(e, timeout)
                failures.append(f"{url}: {reason}")
            if k + 1 < len(urls):
                print(f"{dest.name}: {_host(url)}: {reason}; trying {_host(urls[k + 1])}", file=sys.stderr, flush=True)
    error = DataError("\n  ".join([f"{dest}: download failed from every mirror", *failures,
                                   f"fetch {urls[0]} by hand (or from any mirror above) and save it as {dest}"
                                   + (f" (md5 {md5})" if md5 else "")]))
    error.failures = failures  # "URL: reason" for each mirror, for callers composing their own message
    raise error


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc or url


def _fetch(url: str, dest: Path, md5: str | None, timeout: float, give_up_at: float, deadline: float,
           progress: bool) -> None:
    """One attempt: stream ``url`` into ``dest`` atomically, raising on any check that fails."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with _Watch(f"{dest.name} from {_host(url)}", timeout, plain=progress and not sys.stderr.isatty()) as watch, \
            urllib.request.urlopen(request, timeout=timeout) as response, \
            atomic_output(dest) as tmp, open(tmp, "wb") as out:
        content_type = (response.headers.get("Content-Type") or "").lower()
        if content_type.startswith(("text/html", "application/xhtml")):
            raise DataError(f"served an HTML page ({content_type}), not the data")
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        watch.total = expected
        digest = hashlib.md5()
        received = 0
        with _progress_bar(progress, expected, dest.name) as bar:
            # read1 returns as soon as some data is there, so the deadline is checked even when a
            # server trickles; each wait is bounded by the socket's timeout.
            while chunk := response.read1(_CHUNK):
                if received == 0 and looks_like_html(chunk):
                    raise DataError("served an HTML page, not the data")
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                watch.arrived(received)
                bar.update(len(chunk))
                if time.monotonic() > give_up_at:
                    raise DataError(f"not complete after {deadline:g} s ({received} bytes arrived)")
        # urllib does not raise when the server closes early; this comparison is what catches it.
        if expected is not None and received != expected:
            raise DataError(f"connection cut: received {received} of {expected} bytes")
        if received == 0:
            raise DataError("served an empty file")
        if md5 is not None and digest.hexdigest() != md5.lower():
            raise DataError(f"md5 mismatch: got {digest.hexdigest()}, expected {md5.lower()}")


class _Watch:
    """A thread that says on stderr when a download has been silent for another 10 s and, with
    ``plain``, how much has arrived every 30 s: a stalled mirror is visible before it is given up."""

    def __init__(self, label: str, timeout: float, plain: bool):
        self.label, self.timeout, self.plain = label, timeout, plain
        self.total = None
        self.received = 0
        self.start = self.last_data = self.last_report = time.monotonic()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def arrived(self, received: int) -> None:
        self.received = received
        self.last_data = time.monotonic()

    def _run(self) -> None:
        silence_reported = 0.0
        while not self.stop.wait(min(1.0, SILENCE_REPORT / 4)):
            now = time.monotonic()
            silent = now - self.last_data
            if silent < silence_reported:
                silence_reported = 0.0
            if silent >= silence_reported + SILENCE_REPORT:
                silence_reported += SILENCE_REPORT
                print(f"{self.label}: no data for {silence_reported:g} s (giving up at {self.timeout:g} s)",
                      file=sys.stderr, flush=True)
            elif self.plain and self.received and now - self.last_report >= PROGRESS_REPORT:
                self.last_report = now
                of = f" of {self.total / 1e6:,.1f}" if self.total else ""
                rate = self.received / 1e6 / max(now - self.start, 1e-9)
                print(f"{self.label}: {self.received / 1e6:,.1f}{of} MB ({rate:.2f} MB/s)", file=sys.stderr, flush=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


@contextmanager
def writing_in(folder: Path):
    """Hold a shared lock on ``folder`` while writing into it, so that :func:`remove_leftovers` in
    another process leaves this one's temporary files alone. Where the folder cannot be locked (no
    ``fcntl``, a file system without locks) the block runs unlocked."""
    fd = _lock(folder, exclusive=False)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _lock(folder: Path, exclusive: bool):
    """A descriptor of ``folder`` holding a lock on it (``flock`` on the folder itself: no lock file
    to leave behind), or None where that cannot be had; with ``exclusive``, None also when another
    process holds a lock."""
    try:
        import fcntl
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (ImportError, OSError):
        return None
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX | fcntl.LOCK_NB) if exclusive else fcntl.LOCK_SH)
        return fd
    except OSError:
        os.close(fd)
        return None


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete the temporary files that killed downloads or cache builds left in the data folder
    ``folder`` (``.<name>.<random>.tmp``), when no other process is writing there; say so in one
    line. Returns the paths removed."""
    folder = Path(folder)
    try:
        found = [folder / n for n in os.listdir(folder) if LEFTOVER.match(n)]
    except OSError:
        return []
    if not found:
        return []
    fd = _lock(folder, exclusive=True)
    if fd is None:
        return []   # another process is downloading or building here: its files may be live
    removed, size = [], 0
    try:
        for path in found:
            try:
                size += path.stat().st_size
                path.unlink()
                removed.append(path)
            except OSError:
                continue
    finally:
        os.close(fd)
    if removed:
        print(f"Removed {len(removed)} temporary file(s) ({size / 1e6:,.1f} MB) that interrupted downloads or "
              f"cache builds left in {folder}", file=sys.stderr, flush=True)
    return removed


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


def _reason(e: BaseException, timeout: float = TIMEOUT) -> str:
    """A short one-line reason for a failed mirror."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError) and isinstance(e.reason, TimeoutError) or isinstance(e, TimeoutError):
        return f"no data for {timeout:g} s"
    if isinstance(e, urllib.error.URLError):
        reason = getattr(e.reason, "strerror", None) or e.reason
        return f"unreachable ({reason})"
    text = str(e) or type(e).__name__
    return " ".join(text.split())
