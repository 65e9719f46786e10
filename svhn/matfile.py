"""Reading the official SVHN files, MATLAB v5 ``.mat`` (``train_32x32.mat``, ``test_32x32.mat``,
``extra_32x32.mat``): the labels ``y`` (N, 1) in 1..10, and the images ``X`` (32, 32, 3, N) uint8
as a stream of chunks, so that the 531,131 ``extra`` images never sit in memory at once.

Every problem with a file is a :class:`DataError` naming the file in one line.
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
import scipy.io

from reproduction.dataset import DataError

IMAGE_BYTES = 32 * 32 * 3
CHUNK_IMAGES = 8192  # 24 MiB of pixels per read


def read_labels(path: Path) -> np.ndarray:
    """The ``y`` of an official .mat file as int64 (N,), checked to be (N, 1) with values 1..10.
    A file cut short is told as such first: scipy would only say that it found no ``y``."""
    cut = truncation(path)
    if cut:
        raise DataError(f"{path}: truncated or corrupt ({cut}); delete it to download it again")
    try:
        y = scipy.io.loadmat(path, variable_names=["y"]).get("y")
    except Exception as e:  # scipy raises ValueError, TypeError, OSError... for a bad file
        raise DataError(f"{path}: not a readable MATLAB v5 file ({_one_line(e)})") from None
    if y is None:
        raise DataError(f"{path}: no variable 'y' (not an SVHN cropped-digits file, or a corrupt one)")
    if y.ndim != 2 or y.shape[1] != 1:
        raise DataError(f"{path}: y has shape {y.shape}, expected (N, 1)")
    y = y.reshape(-1)
    if len(y) and (not np.all(y == np.round(y)) or y.min() < 1 or y.max() > 10):
        raise DataError(f"{path}: labels outside 1..10 (found {y.min()}..{y.max()})")
    return y.astype(np.int64)


def iter_images(path: Path, n: int, chunk: int = CHUNK_IMAGES) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, images)`` for the ``n`` images of the file's ``X``, ``images`` uint8
    (k, 3, 32, 32) (channel, row, column), ``chunk`` images at a time.

    The official files are v5 with each variable zlib-compressed; ``X`` is read as a stream so
    that only one chunk is in memory. Any layout this reader does not stream (big-endian, another
    element type) falls back to ``scipy.io.loadmat``, which holds the whole ``X``.
    """
    try:
        with open(path, "rb") as f:
            try:
                stream, dims = _open_variable(f, "X")
            except _Unsupported:
                yield from _iter_loadmat(path, n, chunk)
                return
            _check_dims(path, dims, n)
            for start in range(0, n, chunk):
                k = min(chunk, n - start)
                # MATLAB's column-major (row, col, channel, image): each image is 3072 bytes that
                # read in C order as (channel, col, row).
                raw = np.frombuffer(stream.read(k * IMAGE_BYTES), dtype=np.uint8)
                yield start, raw.reshape(k, 3, 32, 32).transpose(0, 1, 3, 2)
    except (EOFError, zlib.error, struct.error) as e:
        raise DataError(f"{path}: truncated or corrupt ({_one_line(e) or 'unexpected end of file'})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def truncation(path: Path) -> str | None:
    """Where a little-endian MAT-v5 file is cut short, or None: its top-level elements (8-byte tag,
    then the byte count the tag gives) must end within the file. Reads only the tags. Other
    layouts (big-endian, v7.3 HDF5, not a .mat) are left to scipy's own messages."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            header = f.read(128)
            if len(header) < 128:
                return f"{len(header)} bytes, shorter than a MATLAB header"
            if header[126:128] != b"IM":
                return None
            pos = 128
            while pos + 8 <= size:
                f.seek(pos)
                mdtype, nbytes = struct.unpack("<II", f.read(8))
                end = pos + 8 if mdtype >> 16 else pos + 8 + nbytes
                if end > size:
                    return f"the element at byte {pos:,} needs {end - size:,} bytes more than the file's {size:,}"
                pos = end
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    return None


def _check_dims(path: Path, dims, n: int) -> None:
    if tuple(dims) != (32, 32, 3, n):
        raise DataError(f"{path}: X has shape {tuple(int(d) for d in dims)}, expected (32, 32, 3, {n})")


def _iter_loadmat(path: Path, n: int, chunk: int):
    try:
        X = scipy.io.loadmat(path, variable_names=["X"]).get("X")
    except Exception as e:
        raise DataError(f"{path}: not a readable MATLAB v5 file ({_one_line(e)})") from None
    if X is None:
        raise DataError(f"{path}: no variable 'X'")
    _check_dims(path, X.shape, n)
    if X.dtype != np.uint8 and (X.min() < 0 or X.max() > 255 or not np.all(X == np.round(X))):
        raise DataError(f"{path}: X is {X.dtype} with values outside 0..255")
    for start in range(0, n, chunk):
        yield start, X[:, :, :, start:start + chunk].transpose(3, 2, 0, 1).astype(np.uint8)


# --- A streaming reader for one uint8 variable of a MATLAB v5 file (MathWorks "MAT-File Format",
# level 5): a 128-byte header, then elements, each an 8-byte tag (type, byte count) and its data,
# padded to 8 bytes; type 15 (miCOMPRESSED) wraps one zlib-compressed element; type 14 (miMATRIX)
# holds sub-elements: array flags, dimensions, name, then the real part. A tag whose upper 16 bits
# are set is a "small element" holding up to 4 bytes of data inside the tag itself.
_MI_UINT8, _MI_MATRIX, _MI_COMPRESSED = 2, 14, 15
_MX_UINT8_CLASS = 9
_READ_BYTES = 1 << 22


class _Unsupported(Exception):
    """A layout the streaming reader does not handle; scipy reads it instead."""


class _FileStream:
    def __init__(self, f):
        self.f = f

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) < n:
            raise EOFError(f"needed {n} bytes, found {len(data)}")
        return data


class _ZlibStream:
    """Reads the decompressed bytes of the next ``nbytes`` compressed bytes of ``f``."""

    def __init__(self, f, nbytes: int):
        self.f, self.left = f, nbytes
        self.z = zlib.decompressobj()
        self.buf = bytearray()

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            if self.z.unconsumed_tail:
                data = self.z.unconsumed_tail
            else:
                data = self.f.read(min(_READ_BYTES, self.left)) if self.left > 0 and not self.z.eof else b""
                if not data:
                    raise EOFError(f"compressed data ended {n - len(self.buf)} bytes early")
                self.left -= len(data)
            # max_length bounds memory even for highly compressible data.
            self.buf += self.z.decompress(data, max(n - len(self.buf), _READ_BYTES))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def _tag(s) -> tuple[int, int, bytes | None]:
    """(type, byte count, data if small element else None)."""
    raw = s.read(8)
    mdtype, nbytes = struct.unpack("<II", raw)
    if mdtype >> 16:
        size = mdtype >> 16
        return mdtype & 0xFFFF, size, raw[4:4 + size]
    return mdtype, nbytes, None


def _element(s) -> bytes:
    _, nbytes, small = _tag(s)
    if small is not None:
        return small
    data = s.read(nbytes)
    s.read(-nbytes % 8)
    return data


def _open_variable(f, wanted: str):
    """Find variable ``wanted`` in the open file ``f``; return a stream positioned at its data and
    its dimensions. Raises _Unsupported for layouts left to scipy, DataError if it is missing."""
    header = f.read(128)
    if len(header) < 128:
        raise EOFError("shorter than a MATLAB header")
    if header[126:128] != b"IM":  # big-endian files, v7.3 (HDF5) files, or not a .mat at all
        raise _Unsupported
    size = os.fstat(f.fileno()).st_size
    pos = 128
    while pos + 8 <= size:
        f.seek(pos)
        mdtype, nbytes, _ = _tag(_FileStream(f))
        next_pos = pos + 8 + nbytes
        if mdtype == _MI_COMPRESSED:
            s = _ZlibStream(f, nbytes)
            mdtype, _, _ = _tag(s)
        else:
            s = _FileStream(f)
        if mdtype == _MI_MATRIX:
            flags = _element(s)
            dims = np.frombuffer(_element(s), dtype="<i4")
            name = _element(s).decode("latin-1")
            if name == wanted:
                mxclass = flags[0]
                data_type, data_bytes, small = _tag(s)
                if mxclass != _MX_UINT8_CLASS or data_type != _MI_UINT8 or small is not None:
                    raise _Unsupported
                if data_bytes != int(np.prod(dims.astype(np.int64))):
                    raise EOFError(f"{wanted} holds {data_bytes} bytes for dimensions {tuple(dims)}")
                return s, dims
        pos = next_pos
    raise DataError(f"{getattr(f, 'name', '?')}: no variable '{wanted}'")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())
