"""reproduction/download.py: atomic writes, HTML sniffing, data-folder order, and downloads from a
local HTTP server that misbehaves in each of the ways real mirrors do."""
import hashlib
import http.server
import re
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from reproduction.dataset import DataError
from reproduction.download import download, find_data_dir, looks_like_html, md5sum
from reproduction.files import atomic_output
from tests.other_user import run_python

PAYLOAD = bytes(range(256)) * 400 + b"tail"  # binary data, 102,404 bytes
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()
HTML = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>gone</body></html>"


@contextmanager
def serve(routes):
    """An HTTP server on 127.0.0.1 (ephemeral port) in a thread. ``routes`` maps a path to
    ``(status, content_type, body)``, or to ``("cut", body)``: a Content-Length 1000 bytes larger
    than the body, which is sent before the connection is closed. Yields the base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            route = routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            if route[0] == "cut":
                body = route[1]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body) + 1000))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True
                return
            status, content_type, body = route
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


ROUTES = {
    "/good.bin": (200, "application/octet-stream", PAYLOAD),
    "/corrupt.bin": (200, "application/octet-stream", PAYLOAD[:-1] + b"X"),
    "/page.bin": (200, "text/html; charset=utf-8", HTML),
    "/disguised.bin": (200, "application/octet-stream", HTML),  # HTML with a binary content type
    "/cut.bin": ("cut", PAYLOAD[: len(PAYLOAD) // 2]),
}


@pytest.fixture(scope="module")
def base_url():
    with serve(ROUTES) as url:
        yield url


def _leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir())


def test_md5sum_matches_hashlib(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(PAYLOAD * 30)  # over 1 MiB: more than one chunk
    assert md5sum(path) == hashlib.md5(PAYLOAD * 30).hexdigest()


def test_atomic_output_replaces_only_on_success(tmp_path):
    path = tmp_path / "sub" / "out.bin"
    with atomic_output(path) as tmp:
        assert tmp.parent == path.parent and tmp != path
        tmp.write_bytes(b"new")
        assert not path.exists()  # nothing at the final path until the block succeeds
    assert path.read_bytes() == b"new"
    with pytest.raises(RuntimeError):
        with atomic_output(path) as tmp:
            tmp.write_bytes(b"half-writ")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"new"  # the old file survives a failed rewrite
    assert _leftovers(path.parent) == ["out.bin"]  # and no temporary file is left


def test_looks_like_html(tmp_path):
    assert looks_like_html(HTML)
    assert looks_like_html(b"\xef\xbb\xbf  \n<HTML><BODY>Access denied</BODY></HTML>")
    assert looks_like_html(b'<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>')
    assert not looks_like_html(b"\x1f\x8b\x08\x00 <html>")  # gzip
    assert not looks_like_html(b"\x00\x00\x08\x03\x00\x00\xea\x60")  # IDX header
    assert not looks_like_html(b"")
    page = tmp_path / "page.gz"
    page.write_bytes(HTML)
    assert looks_like_html(page)
    page.write_bytes(PAYLOAD)
    assert not looks_like_html(page)


def test_find_data_dir_order(tmp_path, monkeypatch):
    monkeypatch.setenv("BNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("XDATA_DIR", raising=False)
    assert find_data_dir("xdata", None, "XDATA_DIR") == tmp_path / "cache" / "data" / "xdata"
    monkeypatch.setenv("XDATA_DIR", str(tmp_path / "env"))
    assert find_data_dir("xdata", None, "XDATA_DIR") == tmp_path / "env"
    assert find_data_dir("xdata", tmp_path / "arg", "XDATA_DIR") == tmp_path / "arg"
    assert find_data_dir("xdata", str(tmp_path / "arg"), "XDATA_DIR") == tmp_path / "arg"


def test_download_good_file(base_url, tmp_path):
    dest = tmp_path / "good.bin"
    assert download([f"{base_url}/good.bin"], dest, PAYLOAD_MD5, progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(tmp_path) == ["good.bin"]
    download([f"{base_url}/good.bin"], tmp_path / "nomd5.bin", progress=False)  # md5 optional
    assert (tmp_path / "nomd5.bin").read_bytes() == PAYLOAD


@pytest.mark.parametrize("route, reason", [
    ("/corrupt.bin", "md5 mismatch"),
    ("/page.bin", "HTML"),
    ("/disguised.bin", "HTML"),
    ("/cut.bin", "connection cut"),
    ("/missing.bin", "HTTP 404"),
])
def test_download_failure_leaves_nothing(base_url, tmp_path, route, reason):
    dest = tmp_path / "data" / "file.bin"
    url = f"{base_url}{route}"
    with pytest.raises(DataError) as err:
        download([url], dest, PAYLOAD_MD5, progress=False)
    message = str(err.value)
    first, *details = message.split("\n")
    assert str(dest) in first and "download failed" in first  # which file, and that it could not be had
    assert all(line.startswith("  ") for line in details)
    assert url in message and reason in message  # which URL failed, and why
    assert f"save it as {dest}" in message  # where to put the file fetched by hand
    assert not dest.exists()
    assert not dest.parent.exists() or _leftovers(dest.parent) == []


def test_download_failure_keeps_existing_file(base_url, tmp_path):
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"old")
    with pytest.raises(DataError):
        download([f"{base_url}/cut.bin"], dest, None, progress=False)
    assert dest.read_bytes() == b"old"
    assert _leftovers(tmp_path) == ["file.bin"]


def test_download_falls_back_to_next_mirror(base_url, tmp_path):
    dest = tmp_path / "file.bin"
    urls = [f"{base_url}/page.bin", f"{base_url}/cut.bin", f"{base_url}/good.bin"]
    download(urls, dest, PAYLOAD_MD5, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(tmp_path) == ["file.bin"]


def test_download_unreachable_names_every_mirror(tmp_path):
    with serve({}) as url:
        pass  # the port is now closed: nothing listens there
    dest = tmp_path / "file.bin"
    urls = [f"{url}/a.bin", f"{url}/b.bin"]
    with pytest.raises(DataError) as err:
        download(urls, dest, PAYLOAD_MD5, timeout=5, progress=False)
    message = str(err.value)
    assert all(u in message for u in urls) and str(dest) in message and PAYLOAD_MD5 in message
    assert not dest.exists()


# --- stalled mirrors, deadlines and leftovers (issue 10) -------------------------------------------------

@contextmanager
def stalling(after: bytes, pause: float, trickle: float = 0.0):
    """A server that sends the headers and ``after``, then nothing for ``pause`` seconds (with
    ``trickle``: one byte every ``trickle`` seconds instead, forever)."""
    import time

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(after)
            self.wfile.flush()
            try:
                end = time.monotonic() + pause
                while time.monotonic() < end:
                    time.sleep(trickle or 0.05)
                    if trickle:
                        self.wfile.write(b"\0")
                        self.wfile.flush()
            except OSError:
                pass

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_stalled_mirror_is_reported_and_given_up_for_the_next(base_url, tmp_path, capsys, monkeypatch):
    import time

    import reproduction.download as dl

    monkeypatch.setattr(dl, "SILENCE_REPORT", 0.5)
    dest = tmp_path / "file.bin"
    with stalling(PAYLOAD[:1000], pause=30) as stalled:
        start = time.monotonic()
        download([f"{stalled}/file.bin", f"{base_url}/good.bin"], dest, PAYLOAD_MD5, timeout=2, progress=False)
        took = time.monotonic() - start
    assert dest.read_bytes() == PAYLOAD and took < 10
    err = capsys.readouterr().err
    host = stalled.split("//")[1]
    assert f"file.bin from {host}: no data for 0.5 s (giving up at 2 s)" in err     # visible while it waits
    assert f"file.bin from {host}: no data for 1.5 s (giving up at 2 s)" in err
    assert f"file.bin: {host}: no data for 2 s; trying {base_url.split('//')[1]}" in err
    assert _leftovers(tmp_path) == ["file.bin"]


def test_a_stalled_last_mirror_fails_in_stated_time(tmp_path):
    import time

    with stalling(b"", pause=30) as stalled:
        start = time.monotonic()
        with pytest.raises(DataError) as err:
            download([f"{stalled}/x.bin"], tmp_path / "x.bin", None, timeout=1, progress=False)
        assert time.monotonic() - start < 8
    assert f"{stalled}/x.bin: no data for 1 s" in str(err.value)
    assert _leftovers(tmp_path) == []


def test_a_trickling_mirror_is_given_up_at_the_deadline(tmp_path):
    import time

    with stalling(b"\0" * 10, pause=30, trickle=0.2) as slow:
        start = time.monotonic()
        with pytest.raises(DataError) as err:
            download([f"{slow}/x.bin"], tmp_path / "x.bin", None, timeout=5, deadline=1.5, progress=False)
        assert time.monotonic() - start < 6
    assert "not complete after 1.5 s" in str(err.value)


def test_plain_progress_lines_away_from_a_terminal(monkeypatch, capsys, tmp_path):
    import reproduction.download as dl

    monkeypatch.setattr(dl, "PROGRESS_REPORT", 0.3)
    with stalling(PAYLOAD[:5000], pause=1.2, trickle=0.05) as slow:
        with pytest.raises(DataError):
            download([f"{slow}/x.bin"], tmp_path / "x.bin", None, timeout=5, deadline=1.0, progress=True)
    assert re.search(r"x.bin from 127.0.0.1:\d+: 0.0 of 0.1 MB \(\d+\.\d+ MB/s\)", capsys.readouterr().err)


def test_remove_leftovers_only_when_nobody_writes(tmp_path, capsys):
    from reproduction.download import remove_leftovers, writing_in

    ours = tmp_path / ".train_32x32.mat.a1b2c3d4.tmp"
    ours.write_bytes(b"\0" * 10)
    other = tmp_path / ".notes.tmp"
    other.write_text("x")
    with writing_in(tmp_path):
        assert run_python(f"from reproduction.download import remove_leftovers as r; print(len(r({str(tmp_path)!r})))",
                          drop=False).stdout.strip() == "0"
    assert ours.exists()
    assert remove_leftovers(tmp_path) == [ours] and not ours.exists() and other.exists()
    assert f"Removed 1 temporary file(s) (0.0 MB) that interrupted downloads or cache builds left in {tmp_path}" \
        in capsys.readouterr().err
    assert remove_leftovers(tmp_path / "missing") == []
