"""Layers against numpy (PAPER.md §1.3, §2.2)."""
import numpy as np
import pytensor
import pytensor.tensor as pt

from reproduction.binarize import sign_numpy
from reproduction.layers import (BatchNorm, DenseLayer, Dropout, Pass, all_params, binary_layers, forward,
                                 params_tagged)

F32 = np.float32


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
