"""3x3 convolution and 2x2 max pooling (reproduction/conv.py): values against plain references,
gradients against finite differences, and the same numbers in every PyTensor back end; both rules
for the pooling gradient at tied maxima pinned exactly in every back end."""
import importlib.util
import itertools

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.gradient import verify_grad
from scipy.signal import convolve

from reproduction.conv import (POOL_TIES, Conv3x3GradW, conv3x3, conv3x3_numpy, max_pool2x2,
                               max_pool2x2_grad_numpy, max_pool2x2_numpy)

RNG = np.random.default_rng(20160208)


def reference_conv(x, w):
    """True 2-d convolution of each (input, filter) channel pair, zero padding 1, in float64."""
    n, c, h, wd = x.shape
    out = np.zeros((n, w.shape[0], h, wd))
    for i in range(n):
        for o in range(w.shape[0]):
            for k in range(c):
                out[i, o] += convolve(x[i, k].astype(np.float64), w[o, k].astype(np.float64), mode="same")
    return out


def reference_pool(x):
    n, c, h, w = x.shape
    out = np.empty((n, c, h // 2, w // 2), x.dtype)
    for a in range(h // 2):
        for b in range(w // 2):
            out[:, :, a, b] = x[:, :, 2 * a : 2 * a + 2, 2 * b : 2 * b + 2].max(axis=(2, 3))
    return out


# a window's elements in row-major order: cuDNN's "first" maximum is the first of these that ties
WINDOW_ORDER = ((0, 0), (0, 1), (1, 0), (1, 1))


def reference_pool_grad(x, gz, ties):
    """The pooling gradient written out window by window: gz goes to every maximal element ("all")
    or to the first maximal one in WINDOW_ORDER ("first"); the dropped odd row/column gets 0."""
    gx = np.zeros(x.shape, gz.dtype)
    n, c, h, w = x.shape
    for i, k, a, b in itertools.product(range(n), range(c), range(h // 2), range(w // 2)):
        window = x[i, k, 2 * a : 2 * a + 2, 2 * b : 2 * b + 2]
        for di, dj in WINDOW_ORDER:
            if window[di, dj] == window.max():
                gx[i, k, 2 * a + di, 2 * b + dj] = gz[i, k, a, b]
                if ties == "first":
                    break
    return gx


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.fixture(scope="module")
def conv_fn():
    x, w = pt.tensor4("x", dtype="float32"), pt.tensor4("w", dtype="float32")
    return pytensor.function([x, w], conv3x3(x, w), mode="CVM")


@pytest.mark.parametrize("shape", [(2, 3, 5, 7, 9), (4, 2, 3, 1, 1), (1, 1, 1, 2, 1), (3, 4, 2, 6, 3)])
def test_forward_matches_true_convolution(conv_fn, shape):
    n, c, o, h, w = shape
    x, wt = f32(n, c, h, w), f32(o, c, 3, 3)
    want = reference_conv(x, wt)
    got = conv_fn(x, wt)
    assert got.shape == (n, o, h, w) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    np.testing.assert_allclose(conv3x3_numpy(x, wt), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_filters_are_flipped(conv_fn):
    """A filter with its only 1 at tap (0, 0) is, as a true convolution, a shift by (+1, +1):
    out[h, v] = x[h + 1, v + 1] (cross-correlation would give x[h - 1, v - 1])."""
    x = np.arange(20, dtype=np.float32).reshape(1, 1, 4, 5)
    w = np.zeros((1, 1, 3, 3), np.float32)
    w[0, 0, 0, 0] = 1
    want = np.zeros_like(x)
    want[0, 0, :-1, :-1] = x[0, 0, 1:, 1:]
    np.testing.assert_array_equal(conv_fn(x, w), want)


def test_gradients_match_finite_differences():
    x = RNG.standard_normal((2, 3, 4, 5))
    w = RNG.standard_normal((2, 3, 3, 3))
    verify_grad(conv3x3, [x, w], rng=RNG, abs_tol=1e-6, rel_tol=1e-6)


def test_weight_gradient_op_is_differentiable():
    """Second derivatives (e.g. for gradient penalties) go through the weight-gradient Op."""
    x = RNG.standard_normal((2, 2, 3, 4))
    g = RNG.standard_normal((2, 3, 3, 4))
    verify_grad(lambda a, b: Conv3x3GradW()(a, b), [x, g], rng=RNG, abs_tol=1e-6, rel_tol=1e-6)


def test_max_pool_forward_and_odd_sizes_drop_the_border():
    x = pt.tensor4("x", dtype="float32")
    y = max_pool2x2(x)
    f = pytensor.function([x], [y, pytensor.grad(y.sum(), x)], mode="CVM")
    for shape in [(2, 3, 4, 6), (2, 3, 5, 7), (1, 1, 1, 3)]:
        xv = f32(*shape)
        out, gx = f(xv)
        np.testing.assert_array_equal(out, reference_pool(xv))
        h, w = shape[2:]
        assert out.shape == (*shape[:2], h // 2, w // 2)
        # the dropped last row/column receives no gradient; each window sends 1 to its (unique) max
        assert not gx[:, :, h // 2 * 2 :, :].any() and not gx[:, :, :, w // 2 * 2 :].any()
        assert gx.sum() == out.size


def test_max_pool_gradient_goes_to_the_argmax_and_to_every_tie_by_default():
    x = pt.tensor4("x", dtype="float32")
    gout = pt.tensor4("g", dtype="float32")
    gx = pytensor.grad((max_pool2x2(x) * gout).sum(), x)
    f = pytensor.function([x, gout], gx, mode="CVM")
    xv = np.array([[[[1, 5, 0, 0], [2, 3, 0, 0], [7, 7, 1, 2], [7, 1, 3, 4]]]], np.float32)
    gv = np.array([[[[10, 20], [30, 40]]]], np.float32)
    want = np.array([[[[0, 10, 20, 20], [0, 0, 20, 20], [30, 30, 0, 0], [30, 0, 0, 40]]]], np.float32)
    # window (0, 1) is all zeros: every element ties, and each gets the gradient (Theano's rule)
    np.testing.assert_array_equal(f(xv, gv), want)


def test_first_tie_rule_on_a_hand_computed_case():
    """cuDNN's rule: only the first tied maximum in row-major window order gets the gradient."""
    x = pt.tensor4("x", dtype="float32")
    gout = pt.tensor4("g", dtype="float32")
    f = pytensor.function([x, gout], pytensor.grad((max_pool2x2(x, ties="first") * gout).sum(), x), mode="CVM")
    xv = np.array([[[[1, 5, 0, 0], [2, 3, 0, 0], [7, 7, 1, 2], [7, 1, 3, 4]]]], np.float32)
    gv = np.array([[[[10, 20], [30, 40]]]], np.float32)
    want = np.array([[[[0, 10, 20, 0], [0, 0, 0, 0], [30, 0, 0, 0], [0, 0, 0, 40]]]], np.float32)
    np.testing.assert_array_equal(f(xv, gv), want)


def _all_equal_windows():
    """Every window constant (one value per channel and window), odd height and width."""
    values = RNG.integers(-3, 4, (2, 3, 3, 4)).astype(np.float32)
    x = np.repeat(np.repeat(values, 2, axis=2), 2, axis=3)
    return np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1)), constant_values=9)  # a dropped row and column


def _every_tie_pattern():
    """One window per subset of two, three or four of its positions holding the tied maximum (the
    other positions lower), at a negative and at a positive maximum; a trailing row and column of
    larger values that pooling must drop (ignore_border=True), so they must get no gradient."""
    windows = []
    for top, low in ((-2.0, -5.0), (3.0, 1.0)):
        for size in (2, 3, 4):
            for tied in itertools.combinations(range(4), size):
                window = np.full(4, low, np.float32)
                window[list(tied)] = top
                windows.append(window.reshape(2, 2))
    cols = len(windows) // 2
    x = np.full((1, 1, 5, 2 * cols + 1), 100.0, np.float32)
    for k, window in enumerate(windows):
        a, b = divmod(k, cols)
        x[0, 0, 2 * a : 2 * a + 2, 2 * b : 2 * b + 2] = window
    return x


def _conv_like():
    """A binary conv layer's pre-activations: {-1, 0, 1} inputs (0: padding) times +-1 weights,
    integers, plus one float bias per channel; odd height and width."""
    xin = RNG.choice([-1.0, 1.0], (3, 4, 7, 9)).astype(np.float32)
    w = RNG.choice([-1.0, 1.0], (5, 4, 3, 3)).astype(np.float32)
    bias = RNG.standard_normal(5).astype(np.float32)
    return conv3x3_numpy(xin, w) + bias[None, :, None, None]


TIED_INPUTS = {"all-equal": _all_equal_windows, "every-pattern": _every_tie_pattern, "conv-like": _conv_like}


@pytest.fixture(scope="module")
def tied_cases():
    cases = {}
    for name, make in TIED_INPUTS.items():
        x = make()
        n, c, h, w = x.shape
        gz = RNG.integers(1, 50, (n, c, h // 2, w // 2)).astype(np.float32)  # distinct per window
        cases[name] = (x, gz)
    x, _ = cases["conv-like"]
    windows = x[:, :, :6, :8].reshape(3, 5, 3, 2, 4, 2)
    tied = ((windows == windows.max(axis=(3, 5), keepdims=True)).sum(axis=(3, 5)) > 1).mean()
    assert tied > 0.1, f"the conv-like input should tie often, tied {tied:.2f} of windows"
    return cases


@pytest.mark.parametrize("ties", POOL_TIES)
def test_numpy_pool_gradient_kernel_matches_the_reference_on_ties(tied_cases, ties):
    for name, (x, gz) in tied_cases.items():
        got = max_pool2x2_grad_numpy(x, max_pool2x2_numpy(x), gz, ties=ties)
        np.testing.assert_array_equal(got, reference_pool_grad(x, gz, ties), err_msg=f"{name}, ties={ties}")


def test_the_two_tie_rules_differ_exactly_where_windows_tie(tied_cases):
    """ "first" passes each window's gradient once; "all" once per tied maximum."""
    for name, (x, gz) in tied_cases.items():
        out = max_pool2x2_numpy(x)
        ones = np.ones_like(gz)
        first = max_pool2x2_grad_numpy(x, out, ones, ties="first")
        every = max_pool2x2_grad_numpy(x, out, ones, ties="all")
        n, c, h, w = x.shape
        windows = x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)
        maxima = (windows == out[:, :, :, None, :, None]).sum(axis=(3, 5))
        assert first.sum() == gz.size, name
        assert every.sum() == maxima.sum(), name
        assert ((every - first) >= 0).all() and (maxima > 1).any(), name


def test_bad_tie_rule_is_refused():
    with pytest.raises(ValueError, match="conv.py: max_pool2x2 ties"):
        max_pool2x2(pt.tensor4("x"), ties="last")
    with pytest.raises(ValueError, match="ties"):
        max_pool2x2_grad_numpy(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 1, 1)), np.ones((1, 1, 1, 1)), ties="one")


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="conv.py"):
        conv3x3(pt.matrix("x"), pt.tensor4("w"))
    with pytest.raises(ValueError, match="3x3"):
        conv3x3(pt.tensor4("x"), pt.tensor("w", shape=(2, 3, 5, 5)))
    with pytest.raises(ValueError, match="channels"):
        conv3x3(pt.tensor("x", shape=(None, 4, None, None)), pt.tensor("w", shape=(2, 3, 3, 3)))
    with pytest.raises(ValueError, match="conv.py"):
        conv3x3_numpy(np.zeros((1, 4, 5, 5), np.float32), np.zeros((2, 3, 3, 3), np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        max_pool2x2(pt.tensor4("x", dtype="int32"))


def test_blas_thread_setting_changes_no_value(monkeypatch):
    x, w = f32(3, 4, 6, 5), f32(2, 4, 3, 3)
    want = conv3x3_numpy(x, w)
    for threads in ("0", "2"):
        monkeypatch.setenv("BNN_CONV_THREADS", threads)
        np.testing.assert_array_equal(conv3x3_numpy(x, w), want)
    monkeypatch.setenv("BNN_CONV_THREADS", "many")
    with pytest.raises(ValueError, match="BNN_CONV_THREADS"):
        conv3x3_numpy(x, w)


def _modes():
    modes = ["CVM"]
    for mode, module in (("NUMBA", "numba"), ("JAX", "jax")):
        found = importlib.util.find_spec(module) is not None
        reason = f"{module} is not installed"
        modes.append(mode if found else pytest.param(mode, marks=pytest.mark.skip(reason=reason)))
    return modes


@pytest.mark.parametrize("mode", _modes())
@pytest.mark.parametrize("ties", POOL_TIES)
def test_tie_rules_are_exact_in_every_backend(tied_cases, mode, ties):
    x, g = pt.tensor4("x", dtype="float32"), pt.tensor4("g", dtype="float32")
    y = max_pool2x2(x, ties=ties)
    f = pytensor.function([x, g], [y, pytensor.grad((y * g).sum(), x)], mode=mode)
    for name, (xv, gv) in tied_cases.items():
        out, gx = (np.asarray(v) for v in f(xv, gv))
        np.testing.assert_array_equal(out, reference_pool(xv), err_msg=f"{mode} {name}: forward")
        np.testing.assert_array_equal(gx, reference_pool_grad(xv, gv, ties), err_msg=f"{mode} {name}, {ties}")


@pytest.mark.parametrize("ties", POOL_TIES)
def test_xla_pool_gradient_kernel_matches_the_reference_on_ties(tied_cases, ties):
    """The JAX kernel directly, as it runs on an accelerator (the JAX mode uses it on a CPU too)."""
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    from reproduction.conv import _max_pool2x2_grad_jax

    for name, (x, gz) in tied_cases.items():
        got = np.asarray(_max_pool2x2_grad_jax(x, max_pool2x2_numpy(x), gz, ties))
        np.testing.assert_array_equal(got, reference_pool_grad(x, gz, ties), err_msg=f"{name}, ties={ties}")


@pytest.fixture(scope="module")
def block():
    """A conv -> pool block with a loss, and its gradients: what a training graph compiles."""
    x, w, g = (pt.tensor4(n, dtype="float32") for n in ("x", "w", "g"))
    y = conv3x3(x, w)
    p = max_pool2x2(y)
    loss = (p * g).sum() + (y * y).sum() * 0.5
    rng = np.random.default_rng(7)
    # integer-valued inputs, as in the BNN, make ties in the pooling windows
    xv = rng.integers(-1, 2, (2, 3, 7, 9)).astype(np.float32)
    wv = rng.choice([-1.0, 1.0], (5, 3, 3, 3)).astype(np.float32)
    gv = rng.standard_normal((2, 5, 3, 4)).astype(np.float32)
    return (x, w, g), [y, p, *pytensor.grad(loss, [x, w])], (xv, wv, gv)


@pytest.fixture(scope="module")
def cvm_values(block):
    inputs, outputs, values = block
    return pytensor.function(list(inputs), outputs, mode="CVM")(*values)


@pytest.mark.parametrize("mode", _modes())
def test_same_values_in_every_backend(block, cvm_values, mode):
    inputs, outputs, values = block
    got = pytensor.function(list(inputs), outputs, mode=mode)(*values)
    xv, wv, gv = values
    y = reference_conv(xv, wv)
    np.testing.assert_array_equal(cvm_values[0], y)  # small integers: exact in float32
    for name, a, b in zip(("conv", "pool", "dx", "dw"), got, cvm_values):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-5, atol=1e-4, err_msg=f"{mode}: {name}")


def test_xla_kernels_match_numpy():
    """The JAX kernels used on a GPU (on a CPU the JAX mode calls the numpy kernels instead)."""
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    from reproduction.conv import _conv3x3_grad_w_jax, _conv3x3_jax, conv3x3_grad_w_numpy

    x, w, g = f32(2, 3, 5, 4), f32(4, 3, 3, 3), f32(2, 4, 5, 4)
    np.testing.assert_allclose(np.asarray(_conv3x3_jax(x, w)), reference_conv(x, w), rtol=1e-5, atol=1e-5)
    want = conv3x3_grad_w_numpy(x.astype(np.float64), g.astype(np.float64))
    np.testing.assert_allclose(np.asarray(_conv3x3_grad_w_jax(x, g)), want, rtol=1e-5, atol=1e-5)
