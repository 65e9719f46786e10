"""Update rules as pure functions returning an ordered dict {shared variable: new value}, PyTensor's
(and Lasagne's) idiom; plus the learning-rate scale, the clip and the decay (SOURCES.md §1.2).

The original trains with two independent Adam instances, each with its own step counter: one over
the binary weights W, fed the gradients with respect to their binarized values Wb, then scaled and
clipped; one over every other trainable parameter, with the unscaled learning rate.

**The float32 arithmetic of the original.** The original ran with ``floatX=float32`` and Theano's
default ``cast_policy='custom'`` (Theano 0.8.0, the release nearest the README's ``dac4da86``:
theano/configdefaults.py:54-65). Under that policy a Python float written into a graph becomes a
float32 constant, ``float32(x)`` rounded once from the Python double, and a Python int the
narrowest of int8..int64 that holds it (``NumpyAutocaster``, theano/tensor/basic.py:219-304, the
float rule at l.285-289; the same code since 2011). An int8 constant with a float32 operand gives a
float32 operation (theano/scalar/basic.py:58-86). Arithmetic done in *Python* before the graph sees
it stays double until that single rounding. So, from the source as written:

- Adam, Lasagne 6a559dd (2016-01-28) ``updates.adam``, whose body is that of Lasagne 0.1
  (lasagne/updates.py:564-587 of the 0.1 release)::

      t = t_prev + 1                                   float32 + int8 1
      a_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)   in the graph, float32 (beta**t is symbolic)
      m_t = beta1*m_prev + (1-beta1)*g_t               1-beta1 in Python: float32(0.09999999999999998)
      v_t = beta2*v_prev + (1-beta2)*g_t**2            1-beta2 in Python: float32(0.0010000000000000009)
      step = a_t*m_t / (sqrt(v_t) + epsilon)
      param <- param - step

  with the constants float32(0.9) = 0.899999976, float32(0.999) = 0.999000013,
  (1-beta1) = 0.100000001 (0x3dcccccd), (1-beta2) = 0.00100000005 (0x3a83126f), epsilon =
  float32(1e-8) = 9.99999994e-09 (:func:`adam_constants`). The form ``one = T.constant(1)``,
  ``one - beta1`` computed in float32 (= 0.100000024 and 0.000999987), came later, with Lasagne
  pull request #661 (April 2016, "Fix lasagne updates", closing issue #402); it is not what the
  original ran.
- Scale and clip, binary_net.py ``clipping_scaling`` (l.182-196): ``W + W_LR_scale*(W_adam - W)``
  then ``clip(., -H, H)``, W_LR_scale a numpy float32 (:func:`glorot_lr_scale`), H = 1. Theano's
  add canonicalizer (theano/tensor/opt.py:5647-5653, registered for FAST_RUN) cancels W in
  ``(W - step) - W``, so what the original computed is ``W - W_LR_scale*step``; PyTensor's does the
  same (tests/test_updates.py pins it).
- Learning rate: ``LR_decay = (LR_fin/LR_start)**(1./num_epochs)`` in Python doubles (mnist.py l.81),
  ``LR *= LR_decay`` after each epoch, also in doubles (binary_net.py ``train``), and the double
  rounded to float32 where ``train_fn`` takes it (theano/tensor/type.py:140-145): :func:`lr_decay`,
  :func:`learning_rates`.

**Where a back end would not use those float32 constants.** Theano's loop fusion passed every
constant of a fused loop as a float32 input (theano/tensor/opt.py:6480-6499). PyTensor's C back
end instead inlines scalar constants into the fused C code as ``str(value)``
(``local_inline_composite_constants``, pytensor/tensor/rewriting/elemwise.py:1209-1247, and
pytensor/scalar/basic.py:425-436): ``float32(0.1)`` becomes the C literal ``0.1``, a double, and
``(0.1) * g`` is computed in double with a different constant. :func:`float32_constant` therefore
puts every constant that is not exact in decimal into the graph as a float32 shared scalar, which
all back ends read as the float32 value.

**Reductions.** The original ran on a GPU, where Theano moves float32 sums to ``GpuCAReduce``
(theano/sandbox/cuda/opt.py:832-843), which accumulates in float32 (on a CPU, Theano and PyTensor
accumulate float32 sums in float64, theano/tensor/elemwise.py:1855-1867). :func:`float32_sums`
makes every float32 sum of a gradient graph accumulate in float32 too, which is also what JAX
without x64 does (PyTensor's default float64 accumulator makes JAX warn and truncate).
"""
from collections import OrderedDict

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.graph.rewriting.basic import in2out, node_rewriter
from pytensor.graph.rewriting.utils import rewrite_graph
from pytensor.tensor.math import Sum

