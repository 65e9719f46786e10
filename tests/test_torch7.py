"""The Torch7 recipe's formulas, each against a computation by hand in numpy (SOURCES.md §4)."""
import importlib.util

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from reproduction.functions import lr_vector
from reproduction.layers import BatchNormTorch7, BinarizedNeurons, Pass, ShiftBatchNormTorch7
from reproduction.shift import ap2_numpy
from reproduction.updates import adamax_binary_clip_shift, halving_learning_rates, torch7_lr_scale

F32 = np.float32


def _bn_functions(bn, ndim):
    x = pt.tensor(dtype="float32", shape=(None,) * ndim)
    g = pt.tensor(dtype="float32", shape=(None,) * ndim)
    p = Pass(deterministic=False)
    y = bn(x, p)
    grads = pytensor.grad(pt.sum(y * g), [x, bn.gamma, bn.beta])
    train = pytensor.function([x, g], [y, *grads], updates=p.updates, mode="CVM")
    test = pytensor.function([x], bn(x, Pass(deterministic=True)), mode="CVM")
    return train, test


def _shift_bn_by_hand(x, g, gamma, beta, axes):
    """BatchNormalizationShiftPow2's updateOutput, updateGradInput and accGradParameters, in float64."""
    shape = [1] * x.ndim
    shape[1] = -1
    b = lambda v: v.reshape(shape)  # noqa: E731
    mu = x.mean(axis=axes)
    c = x - b(mu)
    c_hat = ap2_numpy(c)
    s = 1 / np.sqrt((c_hat * c).mean(axis=axes) + F32(1e-5))
    s_hat, gamma_hat = ap2_numpy(s), ap2_numpy(gamma)
    normalized = c * b(s_hat)
    y = normalized * b(gamma_hat) + b(beta)
    dx = (g - b(g.mean(axis=axes)) - c_hat * b((c_hat * g).mean(axis=axes)) * b(s_hat ** 2)) * b(s_hat * gamma_hat)
    return y, dx, (ap2_numpy(normalized) * g).sum(axis=axes), g.sum(axis=axes), mu, s


@pytest.mark.parametrize("shape, axes", [((6, 4), (0,)), ((3, 2, 3, 3), (0, 2, 3))])
def test_shift_batch_norm_forward_backward_and_running_statistics_by_hand(shape, axes):
    rng = np.random.RandomState(0)
    bn = ShiftBatchNormTorch7(shape[1], axes=axes)
    gamma, beta = F32([0.7, -1.3, 3.1, 0.26])[:shape[1]], rng.randn(shape[1]).astype(F32)
    bn.gamma.set_value(gamma)
    bn.beta.set_value(beta)
    train, test = _bn_functions(bn, len(shape))
    # the spatial version starts its running inverse std at 0, the other at 1 (SOURCES.md §4(c))
    running_mean, running_inv = np.zeros(shape[1]), np.zeros(shape[1]) if len(axes) > 1 else np.ones(shape[1])
    assert np.array_equal(bn.inv_std.get_value(), running_inv)
    for _ in range(2):
        x = (rng.randn(*shape) * 2 + 1).astype(F32)
        g = rng.randn(*shape).astype(F32)
        y, dx, dgamma, dbeta = train(x, g)
        y_ref, dx_ref, dgamma_ref, dbeta_ref, mu, s = _shift_bn_by_hand(x.astype(np.float64), g.astype(np.float64),
                                                                       gamma.astype(np.float64), beta, axes)
        assert np.allclose(y, y_ref, rtol=1e-5, atol=1e-5)
        assert np.allclose(dx, dx_ref, rtol=1e-4, atol=1e-5)      # the code's backward, not the derivative
        assert np.allclose(dgamma, dgamma_ref, rtol=1e-5, atol=1e-5) and np.allclose(dbeta, dbeta_ref, rtol=1e-5)
        running_mean = 0.875 * running_mean + 0.125 * mu          # momentum 0.125
        running_inv = 0.875 * running_inv + 0.125 * s             # the unrounded inverse std
        assert np.allclose(bn.mean.get_value(), running_mean, rtol=1e-5, atol=1e-6)
        assert np.allclose(bn.inv_std.get_value(), running_inv, rtol=1e-5)
    x = rng.randn(*shape).astype(F32)
    b = [1] * len(shape)
    b[1] = -1
    expected = ((x - running_mean.reshape(b)) * ap2_numpy(running_inv).reshape(b) * ap2_numpy(gamma).reshape(b)
                + beta.reshape(b))
    assert np.allclose(test(x), expected, rtol=1e-5, atol=1e-5)


