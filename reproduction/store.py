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
scalars and record so far (including the position inside an epoch and its partial loss sum).
Each array carries a checksum, and a ``complete`` mark is the last thing written, so a damaged file
is refused rather than resumed from.
"""
import io
import json
import pickle
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .files import atomic_output, to_json

BLOCK_KEYS = ("W", "b", "beta", "gamma", "mean", "inv_std")


def blocks(layers):
    """The parameters grouped per block: [{"W": shared, "b": shared, "beta": ..., ...}, ...]."""
    from .layers import BatchNorm, _BinaryLayer   # here: reading params.h5 needs no PyTensor (gpu_xnor)

    out = []
    for layer in layers:
        if isinstance(layer, _BinaryLayer):
            out.append({"W": layer.W, "b": layer.b})
        elif isinstance(layer, BatchNorm):
            out[-1].update(beta=layer.beta, gamma=layer.gamma, mean=layer.mean, inv_std=layer.inv_std)
    return out


@contextmanager
def hdf5_output(path, *, previous=None):
    """An HDF5 file built in memory, then written to ``path`` atomically (``files.atomic_output``).
    HDF5 writing straight to a full disk fails inside its own close and can take the process
    down (h5py 3.16 / HDF5 2.0.0 on a full tmpfs: errors in ``__dealloc__``, then a segmentation
    fault); writing the finished image fails with a plain OSError instead."""
    image = io.BytesIO()
    with h5py.File(image, "w") as f:
        yield f
    with atomic_output(path, previous=previous) as tmp, open(tmp, "wb") as fh:
        fh.write(image.getbuffer())


def save_params(path, layers, **attrs) -> None:
    with hdf5_output(path) as f:
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


def _write_npz(npz_path, blocks_) -> None:
    arrays = [block[k] for block in blocks_ for k in BLOCK_KEYS]
    with atomic_output(npz_path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, *arrays)


def export_npz(params_h5, npz_path) -> None:
    """The original's layout: ``arr_0 ... arr_{6L-1}`` = (W, b, beta, gamma, mean, inv_std) per block."""
    _write_npz(npz_path, load_blocks(params_h5))


def save_npz(npz_path, layers) -> None:
    """The network's parameters in the original's npz layout (as ``export_npz`` of its params.h5)."""
    _write_npz(npz_path, [{k: var.get_value() for k, var in block.items()} for block in blocks(layers)])


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


def _set_rng_state(container, saved: dict) -> None:
    """``saved``: a state pickled by ``_rng_state``, unpickled."""
    if "numpy" in saved:
        gen = np.random.default_rng()
        gen.bit_generator.state = saved["numpy"]
        container.storage[0] = gen
    else:
        container.storage[0] = saved["jax"]


