"""SVHN loader: the official .mat format, pylearn2's splits, the HDF5 cache, and bad files.

Every file here is a small synthetic one in the official format (``svhn.synthetic``), whose images
carry their own identity: pixel (0, 0) is (index % 256, index // 256, file tag), pixel (0, 1) the
file label.
"""
import inspect
import os

import numpy as np
import pytest
import scipy.io

from reproduction.dataset import DataError
from svhn import data
from tests.other_user import SKIP_REASON, data_error, run_python
from svhn.synthetic import FILE_TAGS, balanced_labels, main as synthetic_main, synthetic_images, write_mat, write_svhn

PER_CLASS = {"train": 30, "test": 10, "extra": 20}  # 300 / 100 / 200 images
VALID = (4, 2)


def write_small(folder, seed=0):
    paths = {}
    for k, (name, n) in enumerate(PER_CLASS.items()):
        y = balanced_labels(n, seed + k)
        paths[name] = write_mat(folder / f"{name}_32x32.mat", synthetic_images(y, FILE_TAGS[name], seed + 10 + k), y)
    return paths


def identities(split):
    """(file tag, index in file, file label) of each image, read from its marker pixels."""
    X = split.X.astype(np.int64)
    return X[:, 2, 0, 0], X[:, 0, 0, 0] + 256 * X[:, 1, 0, 0], X[:, 0, 0, 1]


@pytest.fixture
def small(tmp_path):
    write_small(tmp_path)
    return tmp_path


def load(folder, **kw):
    return data.load_svhn(folder, download=False, valid_per_class=VALID, progress=False, **kw)


def test_counts_shapes_and_dtypes(small):
    s = load(small)
    assert (len(s.train), len(s.valid), len(s.test)) == (300 + 200 - 60, 60, 100)
    for split in (s.train, s.valid, s.test):
        assert split.X.dtype == np.uint8 and split.X.shape[1:] == (3, 32, 32)
        assert split.y.dtype == np.int64 and split.y.shape == (len(split.X),)
        assert set(np.unique(split.y)) == set(range(10))


def test_every_image_lands_once_with_its_label(small):
    s = load(small)
    seen = {}
    for name, split in (("train", s.train), ("valid", s.valid), ("test", s.test)):
        tag, index, file_label = identities(split)
        # Label mapping: the file's 1..10 becomes the digit, 10 -> 0.
        assert np.array_equal(split.y, file_label % 10)
        assert np.all(file_label >= 1)
        for t, i in zip(tag, index):
            assert (t, i) not in seen
            seen[t, i] = name
    assert len(seen) == 600
    assert {name for (t, _), name in seen.items() if t == FILE_TAGS["test"]} == {"test"}
    # The labels travel with their images: compare with the labels scipy reads from the files.
    for name, split in (("train", s.train), ("valid", s.valid), ("test", s.test)):
        tag, index, _ = identities(split)
        for file_name, file_tag in FILE_TAGS.items():
            y_file = scipy.io.loadmat(small / f"{file_name}_32x32.mat")["y"].ravel()
            m = tag == file_tag
            assert np.array_equal(split.y[m], y_file[index[m]] % 10)


def test_valid_is_class_balanced_from_train_and_extra(small):
    s = load(small)
    tag, _, file_label = identities(s.valid)
    for file_name, per_class in (("train", VALID[0]), ("extra", VALID[1])):
        counts = np.bincount(file_label[tag == FILE_TAGS[file_name]], minlength=11)[1:]
        assert np.all(counts == per_class)


