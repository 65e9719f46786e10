"""SVHN as the original used it: pylearn2's ``splitted_train`` / ``valid`` / ``test`` (SOURCES.md §2.3,
§7 item 10), read from the official cropped-digit files and kept in an HDF5 cache of uint8 pixels.

Source files (http://ufldl.stanford.edu/housenumbers/): ``train_32x32.mat`` (73,257 images),
``test_32x32.mat`` (26,032) and ``extra_32x32.mat`` (531,131), MATLAB v5 files holding ``X``: uint8
(32, 32, 3, N) and ``y``: (N, 1) labels 1..10, where 10 means the digit 0.

The splits, following pylearn2's ``SVHN.make_data`` (the version the original ran, fe9beee9), with
``rng = numpy.random.RandomState(322)``:

1. for each label 1..10 in turn, the indices of that label in ``train`` are shuffled with ``rng``
   and the first 400 go to the validation set; then the same for ``extra`` with 200 per label;
2. ``splitted_train`` is the rest of ``train`` in file order followed by the rest of ``extra`` in
   file order (598,388 images); it is then shuffled by ``rng.shuffle(range(598388))`` continuing
   from the state after step 1: image ``i`` of the result is image ``perm[i]`` of the list;
3. ``valid`` (6,000) is shuffled the same way from the same state (pylearn2 built each set in its
   own ``make_data`` call with a fresh ``RandomState(322)``, so both final shuffles start there);
4. ``test`` is shuffled by a fresh ``RandomState(322).shuffle(range(26032))``. This order decides
   which 32 test images fall in the partial last batch that the training loop drops.

Bit-exactness with pylearn2: the selection (which images are in which set), the order of
``splitted_train`` and the order of ``test`` follow from the steps above exactly, given that
numpy's legacy ``RandomState.shuffle`` draws have not changed since 2016 and that pylearn2's
``list(set(range(N)) - chosen)`` iterates in ascending order (CPython's set of small ints does).
The *order within* ``valid`` is not guaranteed: pylearn2 listed the 6,000 chosen indices from a
Python 2 ``set``, whose iteration order we do not reproduce; we list them ascending (train's, then
extra's) before the final shuffle. This changes neither the validation images nor the validation
error (the 6,000 images make 120 full batches of 50 and batch norm runs in inference mode).

Labels: ``y`` is the digit, 0..9 (file label 10 -> 0). pylearn2 subtracted 1 instead (digit 0 ->
class 9, digit d -> class d-1); the two differ only by a relabelling of the ten output units.

The cache (``svhn_splits_uint8.h5`` beside the source files) stores the three splits in their final
order as uint8 (N, 3, 32, 32), so loading is three contiguous reads and no float copy of the
604,388 training images (7.4 GB) ever exists. Building streams each .mat file in chunks of images
straight into the output arrays, so peak memory is the size of the returned uint8 splits (about
1.9 GB at full size) plus one chunk, never a second copy of ``extra``.

What the cache carries to be trusted, and when it is rebuilt (with one line on stderr saying why):

- the identity of its sources: each .mat file's size and modification time (``source_<name>``),
  and the split parameters. A source that changed, or other parameters, rebuild it. (Hashing the
  2.3 GB of sources at every start would cost more than reading the cache; their content was
  checked against the official MD5 when downloaded.)
- the SHA-256 of each split's pixels and labels as built (``sha256_<split>``), verified at every
  load over the arrays just read. Loading reads every byte anyway, so the check costs one hashing
  pass in memory, not a second read from disk: measured on the 2-core Xeon (SHA extensions) with a
  0.92 GB cache, SHA-256 ran at 1.8 GB/s (0.5 s) against 1.3-2.0 s to read the cache from a warm
  page cache; for the full 1.93 GB, about 1.1 s more on a load of several seconds. A mismatch (a
  flipped bit, an edit, a copy cut short) rebuilds it; without the sources it is an error.
- a cache of an older format (without checksums), or one HDF5 cannot read, is rebuilt.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import h5py
import numpy as np

from reproduction.dataset import DataError, Split, Splits
from reproduction.download import download as fetch, find_data_dir, looks_like_html, remove_leftovers, writing_in
from reproduction.files import atomic_output
from svhn.matfile import iter_images, read_labels

URL = "http://ufldl.stanford.edu/housenumbers/{}_32x32.mat"
MD5 = {
    "train": "e26dedcc434d2e4c54c9b2d4a06d8373",
    "test": "eb5a983be6a315427106f1b66c7a1a1d",
    "extra": "a93ce644f1a588dc4d68dda5feec44a7",
}
SOURCES = ("train", "test", "extra")
CACHE_NAME = "svhn_splits_uint8.h5"
CACHE_FORMAT = 2   # 2: SHA-256 of every split's pixels and labels
SPLITS = ("train", "valid", "test")
SEED = 322
VALID_PER_CLASS = (400, 200)  # from train, from extra
#: The sizes of pylearn2's splits from the official files: 73,257 train + 531,131 extra images less
#: the 6,000 of the validation set; the 26,032 test images.
SPLIT_SIZES = {"train": 598388, "valid": 6000, "test": 26032}


def load_svhn(data_dir=None, download=True, *, valid_per_class=VALID_PER_CLASS, seed=SEED,
              progress=True) -> Splits:
    """The original's SVHN splits as uint8 pixels: train 598,388 / valid 6,000 / test 26,032.

    ``data_dir``: folder of the three .mat files (default ``$SVHN_DATA_DIR``, else
    ``~/.cache/binarynet/data/svhn``); missing files are downloaded when ``download``. The first
    call builds the HDF5 cache there; later calls read it, checked (module docstring).
    ``valid_per_class``: images per label taken from (train, extra) for validation; ``seed``: the
    selection's RandomState seed.
    """
    folder = find_data_dir("svhn", data_dir, "SVHN_DATA_DIR")
    remove_leftovers(folder)
    sources = {name: folder / f"{name}_32x32.mat" for name in SOURCES}
    cache = folder / CACHE_NAME
    params = {"format": CACHE_FORMAT, "seed": int(seed),
              "valid_per_class": np.asarray(valid_per_class, dtype=np.int64)}
    have_sources = all(p.exists() for p in sources.values())
    # Without the sources there is nothing to compare against: a cache built with the same
    # parameters is used rather than downloading 2.3 GB again.
    wanted = {**params, **source_stamps(sources)} if have_sources else params
    problem = None
    if cache.exists():
        problem = cache_problem(cache, wanted)
        if problem is None:
            try:
                return read_cache(cache)
            except CacheError as e:
                problem = e.problem
    for name, path in sources.items():
        if not path.exists():
            if not download:
                why = f"{cache}: {problem}, and {path.name} is missing" if problem else f"{path}: missing"
                raise DataError(f"{why}; downloading is off (--no-download)\n"
                                f"  download {URL.format(name)} (md5 {MD5[name]}) into {folder}")
            fetch([URL.format(name)], path, MD5[name], progress=progress)
    if problem:
        print(f"{cache}: {problem}; rebuilding it from the .mat files", file=sys.stderr, flush=True)
    elif progress:
        print(f"Building the SVHN cache {cache} from {folder} (once)", file=sys.stderr, flush=True)
    return build_cache(sources, cache, valid_per_class=valid_per_class, seed=seed)


class CacheError(DataError):
    """A cache that cannot be used; ``problem`` says why, without the file's name."""

    def __init__(self, cache: Path, problem: str):
        super().__init__(f"{cache}: {problem}; delete it to rebuild")
        self.problem = problem


