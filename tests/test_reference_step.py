"""Our compiled training step against a plain-numpy float32 implementation of the original's formulas
(results/reference_bnn.py), step by step, in every PyTensor back end (SOURCES.md §1).

Dropout off, fixed batches. Before each step the reference takes our current state (parameters,
both Adam states, batch-norm statistics); after it, our loss and every array of the new state must
agree with the reference's to within twice the reference's first-order rounding bound plus 4 ulps
(results/reference_bnn.py explains why any float32 implementation of the formulas lies within that
bound: summation order, fused multiply-adds and reassociated products included), and the step
counters exactly. Every binarized weight must be identical, in these step-by-step comparisons and
also along a reference run that follows its own trajectory from the same initial state. The test
data make every such decision robust: inputs are multiples of 1/8 (so the first layer's sums are
exact in any order), and the test checks that no activation, straight-through mask, pooling
window or latent weight lies within its rounding bound of the threshold (``undecided``), which
would make the comparison depend on rounding rather than on the formulas.
"""
import importlib.util

import numpy as np
import pytest

from reproduction.binarize import binary_tanh_unit
from reproduction.functions import compile_functions
from reproduction.layers import BatchNorm, Conv2DLayer, DenseLayer, MaxPool2x2, Nonlinearity, binary_layers
from results import reference_bnn as ref

F32 = np.float32
MODES = ["CVM", "NUMBA"] + (["JAX"] if importlib.util.find_spec("jax") else [])


def _mlp(seed):
    rng = np.random.RandomState(seed)
    layers = []
    sizes = [12, 16, 10]
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [DenseLayer(n_in, n_out, rng=rng, name=f"d{i}"), BatchNorm(n_out, name=f"bn{i}")]
        if i < len(sizes) - 2:
            layers.append(Nonlinearity(binary_tanh_unit))
    return layers


def _convnet(seed, ties="first"):
    rng = np.random.RandomState(seed)
    return [Conv2DLayer(2, 4, rng=rng, name="c0"), BatchNorm(4, axes=(0, 2, 3), name="bn0"),
            Nonlinearity(binary_tanh_unit),
            Conv2DLayer(4, 4, rng=rng, name="c1"), MaxPool2x2(ties), BatchNorm(4, axes=(0, 2, 3), name="bn1"),
            Nonlinearity(binary_tanh_unit),
            DenseLayer(36, 10, rng=rng, name="d2"), BatchNorm(10, name="bn2")]


def _batches(seed, shape, steps):
    """Inputs that are multiples of 1/8 in [-1, 1] and ±1 one-hot targets."""
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(steps):
        x = (rng.randint(-8, 9, size=shape) / 8).astype(F32)
        t = (2 * np.eye(10)[rng.randint(0, 10, shape[0])] - 1).astype(F32)
        out.append((x, t))
    return out


def _blocks(layers):
    """The current values of our network as the reference's blocks."""
    blocks = []
    for layer in layers:
        if layer in binary_layers(layers):
            kind = "conv" if isinstance(layer, Conv2DLayer) else "dense"
            blocks.append(dict(kind=kind, layer=layer, pool=False, act=False, ties="first"))
        elif isinstance(layer, MaxPool2x2):
            blocks[-1].update(pool=True, ties=layer.ties)
        elif isinstance(layer, BatchNorm):
            blocks[-1]["bn"] = layer
        else:
            blocks[-1]["act"] = True
    return [ref.Block(b["kind"], b["layer"].W.get_value(), b["layer"].b.get_value(), b["bn"].beta.get_value(),
                      b["bn"].gamma.get_value(), b["bn"].mean.get_value(), b["bn"].inv_std.get_value(),
                      b["layer"].W_LR_scale, b["pool"], b["act"], b["ties"]) for b in blocks]


def _adam(functions, layers, name, keys):
    """One of our Adam states as the reference's: ``keys`` maps the reference's names to params."""
    by_name = {v.name: v for v in functions.state}
    return ref.Adam(by_name[f"{name}.t"].get_value(),
                    {k: by_name[f"{name}.m.{p.name}"].get_value() for k, p in keys.items()},
                    {k: by_name[f"{name}.v.{p.name}"].get_value() for k, p in keys.items()})


