"""Layers against numpy (SOURCES.md §1.3, §2.2)."""
import importlib.util

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from reproduction.binarize import sign_numpy
from reproduction.layers import (BatchNorm, DenseLayer, Dropout, Pass, SeededStream, all_params, binary_layers,
                                 forward, params_tagged)

F32 = np.float32
MODES = ["CVM", "NUMBA"] + (["JAX"] if importlib.util.find_spec("jax") else [])
def _bn_numpy(x, axes, alpha, eps, mean, inv_std, gamma, beta):
    mu = x.mean(axis=axes)
    var = x.var(axis=axes)                      # biased
    inv = 1 / np.sqrt(var + eps)
    shape = [1] * x.ndim
    shape[1] = -1
    y = (x - mu.reshape(shape)) * (gamma * inv).reshape(shape) + beta.reshape(shape)
    return y, (1 - alpha) * mean + alpha * mu, (1 - alpha) * inv_std + alpha * inv


def test_batch_norm_training_and_inference_against_numpy():
    rng = np.random.RandomState(0)
    for shape, axes in [((8, 5), (0,)), ((4, 3, 5, 6), (0, 2, 3))]:
        bn = BatchNorm(shape[1], axes=axes, alpha=0.1, epsilon=1e-4)
        gamma, beta = rng.rand(shape[1]).astype(F32) + 0.5, rng.randn(shape[1]).astype(F32)
        bn.gamma.set_value(gamma)
        bn.beta.set_value(beta)
        x = pt.tensor(dtype="float32", shape=(None,) * len(shape))
        p = Pass(deterministic=False)
        train = pytensor.function([x], bn(x, p), updates=p.updates, mode="CVM")
        test = pytensor.function([x], bn(x, Pass(deterministic=True)), mode="CVM")
        mean, inv_std = np.zeros(shape[1]), np.ones(shape[1])
        for _ in range(3):
            xv = (rng.randn(*shape) * 3 + 1).astype(F32)
            y = train(xv)
            y_ref, mean, inv_std = _bn_numpy(xv.astype(np.float64), axes, 0.1, 1e-4, mean, inv_std, gamma, beta)
            assert np.allclose(y, y_ref, rtol=1e-4, atol=1e-4)
            assert np.allclose(bn.mean.get_value(), mean, rtol=1e-5, atol=1e-6)
            assert np.allclose(bn.inv_std.get_value(), inv_std, rtol=1e-5)  # the inverse std is averaged
        xv = rng.randn(*shape).astype(F32)
        b = [1] * len(shape)
        b[1] = -1
        expected = (xv - mean.reshape(b)) * (gamma * inv_std).reshape(b) + beta.reshape(b)
        assert np.allclose(test(xv), expected, rtol=1e-4, atol=1e-5)


def test_dense_layer_uses_signs_of_its_weights_and_a_real_bias():
    rng = np.random.RandomState(1)
    layer = DenseLayer(6, 4, rng=np.random.RandomState(5))
    W = layer.W.get_value()
    assert W.shape == (6, 4) and np.all(np.abs(W) <= 1)
    layer.b.set_value(np.arange(4, dtype=F32))
    x = pt.tensor(dtype="float32", shape=(None, None, None))
    f = pytensor.function([x], layer(x, Pass(deterministic=True)), mode="CVM")
    xv = rng.randn(3, 2, 3).astype(F32)
    assert np.allclose(f(xv), xv.reshape(3, 6) @ sign_numpy(W) + np.arange(4), rtol=1e-5)


def test_initialisation_follows_the_original_draw_order():
    layer = DenseLayer(3, 2, rng=np.random.RandomState(1234), H=1.0)
    rng = np.random.RandomState(1234)
    rng.randint(1, 2147462579)                   # the layer's stream seed comes first
    assert np.array_equal(layer.W.get_value(), rng.uniform(-1, 1, (3, 2)).astype(F32))
    assert np.array_equal(layer.b.get_value(), np.zeros(2, F32))


def test_parameter_order_and_tags():
    rng = np.random.RandomState(0)
    layers = [Dropout(0.2, rng=rng), DenseLayer(4, 3, rng=rng), BatchNorm(3), DenseLayer(3, 2, rng=rng, binary=False)]
    names = [v.name for v in all_params(layers)]
    assert names == ["dense4x3.W", "dense4x3.b", "bn.beta", "bn.gamma", "bn.mean", "bn.inv_std",
                     "dense3x2.W", "dense3x2.b"]
    assert [v.name for v in params_tagged(layers, "binary")] == ["dense4x3.W"]
    assert [v.name for v in params_tagged(layers, "trainable")] == ["dense4x3.b", "bn.beta", "bn.gamma",
                                                                    "dense3x2.W", "dense3x2.b"]
    assert binary_layers(layers) == [layers[1]]


