"""Global contrast normalisation + ZCA whitening of CIFAR-10: an option, off by default.

The BinaryNet code that produced 11.40% used **raw pixels** scaled to [-1, 1] (SOURCES.md §2.3, §7
item 10). The author recalled "some normalization and ZCA whitening" (issue #23), and BinaryConnect
did use pylearn2's ``pylearn2_gcn_whitened`` CIFAR-10; this module offers that recipe so that the
question "does whitening close the gap?" can be tested. It follows pylearn2's
``make_cifar10_gcn_whitened.py``:

GCN (``CIFAR10(gcn=55.)``, i.e. ``global_contrast_normalize(X, scale=55.)`` with its defaults
``subtract_mean=True, use_std=False, sqrt_bias=0, min_divisor=1e-8``), per image ``x`` of D=3072
values in [0, 255]::

    x <- 55 * (x - mean(x)) / ||x - mean(x)||_2        (divisor 1 where ||.|| / 55 < 1e-8)

ZCA (``preprocessing.ZCA()``, ``filter_bias=0.1``), fitted on the training images X (N, D)::

    mu = mean of the rows of X
    C  = (X - mu)^T (X - mu) / N + 0.1 * I             (= E diag(lam) E^T)
    P  = E diag(lam^(-1/2)) E^T
    x <- (x - mu) P

Whitened training data then has covariance ``E diag(lam0 / (lam0 + 0.1)) E^T`` (lam0 the
eigenvalues without the bias): close to the identity along directions of variance >> 0.1. After
GCN with scale 55 the mean per-pixel variance is about 55^2 / 3072 ~ 1, so the bias damps only the
weakest directions. One difference from pylearn2: we fit on our 45,000 training images, where
pylearn2 fitted on all 50,000 (validation included).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from reproduction.dataset import Split, Splits, unit_pixels

GCN_SCALE = 55.0
ZCA_FILTER_BIAS = 0.1
_ROWS = 4096  # rows per block, so float64 temporaries stay small


def global_contrast_normalize(X: np.ndarray, scale: float = GCN_SCALE, min_divisor: float = 1e-8) -> np.ndarray:
    """Each row of ``X`` (N, D) centred and scaled to L2 norm ``scale``; float32 (N, D)."""
    X = _rows(X)
    out = np.empty(X.shape, dtype=np.float32)
    for a in range(0, len(X), _ROWS):
        x = X[a:a + _ROWS].astype(np.float64)
        x -= x.mean(axis=1, keepdims=True)
        norm = np.sqrt((x ** 2).sum(axis=1, keepdims=True)) / scale
        norm[norm < min_divisor] = 1.0
        out[a:a + _ROWS] = x / norm
    return out


def _rows(X: np.ndarray) -> np.ndarray:
    """``X`` as a design matrix (N, D); ``reshape(len(X), -1)`` fails for N = 0."""
    X = np.asarray(X)
    return X.reshape(X.shape[0], int(np.prod(X.shape[1:])))


@dataclass
class ZCA:
    """A fitted whitening: ``x -> (x - mean) @ matrix``."""

    mean: np.ndarray    # (D,) float64
    matrix: np.ndarray  # (D, D) float64, symmetric

    def apply(self, X: np.ndarray) -> np.ndarray:
        """Whiten the rows of ``X`` (N, D); float32 (N, D)."""
        X = _rows(X)
        out = np.empty(X.shape, dtype=np.float32)
        for a in range(0, len(X), _ROWS):
            out[a:a + _ROWS] = (X[a:a + _ROWS] - self.mean) @ self.matrix
        return out


def fit_zca(X: np.ndarray, filter_bias: float = ZCA_FILTER_BIAS, ddof: int = 0,
            base: Callable | None = None) -> ZCA:
    """The ZCA whitening of the rows of ``X`` (N, D), as in the module docstring; ``ddof=1`` divides
    the covariance by N - 1 (Torch's ``unsup.pcacov``); ``base`` transforms each block of rows first."""
    X = _rows(X)
    base = base or (lambda x: x)
    mean = np.zeros(X.shape[1])
    for a in range(0, len(X), _ROWS):
        mean += np.asarray(base(X[a:a + _ROWS]), dtype=np.float64).sum(axis=0)
    mean /= len(X)
    cov = np.zeros((X.shape[1], X.shape[1]))
    for a in range(0, len(X), _ROWS):
        x = np.asarray(base(X[a:a + _ROWS]), dtype=np.float64) - mean
        cov += x.T @ x
    cov = cov / (len(X) - ddof) + filter_bias * np.eye(X.shape[1])
    lam, E = np.linalg.eigh(cov)
    return ZCA(mean, (E / np.sqrt(lam)) @ E.T)


def gcn_zca(train: np.ndarray, *others: np.ndarray, scale: float = GCN_SCALE,
            filter_bias: float = ZCA_FILTER_BIAS) -> list[np.ndarray]:
    """GCN every set, fit ZCA on ``train`` only, whiten every set. Images (N, C, H, W) in, float32
    (N, C, H, W) out, in the order given."""
    train_gcn = global_contrast_normalize(train, scale)
    zca = fit_zca(train_gcn, filter_bias)
    out = [zca.apply(train_gcn).reshape(train.shape)]
    del train_gcn
    for X in others:
        out.append(zca.apply(global_contrast_normalize(X, scale)).reshape(X.shape))
    return out


#: ``unsup.zca_whiten``'s epsilon, added to the covariance's eigenvalues (SOURCES.md §4(g)).
TORCH7_ZCA_EPSILON = 1e-5


@dataclass(frozen=True)
class Whitened:
    """uint8 images -> [0, 1] (dp's ``scale={0,1}``) -> ZCA-whitened float32 (N, C, H, W): a
    callable for ``Split.scale``, applied one batch at a time."""

    zca: ZCA

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.zca.apply(unit_pixels(x)).reshape(x.shape)


def torch7_zca(splits: Splits) -> Splits:
    """The Torch7 CIFAR-10 preparation (``Data.lua`` with ``-whiten true``, SOURCES.md §4(g)): pixels
    in [0, 1], no GCN, ZCA fitted on the training split by ``unsup.zca_whiten``: the covariance over
    N - 1, its eigenvalues plus 1e-5, ``P = V diag((lam + 1e-5)^-1/2) V^T``, ``x <- (x - mean) P``,
    applied to all three splits. Torch fitted in float32, we in float64. The programs pass the
    training images the run trains on (``--train-size``)."""
    zca = fit_zca(splits.train.X, TORCH7_ZCA_EPSILON, ddof=1, base=unit_pixels)
    scale = Whitened(zca)
    return Splits(*(Split(s.X, s.y, scale) for s in (splits.train, splits.valid, splits.test)))
