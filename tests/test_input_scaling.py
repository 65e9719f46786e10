"""Pixels to network inputs as each original script computed them, in float32 (SOURCES.md §2.1,
§2.3; reproduction/dataset.py has the sources)."""
import numpy as np
import pytest

from reproduction.dataset import Split, scale_pixels, scale_pixels_mnist
from tests.conftest import HAVE_MNIST, MNIST_DIR

PIXELS = np.arange(256, dtype=np.uint8)


def test_mnist_scaling_is_pylearn2s_float32_division_then_the_scripts_2x_minus_1():
    X = PIXELS.astype("float32")     # pylearn2 read_mnist_images(dtype='float32'): astype, then in place
    X /= 255.
    expected = 2 * X - 1.            # mnist.py: 2* train_set.X.reshape(-1, 1, 28, 28) - 1.
    assert expected.dtype == np.float32
    assert np.array_equal(scale_pixels_mnist(PIXELS), expected)
    assert scale_pixels_mnist(PIXELS).dtype == np.float32


def test_cifar10_and_svhn_scaling_is_their_scripts_expression_on_float32_pixels():
    X = PIXELS.astype("float32")     # pylearn2's X: N.cast['float32'] (CIFAR10), a float32 array (SVHN)
    expected = np.subtract(np.multiply(2. / 255., X), 1.)
    assert expected.dtype == np.float32
    assert np.array_equal(scale_pixels(PIXELS), expected)


def test_the_two_scalings_differ_in_111_pixel_values_by_at_most_2_to_the_minus_23():
    a, b = scale_pixels_mnist(PIXELS), scale_pixels(PIXELS)
    differ = a != b
    assert differ.sum() == 111
    assert np.max(np.abs(a.astype(np.float64) - b)) == 2.0 ** -23   # a float32 step of the values near 1
    assert a[0] == b[0] == -1 and a[255] == b[255] == 1


def test_a_split_scales_its_pixels_with_its_datasets_rule_and_keeps_it_in_subsets():
    X = np.tile(PIXELS.reshape(1, 1, 16, 16), (3, 1, 1, 1))
    split = Split(X, np.zeros(3, dtype=np.int64), scale_pixels_mnist)
    assert np.array_equal(split.subset(2).inputs([0, 1]), scale_pixels_mnist(X[:2]))
    assert np.array_equal(Split(X, np.zeros(3, dtype=np.int64)).inputs([0]), scale_pixels(X[:1]))
    assert np.array_equal(split.inputs([0]), scale_pixels_mnist(X[:1]))


@pytest.mark.skipif(not HAVE_MNIST, reason=f"the MNIST files are not in {MNIST_DIR}")
def test_the_mnist_loader_scales_as_the_mnist_script():
    from mnist.data import load_mnist

    splits = load_mnist(MNIST_DIR, download=False)
    for split in (splits.train, splits.valid, splits.test):
        assert split.scale is scale_pixels_mnist
    x = splits.train.inputs(slice(0, 100))
    assert np.array_equal(x, scale_pixels_mnist(splits.train.X[:100]))
