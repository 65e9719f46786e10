"""The binary units and weight binarization pin the original's exact semantics (SOURCES.md §1.1)."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from reproduction.binarize import (binarize_weights, binary_sigmoid_unit, binary_tanh_unit, hard_sigmoid,
                                   round_half_away_from_zero, sign_numpy)
from reproduction.layers import SeededStream

F32 = np.float32


def _value_and_grad(fn, xs):
    x = pt.vector("x", dtype="float32")
    y = fn(x)
    f = pytensor.function([x], [y, pytensor.grad(y.sum(), x)], mode="CVM")
    return f(np.asarray(xs, dtype=F32))


def test_binary_tanh_sign_of_zero_is_plus_one():
    y, _ = _value_and_grad(binary_tanh_unit, [0.0, -0.0, 1e-20, -0.75, 0.75, -3.0, 3.0])
    assert y.tolist() == [1, 1, 1, -1, 1, -1, 1]


def test_binary_tanh_gradient_is_the_mask_with_both_ends_included():
    below = np.nextafter(F32(-1), F32(-2))
    # above 1 the first float32 that leaves the mask is 1 + 2 ulp: (1 + ulp + 1) / 2 rounds to 1 in
    # float32, in the original's arithmetic as in ours
    above = np.nextafter(np.nextafter(F32(1), F32(2)), F32(2))
    xs = [below, -1.0, -0.5, 0.0, 0.5, 1.0, above, -5.0, 5.0]
    _, g = _value_and_grad(binary_tanh_unit, xs)
    assert g.tolist() == [0, 1, 1, 1, 1, 1, 0, 0, 0]


def test_binary_tanh_output_is_exactly_plus_or_minus_one():
    xs = np.random.RandomState(0).uniform(-2, 2, 100000).astype(F32)
    y, _ = _value_and_grad(binary_tanh_unit, xs)
    assert set(np.unique(y).tolist()) == {-1.0, 1.0}
    # the original's threshold is hard_sigmoid(x) >= 0.5 in float32, i.e. x >= 0 up to rounding
    assert np.array_equal(y[np.abs(xs) > 1e-6], sign_numpy(xs[np.abs(xs) > 1e-6]))


def test_binary_sigmoid_unit():
    y, g = _value_and_grad(binary_sigmoid_unit, [-2.0, -0.5, 0.0, 0.5, 2.0])
    assert y.tolist() == [0, 0, 1, 1, 1]
    assert g.tolist() == [0, 0.5, 0.5, 0.5, 0]


def test_round_half_away_from_zero_is_exact_where_floor_x_plus_half_is_not():
    below_half = np.nextafter(F32(0.5), F32(0))
    xs = np.array([below_half, 0.5, -0.5, 1.5, 2.5, -2.5, 0.0, 0.49, 7.2], dtype=F32)
    x = pt.vector("x", dtype="float32")
    out = pytensor.function([x], round_half_away_from_zero(x), mode="CVM")(xs)
    assert out.tolist() == [0, 1, -1, 2, 3, -3, 0, 0, 7]


def test_hard_sigmoid():
    x = pt.vector("x", dtype="float32")
    out = pytensor.function([x], hard_sigmoid(x), mode="CVM")(np.array([-3, -1, 0, 0.5, 1, 3], dtype=F32))
    assert np.allclose(out, [0, 0, 0.5, 0.75, 1, 1])


def test_deterministic_weight_binarization_maps_zero_to_plus_h():
    W = pytensor.shared(np.array([-0.7, -1e-7, 0.0, 0.3, 1.0], dtype=F32))
    for H in (1.0, 0.5):
        Wb = pytensor.function([], binarize_weights(W, H), mode="CVM")()
        assert Wb.tolist() == [-H, -H, H, H, H]


def test_weights_pass_through_when_not_binary_or_stochastic_at_test_time():
    W = pytensor.shared(np.array([-0.7, 0.3], dtype=F32))
    assert binarize_weights(W, binary=False) is W
    assert binarize_weights(W, deterministic=True, stochastic=True) is W


def test_stochastic_binarization_mean_matches_hard_sigmoid():
    n = 20000
    w = np.array([-1.0, -0.5, 0.0, 0.3, 0.9], dtype=F32)
    W = pytensor.shared(np.tile(w, (n, 1)))
    stream, updates = SeededStream(7), {}
    Wb = binarize_weights(W, 1.0, stochastic=True, uniform=lambda size, dtype: stream.uniform(size, dtype, updates))
    Wb = pytensor.function([], Wb, updates=updates, mode="CVM")()
    assert set(np.unique(Wb).tolist()) == {-1.0, 1.0}
    p_plus = (Wb == 1).mean(axis=0)
    expected = np.clip((w + 1) / 2, 0, 1)
    # 5 standard errors of a Bernoulli mean over n draws
    assert np.all(np.abs(p_plus - expected) <= 5 * np.sqrt(0.25 / n))
    assert p_plus[0] == 0.0  # p = 0 exactly: never +1


def test_stochastic_binarization_needs_a_stream():
    with pytest.raises(ValueError, match="uniform draws"):
        binarize_weights(pytensor.shared(np.zeros(3, dtype=F32)), stochastic=True)
