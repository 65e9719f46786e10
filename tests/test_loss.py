import numpy as np
import pytensor
import pytensor.tensor as pt

from reproduction.dataset import one_hot_pm1
from reproduction.loss import error_rate, first_argmax, squared_hinge


def test_squared_hinge_and_error_rate_against_numpy():
    rng = np.random.RandomState(0)
    y = rng.randn(7, 10).astype(np.float32) * 2
    labels = rng.randint(0, 10, 7)
    t = one_hot_pm1(labels)
    out, target = pt.matrix(dtype="float32"), pt.matrix(dtype="float32")
    f = pytensor.function([out, target], [squared_hinge(out, target), error_rate(out, target)], mode="CVM")
    loss, err = f(y, t)
    assert np.isclose(loss, np.mean(np.maximum(0, 1 - t * y) ** 2), rtol=1e-6)
    assert np.isclose(err, np.mean(y.argmax(1) != labels))


def test_targets_are_plus_minus_one_one_hot():
    assert one_hot_pm1(np.array([2, 0]), 3).tolist() == [[-1, -1, 1], [1, -1, -1]]


def test_error_rate_breaks_ties_at_the_first_maximum_as_argmax():
    """T.argmax (and np.argmax) take the first of equal maxima; ours, built from float32 operations
    (no int64 argmax for JAX to truncate), does too."""
    y = np.array([[1, 3, 3, 0], [2, 2, 2, 2], [-1, -1, -5, -1], [0, 0, 0, 7]], dtype=np.float32)
    out, target = pt.matrix(dtype="float32"), pt.matrix(dtype="float32")
    idx, err = pytensor.function([out, target], [first_argmax(out), error_rate(out, target)], mode="CVM")(
        y, one_hot_pm1(np.array([1, 0, 3, 3]), 4))
    assert idx.dtype == np.float32 and idx.tolist() == y.argmax(1).tolist() == [1, 0, 0, 3]
    assert err == np.float32(0.25)