from .shift import ap2


def float32_constant(value, name=None):
    """``float32(value)`` as a graph constant every back end uses as that float32 value.

    Values exact in decimal and in float32 alike (small dyadic numbers: 0, 0.5, 1, 2, ...) may be
    written as plain numbers; others go through here, because PyTensor's C back end would inline a
    constant as its shortest decimal string, i.e. as a different (double) number (module docstring).
    A 0-d shared variable that no update touches is such a constant.
    """
    return pytensor.shared(np.float32(value), name=name)


def adam_constants(beta1=0.9, beta2=0.999, epsilon=1e-8) -> dict:
    """The float32 constants of Lasagne-2016 Adam, typed as Theano typed them (module docstring):
    ``beta1``, ``beta2``, ``epsilon`` and the Python-computed ``1 - beta1``, ``1 - beta2``, each
    rounded once to float32."""
    return {"beta1": np.float32(beta1), "beta2": np.float32(beta2), "epsilon": np.float32(epsilon),
            "one_minus_beta1": np.float32(1 - beta1), "one_minus_beta2": np.float32(1 - beta2)}


@node_rewriter([Sum])
def _accumulate_in_float32(fgraph, node):
    op = node.op
    if node.inputs[0].dtype == "float32" and node.outputs[0].dtype == "float32" and op.acc_dtype != "float32":
        return [pt.sum(node.inputs[0], axis=op.axis, dtype="float32", acc_dtype="float32")]
    return None


def float32_sums(variables):
    """``variables`` with every float32 sum in their graphs accumulating in float32, as the
    original's GPU reductions did (module docstring). Gradients built by ``pytensor.grad`` contain
    such sums wherever a forward operation broadcast (bias additions, batch norm)."""
    return rewrite_graph(list(variables), include=(), custom_rewrite=in2out(_accumulate_in_float32),
                         clone=False)


def _grads(loss_or_grads, params):
    if isinstance(loss_or_grads, (list, tuple)):
        grads = list(loss_or_grads)
    else:
        grads = pytensor.grad(loss_or_grads, params)
    return float32_sums(grads)


def _zeros_like(param, name):
    value = param.get_value(borrow=True)
    return pytensor.shared(np.zeros(value.shape, dtype=value.dtype), name=name, shape=value.shape)


def adam(loss_or_grads, params, learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-8, name="adam"):
    """Adam as Lasagne computed it in January 2016 (Kingma & Ba, Algorithm 1, in the form of their
    Section 2's last paragraph; SOURCES.md §1.2)::

        t  <- t + 1
        a_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
        m  <- beta1 * m + (1 - beta1) * g
        v  <- beta2 * v + (1 - beta2) * g^2
        param <- param - a_t * m / (sqrt(v) + epsilon)        (epsilon on the uncorrected sqrt(v))

    in float32, with the constants of :func:`adam_constants` (module docstring).
    """
    grads = _grads(loss_or_grads, params)
    c = adam_constants(beta1, beta2, epsilon)
    b1, b2 = float32_constant(c["beta1"], f"{name}.beta1"), float32_constant(c["beta2"], f"{name}.beta2")
    c1 = float32_constant(c["one_minus_beta1"], f"{name}.1-beta1")
    c2 = float32_constant(c["one_minus_beta2"], f"{name}.1-beta2")
    eps = float32_constant(c["epsilon"], f"{name}.epsilon")
    t_prev = pytensor.shared(np.float32(0), name=f"{name}.t")
    t = t_prev + 1
    a_t = learning_rate * pt.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    updates = OrderedDict()
    for param, g in zip(params, grads):
        m_prev = _zeros_like(param, f"{name}.m.{param.name}")
        v_prev = _zeros_like(param, f"{name}.v.{param.name}")
        m = b1 * m_prev + c1 * g
        v = b2 * v_prev + c2 * pt.sqr(g)
        updates[m_prev] = m
        updates[v_prev] = v
        updates[param] = (param - a_t * m / (pt.sqrt(v) + eps)).astype(param.dtype)
    updates[t_prev] = t
    return updates