def test_the_shift_batch_norm_gradient_on_a_batch_worked_by_hand():
    """x = [0, 1, 3, 7]: C = [-2.75, -1.75, 0.25, 4.25], Ĉ = AP2(C) = [-2, -2, 0.25, 4],
    mean(Ĉ C) = 6.515625, s = 0.3918 -> AP2 0.5; with g = [1, 0, 0, -1]: mean(g) = 0, mean(Ĉ g) = -1.5,
    dx = (g + 1.5 Ĉ / 4) / 2 = [0.125, -0.375, 0.046875, 0.25]. The derivative of the forward would
    instead see C twice (in mean(Ĉ C) and in x̂) and give other numbers."""
    bn = ShiftBatchNormTorch7(1)
    train, _ = _bn_functions(bn, 2)
    y, dx, dgamma, dbeta = train(F32([[0.0], [1.0], [3.0], [7.0]]), F32([[1.0], [0.0], [0.0], [-1.0]]))
    assert y[:, 0].tolist() == [-1.375, -0.875, 0.125, 2.125]        # C * 0.5 * AP2(1) + 0
    assert dx[:, 0].tolist() == [0.125, -0.375, 0.046875, 0.25]
    assert dgamma.tolist() == [-1.0 - 2.0] and dbeta.tolist() == [0.0]   # sum AP2(x̂) g: AP2(-1.375) - AP2(2.125)


def test_torch_batch_norm_keeps_the_running_unbiased_variance():
    rng = np.random.RandomState(1)
    bn = BatchNormTorch7(3)
    train, test = _bn_functions(bn, 2)
    x = (rng.randn(5, 3) * 3 + 2).astype(F32)
    y, dx, _, _ = train(x, np.ones_like(x))
    mu, var = x.mean(0, dtype=np.float64), x.var(0, dtype=np.float64)
    assert np.allclose(y, (x - mu) / np.sqrt(var + 1e-5), rtol=1e-5, atol=1e-5)
    assert np.allclose(bn.mean.get_value(), 0.1 * mu, rtol=1e-5)                       # momentum 0.1
    assert np.allclose(bn.var.get_value(), 0.9 + 0.1 * var * 5 / 4, rtol=1e-5)         # unbiased, from 1
    assert np.allclose(bn.inv_std.get_value(), 1 / np.sqrt(0.9 + 0.1 * var * 5 / 4 + 1e-5), rtol=1e-5)
    x2 = rng.randn(4, 3).astype(F32)
    assert np.allclose(test(x2), (x2 - 0.1 * mu) / np.sqrt(0.9 + 0.1 * var * 5 / 4 + 1e-5), rtol=1e-5, atol=1e-6)


def _neurons(stochastic, deterministic, mask="inclusive", seed=0):
    layer = BinarizedNeurons(stochastic, rng=np.random.RandomState(seed), mask=mask)
    x = pt.vector(dtype="float32")
    p = Pass(deterministic=deterministic)
    y = layer(x, p)
    return pytensor.function([x], [y, pytensor.grad(pt.sum(y), x)], updates=p.rng_updates, mode="CVM")


def test_deterministic_neurons_are_sign_with_torchs_sign_of_zero():
    f = _neurons(stochastic=True, deterministic=True)          # evaluation: sign(p - 0.5) whatever the option
    x = F32([-3.0, -0.5, -2.0 ** -26, 0.0, 2.0 ** -24, 2.0 ** -23, 0.5, 3.0])
    y, _ = f(x)
    # p = (h + 1) / 2 in float32: within 2^-25 below 0 and 2^-24 above, h + 1 rounds to 1, p to 0.5
    assert y.tolist() == [-1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]


def test_stochastic_neurons_are_plus_one_with_probability_hard_sigmoid():
    f = _neurons(stochastic=True, deterministic=False)
    x = np.repeat(F32([-1.5, -0.5, 0.0, 0.6, 1.0]), 20000)
    y, _ = f(x)
    assert set(np.unique(y)) <= {-1.0, 1.0}                    # p - U is 0 with probability ~2^-24
    freq = (y.reshape(5, -1) == 1).mean(axis=1)
    p = np.clip((F32([-1.5, -0.5, 0.0, 0.6, 1.0]) + 1) / 2, 0, 1)
    assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / 20000) + 1e-9), freq
    y2, _ = f(x)
    assert not np.array_equal(y, y2)                           # the generator moves on