def test_default_split_sizes_with_full_class_counts():
    # Labels only (no pixels): 450 of each label in train, 250 in extra.
    y_train, y_extra = balanced_labels(450, 1), balanced_labels(250, 2)
    assert data.VALID_PER_CLASS == (400, 200) and data.SEED == 322
    assert inspect.signature(data.load_svhn).parameters["valid_per_class"].default == (400, 200)
    train, valid = data.split_indices(y_train, y_extra)
    assert len(valid) == 6000 and len(train) == 4500 + 2500 - 6000
    both = np.concatenate([y_train, y_extra])
    from_train = valid < len(y_train)
    assert np.all(np.bincount(both[valid[from_train]], minlength=11)[1:] == 400)
    assert np.all(np.bincount(both[valid[~from_train]], minlength=11)[1:] == 200)
    assert len(np.intersect1d(train, valid)) == 0


def pylearn2_procedure(y_train, y_extra, k_train, k_extra, seed):
    """pylearn2's make_data selection, written out step by step as it reads (lists and sets)."""
    def draw(y, k, rng):
        valid_index = []
        for i in range(1, 11):
            index = np.nonzero(y == i)[0]
            rng.shuffle(index)
            valid_index.append(index[:k])
        valid_index = set(np.concatenate(valid_index))
        train_index = list(set(np.arange(len(y))) - valid_index)
        return train_index, valid_index

    def order(n, rng):
        index = list(range(n))
        rng.shuffle(index)
        return index

    rng = np.random.RandomState(seed)
    t1, v1 = draw(y_train, k_train, rng)
    t2, v2 = draw(y_extra, k_extra, rng)
    train = np.array(t1 + [len(y_train) + j for j in t2])
    state = rng.get_state()
    train = train[order(len(train), rng)]
    rng.set_state(state)
    valid_perm = order(len(v1) + len(v2), rng)
    return train, set(v1) | {len(y_train) + j for j in v2}, valid_perm


def test_selection_follows_pylearn2_and_the_seed():
    y_train, y_extra = balanced_labels(30, 5), balanced_labels(20, 6)
    train, valid = data.split_indices(y_train, y_extra, (4, 2), 322)
    ref_train, ref_valid, ref_perm = pylearn2_procedure(y_train, y_extra, 4, 2, 322)
    assert np.array_equal(train, ref_train)
    assert set(valid.tolist()) == ref_valid
    # The valid order is pylearn2's final shuffle applied to the chosen indices listed ascending.
    assert np.array_equal(valid, np.sort(valid)[ref_perm])
    again = data.split_indices(y_train, y_extra, (4, 2), 322)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], valid)
    other = data.split_indices(y_train, y_extra, (4, 2), 323)
    assert set(other[1].tolist()) != set(valid.tolist())


def test_test_order_is_pylearn2_shuffle():
    index = list(range(57))
    np.random.RandomState(322).shuffle(index)
    assert np.array_equal(data.test_order(57), index)


def test_cache_is_reused(small, monkeypatch):
    builds = []
    build = data.build_cache
    monkeypatch.setattr(data, "build_cache", lambda *a, **k: builds.append(1) or build(*a, **k))
    first = load(small)
    cache = small / data.CACHE_NAME
    stamp = cache.stat().st_mtime_ns
    second = load(small)
    assert len(builds) == 1 and cache.stat().st_mtime_ns == stamp
    for a, b in zip((first.train, first.valid, first.test), (second.train, second.valid, second.test)):
        assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y) and b.X.dtype == np.uint8
    # Without the source files, a cache with the same parameters is still used.
    for name in data.SOURCES:
        os.remove(small / f"{name}_32x32.mat")
    third = load(small)
    assert len(builds) == 1 and np.array_equal(third.train.X, first.train.X)


