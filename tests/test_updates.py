"""Update rules against hand-computed steps, and the float32 constants of the original pinned
(SOURCES.md §1.2; reproduction/updates.py has the sources)."""
import importlib.util

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.graph.traversal import applys_between
from pytensor.tensor.math import Sum

from reproduction.shift import ap2_numpy
from reproduction.updates import (adam, adam_constants, clipping_scaling, float32_sums, glorot_lr_scale,
                                  learning_rates, lr_decay, shift_adamax)

F32 = np.float32
MODES = ["CVM", "NUMBA"] + (["JAX"] if importlib.util.find_spec("jax") else [])


def _bits(x):
    return hex(np.asarray(x, dtype=F32).view(np.uint32))


def _steps(rule, p0, grads, lr, **kw):
    """Apply ``rule`` for each gradient in ``grads`` (fed as an input) and return the parameter after each."""
    p = pytensor.shared(p0.copy(), name="p")
    g = pt.vector("g", dtype="float32")
    f = pytensor.function([g], [], updates=rule([g], [p], F32(lr), **kw), mode="CVM")
    out = []
    for grad in grads:
        f(grad)
        out.append(p.get_value().copy())
    return out


def test_three_adam_steps_match_a_hand_computation():
    rng = np.random.RandomState(3)
    p0 = rng.randn(5).astype(F32)
    grads = [rng.randn(5).astype(F32) for _ in range(3)]
    lr, b1, b2, eps = 0.003, 0.9, 0.999, 1e-8
    got = _steps(adam, p0, grads, lr)
    p, m, v = p0.astype(np.float64), np.zeros(5), np.zeros(5)
    for t, (g, p_got) in enumerate(zip(grads, got), start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        a_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        p = p - a_t * m / (np.sqrt(v) + eps)   # epsilon on the uncorrected sqrt(v), as Lasagne did
        assert np.allclose(p_got, p, rtol=1e-5, atol=1e-7), f"step {t}"


def test_adam_counter_is_its_own_state():
    p = pytensor.shared(np.zeros(2, dtype=F32), name="p")
    updates = adam([pt.ones(2)], [p], F32(0.1))
    counters = [v for v in updates if v.name.endswith(".t")]
    assert len(counters) == 1 and counters[0].get_value() == 0


def test_shift_adamax_steps_match_algorithm_3():
    rng = np.random.RandomState(4)
    p0 = rng.randn(6).astype(F32)
    grads = [rng.randn(6).astype(F32) for _ in range(3)]
    lr, b1, b2, eps = 2.0 ** -10, 0.9, 0.999, 2.0 ** -27
    got = _steps(shift_adamax, p0, grads, lr)
    p, m, v = p0.astype(np.float64), np.zeros(6), np.zeros(6)
    for t, (g, p_got) in enumerate(zip(grads, got), start=1):
        m = b1 * m + (1 - b1) * g
        v = np.maximum(b2 * v, np.abs(g))
        p = p - ap2_numpy(lr / (1 - b1 ** t)) * m * ap2_numpy(1 / (v + eps))
        assert np.allclose(p_got, p, rtol=1e-5), f"step {t}"


def test_ap2_rounds_to_powers_of_two():
    assert ap2_numpy([3.0, -3.0, 0.7, 0.0, 1.0, 5.0]).tolist() == [4.0, -4.0, 0.5, 0.0, 1.0, 4.0]


def test_adam_constants_are_lasagne_2016s_python_floats_rounded_once_to_float32():
    """Lasagne 6a559dd computed 1 - beta in Python (float64), then Theano made it a float32
    constant; the in-graph ``one - beta`` of Lasagne after April 2016 gives other values."""
    c = adam_constants()
    assert {k: _bits(v) for k, v in c.items()} == {
        "beta1": "0x3f666666", "beta2": "0x3f7fbe77", "epsilon": "0x322bcc77",
        "one_minus_beta1": "0x3dcccccd", "one_minus_beta2": "0x3a83126f"}
    assert c["one_minus_beta1"] == F32(0.1) and c["one_minus_beta2"] == F32(0.001)
    assert F32(1) - F32(0.9) == F32(0.100000024) != c["one_minus_beta1"]      # Lasagne PR #661's
    assert F32(1) - F32(0.999) == F32(0.0009999871) != c["one_minus_beta2"]


@pytest.mark.parametrize("mode", MODES)
def test_first_adam_moments_use_the_float32_constants_in_every_back_end(mode):
    """From zero moments, m = (1 - beta1) * g and v = (1 - beta2) * g^2 are one or two float32
    roundings: bit for bit, whichever back end, if and only if the constants are the float32 ones
    (PyTensor's C back end would otherwise inline 0.1 as the double 0.1)."""
    rng = np.random.RandomState(5)
    g = (rng.randn(4000) * 10.0 ** rng.uniform(-6, 1, 4000)).astype(F32)
    p = pytensor.shared(np.zeros(4000, dtype=F32), name="p")
    gv = pt.vector("g", dtype="float32")
    updates = adam([gv], [p], F32(0.001))
    pytensor.function([gv], [], updates=updates, mode=mode)(g)
    m, v = (next(k for k in updates if k.name == f"adam.{s}.p").get_value() for s in "mv")
    c = adam_constants()
    assert np.array_equal(m, c["one_minus_beta1"] * g)
    assert np.array_equal(v, c["one_minus_beta2"] * (g * g))


def test_binary_weight_update_is_w_minus_scaled_step_as_the_original_compiled_it():
    """binary_net.py writes W + scale*((W - step) - W); Theano's canonicalizer (and PyTensor's)
    cancels W, leaving W - scale*step. A step below half an ulp of W shows which: the literal form
    would leave W unchanged."""
    W = pytensor.shared(np.full(3, 0.5, dtype=F32), name="W")
    step = np.full(3, 1e-9, dtype=F32)
    pytensor.function([], [], updates=clipping_scaling({W: W - step}, [(W, 57.038, 1.0)]), mode="CVM")()
    assert F32(0.5) - step[0] == F32(0.5)                       # (W - step) - W would be 0
    assert np.array_equal(W.get_value(), F32(0.5) - F32(57.038) * step)
    assert np.all(W.get_value() < 0.5)


@pytest.mark.parametrize("fans, expected", [((784, 4096), "57.038"), ((4096, 4096), "73.90083"),
                                            ((4096, 10), "52.31953"), ((9 * 3, 9 * 128), "28.035692"),
                                            ((8192, 1024), "78.383675"), ((1024, 1024), "36.950417"),
                                            ((1024, 10), "26.255157")])
def test_glorot_learning_rate_scales_match_the_original_log(fans, expected):
    """binary_net.py: np.float32(1./np.sqrt(1.5/(num_inputs + num_units))); issue #7's log shows
    57.0380, 73.9008, ... (4 decimals); these are the float32 values in full."""
    scale = glorot_lr_scale(*fans)
    assert scale.dtype == np.float32
    assert scale == F32(expected)


def test_scaling_and_clipping_of_binary_weights():
    W = pytensor.shared(np.array([0.9, -0.9, 0.1], dtype=F32), name="W")
    step = np.array([-0.01, 0.02, 0.001], dtype=F32)   # W_adam - W
    updates = clipping_scaling({W: W + step}, [(W, 50.0, 1.0)])
    pytensor.function([], [], updates=updates, mode="CVM")()
    assert np.allclose(W.get_value(), np.clip([0.9 - 0.5, -0.9 + 1.0, 0.1 + 0.05], -1, 1))
    assert W.get_value()[1] == pytest.approx(0.1)
    W.set_value(np.array([0.99, -0.99, 0.0], dtype=F32))
    pytensor.function([], [], updates=clipping_scaling({W: W + np.array([1, -1, 0], dtype=F32)},
                                                       [(W, 10.0, 1.0)]), mode="CVM")()
    assert W.get_value().tolist() == [1.0, -1.0, 0.0]


def test_learning_rates_are_the_running_product_of_the_original():
    """``LR *= LR_decay`` after each epoch, in doubles: the doubles differ in their last bits from
    LR_start * decay**(e-1) in most epochs, the float32 values the step uses in none (MNIST)."""
    decay = lr_decay(0.003, 3e-7, 1000)
    rates = learning_rates(0.003, decay, 1000)
    powers = [0.003 * decay ** e for e in range(1000)]
    assert rates[0] == 0.003 and len(rates) == 1000
    assert sum(a != b for a, b in zip(rates, powers)) > 500
    assert all(F32(a) == F32(b) for a, b in zip(rates, powers))
    assert F32(rates[-1]) == F32(3.0277587e-07)


def test_gradient_sums_accumulate_in_float32():
    """The original's float32 sums ran on a GPU (GpuCAReduce, float32); PyTensor's grad sums
    accumulate in float64 unless told (and JAX without x64 would warn and truncate)."""
    x = pt.matrix("x", dtype="float32")
    b = pytensor.shared(np.zeros(3, dtype=F32), name="b")
    g = pytensor.grad(pt.sum(pt.sqr(x + b), acc_dtype="float32"), b)
    sums = lambda v: [n.op for n in applys_between([x, b], [v]) if isinstance(n.op, Sum)]
    assert any(op.acc_dtype != "float32" for op in sums(g))
    (g32,) = float32_sums([g])
    assert sums(g32) and all(op.acc_dtype == "float32" for op in sums(g32))
    xv = np.random.RandomState(0).randn(5, 3).astype(F32)
    assert np.allclose(pytensor.function([x], g32, mode="CVM")(xv), 2 * xv.sum(0), rtol=1e-6)


def test_mnist_learning_rate_decay():
    decay = lr_decay(0.003, 3e-7, 1000)
    assert abs(decay - 0.990831944893) < 1e-12
    assert 0.003 * decay ** 999 == pytest.approx(3.0278e-7, rel=1e-4)   # the last epoch's LR (issue #7's log)
    assert abs(lr_decay(0.001, 3e-7, 500) - 0.983907435305) < 1e-12
    assert abs(lr_decay(0.001, 1e-6, 200) - 0.966050878990) < 1e-12