@pytest.mark.parametrize("stochastic", [True, False])
def test_the_straight_through_mask_passes_at_plus_minus_one(stochastic):
    f = _neurons(stochastic=stochastic, deterministic=False)
    x = F32([-1.0000001, -1.0, -0.3, 0.0, 0.99, 1.0, 1.0000001, 5.0])
    _, grad = f(x)
    assert grad.tolist() == [0, 1, 1, 1, 1, 1, 0, 0]           # 1[|x| <= 1]: the GPU HardTanh of early 2016


def test_the_later_exclusive_mask_zeroes_plus_minus_one():
    _, grad = _neurons(stochastic=False, deterministic=False, mask="exclusive")(F32([-1.0, -0.5, 0.5, 1.0]))
    assert grad.tolist() == [0, 1, 1, 0]


def test_adamax_binary_clip_shift_step_by_hand_with_the_stored_rounded_v():
    w, b = pytensor.shared(F32([0.9, -0.99, 0.2]), name="w"), pytensor.shared(F32([3.0, -2.0]), name="b")
    gw, gb = pt.vector("gw", dtype="float32"), pt.vector("gb", dtype="float32")
    lr = pt.scalar("lr", dtype="float32")
    updates = adamax_binary_clip_shift([gw, gb], [w, b], lr, [F32(43.4511), F32(1)], [True, False])
    state = [k for k in updates if k.name and ".v." in k.name]
    step = pytensor.function([gw, gb, lr], [], updates=updates, mode="CVM")
    W, B = np.float64([0.9, -0.99, 0.2]), np.float64([3.0, -2.0])
    m = [np.zeros(3), np.zeros(2)]
    v = [np.zeros(3), np.zeros(2)]
    for t, (g1, g2) in enumerate([([-0.02, -0.02, 0.0], [0.3, 0.0]), ([0.002, 0.05, 0.0], [-0.1, 0.0])], start=1):
        step(F32(g1), F32(g2), F32(2 ** -6))
        a_t = ap2_numpy(2 ** -6 / (1 - 0.9 ** t))          # t=1: 0.15625 -> 0.125; t=2: 0.08224 -> 0.0625
        assert a_t == [0.125, 0.0625][t - 1]
        for k, (g, scale) in enumerate([(np.float64(g1), 43.4511), (np.float64(g2), 1.0)]):
            m[k] = 0.9 * m[k] + 0.1 * g
            v[k] = ap2_numpy(np.maximum(0.999 * v[k], np.abs(g))) + 2.0 ** -27     # stored rounded, plus eps
            delta = a_t * m[k] / v[k] * scale
            if k == 0:
                W = np.clip(W - delta, -1, 1)             # clipped
            else:
                B = B - delta                             # not clipped
    assert np.allclose(w.get_value(), W, rtol=1e-6) and np.allclose(b.get_value(), B, rtol=1e-6)
    assert w.get_value()[0] == 1.0 and b.get_value()[0] > 1.0   # the weight clipped, the bias not
    stored = {s.name: s.get_value() for s in state}
    assert np.allclose(stored["adamax_binary_clip_shift.v.w"], v[0], rtol=1e-7)
    # a gradient that was always 0 does not move its parameter (m = 0), but its v does not stay at eps:
    # AP2(0.999 * 2^-27) + 2^-27 = 2^-26 after two steps (it settles at 1.25 * 2^-25 from the fourth)
    assert stored["adamax_binary_clip_shift.v.w"][2] == F32(2.0 ** -26) and w.get_value()[2] == F32(0.2)


def test_the_learning_rate_halves_after_every_kth_epoch():
    assert halving_learning_rates(2 ** -6, 20, 45)[::10] == [2 ** -6, 2 ** -6, 2 ** -7, 2 ** -7, 2 ** -8]
    rates = halving_learning_rates(1.0, 50, 101)
    assert rates[49] == 1.0 and rates[50] == 0.5 and rates[100] == 0.25      # epoch e: 0.5^floor((e-1)/k)