def test_cache_is_rebuilt_when_a_source_or_the_parameters_change(small, monkeypatch):
    builds = []
    build = data.build_cache
    monkeypatch.setattr(data, "build_cache", lambda *a, **k: builds.append(1) or build(*a, **k))
    first = load(small)
    train_file = small / "train_32x32.mat"
    st = train_file.stat()
    os.utime(train_file, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    touched = load(small)
    assert len(builds) == 2 and np.array_equal(touched.train.X, first.train.X)
    # New contents: 31 images per class in train.
    y = balanced_labels(31, 9)
    write_mat(train_file, synthetic_images(y, FILE_TAGS["train"], 9), y)
    changed = load(small)
    assert len(builds) == 3 and len(changed.train) == len(first.train) + 10
    data.load_svhn(small, download=False, valid_per_class=(3, 2), progress=False)
    assert len(builds) == 4
    assert not [p for p in small.iterdir() if p.name.endswith(".part")]


def bad_file_error(folder, name, **kw):
    with pytest.raises(DataError) as e:
        load(folder, **kw)
    message = str(e.value)
    first, *details = message.split("\n")    # the file and the problem first; details indented below
    assert f"{name}_32x32.mat" in first and all(line.startswith("  ") for line in details), message
    assert not (folder / data.CACHE_NAME).exists()  # nothing half-built is left behind
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")]
    return message


def test_html_instead_of_data(small):
    (small / "extra_32x32.mat").write_bytes(b"<!DOCTYPE html><html><body>Not found</body></html>")
    assert "HTML" in bad_file_error(small, "extra")


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_file(small, compress):
    y = balanced_labels(PER_CLASS["extra"], 1)
    path = small / "extra_32x32.mat"
    # y first, so that the labels read and the images are cut short.
    scipy.io.savemat(path, {"y": y.reshape(-1, 1), "X": synthetic_images(y, 3, 1)}, do_compression=compress)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert "truncated" in bad_file_error(small, "extra")


def test_wrong_image_shape(small):
    y = balanced_labels(PER_CLASS["train"], 0)
    write_mat(small / "train_32x32.mat", np.zeros((28, 28, 3, len(y)), np.uint8), y)
    assert "(28, 28, 3, 300)" in bad_file_error(small, "train")


def test_labels_and_images_disagree_in_number(small):
    y = balanced_labels(PER_CLASS["test"], 0)
    write_mat(small / "test_32x32.mat", synthetic_images(y[:-1], 2), y)
    bad_file_error(small, "test")


@pytest.mark.parametrize("label", [0, 11])
def test_label_out_of_range(small, label):
    y = balanced_labels(PER_CLASS["train"], 0)
    y[7] = label
    write_mat(small / "train_32x32.mat", synthetic_images(y, 1), y)
    assert "1..10" in bad_file_error(small, "train")


def test_too_few_images_of_a_class_for_validation(small):
    with pytest.raises(DataError, match="train_32x32.mat"):
        data.load_svhn(small, download=False, valid_per_class=(31, 2), progress=False)


def test_missing_file_without_download(small):
    os.remove(small / "test_32x32.mat")
    message = bad_file_error(small, "test")
    assert "ufldl.stanford.edu" in message


def test_synthetic_cli_writes_official_format(tmp_path):
    synthetic_main([str(tmp_path), "--per-class", "3"])
    for name in data.SOURCES:
        m = scipy.io.loadmat(tmp_path / f"{name}_32x32.mat")
        assert m["X"].dtype == np.uint8 and m["X"].shape == (32, 32, 3, 30)
        assert m["y"].dtype == np.uint8 and m["y"].shape == (30, 1)
        assert np.array_equal(np.bincount(m["y"].ravel(), minlength=11)[1:], [3] * 10)
    paths = write_svhn(tmp_path / "sized", sizes={"train": 5, "test": 6, "extra": 7})
    assert scipy.io.loadmat(paths["extra"])["X"].shape == (32, 32, 3, 7)


# --- the cache's checksums, leftovers and unreadable files (issue 10) ----------------------------------

def _flip_a_pixel(cache, split="train"):
    import h5py

    with h5py.File(cache, "r+") as f:
        f[split]["X"][3, 1, 2, 2] ^= 0x10


def test_the_cache_records_the_checksum_of_each_split(small):
    import h5py

    s = load(small)
    with h5py.File(small / data.CACHE_NAME, "r") as f:
        assert f.attrs["format"] == 2
        for name, split in zip(data.SPLITS, (s.train, s.valid, s.test)):
            assert f.attrs[f"sha256_{name}"] == data.split_digest(split.X, split.y.astype(np.uint8))


def test_a_corrupt_cache_is_rebuilt_with_a_line_saying_why(small, capsys, monkeypatch):
    first = load(small)
    _flip_a_pixel(small / data.CACHE_NAME, "valid")
    builds = []
    build = data.build_cache
    monkeypatch.setattr(data, "build_cache", lambda *a, **k: builds.append(1) or build(*a, **k))
    again = load(small)
    err = capsys.readouterr().err
    assert builds == [1] and np.array_equal(again.valid.X, first.valid.X)
    assert f"{small / data.CACHE_NAME}: the valid split's pixels or labels do not match their SHA-256 (corrupt); " \
           "rebuilding it from the .mat files" in err
    load(small)
    assert builds == [1]                     # the rebuilt cache passes its check


def test_a_corrupt_cache_without_its_sources_is_an_error(small):
    load(small)
    _flip_a_pixel(small / data.CACHE_NAME)
    for name in data.SOURCES:
        os.remove(small / f"{name}_32x32.mat")
    with pytest.raises(DataError) as e:
        load(small)
    first = str(e.value).splitlines()[0]
    assert first.startswith(f"{small / data.CACHE_NAME}: the train split's pixels or labels do not match")
    assert "train_32x32.mat is missing" in first


def test_an_older_cache_and_a_source_that_changed_are_rebuilt_saying_why(small, capsys):
    import h5py

    load(small)
    with h5py.File(small / data.CACHE_NAME, "r+") as f:
        f.attrs["format"] = 1
    load(small)
    assert "an older cache format (1), without checksums; rebuilding it" in capsys.readouterr().err
    os.utime(small / "extra_32x32.mat", ns=(10**18, 10**18))
    load(small)
    assert "extra_32x32.mat changed since the cache was built; rebuilding it" in capsys.readouterr().err
    (small / data.CACHE_NAME).write_bytes(b"\0" * 100)
    load(small)
    assert "not a readable HDF5 file" in capsys.readouterr().err


def test_leftovers_of_killed_builds_and_downloads_are_removed_unless_someone_writes(small, capsys):
    from reproduction.download import writing_in

    leftovers = [small / ".svhn_splits_uint8.h5.ab12cd34.tmp", small / ".extra_32x32.mat.zz_99xyz.tmp"]
    for p in leftovers:
        p.write_bytes(b"\0" * 2000)
    with writing_in(small):                  # a download or build in progress (here, this process)...
        other = run_python(f"from svhn import data; data.load_svhn({str(small)!r}, download=False, "
                           "valid_per_class=(4, 2))", drop=False)
        assert other.returncode == 0, other.stderr
    assert all(p.exists() for p in leftovers)   # ...so another process leaves them alone
    load(small)
    assert not any(p.exists() for p in leftovers)
    assert "Removed 2 temporary file(s) (0.0 MB)" in capsys.readouterr().err


@pytest.mark.skipif(SKIP_REASON is not None, reason=str(SKIP_REASON))
def test_an_unreadable_mat_file_says_cannot_read(small):
    (small / "test_32x32.mat").chmod(0o000)
    message = data_error(f"from svhn import data\n"
                         f"data.load_svhn({str(small)!r}, download=False, valid_per_class=(4, 2))")
    assert message == f"{small / 'test_32x32.mat'}: cannot read (Permission denied)"


def test_synthetic_cli_bad_input_is_one_line(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    for argv, words in [([str(tmp_path), "--per-class", "0"], "--per-class: 0: must be at least 1"),
                        ([str(tmp_path / "f")], "not a folder")]:
        with pytest.raises(SystemExit) as e:
            synthetic_main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and words in err, err
    assert not any(p.suffix == ".tmp" for p in tmp_path.iterdir())
