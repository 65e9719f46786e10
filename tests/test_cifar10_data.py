"""CIFAR-10 loader and the optional GCN + ZCA whitening, on small files in the official format
(Python-2-style pickles with byte-string keys, protocol 2, inside cifar-10-python.tar.gz)."""
import inspect
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from cifar10 import data, preprocess
from reproduction.dataset import DataError
from tests.other_user import SKIP_REASON, data_error

PER_BATCH, N_TEST = 20, 30  # 100 training images: train_size=90 leaves 10 for validation


def make_batches(seed=0):
    rng = np.random.default_rng(seed)
    batches = {}
    for k, name in enumerate((*data.TRAIN_BATCHES, data.TEST_BATCH)):
        n = N_TEST if name == data.TEST_BATCH else PER_BATCH
        X = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        X[:, 0] = k  # the batch number, in the red value of pixel (0, 0)
        X[:, 1] = np.arange(n)  # the image's index, in the red value of pixel (0, 1)
        batches[name] = (X, rng.integers(0, 10, size=n).tolist())
    return batches


def batch_pickle(X, labels, filenames=True, extra=None):
    d = {b"batch_label": b"training batch", b"labels": labels, b"data": X}
    if filenames:
        d[b"filenames"] = [b"img_%d.png" % i for i in range(len(X))]
    d.update(extra or {})
    return pickle.dumps(d, protocol=2)