def test_the_mnist_glr_vector_and_clip_mask():
    from mnist.__main__ import build_mlp, parse_args

    c = parse_args(["--recipe", "torch7"])
    layers = build_mlp(c, np.random.RandomState(c.seed))
    entries = lr_vector(layers, b_LR_scale=c.b_LR_scale, gamma_LR_scale=c.gamma_LR_scale, clip_all=c.clip_all)
    names = [(p.name, round(float(s), 4), clip) for p, s, clip in entries]
    expected = []
    for k, scale in enumerate([43.4511, 52.2558, 52.2558, 37.0405]):      # 1/sqrt(1.5/(fan_in + fan_out))
        expected += [(f"dense{k}.W", scale, True), (f"dense{k}.b", scale, False)]
        n = 2048 if k < 3 else 10
        expected += [(f"bn{k}.gamma", 36.9504 if n == 2048 else 2.582, False), (f"bn{k}.beta", 1.0, False)]
    assert names == expected
    assert torch7_lr_scale(10) == F32(1 / np.sqrt(0.15))


@pytest.mark.parametrize("dataset, scales, clip_all", [
    ("cifar10", [32, 32, 64, 64, 64, 64, 64, 32, 32], True),
    ("svhn", [16, 32, 32, 32, 64, 64, 64, 32, 32], False),
])
def test_the_convnet_glr_vectors_are_powers_of_two(dataset, scales, clip_all):
    import importlib

    from reproduction import options
    from reproduction.convnet import build_convnet

    r = options.recipes(vars(importlib.import_module(f"{dataset}.__main__")))["torch7"]
    layers = build_convnet(r["architecture"], rng=np.random.RandomState(0), activation=r["activation"],
                           W_LR_scale=r["W_LR_scale"], batch_norm=r["batch_norm"], shift_bn=r["shift_bn"],
                           init=r["init"])
    entries = lr_vector(layers, b_LR_scale=r["b_LR_scale"], gamma_LR_scale=r["gamma_LR_scale"],
                        clip_all=r["clip_all"])
    weights = [(float(s), clip) for p, s, clip in entries if p.name.endswith(".W")]
    assert weights == [(float(s), True) for s in scales]
    biases = [float(s) for p, s, _ in entries if p.name.endswith(".b")]
    assert biases == [float(s) for s in scales]
    assert all(float(s) == 1 and clip == clip_all for p, s, clip in entries if p.name.endswith((".gamma", ".beta")))
    # Torch's default reset for the convolutions: U(±1/sqrt(9 C_in)) for W and b (SOURCES.md §4(b))
    first = layers[0]
    assert np.abs(first.W.get_value()).max() <= 1 / np.sqrt(27) and np.abs(first.b.get_value()).max() > 0


def test_torch7_dense_init_draws_w_on_minus_one_one_and_the_bias_on_the_fan_in():
    from reproduction.layers import DenseLayer

    layer = DenseLayer(400, 300, rng=np.random.RandomState(0), init="torch7")
    W, b = layer.W.get_value(), layer.b.get_value()
    assert 0.99 < np.abs(W).max() <= 1 and 0.045 < np.abs(b).max() <= 1 / np.sqrt(400)


AP2_MODES = ["CVM", "FAST_COMPILE"] + [m for m, pkg in (("NUMBA", "numba"), ("JAX", "jax"))
                                       if importlib.util.find_spec(pkg)]


@pytest.mark.parametrize("mode", AP2_MODES)
def test_ap2_rounds_the_exact_log2_in_every_back_end(mode):
    from reproduction.shift import ap2

    bits = np.uint32([0x3FB504F3, 0x3FB504F4, 0x3F3504F3, 0x3F3504F4])   # either side of sqrt(2), sqrt(1/2)
    v = np.concatenate([F32([0.0, -0.0, 1.0, -1.0, 3.0, -3.0, 0.7, 5.0, 2.0 ** -27, np.inf, -np.inf]),
                        np.frombuffer(bits.tobytes(), F32)])
    expected = F32([0.0, -0.0, 1.0, -1.0, 4.0, -4.0, 0.5, 4.0, 2.0 ** -27, np.inf, -np.inf, 1.0, 2.0, 0.5, 1.0])
    rng = np.random.RandomState(5)
    wide = (rng.randn(20000) * 2.0 ** rng.randint(-60, 60, 20000)).astype(F32)   # normal floats only
    x = pt.vector(dtype="float32")
    f = pytensor.function([x], ap2(x * 1.0), mode=mode)
    assert np.array_equal(f(v), expected) and np.signbit(f(v)[1])
    exact = np.sign(wide) * np.exp2(np.floor(np.log2(np.abs(wide).astype(np.float64)) + 0.5))   # float64 log2
    assert np.array_equal(f(wide), exact.astype(F32))
    assert np.array_equal(ap2_numpy(wide), exact)