def test_dropout_is_inverted_in_training_and_the_identity_at_test():
    layer = Dropout(0.5, rng=np.random.RandomState(0))
    x = pt.matrix(dtype="float32")
    xv = np.ones((200, 100), dtype=F32)
    train = pytensor.function([x], forward([layer], x, Pass(False)), mode="CVM")(xv)
    assert set(np.unique(train).tolist()) == {0.0, 2.0}
    assert abs(train.mean() - 1.0) < 0.03
    test = pytensor.function([x], forward([layer], x, Pass(True)), mode="CVM")(xv)
    assert np.array_equal(test, xv)


@pytest.mark.parametrize("mode", MODES)
def test_batch_norm_running_averages_use_lasagnes_float32_constants_in_every_back_end(mode):
    """mean <- (1 - alpha) mean + alpha mu and inv_std likewise, with 1 - alpha computed in Python
    (float32(0.9)), alpha = float32(0.1), eps = float32(1e-4). On multiples of 1/4 over a batch of 8
    the batch mean and variance are exact in any summation order, so the first update is a fixed
    chain of correctly rounded float32 operations: bit for bit in every back end. (The graph
    optimizer, Theano's then as PyTensor's now, turns ``alpha * (1 / s)`` into ``alpha / s``.)"""
    rng = np.random.RandomState(3)
    xv = (rng.randint(-8, 9, size=(8, 40)) / 4).astype(F32)
    bn = BatchNorm(40, alpha=0.1, epsilon=1e-4)
    x = pt.matrix(dtype="float32")
    p = Pass(deterministic=False)
    pytensor.function([x], bn(x, p), updates=p.updates, mode=mode)(xv)
    mu = xv.mean(0, dtype=np.float64).astype(F32)                 # exact
    var = ((xv - mu) ** 2).mean(0, dtype=np.float64).astype(F32)  # exact
    s = np.sqrt(var + F32(1e-4))
    assert np.array_equal(bn.mean.get_value(), F32(0.9) * F32(0) + F32(0.1) * mu)
    assert np.array_equal(bn.inv_std.get_value(), F32(0.9) * F32(1) + F32(0.1) / s)
    assert F32(1 - 0.1) == F32(0.9) and hex(F32(0.9).view(np.uint32)) == "0x3f666666"


@pytest.mark.parametrize("mode", MODES)
def test_dropout_divides_by_the_float32_retain_probability(mode):
    """Lasagne: retain_prob = 1 - p in Python, input /= retain_prob: x / float32(0.8), not x / 0.8."""
    layer = Dropout(0.2, rng=np.random.RandomState(0))
    x = pt.matrix(dtype="float32")
    p = Pass(False)
    out = forward([layer], x, p)
    xv = np.random.RandomState(1).uniform(0.5, 1, (50, 40)).astype(F32)
    yv = np.asarray(pytensor.function([x], out, updates=p.rng_updates, mode=mode)(xv))
    kept = yv != 0
    assert 0.7 < kept.mean() < 0.9
    assert np.array_equal(yv[kept], (xv / F32(0.8))[kept])
    assert not np.array_equal(xv / F32(0.8), (xv.astype(np.float64) / 0.8).astype(F32))  # the double 0.8 differs


def test_seeded_stream_draws_what_pytensors_random_stream_drew():
    """Each draw's generator is spawned from SeedSequence(seed), as RandomStream(seed) did, so the
    random numbers did not change with the move off the deprecated RandomStream."""
    stream, updates = SeededStream(1234), {}
    first, second = stream.uniform((3, 4), "float64", updates), stream.uniform((2,), "float64", updates)
    assert len(updates) == 2
    children = np.random.SeedSequence(1234).spawn(2)
    f = pytensor.function([], [first, second], updates=updates, mode="CVM")
    a, b = f()
    assert np.array_equal(a, np.random.default_rng(children[0]).uniform(0.0, 1.0, (3, 4)))
    assert np.array_equal(b, np.random.default_rng(children[1]).uniform(0.0, 1.0, (2,)))
    a2, _ = f()
    assert not np.array_equal(a, a2)   # the generator advances through the pass's updates


def test_parameters_have_static_shapes():
    """Static shapes let the graph know that W, b, gamma, ... agree, so JAX needs no shape asserts."""
    layer, bn = DenseLayer(6, 4, rng=np.random.RandomState(0)), BatchNorm(4)
    assert layer.W.type.shape == (6, 4) and layer.b.type.shape == (4,) and bn.gamma.type.shape == (4,)
