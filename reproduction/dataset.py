"""A dataset split as the training loop sees it: raw pixels and integer labels, scaled one batch
at a time.

Keeping the pixels as uint8 until a batch is drawn is what keeps SVHN's 604,388 training images at
1.9 GB instead of 7.4 GB of float32. Every loader returns this shape of data; a uint8 ``X`` means
raw pixels in [0, 255], a float ``X`` means inputs already preprocessed (e.g. CIFAR-10's optional
GCN + ZCA) and passed through as they are.
"""
from dataclasses import dataclass

import numpy as np


class DataError(Exception):
    """A data file is missing or bad. ``str(e)`` is one line naming the file and the problem."""


@dataclass
class Split:
    """``X``: (N, C, H, W) images, uint8 raw pixels or float32 preprocessed; ``y``: (N,) labels 0..9."""

    X: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def inputs(self, index) -> np.ndarray:
        """The network's float32 input for the images ``index``: pixels scaled to [-1, 1] as
        ``x * 2/255 - 1`` (the original: ``2 * (x/255) - 1`` for MNIST, ``x * 2/255 - 1`` for
        CIFAR-10 and SVHN; the two agree to float32 rounding)."""
        x = self.X[index]
        if x.dtype == np.uint8:
            return scale_pixels(x)
        return np.asarray(x, dtype=np.float32)

    def targets(self, index, classes: int = 10) -> np.ndarray:
        """One-hot targets in {-1, +1}, as the squared hinge loss wants them."""
        return one_hot_pm1(self.y[index], classes)

    def subset(self, n: int | None) -> "Split":
        """The first ``n`` examples (all when ``n`` is None), for short runs."""
        if n is None or n >= len(self):
            return self
        return Split(self.X[:n], self.y[:n])


@dataclass
class Splits:
    train: Split
    valid: Split
    test: Split


def scale_pixels(x: np.ndarray) -> np.ndarray:
    """uint8 pixels in [0, 255] to float32 in [-1, 1]: ``x * 2/255 - 1``."""
    return x.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)


def one_hot_pm1(y: np.ndarray, classes: int = 10) -> np.ndarray:
    """Labels to one-hot rows in {-1, +1}: ``2 * eye(classes)[y] - 1`` (the original's targets)."""
    return (2.0 * np.eye(classes, dtype=np.float32)[np.asarray(y, dtype=np.int64)] - 1.0).astype(np.float32)
