"""The reader of the official SVHN .mat files: images in (channel, row, column) order, streamed from
the zlib-compressed v5 files chunk by chunk (bad files are tested with the loader, test_svhn_data.py)."""
import numpy as np
import pytest
import scipy.io

from svhn import matfile
from svhn.synthetic import balanced_labels, synthetic_images


def test_channel_row_column_order(tmp_path):
    X = np.zeros((32, 32, 3, 2), dtype=np.uint8)
    X[2, 5, :, 1] = (11, 22, 33)  # row 2, column 5 of image 1: R, G, B
    for compress in (False, True):  # the official files are zlib-compressed v5
        path = tmp_path / f"c{compress}.mat"
        scipy.io.savemat(path, {"X": X, "y": np.array([[1], [2]], np.uint8)}, do_compression=compress)
        images = np.concatenate([im for _, im in matfile.iter_images(path, 2, chunk=1)])
        assert images.shape == (2, 3, 32, 32)
        assert tuple(images[1, :, 2, 5]) == (11, 22, 33)
        assert images.sum() == 66


def test_compressed_file_streams_like_scipy(tmp_path, monkeypatch):
    # Streamed chunk by chunk, not through scipy's whole-array fallback.
    monkeypatch.setattr(matfile, "_iter_loadmat", lambda *a: pytest.fail("fell back to scipy.io.loadmat"))
    y = balanced_labels(7, 3)
    X = synthetic_images(y, 1, 4)
    path = tmp_path / "train_32x32.mat"
    scipy.io.savemat(path, {"y": y.reshape(-1, 1), "X": X}, do_compression=True)
    images = np.concatenate([im for _, im in matfile.iter_images(path, 70, chunk=16)])
    assert np.array_equal(images, X.transpose(3, 2, 0, 1))


@pytest.mark.parametrize("compress", [False, True])
def test_a_truncated_file_says_truncated_not_that_y_is_missing(tmp_path, compress):
    # The official files hold X before y: a download cut short loses y, and scipy only says it found none.
    from reproduction.dataset import DataError

    y = balanced_labels(3, 1)
    path = tmp_path / "train_32x32.mat"
    scipy.io.savemat(path, {"X": synthetic_images(y, 1, 2), "y": y.reshape(-1, 1)}, do_compression=compress)
    assert matfile.truncation(path) is None and len(matfile.read_labels(path)) == 30
    full = path.read_bytes()
    for cut in (len(full) // 2, len(full) - 3, 100):
        path.write_bytes(full[:cut])
        with pytest.raises(DataError) as e:
            matfile.read_labels(path)
        assert str(e.value).startswith(f"{path}: truncated or corrupt") and "no variable" not in str(e.value)


def test_a_file_without_y_says_so(tmp_path):
    from reproduction.dataset import DataError

    path = tmp_path / "train_32x32.mat"
    scipy.io.savemat(path, {"X": np.zeros((32, 32, 3, 2), np.uint8)})
    with pytest.raises(DataError, match="no variable 'y' .not an SVHN cropped-digits file, or a corrupt one."):
        matfile.read_labels(path)