CHECKPOINT_FORMAT = 2   # 2: array checksums, the ``complete`` mark, mid-epoch positions in ``loop``


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, truncated, corrupt, or written by another
    network; ``str(e)`` names the file and the problem in one line."""


def _short(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _state_dataset(f, name, value):
    """Array datasets carry HDF5's Fletcher-32 checksum, so a flipped bit fails the read instead of
    resuming from wrong numbers (HDF5 cannot chunk, hence checksum, a scalar or empty array)."""
    value = np.asarray(value)
    checked = value.ndim > 0 and value.size > 0
    return f.create_dataset(name, data=value, fletcher32=checked)


def save_checkpoint(path, functions, shuffle_rng, order, loop: dict, record: dict, *, previous=None) -> None:
    """Write the whole training state to ``path`` atomically; with ``previous``, the checkpoint
    ``path`` held until now is kept there (see ``files.atomic_output``)."""
    with hdf5_output(path, previous=previous) as f:
        f.attrs["format"] = CHECKPOINT_FORMAT
        f.create_group("state")
        for i, var in enumerate(functions.state):
            d = _state_dataset(f, f"state/{i:04d}", var.get_value())
            d.attrs["name"] = var.name or ""
        for i, rng in enumerate(functions.rngs):
            f.attrs[f"rng{i:03d}"] = _rng_state(rng)
        kind, keys, pos, has_gauss, cached = shuffle_rng.get_state()
        _state_dataset(f, "shuffle/keys", keys)
        f.attrs["shuffle"] = json.dumps([kind, int(pos), int(has_gauss), float(cached)])
        _state_dataset(f, "order", order)
        f.attrs["loop"] = to_json(loop)
        f.attrs["record"] = to_json(record)
        f.attrs["complete"] = True       # written last: a file without it was cut short


@dataclass
class Checkpoint:
    """A checkpoint read into memory, checked, not yet applied to a network."""

    path: Path
    state: list          # [(name, array)] in ``functions.state`` order
    rngs: list           # generator states as ``_rng_state`` pickled them, in ``functions.rngs`` order
    shuffle: tuple       # numpy RandomState.get_state() tuple
    order: np.ndarray
    loop: dict
    record: dict


def read_checkpoint(path) -> Checkpoint:
    """Read and check a checkpoint written by ``save_checkpoint``; raise ``CheckpointError``
    (one line) when it is missing, truncated or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: not found")
    try:
        with h5py.File(path, "r") as f:
            if "format" in f.attrs and not f.attrs.get("complete", False):   # format 1 had neither
                raise CheckpointError(f"{path}: incomplete (written by a run that was cut short)")
            names = sorted(f["state"])
            state = [(f[f"state/{n}"].attrs["name"], np.asarray(f[f"state/{n}"])) for n in names]
            rngs = [pickle.loads(f.attrs[k].tobytes()) for k in sorted(k for k in f.attrs if k.startswith("rng"))]
            kind, pos, has_gauss, cached = json.loads(f.attrs["shuffle"])
            shuffle = (kind, np.asarray(f["shuffle/keys"]), pos, has_gauss, cached)
            return Checkpoint(path, state, rngs, shuffle, np.asarray(f["order"]),
                              json.loads(f.attrs["loop"]), json.loads(f.attrs["record"]))
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError, TypeError, EOFError, pickle.UnpicklingError) as e:
        raise CheckpointError(f"{path}: unreadable ({_short(e)})") from None


def restore_checkpoint(ckpt: Checkpoint, functions, shuffle_rng) -> None:
    """Set the network's state, its generators and the shuffling RandomState from ``ckpt``;
    ``CheckpointError`` (before changing anything) when it was written by a different network."""
    if len(ckpt.state) != len(functions.state) or len(ckpt.rngs) != len(functions.rngs):
        raise CheckpointError(f"{ckpt.path}: {len(ckpt.state)} state arrays, this network has "
                              f"{len(functions.state)} (different options from the run that wrote it?)")
    for i, ((name, value), var) in enumerate(zip(ckpt.state, functions.state)):
        if name != (var.name or "") or value.shape != np.shape(var.get_value()):
            raise CheckpointError(f"{ckpt.path}: state {i} is {name} {value.shape}, "
                                  f"this network has {var.name} {np.shape(var.get_value())}")
    for (_, value), var in zip(ckpt.state, functions.state):
        var.set_value(value.astype(np.asarray(var.get_value()).dtype))
    for saved, rng in zip(ckpt.rngs, functions.rngs):
        _set_rng_state(rng, saved)
    shuffle_rng.set_state(ckpt.shuffle)


def load_checkpoint(path, functions, shuffle_rng):
    """Restore the state saved by ``save_checkpoint``; returns (order, loop, record)."""
    ckpt = read_checkpoint(path)
    restore_checkpoint(ckpt, functions, shuffle_rng)
    return ckpt.order, ckpt.loop, ckpt.record


def state_bytes(functions) -> int:
    """The size of a checkpoint's arrays."""
    return sum(np.asarray(var.get_value()).nbytes for var in functions.state)


def params_epoch(path):
    """The ``epoch`` attribute of a params.h5, or None when the file is missing or unreadable."""
    try:
        with h5py.File(path, "r") as f:
            return int(f.attrs["epoch"])
    except (OSError, KeyError, ValueError, TypeError):
        return None
