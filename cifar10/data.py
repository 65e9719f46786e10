"""CIFAR-10 as the original used it (SOURCES.md §2.1, §2.3, §7 item 10): the first 45,000 training
images for training, the last 5,000 for validation, the 10,000 test images; raw pixels, no
whitening, no augmentation (the training loop scales them to ``x * 2/255 - 1`` per batch).

Source: the official "CIFAR-10 python version", ``cifar-10-python.tar.gz`` (MD5
c58f30108f718f92721af3b95e74349a), read directly from the tarball or from its extracted folder
``cifar-10-batches-py/``. Each of ``data_batch_1`` ... ``data_batch_5`` and ``test_batch`` is a
Python 2 pickle of a dict with byte-string keys; we use only ``data`` (uint8 (N, 3072): 1024 red,
then 1024 green, then 1024 blue values, each row-major 32x32, so ``reshape(N, 3, 32, 32)`` is
(channel, row, column), as pylearn2 gave it) and ``labels`` (N ints 0..9). Other keys
(``filenames``, ``batch_label``) and ``batches.meta`` are not needed, so copies lacking them load.

The pickles are read with an unpickler that can build only dicts, lists, strings and numpy arrays,
so a tampered file cannot run code.
"""
from __future__ import annotations

import importlib
import io
import os
import pickle
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from reproduction.dataset import DataError, Split, Splits
from reproduction.download import download as fetch, find_data_dir, looks_like_html, remove_leftovers

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
TARBALL = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
#: The sizes of the original's splits: train[0:45000], valid[45000:50000], the test batch
#: (cifar10.py: train_set = CIFAR10('train', start=0, stop=45000)).
SPLIT_SIZES = {"train": 45000, "valid": 5000, "test": 10000}
TRAIN_SIZE = SPLIT_SIZES["train"]


def load_cifar10(data_dir=None, download=True, gcn_zca=False, *, train_size=TRAIN_SIZE,
                 progress=True) -> Splits:
    """CIFAR-10 splits: train = training images [0, train_size), valid = [train_size, end),
    test = the test batch. ``X`` uint8 (N, 3, 32, 32), ``y`` int64 labels 0..9.

    ``data_dir``: the folder holding the tarball or ``cifar-10-batches-py/`` (default
    ``$CIFAR10_DATA_DIR``, else ``~/.cache/binarynet/data/cifar10``); the tarball is downloaded
    there when missing and ``download``. ``gcn_zca``: apply pylearn2's GCN + ZCA whitening, fitted
    on the training split (see ``cifar10.preprocess``); ``X`` is then float32, passed to the
    network as it is. Off by default: the original did not whiten.
    """
    folder = find_data_dir("cifar10", data_dir, "CIFAR10_DATA_DIR")
    remove_leftovers(folder)
    batches = read_batches(folder, download=download, progress=progress)
    X = np.concatenate([batches[name][0] for name in TRAIN_BATCHES])
    y = np.concatenate([batches[name][1] for name in TRAIN_BATCHES])
    if len(X) <= train_size:
        # Else the validation split is empty, and the first epoch fails only when it is evaluated.
        source = folder / FOLDER if (folder / FOLDER).is_dir() else folder / TARBALL
        raise DataError(f"{source}: {len(X):,} training images; the original split takes the first {train_size:,} "
                        f"for training and the rest (5,000 in the official files) for validation")
    train, valid = Split(X[:train_size], y[:train_size]), Split(X[train_size:], y[train_size:])
    test = Split(*batches[TEST_BATCH])
    if gcn_zca:
        from cifar10.preprocess import gcn_zca as whiten
        train.X, valid.X, test.X = whiten(train.X, valid.X, test.X)
    return Splits(train, valid, test)


def read_batches(folder: Path, *, download: bool = True, progress: bool = True) -> dict:
    """``{batch name: (X uint8 (N, 3, 32, 32), y int64 (N,))}`` for the five training batches and
    the test batch, from ``folder/cifar-10-batches-py/`` if present, else from the tarball."""
    extracted = folder / FOLDER
    if extracted.is_dir():
        try:
            os.listdir(extracted)   # an unreadable folder would otherwise look empty: "missing"
        except OSError as e:
            raise DataError(f"{extracted}: cannot read ({e.strerror or e})") from None
        return {name: read_batch_file(extracted / name) for name in (*TRAIN_BATCHES, TEST_BATCH)}
    tarball = folder / TARBALL
    if not tarball.exists():
        if not download:
            raise DataError(f"{tarball}: missing; downloading is off (--no-download)\n"
                            f"  download {URL} (md5 {MD5}) into {folder}, or extract it there")
        fetch([URL], tarball, MD5, progress=progress)
    return read_tarball(tarball)


def read_tarball(tarball: Path) -> dict:
    """The batches from the official tarball, read in one streaming pass without extracting."""
    if looks_like_html(tarball):
        raise DataError(f"{tarball}: an HTML page, not the CIFAR-10 tarball; delete it and download again")
    wanted = (*TRAIN_BATCHES, TEST_BATCH)
    found = {}
    try:
        with tarfile.open(tarball, "r|gz") as tar:
            for member in tar:
                path = PurePosixPath(member.name)
                if member.isfile() and path.parent.name == FOLDER and path.name in wanted:
                    found[path.name] = parse_batch(tar.extractfile(member).read(), f"{tarball}:{member.name}")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(f"{tarball}: truncated or corrupt archive ({_one_line(e)}); delete it and "
                        f"download again") from None
    for name in wanted:
        if name not in found:
            raise DataError(f"{tarball}: no member {FOLDER}/{name}")
    return found


def read_batch_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch from the extracted folder."""
    if not path.is_file():
        raise DataError(f"{path}: missing from the extracted {FOLDER}/ folder")
    if looks_like_html(path):
        raise DataError(f"{path}: an HTML page, not a CIFAR-10 batch")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    return parse_batch(raw, str(path))


def parse_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Unpickle one batch and check it: ``data`` uint8 (N, 3072), ``labels`` N values 0..9."""
    try:
        batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # any unpickling failure is a bad file, whatever its type
        raise DataError(f"{where}: not a CIFAR-10 batch pickle ({_one_line(e)})") from None
    if not isinstance(batch, dict):
        raise DataError(f"{where}: holds a {type(batch).__name__}, expected a dict")
    data, labels = np.asarray(_entry(batch, "data", where)), np.asarray(_entry(batch, "labels", where))
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{where}: data has shape {data.shape}, expected (N, 3072)")
    if data.dtype != np.uint8:
        raise DataError(f"{where}: data is {data.dtype}, expected uint8")
    if labels.shape != (len(data),):
        raise DataError(f"{where}: {labels.size} labels for {len(data)} images")
    if len(labels) and (labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{where}: labels outside 0..9 (found {labels.min()}..{labels.max()})")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _entry(batch: dict, key: str, where: str):
    for k in (key.encode(), key):  # byte-string keys in the official files; str if re-pickled
        if k in batch:
            return batch[k]
    raise DataError(f"{where}: no '{key}' entry")


class _BatchUnpickler(pickle.Unpickler):
    """Builds plain containers and numpy arrays only: any other global is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes at pickle protocol 2
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        # Python 2 pickles name numpy.core, which numpy 2 renamed numpy._core (numpy 1.x may
        # lack numpy._core, hence the fallback).
        for candidate in (module.replace("numpy.core", "numpy._core"), module):
            try:
                return getattr(importlib.import_module(candidate), name)
            except (ImportError, AttributeError):
                continue
        raise pickle.UnpicklingError(f"cannot find {module}.{name}")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
