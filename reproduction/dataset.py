"""A dataset split as the training loop sees it: raw pixels and integer labels, scaled one batch
at a time.

Keeping the pixels as uint8 until a batch is drawn is what keeps SVHN's 604,388 training images at
1.9 GB instead of 7.4 GB of float32. Every loader returns this shape of data; a uint8 ``X`` means
raw pixels in [0, 255], a float ``X`` means inputs already preprocessed (e.g. CIFAR-10's optional
GCN + ZCA) and passed through as they are.
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np


class DataError(Exception):
    """A data file is missing or bad. ``str(e)`` is one line naming the file and the problem."""


def scale_pixels(x: np.ndarray) -> np.ndarray:
    """uint8 pixels in [0, 255] to float32 in [-1, 1] as cifar10.py and svhn.py did it (SOURCES.md
    §2.1, §2.3): ``np.subtract(np.multiply(2./255., X), 1.)`` on pylearn2's float32 X, i.e.
    ``float32(float32(2/255) * x) - 1`` in float32 (numpy casts the Python scalars to X's float32).
    pylearn2's X was float32 for both (``CIFAR10``: ``N.cast['float32']``; ``SVHN``: a float32
    PyTables array when floatX is float32), and had to be: Theano refuses a float64 batch for the
    float32 ``inputs`` of ``train_fn`` (theano/tensor/type.py:119-139 in 0.8.0)."""
    return np.float32(2.0 / 255.0) * x.astype(np.float32) - np.float32(1.0)


def scale_pixels_mnist(x: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [-1, 1] as the MNIST script did it (SOURCES.md §2.1, §2.3):
    pylearn2's ``read_mnist_images(dtype='float32')`` divides in place in float32 (``array /= 255.``,
    pylearn2/utils/mnist_ubyte.py), then mnist.py computes ``2*X - 1.`` in float32 (l.100-102).
    For 111 of the 256 pixel values this differs from :func:`scale_pixels`, by up to 2**-23."""
    X = x.astype(np.float32)
    X /= np.float32(255.0)
    return np.float32(2.0) * X - np.float32(1.0)


def unit_pixels(x: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1], ``x / 255`` in float32: dp's ``scale={0,1}``, which the Torch7
    code's ``Data.lua`` asks for (SOURCES.md §4(g))."""
    return x.astype(np.float32) / np.float32(255.0)


@dataclass(frozen=True)
class Standardized:
    """The Torch7 ``Data.lua``'s 'simple' normalization (SOURCES.md §4(g); DataProvider.torch's
    ``Container:normalize('simple')``): one mean and one standard deviation over every value of the
    training set, applied to all three sets as ``(x - mean) / std`` in float32, after ``base``
    (the preparation before it: :func:`unit_pixels` for MNIST). A callable for ``Split.scale``."""

    mean: float
    std: float
    base: Callable[[np.ndarray], np.ndarray] = unit_pixels

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (self.base(x) - np.float32(self.mean)) / np.float32(self.std)


def whole_set_moments(X: np.ndarray, base: Callable = unit_pixels, rows: int = 5000) -> tuple[float, float, float]:
    """(mean, unbiased std, max) over every value of ``base(X)``, accumulated in float64 a block of
    ``rows`` examples at a time: Torch's ``tensor:mean()``, ``tensor:std()`` (divisor N - 1, as its
    default) and ``tensor:max()``."""
    n, total, squares, top = 0, 0.0, 0.0, -np.inf
    for a in range(0, len(X), rows):
        v = np.asarray(base(X[a:a + rows]), dtype=np.float64)
        n += v.size
        total += v.sum()
        top = max(top, float(v.max()))
    mean = total / n
    for a in range(0, len(X), rows):     # a second pass: the centred sum of squares, as a two-pass std
        v = np.asarray(base(X[a:a + rows]), dtype=np.float64) - mean
        squares += np.dot(v.ravel(), v.ravel())
    return mean, float(np.sqrt(squares / (n - 1))), top


def standardized(splits: "Splits", base: Callable = unit_pixels) -> "Splits":
    """``splits`` with every split's inputs standardized by the training set's mean and std
    (:class:`Standardized`), fitted on the whole training split."""
    mean, std, _ = whole_set_moments(splits.train.X, base)
    scale = Standardized(mean, std, base)
    return Splits(*(Split(split.X, split.y, scale) for split in (splits.train, splits.valid, splits.test)))


@dataclass
class Split:
    """``X``: (N, C, H, W) images, uint8 raw pixels or float32 preprocessed; ``y``: (N,) labels 0..9;
    ``scale``: how the dataset's original script turned raw pixels into the network's input."""

    X: np.ndarray
    y: np.ndarray
    scale: Callable[[np.ndarray], np.ndarray] = scale_pixels

    def __len__(self) -> int:
        return len(self.y)

    def inputs(self, index) -> np.ndarray:
        """The network's float32 input for the images ``index``: raw pixels through ``scale``
        (:func:`scale_pixels_mnist` for MNIST, :func:`scale_pixels` for CIFAR-10 and SVHN), float
        inputs as they are."""
        x = self.X[index]
        if x.dtype == np.uint8:
            return self.scale(x)
        return np.asarray(x, dtype=np.float32)

    def targets(self, index, classes: int = 10) -> np.ndarray:
        """One-hot targets in {-1, +1}, as the squared hinge loss wants them."""
        return one_hot_pm1(self.y[index], classes)

    def subset(self, n: int | None) -> "Split":
        """The first ``n`` examples (all when ``n`` is None), for short runs."""
        if n is None or n >= len(self):
            return self
        return Split(self.X[:n], self.y[:n], self.scale)


@dataclass
class Splits:
    train: Split
    valid: Split
    test: Split


def one_hot_pm1(y: np.ndarray, classes: int = 10) -> np.ndarray:
    """Labels to one-hot rows in {-1, +1}: ``2 * eye(classes)[y] - 1`` (the original's targets)."""
    return (2.0 * np.eye(classes, dtype=np.float32)[np.asarray(y, dtype=np.int64)] - 1.0).astype(np.float32)
