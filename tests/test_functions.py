"""The compiled training step against a numpy computation of Algorithm 1, and the back ends against
each other. (tests/test_reference_step.py checks it step by step against the original's formulas.)"""
import importlib.util
import warnings

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from reproduction.binarize import binary_tanh_unit
from reproduction.functions import compile_functions
from reproduction.layers import BatchNorm, DenseLayer, Dropout, Nonlinearity, Pass, forward
from reproduction.loss import squared_hinge
from reproduction.updates import glorot_lr_scale

F32 = np.float32


def _net(seed=0):
    rng = np.random.RandomState(seed)
    return [DenseLayer(12, 16, rng=rng, name="d0"), BatchNorm(16, name="bn0"), Nonlinearity(binary_tanh_unit),
            DenseLayer(16, 10, rng=rng, name="d1"), BatchNorm(10, name="bn1")]


def test_one_training_step_applies_the_gradient_wrt_binarized_weights_scaled_and_clipped():
    layers = _net()
    W0 = layers[0].W.get_value().copy()
    f = compile_functions(layers, (12,), mode="CVM")
    rng = np.random.RandomState(1)
    x = rng.randn(20, 12).astype(F32)
    t = (2 * np.eye(10)[rng.randint(0, 10, 20)] - 1).astype(F32)

    # dLoss/dWb of the first layer, from the graph the training step differentiates
    x_ = pt.matrix(dtype="float32")
    t_ = pt.matrix(dtype="float32")
    p = Pass(False)
    loss = squared_hinge(forward(layers, x_, p), t_)
    g_wb = pytensor.function([x_, t_], pytensor.grad(loss, p.binarized[layers[0].W]), mode="CVM")(x, t)

    lr = 0.01
    f.train(x, t, F32(lr))
    # first Adam step: m = 0.1 g, v = 0.001 g^2, a_1 = lr * sqrt(0.001) / 0.1, step = a_1 m / (sqrt(v) + eps)
    step = lr * np.sqrt(0.001) / 0.1 * (0.1 * g_wb) / (np.sqrt(0.001 * g_wb.astype(np.float64) ** 2) + 1e-8)
    expected = np.clip(W0 - glorot_lr_scale(12, 16) * step, -1, 1)
    assert np.allclose(layers[0].W.get_value(), expected, rtol=1e-4, atol=1e-5)
    assert np.any(np.abs(expected) == 1.0)   # the scale is large enough that the clip matters


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed (pip install '.[jax]')")
def test_jax_gives_the_same_forward_values_as_the_c_back_end():
    layers = _net(seed=3)
    for layer in layers:
        if isinstance(layer, BatchNorm):     # stored statistics that are not the identity
            layer.mean.set_value(np.linspace(-1, 1, layer.mean.get_value().size).astype(F32))
            layer.inv_std.set_value(np.linspace(0.5, 2, layer.mean.get_value().size).astype(F32))
    x = pt.matrix(dtype="float32")
    out = forward(layers, x, Pass(deterministic=True))
    xv = np.random.RandomState(2).randn(50, 12).astype(F32)
    c = pytensor.function([x], out, mode="CVM")(xv)
    j = np.asarray(pytensor.function([x], out, mode="JAX")(xv))
    assert np.allclose(c, j, rtol=1e-5, atol=1e-5)
    assert np.array_equal(c.argmax(1), j.argmax(1))


def test_the_training_step_compiles_and_agrees_under_every_back_end():
    """Without dropout a training step is deterministic, so C, Numba and JAX must agree."""
    rng = np.random.RandomState(5)
    x = rng.randn(20, 12).astype(F32)
    t = (2 * np.eye(10)[rng.randint(0, 10, 20)] - 1).astype(F32)
    modes = ["CVM", "NUMBA"] + (["JAX"] if importlib.util.find_spec("jax") else [])
    after = {}
    for mode in modes:
        layers = _net(seed=4)
        f = compile_functions(layers, (12,), mode=mode)
        losses = [float(f.train(x, t, F32(0.01))) for _ in range(2)]
        after[mode] = (losses, layers[0].W.get_value(), layers[1].inv_std.get_value())
    ref = after["CVM"]
    for mode in modes[1:]:
        losses, W, inv_std = after[mode]
        assert np.allclose(losses, ref[0], rtol=1e-5), mode
        assert np.allclose(W, ref[1], atol=1e-5), mode
        assert np.allclose(inv_std, ref[2], rtol=1e-5), mode


def _warnings_of_a_jax_step(layers, seed):
    """The messages of every warning raised while compiling and running a JAX training and
    evaluation step of ``layers`` (input 12, batch 20)."""
    rng = np.random.RandomState(seed)
    x = rng.randn(20, 12).astype(F32)
    t = (2 * np.eye(10)[rng.randint(0, 10, 20)] - 1).astype(F32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        f = compile_functions(layers, (12,), mode="JAX")
        f.train(x, t, F32(0.01))
        f.evaluate(x, t)
    return [str(w.message) for w in caught]


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed (pip install '.[jax]')")
def test_a_jax_training_step_emits_no_warnings():
    """No dtype truncations (float64 accumulators, int64 shapes or argmax), no skipped broadcast
    asserts, no deprecations: compiling and running a JAX training and evaluation step is silent."""
    assert _warnings_of_a_jax_step(_net(seed=6), seed=7) == []


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed (pip install '.[jax]')")
def test_with_dropout_only_jaxs_copy_of_the_generators_is_announced():
    """With dropout the layers add random generators, compiled as explicit updates (no deprecated
    default updates). The one message left is the JAX back end saying it keeps private copies of the
    shared generators, which is what checkpoints save (functions.rng_containers); functions.py
    ignores that message alone, so a program's run prints no warning (test_mnist_program)."""
    rng = np.random.RandomState(8)
    layers = [Dropout(0.2, rng=rng)] + _net(seed=8)[:3] + [Dropout(0.5, rng=rng)] + _net(seed=8)[3:]
    messages = _warnings_of_a_jax_step(layers, seed=9)
    assert messages and all("will not be used in the compiled JAX graph" in m for m in messages), messages
