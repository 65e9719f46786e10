"""Parameters and checkpoints in HDF5, and the original's npz layout for exchange.

``params.h5`` holds one group per block, ``block0``, ``block1``, ... in network order, each with the
float32 datasets ``W`` (dense: (n_in, n_out); convolution: (n_out, n_in, 3, 3); the real-valued
latent weights, not their signs), ``b``, ``beta``, ``gamma``, ``mean``, ``inv_std``. A block is a
binary layer and the batch norm that follows it. The npz export lists the same arrays as
``arr_0, arr_1, ...`` in that order, which is what the original ``mnist.py`` saved and what its
run-time code loads.

A checkpoint holds everything needed to continue a run exactly: every shared variable the training
function updates (parameters, both optimizer states, batch-norm statistics), the random generators
(dropout, stochastic binarization, the shuffling RandomState), the training-set order, and the loop's
scalars and record so far.
"""
import json
import pickle

from pathlib import Path

import h5py
import numpy as np

from .files import atomic_output, to_json
from .layers import BatchNorm, _BinaryLayer

BLOCK_KEYS = ("W", "b", "beta", "gamma", "mean", "inv_std")


def blocks(layers):
    """The parameters grouped per block: [{"W": shared, "b": shared, "beta": ..., ...}, ...]."""
    out = []
    for layer in layers:
        if isinstance(layer, _BinaryLayer):
            out.append({"W": layer.W, "b": layer.b})
        elif isinstance(layer, BatchNorm):
            out[-1].update(beta=layer.beta, gamma=layer.gamma, mean=layer.mean, inv_std=layer.inv_std)
    return out


def save_params(path, layers, **attrs) -> None:
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = 1
        for key, value in attrs.items():
            f.attrs[key] = value
        for i, block in enumerate(blocks(layers)):
            group = f.create_group(f"block{i}")
            for key, var in block.items():
                group.create_dataset(key, data=var.get_value())


class ParamsError(ValueError):
    """A params.h5 that cannot be read; ``str(e)`` names the file and the problem."""


def read_params(path):
    """A params.h5's root attributes and its blocks, each a {name: float32 array} dict."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: not found")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ParamsError(f"{path}: cannot open as HDF5 ({e})") from None
    with f:
        names = sorted((k for k in f if k.startswith("block")), key=lambda k: int(k[5:]))
        if not names:
            raise ParamsError(f"{path}: no block0, block1, ... groups; not a params.h5 file")
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        return attrs, [{k: np.asarray(f[n][k], dtype=np.float32) for k in f[n]} for n in names]


def load_blocks(path) -> list:
    """A params.h5 as a list of {name: float32 array} dicts, one per block."""
    return read_params(path)[1]


def load_params(path, layers) -> None:
    """Set the network's parameters from a params.h5 written by ``save_params``."""
    stored = load_blocks(path)
    mine = blocks(layers)
    if len(stored) != len(mine):
        raise ValueError(f"{path}: {len(stored)} blocks, the network has {len(mine)}")
    for i, (s, m) in enumerate(zip(stored, mine)):
        for key, var in m.items():
            if s[key].shape != var.get_value().shape:
                raise ValueError(f"{path}: block{i}/{key} has shape {s[key].shape}, "
                                 f"the network wants {var.get_value().shape}")
            var.set_value(s[key])


def export_npz(params_h5, npz_path) -> None:
    """The original's layout: ``arr_0 ... arr_{6L-1}`` = (W, b, beta, gamma, mean, inv_std) per block."""
    arrays = [block[k] for block in load_blocks(params_h5) for k in BLOCK_KEYS]
    with atomic_output(npz_path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, *arrays)


def load_npz_blocks(npz_path) -> list:
    """An npz in the original's layout as blocks (the inverse of ``export_npz``)."""
    with np.load(npz_path) as z:
        arrays = [z[f"arr_{i}"] for i in range(len(z.files))]
    if len(arrays) % len(BLOCK_KEYS):
        raise ValueError(f"{npz_path}: {len(arrays)} arrays, not a multiple of {len(BLOCK_KEYS)}")
    return [dict(zip(BLOCK_KEYS, arrays[i:i + 6])) for i in range(0, len(arrays), 6)]


def _rng_state(container) -> np.void:
    """A random generator's state, pickled (its leaves' numpy types matter to JAX). The C and Numba
    back ends keep a numpy Generator; the JAX back end keeps, inside the compiled function, a dict
    whose ``jax_state`` is the PRNG key."""
    value = container.storage[0]
    if isinstance(value, np.random.Generator):
        value = {"numpy": value.bit_generator.state}
    else:
        value = {"jax": {k: (np.asarray(v) if k == "jax_state" else v) for k, v in value.items()}}
    return np.void(pickle.dumps(value))


def _set_rng_state(container, state) -> None:
    saved = pickle.loads(state.tobytes())
    if "numpy" in saved:
        gen = np.random.default_rng()
        gen.bit_generator.state = saved["numpy"]
        container.storage[0] = gen
    else:
        container.storage[0] = saved["jax"]


def save_checkpoint(path, functions, shuffle_rng, order, loop: dict, record: dict) -> None:
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        for i, var in enumerate(functions.state):
            d = f.create_dataset(f"state/{i:04d}", data=np.asarray(var.get_value()))
            d.attrs["name"] = var.name or ""
        for i, rng in enumerate(functions.rngs):
            f.attrs[f"rng{i:03d}"] = _rng_state(rng)
        kind, keys, pos, has_gauss, cached = shuffle_rng.get_state()
        f.create_dataset("shuffle/keys", data=keys)
        f.attrs["shuffle"] = json.dumps([kind, int(pos), int(has_gauss), float(cached)])
        f.create_dataset("order", data=order)
        f.attrs["loop"] = to_json(loop)
        f.attrs["record"] = to_json(record)


def load_checkpoint(path, functions, shuffle_rng):
    """Restore the state saved by ``save_checkpoint``; returns (order, loop, record)."""
    with h5py.File(path, "r") as f:
        n_saved = len(f["state"])
        if n_saved != len(functions.state):
            raise ValueError(f"{path}: {n_saved} state arrays, this network has {len(functions.state)}"
                             " (different options from the run that wrote it?)")
        for i, var in enumerate(functions.state):
            d = f[f"state/{i:04d}"]
            value = np.asarray(d)
            if d.attrs["name"] != (var.name or "") or value.shape != np.shape(var.get_value()):
                raise ValueError(f"{path}: state {i} is {d.attrs['name']} {value.shape}, "
                                 f"expected {var.name} {np.shape(var.get_value())}")
            var.set_value(value.astype(np.asarray(var.get_value()).dtype))
        for i, rng in enumerate(functions.rngs):
            _set_rng_state(rng, f.attrs[f"rng{i:03d}"])
        kind, pos, has_gauss, cached = json.loads(f.attrs["shuffle"])
        shuffle_rng.set_state((kind, np.asarray(f["shuffle/keys"]), pos, has_gauss, cached))
        return np.asarray(f["order"]), json.loads(f.attrs["loop"]), json.loads(f.attrs["record"])