def _adamax_constants(learning_rate, beta1, beta2, name):
    """What both shift-based AdaMax forms share: float32 beta1, beta2 and 1 - beta1 (rounded once
    from the double), the step counter t (its previous value, a shared float32) and the step size
    AP2(lr / (1 - beta1^t)) of this step."""
    b1, b2 = float32_constant(beta1, f"{name}.beta1"), float32_constant(beta2, f"{name}.beta2")
    c1 = float32_constant(1 - beta1, f"{name}.1-beta1")
    t_prev = pytensor.shared(np.float32(0), name=f"{name}.t")
    return b1, b2, c1, t_prev, ap2(learning_rate / (1 - b1 ** (t_prev + 1)))


def shift_adamax(loss_or_grads, params, learning_rate, beta1=0.9, beta2=0.999, epsilon=2.0**-27,
                 name="shift_adamax"):
    """Shift-based AdaMax, the paper's Algorithm 3 (the Torch7 code's ``adaMax_binary_clip_shift``)::

        m <- beta1 * m + (1 - beta1) * g
        v <- max(beta2 * v, |g|)
        param <- param - AP2(lr / (1 - beta1^t)) * m * AP2(1 / (v + epsilon))

    Every multiplication by an AP2 value is a shift. Not used by the Theano experiments.
    """
    grads = _grads(loss_or_grads, params)
    b1, b2, c1, t_prev, step_size = _adamax_constants(learning_rate, beta1, beta2, name)
    eps = np.float32(epsilon)  # a power of two: exact as a literal
    updates = OrderedDict()
    for param, g in zip(params, grads):
        m_prev = _zeros_like(param, f"{name}.m.{param.name}")
        v_prev = _zeros_like(param, f"{name}.v.{param.name}")
        m = b1 * m_prev + c1 * g
        v = pt.maximum(b2 * v_prev, pt.abs(g))
        updates[m_prev] = m
        updates[v_prev] = v
        updates[param] = (param - step_size * m * ap2(1.0 / (v + eps))).astype(param.dtype)
    updates[t_prev] = t_prev + 1
    return updates


