"""AP2, the power-of-two approximation behind the paper's shift-based batch norm (Algorithm 2) and
shift-based AdaMax (Algorithm 3): multiplying by AP2(z) is a bit shift in fixed point.

    AP2(z) = sign(z) * 2 ** round(log2 |z|),   AP2(0) = 0
"""
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import zero_grad

from .binarize import round_half_away_from_zero


def ap2(z):
    """Symbolic AP2 (no gradient of its own: the rounding is piecewise constant)."""
    safe = pt.switch(pt.eq(z, 0), 1.0, pt.abs(z))
    return pt.switch(pt.eq(z, 0), 0.0, pt.sign(z) * pt.exp2(round_half_away_from_zero(pt.log2(safe)))).astype(z.dtype)


def ap2_ste(z):
    """AP2 in the forward pass, the identity in the backward pass (as the paper treats its other
    roundings, the straight-through estimator)."""
    return z + zero_grad(ap2(z) - z)


def ap2_numpy(z):
    z = np.asarray(z, dtype=np.float64)
    # np.round is half-to-even; AP2 rounds the exponent half away from zero, like ap2() above
    e = np.log2(np.where(z == 0, 1.0, np.abs(z)))
    out = np.sign(z) * np.exp2(np.sign(e) * np.floor(np.abs(e) + 0.5))
    return np.where(z == 0, 0.0, out)
