"""A tiny problem and network for the training-loop tests, shared by the in-process tests and the
subprocess script ``tests/train_tiny.py``."""
import numpy as np

from reproduction.backend import default_mode
from reproduction.binarize import binary_tanh_unit
from reproduction.dataset import Split, Splits
from reproduction.functions import compile_functions
from reproduction.layers import BatchNorm, DenseLayer, Dropout, Nonlinearity
from reproduction.train import Run, train

MODE = default_mode()


def synthetic_splits(seed=0, n_train=1000, dim=32, n_eval=200):
    """Ten noisy ±1 prototypes: a problem a small binary network solves in a few epochs."""
    rng = np.random.RandomState(seed)
    prototypes = np.where(rng.rand(10, dim) < 0.5, -1.0, 1.0)

    def split(n):
        y = rng.randint(0, 10, n)
        X = prototypes[y] + rng.randn(n, dim) * 0.8
        return Split(X.reshape(n, 1, 4, dim // 4).astype(np.float32), y)

    return Splits(split(n_train), split(n_eval), split(n_eval))


def small_network(seed=1234, dropout=0.1, mode=None):
    """(rng, layers, functions): dense 32-64-10 with batch norm, binary units and dropout, so that
    a checkpoint has to carry parameters, both optimizers' states, BN statistics and a generator."""
    rng = np.random.RandomState(seed)
    layers = [DenseLayer(32, 64, rng=rng, name="d0"), BatchNorm(64, name="bn0"), Nonlinearity(binary_tanh_unit),
              Dropout(dropout, rng=rng), DenseLayer(64, 10, rng=rng, name="d1"), BatchNorm(10, name="bn1")]
    return rng, layers, compile_functions(layers, (1, 4, 8), mode=mode or MODE)


def scramble(net, seed=99):
    """Overwrite every piece of a network's state with other values, as a fresh process building
    the network from another seed would have: whatever a resume fails to restore shows."""
    rng, layers, functions = net
    other = np.random.RandomState(seed)
    for var in functions.state:
        value = np.asarray(var.get_value())
        var.set_value(other.uniform(-1, 1, value.shape).astype(value.dtype))
    for container in functions.rngs:
        container.storage[0] = np.random.default_rng(seed)
    rng.seed(seed)
    return net


def resettable(net):
    """A function that puts back the network's state as it is now (its state at construction,
    when called right after ``small_network``), so that one compile serves several fresh runs."""
    import copy

    rng, _, functions = net
    saved = (state_of(functions), [copy.deepcopy(c.storage[0]) for c in functions.rngs], rng.get_state())

    def fresh():
        for var, value in zip(functions.state, saved[0]):
            var.set_value(value.copy())
        for c, value in zip(functions.rngs, saved[1]):
            c.storage[0] = copy.deepcopy(value)
        rng.set_state(saved[2])
        return net

    return fresh


def run_in(folder, name="run"):
    return Run(folder / name, "synthetic", {"batch_size": 50}, {"mode": MODE}, {"epochs": 4})


def train_tiny(net, folder, name="run", epochs=4, splits=None, **kw):
    rng, layers, functions = net
    return train(functions, layers, splits or synthetic_splits(), run_in(folder, name), rng=rng, num_epochs=epochs,
                 batch_size=50, LR_start=0.01, LR_decay=0.8, progress=False, **kw)


def numbers(record):
    """What a resumed run must reproduce exactly: every epoch's row but its duration, and the result."""
    rows = [{k: v for k, v in row.items() if k != "seconds"} for row in record["epochs"]]
    return rows, [record[k] for k in ("best_epoch", "best_val_err", "test_err", "test_loss", "status")]


def state_of(functions):
    return [np.asarray(var.get_value()).copy() for var in functions.state]


def same_arrays(a, b):
    return len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b))


def stub_network(loss=0.1, err=0.1):
    """A stand-in for a compiled network (no state, constant outputs), for tests of the loop's
    bookkeeping that need no learning and no compile time."""
    from reproduction.functions import Functions

    functions = Functions(lambda x, t, lr: np.float32(loss), lambda x, t: (np.float32(loss), np.float32(err)), [], [])
    return np.random.RandomState(0), [], functions