def write_tarball(folder, batches, **overrides):
    """The official tarball; ``overrides``: batch name -> raw bytes to store instead."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / data.TARBALL, "w:gz") as tar:
        members = {name: batch_pickle(*b) for name, b in batches.items()}
        members["batches.meta"] = pickle.dumps({b"label_names": [b"airplane"] * 10}, protocol=2)
        members.update(overrides)
        for name, raw in members.items():
            info = tarfile.TarInfo(f"{data.FOLDER}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return folder / data.TARBALL


def load(folder, **kw):
    return data.load_cifar10(folder, download=False, train_size=90, progress=False, **kw)


def test_tarball_counts_shapes_and_order(tmp_path):
    batches = make_batches()
    write_tarball(tmp_path, batches)
    s = load(tmp_path)
    assert (len(s.train), len(s.valid), len(s.test)) == (90, 10, 30)
    for split in (s.train, s.valid, s.test):
        assert split.X.dtype == np.uint8 and split.X.shape[1:] == (3, 32, 32)
        assert split.y.dtype == np.int64 and split.y.min() >= 0 and split.y.max() <= 9
    # Batches 1..5 in order, then the split: the last 10 training images are the validation set.
    X = np.concatenate([batches[n][0] for n in data.TRAIN_BATCHES]).reshape(-1, 3, 32, 32)
    y = np.concatenate([batches[n][1] for n in data.TRAIN_BATCHES])
    assert np.array_equal(s.train.X, X[:90]) and np.array_equal(s.valid.X, X[90:])
    assert np.array_equal(s.train.y, y[:90]) and np.array_equal(s.valid.y, y[90:])
    assert np.array_equal(s.valid.X[:, 0, 0, 0], [4] * 10)  # all from data_batch_5
    assert np.array_equal(s.test.y, batches[data.TEST_BATCH][1])


def test_default_split_is_the_originals():
    assert data.TRAIN_SIZE == 45000
    assert inspect.signature(data.load_cifar10).parameters["train_size"].default == 45000
    assert inspect.signature(data.load_cifar10).parameters["gcn_zca"].default is False


def test_channel_and_pixel_order(tmp_path):
    batches = make_batches()
    X = batches["data_batch_2"][0]
    X[3, 1024 + 2 * 32 + 5] = 201  # green, row 2, column 5
    X[3, 0 * 1024 + 70] = 202     # red, row 2, column 6
    X[3, 2 * 1024 + 32 * 31 + 31] = 203  # blue, row 31, column 31
    write_tarball(tmp_path, batches)
    image = load(tmp_path).train.X[PER_BATCH + 3]
    assert (image[1, 2, 5], image[0, 2, 6], image[2, 31, 31]) == (201, 202, 203)


def test_extracted_folder_without_optional_keys(tmp_path):
    batches = make_batches(1)
    folder = tmp_path / data.FOLDER
    folder.mkdir()
    for name, (X, labels) in batches.items():  # no filenames, no batches.meta
        (folder / name).write_bytes(batch_pickle(X, labels, filenames=False))
    from_folder = load(tmp_path)
    write_tarball(tmp_path / "tar", batches)
    from_tar = load(tmp_path / "tar")
    assert np.array_equal(from_folder.train.X, from_tar.train.X)
    assert np.array_equal(from_folder.test.y, from_tar.test.y)


def test_data_dir_from_environment(tmp_path, monkeypatch):
    write_tarball(tmp_path, make_batches())
    monkeypatch.setenv("CIFAR10_DATA_DIR", str(tmp_path))
    assert len(data.load_cifar10(download=False, train_size=90).train) == 90


def bad_file_error(folder, fragment):
    with pytest.raises(DataError) as e:
        load(folder)
    message = str(e.value)
    first, *details = message.split("\n")    # the file and the problem first; details indented below
    assert fragment in first and all(line.startswith("  ") for line in details), message
    return message


def test_truncated_tarball(tmp_path):
    path = write_tarball(tmp_path, make_batches())
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    assert "truncated" in bad_file_error(tmp_path, str(path))


def test_html_instead_of_tarball(tmp_path):
    (tmp_path / data.TARBALL).write_text("<html><head><title>Moved</title></head></html>")
    assert "HTML" in bad_file_error(tmp_path, data.TARBALL)


def test_missing_member(tmp_path):
    batches = make_batches()
    del batches["data_batch_4"]
    write_tarball(tmp_path, batches)
    bad_file_error(tmp_path, "data_batch_4")


def test_wrong_shape(tmp_path):
    batches = make_batches()
    X, labels = batches["data_batch_3"]
    write_tarball(tmp_path, batches, data_batch_3=batch_pickle(X[:, :1024], labels))
    assert "(20, 1024)" in bad_file_error(tmp_path, "data_batch_3")


@pytest.mark.parametrize("label", [-1, 10])
def test_label_out_of_range(tmp_path, label):
    batches = make_batches()
    X, labels = batches["test_batch"]
    labels[4] = label
    write_tarball(tmp_path, batches)
    assert "0..9" in bad_file_error(tmp_path, "test_batch")


def test_labels_missing_or_miscounted(tmp_path):
    batches = make_batches()
    X, labels = batches["data_batch_1"]
    write_tarball(tmp_path, batches, data_batch_1=batch_pickle(X, labels[:-1]))
    bad_file_error(tmp_path, "data_batch_1")
    d = pickle.dumps({b"data": X}, protocol=2)
    write_tarball(tmp_path, batches, data_batch_1=d)
    assert "labels" in bad_file_error(tmp_path, "data_batch_1")


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_unpickler_refuses_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    batches = make_batches()
    X, labels = batches["data_batch_2"]
    write_tarball(tmp_path, batches, data_batch_2=batch_pickle(X, labels, extra={b"x": Exploit()}))
    assert "refusing" in bad_file_error(tmp_path, "data_batch_2")
    assert not (tmp_path / "pwned").exists()
    write_tarball(tmp_path, batches, data_batch_2=b"\x80\x02garbage")
    bad_file_error(tmp_path, "data_batch_2")


def test_missing_without_download(tmp_path):
    assert "cs.toronto.edu" in bad_file_error(tmp_path, data.TARBALL)


# --- GCN + ZCA ---

def test_gcn_centres_and_scales_each_image():
    X = np.random.default_rng(0).integers(0, 256, size=(7, 3, 32, 32), dtype=np.uint8)
    X[6] = 9  # a constant image: zero norm after centring, left at zero rather than divided by 0
    G = preprocess.global_contrast_normalize(X)
    assert G.dtype == np.float32 and G.shape == (7, 3072)
    assert np.allclose(G.mean(axis=1), 0, atol=1e-4)
    assert np.allclose(np.linalg.norm(G[:6], axis=1), 55.0, rtol=1e-5)
    assert np.all(G[6] == 0)


def test_zca_whitened_training_data_has_identity_covariance():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(4000, 6)) @ rng.normal(size=(6, 6)) * 3 + 5  # correlated, off-centre
    zca = preprocess.fit_zca(X, filter_bias=1e-8)
    W = zca.apply(X).astype(np.float64)
    assert np.allclose(W.mean(axis=0), 0, atol=1e-4)
    assert np.allclose(W.T @ W / len(W), np.eye(6), atol=1e-3)
    assert np.allclose(zca.matrix, zca.matrix.T)  # ZCA, not any whitening: P is symmetric
    # With pylearn2's bias 0.1 the whitened covariance has eigenvalues lam / (lam + 0.1).
    lam = np.linalg.eigvalsh(np.cov(X.T, bias=True))
    W = preprocess.fit_zca(X).apply(X).astype(np.float64)
    assert np.allclose(np.linalg.eigvalsh(W.T @ W / len(W)), lam / (lam + 0.1), atol=1e-4)


def test_load_with_gcn_zca_fits_on_the_training_split_only(tmp_path, monkeypatch):
    # A real 3072x3072 eigendecomposition takes ~10 s here, so the fit is replaced by a cheap
    # stand-in that records what it was fitted on; the math is tested above.
    fitted = []

    def fake_fit(X, filter_bias=preprocess.ZCA_FILTER_BIAS):
        fitted.append(X.copy())
        return preprocess.ZCA(X.mean(axis=0, dtype=np.float64), np.eye(X.shape[1]) * 2)

    monkeypatch.setattr(preprocess, "fit_zca", fake_fit)
    write_tarball(tmp_path, make_batches())
    raw = load(tmp_path)
    white = load(tmp_path, gcn_zca=True)
    assert len(fitted) == 1
    assert np.array_equal(fitted[0], preprocess.global_contrast_normalize(raw.train.X))
    mean = fitted[0].mean(axis=0)
    for r, w in zip((raw.train, raw.valid, raw.test), (white.train, white.valid, white.test)):
        assert w.X.dtype == np.float32 and w.X.shape == r.X.shape
        expected = (preprocess.global_contrast_normalize(r.X) - mean) * 2
        assert np.allclose(w.X.reshape(len(w.X), -1), expected, atol=1e-4)
        assert np.array_equal(w.y, r.y)
    assert np.allclose(white.train.X.mean(axis=0), 0, atol=1e-4)


# --- unreadable files and too few images (issue 10) ----------------------------------------------------

@pytest.mark.skipif(SKIP_REASON is not None, reason=str(SKIP_REASON))
def test_unreadable_files_say_cannot_read(tmp_path):
    tarball = write_tarball(tmp_path / "tar", make_batches())
    tarball.chmod(0o000)
    call = "from cifar10.data import load_cifar10\nload_cifar10({!r}, download=False, train_size=90)"
    assert data_error(call.format(str(tmp_path / "tar"))) == f"{tarball}: cannot read (Permission denied)"
    folder = tmp_path / "folder" / data.FOLDER
    folder.mkdir(parents=True)
    for name, (X, labels) in make_batches().items():
        (folder / name).write_bytes(batch_pickle(X, labels))
    (folder / "data_batch_3").chmod(0o000)
    unreadable = folder / "data_batch_3"
    assert data_error(call.format(str(tmp_path / "folder"))) == f"{unreadable}: cannot read (Permission denied)"
    folder.chmod(0o000)
    try:
        assert data_error(call.format(str(tmp_path / "folder"))) == f"{folder}: cannot read (Permission denied)"
    finally:
        folder.chmod(0o755)


def test_fewer_training_images_than_the_split_takes_is_refused(tmp_path):
    write_tarball(tmp_path, make_batches())      # 100 training images
    with pytest.raises(DataError) as e:
        data.load_cifar10(tmp_path, download=False, train_size=100, progress=False)
    assert str(e.value) == (f"{tmp_path / data.TARBALL}: 100 training images; the original split takes the first 100 "
                            "for training and the rest (5,000 in the official files) for validation")