def source_stamps(sources: dict[str, Path]) -> dict[str, str]:
    """``{"source_<name>": "<size> <mtime_ns>"}`` for each source file: what the cache depends on."""
    stamps = {}
    for name, path in sources.items():
        st = os.stat(path)
        stamps[f"source_{name}"] = f"{st.st_size} {st.st_mtime_ns}"
    return stamps


def cache_problem(cache: Path, wanted: dict) -> str | None:
    """Why the cache does not fit ``wanted`` (its format, parameters and sources' stamps), or None."""
    try:
        with h5py.File(cache, "r") as f:
            attrs = dict(f.attrs)
    except OSError as e:
        if isinstance(e, PermissionError) or not os.access(cache, os.R_OK):
            return f"cannot read it ({e.strerror or 'permission denied'})"
        return "not a readable HDF5 file (a corrupt or partial cache)"
    if attrs.get("format") != CACHE_FORMAT:
        return f"an older cache format ({attrs.get('format')}), without checksums"
    for key, value in wanted.items():
        if key not in attrs or not np.array_equal(attrs[key], value):
            if key.startswith("source_"):
                return f"{key[len('source_'):]}_32x32.mat changed since the cache was built"
            return f"built with {key} {attrs.get(key)}, this run wants {value}"
    return None


def split_digest(X: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 of a split's uint8 pixels (C order) then its uint8 labels, as the cache stores them."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(X, dtype=np.uint8).data)
    h.update(np.ascontiguousarray(y, dtype=np.uint8).data)
    return h.hexdigest()


def read_cache(cache: Path) -> Splits:
    """The three splits stored in ``cache``, read into memory as uint8 / int64 and checked against
    their SHA-256; a :class:`CacheError` says what is wrong."""
    try:
        with h5py.File(cache, "r") as f:
            digests = {name: f.attrs.get(f"sha256_{name}") for name in SPLITS}
            stored = [(f[name]["X"][...], f[name]["y"][...]) for name in SPLITS]
    except (OSError, KeyError) as e:
        raise CacheError(cache, f"unreadable ({' '.join(str(e).split())})") from None
    splits = []
    for name, (X, y) in zip(SPLITS, stored):
        if X.dtype != np.uint8 or X.shape[1:] != (3, 32, 32) or len(X) != len(y) or y.dtype != np.uint8:
            raise CacheError(cache, f"unexpected contents in {name}: {X.shape} {X.dtype}")
        if digests[name] is None or split_digest(X, y) != _text(digests[name]):
            raise CacheError(cache, f"the {name} split's pixels or labels do not match their SHA-256 (corrupt)")
        splits.append(Split(X, y.astype(np.int64)))
    return Splits(*splits)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def split_indices(y_train: np.ndarray, y_extra: np.ndarray, valid_per_class=VALID_PER_CLASS,
                  seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """pylearn2's ``splitted_train`` and ``valid`` as indices into train followed by extra
    (extra's image ``j`` is ``len(y_train) + j``), each in its final shuffled order.

    ``y_train``, ``y_extra``: the files' labels 1..10. See the module docstring for the procedure
    and for what is and is not bit-exact with pylearn2.
    """
    rng = np.random.RandomState(seed)
    kept, chosen_all = [], []
    offset = 0
    for name, y, per_class in (("train", y_train, valid_per_class[0]), ("extra", y_extra, valid_per_class[1])):
        y = np.asarray(y).reshape(-1)
        chosen = []
        for label in range(1, 11):
            index = np.nonzero(y == label)[0]
            if len(index) < per_class:
                raise DataError(f"{name}_32x32.mat: {len(index)} images of label {label}, fewer than "
                                f"the {per_class} the validation set takes")
            rng.shuffle(index)
            chosen.append(index[:per_class])
        chosen = np.sort(np.concatenate(chosen))
        rest = np.ones(len(y), dtype=bool)
        rest[chosen] = False
        kept.append(np.nonzero(rest)[0] + offset)
        chosen_all.append(chosen + offset)
        offset += len(y)
    kept, chosen_all = np.concatenate(kept), np.concatenate(chosen_all)
    state = rng.get_state()
    train = kept[_shuffled_range(len(kept), rng)]
    rng.set_state(state)
    valid = chosen_all[_shuffled_range(len(chosen_all), rng)]
    return train, valid


def test_order(n_test: int, seed: int = SEED) -> np.ndarray:
    """pylearn2's order of the test set: ``RandomState(seed).shuffle(range(n_test))``."""
    return _shuffled_range(n_test, np.random.RandomState(seed))


def _shuffled_range(n: int, rng: np.random.RandomState) -> np.ndarray:
    index = np.arange(n)
    rng.shuffle(index)  # the same swaps as pylearn2's rng.shuffle(range(n)) on a Python list
    return index


def build_cache(sources: dict[str, Path], cache: Path, *, valid_per_class=VALID_PER_CLASS,
                seed: int = SEED) -> Splits:
    """Read the three .mat files, select and order the splits, write ``cache`` atomically and
    return the splits. Pixels go from each file's chunks straight to their final positions."""
    for path in sources.values():
        check_not_html(path)
    labels = {name: read_labels(path) for name, path in sources.items()}
    train_idx, valid_idx = split_indices(labels["train"], labels["extra"], valid_per_class, seed)
    test_idx = test_order(len(labels["test"]), seed)

    # Where each image of train+extra goes: split 0 (train) or 1 (valid), at which position.
    n_train, n_extra = len(labels["train"]), len(labels["extra"])
    split_of = np.full(n_train + n_extra, -1, dtype=np.int8)
    position = np.zeros(n_train + n_extra, dtype=np.int64)
    for s, idx in enumerate((train_idx, valid_idx)):
        split_of[idx] = s
        position[idx] = np.arange(len(idx))
    targets = [np.empty((len(train_idx), 3, 32, 32), dtype=np.uint8),
               np.empty((len(valid_idx), 3, 32, 32), dtype=np.uint8)]
    for name, offset in (("train", 0), ("extra", n_train)):
        for start, images in iter_images(sources[name], len(labels[name])):
            g = offset + start + np.arange(len(images))
            for s, target in enumerate(targets):
                mask = split_of[g] == s
                target[position[g[mask]]] = images[mask]
    test_X = np.empty((len(test_idx), 3, 32, 32), dtype=np.uint8)
    test_position = np.empty_like(test_idx)
    test_position[test_idx] = np.arange(len(test_idx))
    for start, images in iter_images(sources["test"], len(labels["test"])):
        test_X[test_position[start:start + len(images)]] = images

    both = np.concatenate([labels["train"], labels["extra"]])
    splits = Splits(Split(targets[0], both[train_idx] % 10),
                    Split(targets[1], both[valid_idx] % 10),
                    Split(test_X, labels["test"][test_idx] % 10))
    attrs = {"format": CACHE_FORMAT, "seed": int(seed),
             "valid_per_class": np.asarray(valid_per_class, dtype=np.int64), **source_stamps(sources)}
    for name, split in zip(SPLITS, (splits.train, splits.valid, splits.test)):
        attrs[f"sha256_{name}"] = split_digest(split.X, split.y.astype(np.uint8))
    with writing_in(cache.parent), atomic_output(cache) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs.update(attrs)
            for name, split in zip(SPLITS, (splits.train, splits.valid, splits.test)):
                group = f.create_group(name)
                group.create_dataset("X", data=split.X)
                group.create_dataset("y", data=split.y.astype(np.uint8))
    return splits


def check_not_html(path: Path) -> None:
    if looks_like_html(path):
        raise DataError(f"{path}: an HTML page, not a .mat file (a failed download?); delete it and download again")
