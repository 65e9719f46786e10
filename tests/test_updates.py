"""Update rules against hand-computed steps (PAPER.md §1.2)."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from reproduction.shift import ap2_numpy
from reproduction.updates import adam, clipping_scaling, glorot_lr_scale, lr_decay, shift_adamax

F32 = np.float32


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


@pytest.mark.parametrize("fans, expected", [((784, 4096), 57.0380), ((4096, 4096), 73.9008),
                                            ((4096, 10), 52.3195), ((9 * 3, 9 * 128), 28.0357),
                                            ((8192, 1024), 78.3837), ((1024, 10), 26.2552)])
def test_glorot_learning_rate_scales_match_the_original_log(fans, expected):
    scale = glorot_lr_scale(*fans)
    assert scale.dtype == np.float32
    assert abs(float(scale) - expected) < 5e-5


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


def test_mnist_learning_rate_decay():
    decay = lr_decay(0.003, 3e-7, 1000)
    assert abs(decay - 0.990831944893) < 1e-12
    assert 0.003 * decay ** 999 == pytest.approx(3.0278e-7, rel=1e-4)   # the last epoch's LR (issue #7's log)
    assert abs(lr_decay(0.001, 3e-7, 500) - 0.983907435305) < 1e-12
    assert abs(lr_decay(0.001, 1e-6, 200) - 0.966050878990) < 1e-12
