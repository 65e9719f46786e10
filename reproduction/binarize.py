"""Binarization: the hard sigmoid, the binary units and weight binarization (SOURCES.md §1.1).

The original defined a custom Theano Op, ``round3``, whose forward pass is C ``round`` (half away
from zero) and whose gradient is the identity. We build the same function from PyTensor's own
pieces: ``round_ste(x) = x + zero_grad(round(x) - x)``. For ``x`` in [0, 1], the only place it is
used, the forward value is exactly ``round(x)`` in floating point (``round(x) - x`` is exact by
Sterbenz's lemma, and adding ``x`` back gives a representable 0 or 1), and the gradient is exactly 1.
This works unchanged in every PyTensor back end (C, Numba, JAX), which a custom Op would not.
"""
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import zero_grad


def hard_sigmoid(x):
    """``clip((x + 1) / 2, 0, 1)``. Its gradient, 1/2 on [-1, 1] with both ends included, is
    where the straight-through estimator's 1[|x| <= 1] comes from."""
    return pt.clip((x + 1.0) / 2.0, 0.0, 1.0)


def round_half_away_from_zero(x):
    """``sign(x) * (floor|x| + [frac|x| >= 1/2])``: exact for every float (``|x| - floor|x|`` is
    exact), built from elementary ops because PyTensor's own RoundHalfAwayFromZero has no JAX or
    Numba implementation (Numba falls back to Python object mode, 400x slower). The tempting
    ``floor(x + 0.5)`` is wrong at the float just below 0.5, where ``x + 0.5`` rounds up to 1."""
    a = pt.abs(x)
    whole = pt.floor(a)
    return pt.sign(x) * (whole + pt.ge(a - whole, 0.5).astype(x.dtype))


def round_ste(x):
    """Round half away from zero, with the identity as gradient (the original's ``round3``).

    PyTensor's default ``round`` is half-to-even, which would send hard_sigmoid(0) = 0.5 to 0 and
    so sign(0) to -1: we name the mode explicitly.
    """
    return x + zero_grad(round_half_away_from_zero(x) - x)


def binary_tanh_unit(x):
    """The paper's binary activation, Eq. (1) with the STE of Eq. (4)::

        forward:  2 * round(hard_sigmoid(x)) - 1  =  +1 if x >= 0 else -1   (sign(0) = +1)
        backward: g_r = g_q * 1[|x| <= 1]                                  (both ends included)

    Both come from float32 arithmetic on hard_sigmoid's argument, as in the original: x in
    (-2^-25, 0) gives +1 (``(x + 1) / 2`` rounds to 0.5), and the mask reaches one ulp past +1.
    """
    return 2.0 * round_ste(hard_sigmoid(x)) - 1.0


def binary_sigmoid_unit(x):
    """``round(hard_sigmoid(x))`` in {0, 1}, gradient 1/2 * 1[|x| <= 1]. Defined by the original,
    used by none of its experiments."""
    return round_ste(hard_sigmoid(x))


def binarize_weights(W, H=1.0, *, binary=True, deterministic=False, stochastic=False, uniform=None):
    """The binarized weights Wb used in the forward pass (the original's ``binarization``).

    - not binary, or deterministic and stochastic (a stochastic model at test time): Wb = W;
    - deterministic:  Wb = +H if round(hard_sigmoid(W/H)) else -H, i.e. +H where W >= 0 (0 -> +H);
    - stochastic:     Wb = +H with probability hard_sigmoid(W/H), else -H (Eq. 2); ``uniform(size,
      dtype)`` gives the U(0, 1) draws.

    ``H`` is a number or a float32 scalar variable (a non-dyadic H should be the latter, see
    ``updates.float32_constant``). The gradient is not taken through this function: the training
    step differentiates the loss with respect to Wb and applies that gradient to W (SOURCES.md
    §1.1, "identity STE").
    """
    if not binary or (deterministic and stochastic):
        return W
    p = hard_sigmoid(W / H)
    if stochastic:
        if uniform is None:
            raise ValueError("stochastic binarization needs a source of uniform draws (uniform)")
        bits = uniform(W.shape, W.dtype) < p
    else:
        bits = round_half_away_from_zero(p)
    if isinstance(H, (int, float, np.floating)):
        H = np.float32(H)
    return pt.switch(bits, H, -H).astype(W.dtype)


def sign_numpy(x: np.ndarray) -> np.ndarray:
    """sign with sign(0) = +1, as float32 (the run-time code's ``SignNumpy``)."""
    return np.where(np.asarray(x) >= 0, np.float32(1), np.float32(-1)).astype(np.float32)
