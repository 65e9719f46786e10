"""The Torch7 code's SVHN preparation (``Data.lua``, SOURCES.md §4(g)), one batch at a time.

``dp.Svhn{scale={0,1}, input_preprocess={dp.GCN{use_std=true, sqrt_bias=10},
dp.LeCunLCN{kernel_size=9, divide_by_std=true}}}``, then each set divided by its own maximum, then
(``Data.lua`` tests a global ``dp_prepro`` that is never set) the 'simple' normalization by the
training set's mean and standard deviation. Per image (N, C, H, W), in the order dp applies them:

- pixels to [0, 1]: ``x / 255`` (dp rescales each set by its min and max, 0 and 255 for SVHN);
- GCN (dp's ``GCN:transform`` with ``substract_mean`` true): over the image's 3072 values,
  ``x <- (x - mean(x)) / sqrt(mean((x - mean(x))^2) + 10)``, a divisor under 1e-8 taken as 1;
- LeCun LCN (dp's ``LeCunLCN:normalize`` with ``divide_by_std``), per channel: a 9x9 Gaussian of
  standard deviation 2 normalised to sum 1, ``c = x - G * x`` (a full convolution cropped to the
  image: zero padding), then ``c / (std(c) + 1e-4)`` with the channel's unbiased std;
- ``/ max`` over the whole set, each set its own (a statistic of the test set, as the code has it);
- ``(x - mean) / std``, the training set's, over every value (``reproduction.dataset.Standardized``).

The per-image steps are applied to each batch as it is drawn, so the 604,388 images stay uint8; the
three statistics take one pass over each set. Which SVHN files dp merges into its training set was
not checked (SOURCES.md §4(g)): we keep our splits.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import correlate1d

from reproduction.dataset import Split, Splits, Standardized, unit_pixels, whole_set_moments

GCN_SQRT_BIAS = 10.0
GCN_MIN_DIVISOR = 1e-8
LCN_KERNEL_SIZE = 9
LCN_KERNEL_STD = 2.0
LCN_THRESHOLD = 1e-4


def global_contrast_normalize(x: np.ndarray, sqrt_bias: float = GCN_SQRT_BIAS) -> np.ndarray:
    """dp's GCN with ``use_std=true``: each image centred and divided by sqrt(mean square + sqrt_bias)."""
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    centred = flat - flat.mean(axis=1, keepdims=True)
    divisor = np.sqrt((centred ** 2).mean(axis=1, keepdims=True) + sqrt_bias)
    divisor[divisor < GCN_MIN_DIVISOR] = 1.0
    return (centred / divisor).reshape(x.shape)


def gaussian_kernel_1d(size: int = LCN_KERNEL_SIZE, std: float = LCN_KERNEL_STD) -> np.ndarray:
    """The factor of dp's normalised 2-D Gaussian: ``G = outer(g, g)`` with g summing to 1."""
    offsets = np.arange(size) - (size - 1) / 2
    g = np.exp(-offsets ** 2 / (2 * std ** 2))
    return g / g.sum()


def lecun_lcn(x: np.ndarray, size: int = LCN_KERNEL_SIZE, std: float = LCN_KERNEL_STD,
              threshold: float = LCN_THRESHOLD) -> np.ndarray:
    """dp's LeCunLCN with ``divide_by_std``, per image and channel of (N, C, H, W) images: subtract the
    Gaussian-weighted local mean (zero padding), divide by the channel's std plus ``threshold``."""
    x = np.asarray(x, dtype=np.float64)
    g = gaussian_kernel_1d(size, std)
    local = correlate1d(correlate1d(x, g, axis=-1, mode="constant"), g, axis=-2, mode="constant")
    centred = x - local
    n = x.shape[-1] * x.shape[-2]
    spread = centred.reshape(*x.shape[:2], n).std(axis=-1, ddof=1) + threshold
    return centred / spread[..., None, None]


def gcn_lcn(x: np.ndarray) -> np.ndarray:
    """uint8 images -> [0, 1] -> GCN -> LCN, float64 (N, C, H, W)."""
    return lecun_lcn(global_contrast_normalize(unit_pixels(x)))


@dataclass(frozen=True)
class DividedBy:
    """``gcn_lcn(x) / maximum``, float32: the per-image steps and the set's own maximum."""

    maximum: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (gcn_lcn(x) / self.maximum).astype(np.float32)


def torch7_gcn_lcn(splits: Splits) -> Splits:
    """The splits with the module docstring's preparation as their ``scale``: each set's maximum of
    GCN + LCN, and the training set's mean and std of the result divided by its maximum."""
    mean, std, top = whole_set_moments(splits.train.X, gcn_lcn)
    train = Standardized(mean / top, std / top, DividedBy(top))
    out = [Split(splits.train.X, splits.train.y, train)]
    for split in (splits.valid, splits.test):
        out.append(Split(split.X, split.y, Standardized(train.mean, train.std, DividedBy(set_maximum(split.X)))))
    return Splits(*out)


def set_maximum(X: np.ndarray, rows: int = 5000) -> float:
    """The maximum of ``gcn_lcn`` over a whole set, a block of ``rows`` images at a time."""
    return max(float(gcn_lcn(X[a:a + rows]).max()) for a in range(0, len(X), rows))