def _keys(layers):
    blocks = [layer for layer in layers if layer in binary_layers(layers)]
    bns = [layer for layer in layers if isinstance(layer, BatchNorm)]
    W = {f"W{i}": blk.W for i, blk in enumerate(blocks)}
    rest = {}
    for i, (blk, bn) in enumerate(zip(blocks, bns)):
        rest.update({f"b{i}": blk.b, f"beta{i}": bn.beta, f"gamma{i}": bn.gamma})
    return W, rest


def _close(ours, val, what):
    """|ours - reference| <= 2 e + 4 u |reference|, the bound of results/reference_bnn.py."""
    ours = np.asarray(ours, dtype=np.float64)
    tol = 2 * val.e + 4 * ref.U * np.abs(val.d)
    excess = np.abs(ours - val.d) - tol
    assert np.all(excess <= 0), (f"{what}: {int(np.sum(excess > 0))} of {excess.size} values differ by more "
                                 f"than the rounding bound (worst: ours {ours.flat[np.argmax(excess)]!r}, "
                                 f"reference {val.d.flat[np.argmax(excess)]!r}, bound {tol.flat[np.argmax(excess)]:.3g})")


def _run(build, input_shape, batch_shape, mode, steps, lr):
    layers = build(0)
    functions = compile_functions(layers, input_shape, mode=mode)
    W_keys, rest_keys = _keys(layers)
    free = (_blocks(layers), _adam(functions, layers, "adam_W", W_keys), _adam(functions, layers, "adam", rest_keys))
    flips = 0
    for k, (x, t) in enumerate(_batches(1, batch_shape, steps)):
        blocks = _blocks(layers)
        step = ref.train_step(blocks, _adam(functions, layers, "adam_W", W_keys),
                              _adam(functions, layers, "adam", rest_keys), x, t, F32(lr), bounds=True)
        assert step.undecided == {"activation": 0, "ste": 0, "pool": 0, "weight": 0}, (k, step.undecided)
        loss = functions.train(x, t, F32(lr))
        _close(loss, step.loss, f"step {k + 1} loss")
        for i, (blk, new) in enumerate(zip(_blocks(layers), step.blocks)):
            for name in ("W", "b", "beta", "gamma", "mean", "inv_std"):
                _close(getattr(blk, name), new[name], f"step {k + 1} block {i} {name}")
            assert np.array_equal(ref.binarize(blk.W), ref.binarize(new["W"].v)), f"step {k + 1} block {i} Wb"
            flips += int(np.sum(ref.binarize(blk.W) != ref.binarize(blocks[i].W)))
        ours_W, ours_rest = _adam(functions, layers, "adam_W", W_keys), _adam(functions, layers, "adam", rest_keys)
        assert ours_W.t == step.t_W.v == k + 1 and ours_rest.t == step.t_rest.v == k + 1
        for ours, new in ((ours_W, step.adam_W), (ours_rest, step.adam_rest)):
            for key, (m, v) in new.items():
                _close(ours.m[key], m, f"step {k + 1} Adam m {key}")
                _close(ours.v[key], v, f"step {k + 1} Adam v {key}")

        free = ref.advance(*free, ref.train_step(*free, x, t, F32(lr)))
        for i, (ours, theirs) in enumerate(zip(_blocks(layers), free[0])):
            assert np.array_equal(ref.binarize(ours.W), ref.binarize(theirs.W)), \
                f"step {k + 1} block {i}: the free-running reference binarizes differently"
    assert flips > 0, "no binarized weight changed: the test would not exercise the sign updates"


@pytest.mark.parametrize("mode", MODES)
def test_mlp_steps_match_the_numpy_reference(mode):
    _run(_mlp, (12,), (16, 12), mode, steps=5, lr=0.03)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ties", ["first", "all"])   # the pooling gradient at tied maxima: cuDNN's, Theano CPU's
def test_convnet_steps_match_the_numpy_reference(mode, ties):
    _run(lambda seed: _convnet(seed, ties), (2, 6, 6), (8, 2, 6, 6), mode, steps=3, lr=0.03)
