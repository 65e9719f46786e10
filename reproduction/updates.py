"""Update rules as pure functions returning an ordered dict {shared variable: new value}, PyTensor's
(and Lasagne's) idiom; plus the learning-rate scale, the clip and the decay (PAPER.md §1.2).

The original trains with two independent Adam instances, each with its own step counter: one over
the binary weights W, fed the gradients with respect to their binarized values Wb, then scaled and
clipped; one over every other trainable parameter, with the unscaled learning rate.
"""
from collections import OrderedDict

import numpy as np
import pytensor
import pytensor.tensor as pt

from .shift import ap2


def _grads(loss_or_grads, params):
    if isinstance(loss_or_grads, (list, tuple)):
        return list(loss_or_grads)
    return pytensor.grad(loss_or_grads, params)


def _zeros_like(param, name):
    value = param.get_value(borrow=True)
    return pytensor.shared(np.zeros(value.shape, dtype=value.dtype), name=name)


def adam(loss_or_grads, params, learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-8, name="adam"):
    """Adam as Lasagne computed it in January 2016 (Kingma & Ba, Algorithm 1, in the form of their
    Section 2's last paragraph)::

        t  <- t + 1
        a_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
        m  <- beta1 * m + (1 - beta1) * g
        v  <- beta2 * v + (1 - beta2) * g^2
        param <- param - a_t * m / (sqrt(v) + epsilon)        (epsilon on the uncorrected sqrt(v))
    """
    grads = _grads(loss_or_grads, params)
    t_prev = pytensor.shared(np.float32(0), name=f"{name}.t")
    t = t_prev + 1
    one = np.float32(1)
    a_t = learning_rate * pt.sqrt(one - np.float32(beta2) ** t) / (one - np.float32(beta1) ** t)
    updates = OrderedDict()
    for param, g in zip(params, grads):
        m_prev = _zeros_like(param, f"{name}.m.{param.name}")
        v_prev = _zeros_like(param, f"{name}.v.{param.name}")
        m = np.float32(beta1) * m_prev + np.float32(1 - beta1) * g
        v = np.float32(beta2) * v_prev + np.float32(1 - beta2) * pt.sqr(g)
        updates[m_prev] = m
        updates[v_prev] = v
        updates[param] = (param - a_t * m / (pt.sqrt(v) + np.float32(epsilon))).astype(param.dtype)
    updates[t_prev] = t
    return updates


def shift_adamax(loss_or_grads, params, learning_rate, beta1=0.9, beta2=0.999, epsilon=2.0**-27,
                 name="shift_adamax"):
    """Shift-based AdaMax, the paper's Algorithm 3 (the Torch7 code's ``adaMax_binary_clip_shift``)::

        m <- beta1 * m + (1 - beta1) * g
        v <- max(beta2 * v, |g|)
        param <- param - AP2(lr / (1 - beta1^t)) * m * AP2(1 / (v + epsilon))

    Every multiplication by an AP2 value is a shift. Not used by the Theano experiments.
    """
    grads = _grads(loss_or_grads, params)
    t_prev = pytensor.shared(np.float32(0), name=f"{name}.t")
    t = t_prev + 1
    step_size = ap2(learning_rate / (np.float32(1) - np.float32(beta1) ** t))
    updates = OrderedDict()
    for param, g in zip(params, grads):
        m_prev = _zeros_like(param, f"{name}.m.{param.name}")
        v_prev = _zeros_like(param, f"{name}.v.{param.name}")
        m = np.float32(beta1) * m_prev + np.float32(1 - beta1) * g
        v = pt.maximum(np.float32(beta2) * v_prev, pt.abs(g))
        updates[m_prev] = m
        updates[v_prev] = v
        updates[param] = (param - step_size * m * ap2(1.0 / (v + np.float32(epsilon)))).astype(param.dtype)
    updates[t_prev] = t
    return updates


def glorot_lr_scale(fan_in, fan_out) -> np.float32:
    """The per-layer learning-rate scale gamma_k of Algorithm 1: ``1 / sqrt(1.5 / (fan_in + fan_out))``
    (Glorot & Bengio's uniform bound, inverted), as float32. Convolutions pass fans times 9."""
    return np.float32(1.0 / np.sqrt(1.5 / (fan_in + fan_out)))


def clipping_scaling(updates, scaled_params):
    """Scale each binary weight's step by its layer's rate and clip to [-H, H] (the original's
    ``clipping_scaling``)::

        W <- clip(W + scale * (W_updated - W), -H, H)

    ``scaled_params``: (W, scale, H) triples. Returns a new ordered dict.
    """
    updates = OrderedDict(updates)
    for W, scale, H in scaled_params:
        new = W + np.float32(scale) * (updates[W] - W)
        updates[W] = pt.clip(new, np.float32(-H), np.float32(H)).astype(W.dtype)
    return updates


def lr_decay(lr_start, lr_fin, num_epochs) -> float:
    """The per-epoch factor ``(LR_fin / LR_start) ** (1 / num_epochs)``: epoch e (1-based) trains with
    ``LR_start * LR_decay ** (e - 1)``."""
    return (lr_fin / lr_start) ** (1.0 / num_epochs)