def adamax_binary_clip_shift(loss_or_grads, params, learning_rate, scales, clipped, beta1=0.9, beta2=0.999,
                             epsilon=2.0 ** -27, name="adamax_binary_clip_shift"):
    """Shift-based AdaMax as the Torch7 code's ``adaMax_binary_clip_shift.lua`` computes it (SOURCES.md
    §4(d)): one optimizer, one step counter, over every parameter, each with its learning-rate scale
    (the ``GLRvec`` entries, ``scales``) and clip flag (``clipV``, ``clipped``)::

        t <- t + 1
        m <- beta1 * m + (1 - beta1) * g
        v <- max(beta2 * v, |g|)
        a_t = AP2(lr / (1 - beta1^t))
        v <- AP2(v) + epsilon                         stored back: the next step's max starts from it
        param <- param - (a_t * (m / v)) * scale      (``x:addcmul(-stepSize, m/v, GLRvec)``)
        param <- clamp(param, -1, 1)                  where clipped

    in float32 (1 - beta1 rounded once from the double, as Torch's ``add(1-beta1, g)`` passes it).
    The code computes a_t in Lua doubles; we compute it in float32, which can round the exponent the
    other way only where lr / (1 - beta1^t) lies within float32 rounding of 2^(k + 1/2).
    ``params`` and ``loss_or_grads`` as for :func:`adam` (for a binary weight, the gradient with
    respect to its binarized value).
    """
    grads = _grads(loss_or_grads, params)
    b1, b2, c1, t_prev, step_size = _adamax_constants(learning_rate, beta1, beta2, name)
    eps = np.float32(epsilon)  # a power of two: exact as a literal
    updates = OrderedDict()
    for param, g, scale, clip in zip(params, grads, scales, clipped):
        m_prev = _zeros_like(param, f"{name}.m.{param.name}")
        v_prev = _zeros_like(param, f"{name}.v.{param.name}")
        m = b1 * m_prev + c1 * g
        v = ap2(pt.maximum(b2 * v_prev, pt.abs(g))) + eps
        new = param - (step_size * (m / v)) * float32_constant(scale, f"{name}.scale.{param.name}")
        if clip:
            new = pt.clip(new, -1.0, 1.0)
        updates[m_prev] = m
        updates[v_prev] = v
        updates[param] = new.astype(param.dtype)
    updates[t_prev] = t_prev + 1
    return updates


def torch7_lr_scale(n: int) -> np.float32:
    """The Torch7 MNIST model's scale for a batch norm's gamma: 1/sqrt(1.5/n) (SOURCES.md §4(e))."""
    return glorot_lr_scale(n, 0)


def halving_learning_rates(lr_start, every, num_epochs) -> list:
    """The Torch7 mains' schedule (SOURCES.md §4(f)): the LR halves after each epoch whose number is a
    multiple of ``every``, so epoch e trains with lr * 0.5^floor((e - 1) / every)."""
    return [lr_start * 0.5 ** ((e - 1) // every) for e in range(1, num_epochs + 1)]


def glorot_lr_scale(fan_in, fan_out) -> np.float32:
    """The per-layer learning-rate scale gamma_k of Algorithm 1: ``1 / sqrt(1.5 / (fan_in + fan_out))``
    in doubles, rounded once to float32, as binary_net.py l.96-98 and l.139-142 compute it
    (SOURCES.md §1.2). Convolutions pass fans times 9."""
    return np.float32(1.0 / np.sqrt(1.5 / (fan_in + fan_out)))


def clipping_scaling(updates, scaled_params):
    """Scale each binary weight's step by its layer's rate and clip to [-H, H] (the original's
    ``clipping_scaling``, SOURCES.md §1.2)::

        W <- clip(W + scale * (W_updated - W), -H, H)

    which the graph optimizer (Theano's then, PyTensor's now) reduces to ``clip(W - scale*step)``.
    ``scaled_params``: (W, scale, H) triples. Returns a new ordered dict.
    """
    updates = OrderedDict(updates)
    for W, scale, H in scaled_params:
        s = float32_constant(scale, f"{W.name}.W_LR_scale")
        h = float32_constant(H, f"{W.name}.H")
        updates[W] = pt.clip(W + s * (updates[W] - W), -h, h).astype(W.dtype)
    return updates


def lr_decay(lr_start, lr_fin, num_epochs) -> float:
    """The per-epoch factor ``(LR_fin / LR_start) ** (1 / num_epochs)``, in doubles (mnist.py l.81)."""
    return (lr_fin / lr_start) ** (1.0 / num_epochs)


def learning_rates(lr_start, decay, num_epochs) -> list:
    """The learning rate of each epoch as the original computed it: a running product of doubles,
    ``LR *= LR_decay`` after each epoch (binary_net.py ``train``), which differs in its last bits from
    ``LR_start * LR_decay ** (e - 1)``. The training function rounds each to float32."""
    rates, lr = [], float(lr_start)
    for _ in range(num_epochs):
        rates.append(lr)
        lr *= decay
    return rates
