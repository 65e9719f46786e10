import h5py
import numpy as np
import pytest

from reproduction.layers import BatchNorm, DenseLayer, Nonlinearity
from reproduction.store import (CheckpointError, export_npz, load_blocks, load_checkpoint, load_npz_blocks, load_params,
                                read_checkpoint, save_checkpoint, save_params)


def _layers(seed):
    rng = np.random.RandomState(seed)
    return [DenseLayer(5, 4, rng=rng), BatchNorm(4), Nonlinearity(abs), DenseLayer(4, 3, rng=rng), BatchNorm(3)]


def test_params_round_trip_and_the_original_npz_layout(tmp_path):
    a, b = _layers(0), _layers(1)
    a[1].mean.set_value(np.arange(4, dtype=np.float32))
    save_params(tmp_path / "p.h5", a, dataset="mnist")
    with h5py.File(tmp_path / "p.h5") as f:
        assert sorted(f) == ["block0", "block1"] and f.attrs["dataset"] == "mnist"
        assert sorted(f["block0"]) == ["W", "b", "beta", "gamma", "inv_std", "mean"]
    load_params(tmp_path / "p.h5", b)
    assert np.array_equal(b[0].W.get_value(), a[0].W.get_value())
    assert np.array_equal(b[1].mean.get_value(), np.arange(4))
    export_npz(tmp_path / "p.h5", tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz") as z:
        assert sorted(z.files, key=lambda k: int(k[4:])) == [f"arr_{i}" for i in range(12)]
        assert np.array_equal(z["arr_0"], a[0].W.get_value()) and np.array_equal(z["arr_4"], np.arange(4))
    assert all(np.array_equal(x["W"], y["W"]) for x, y in zip(load_npz_blocks(tmp_path / "p.npz"),
                                                               load_blocks(tmp_path / "p.h5")))


def test_loading_into_a_different_network_names_the_file_and_the_shape(tmp_path):
    save_params(tmp_path / "p.h5", _layers(0))
    rng = np.random.RandomState(0)
    other = [DenseLayer(6, 4, rng=rng), BatchNorm(4), DenseLayer(4, 3, rng=rng), BatchNorm(3)]
    with pytest.raises(ValueError, match=r"p\.h5: block0/W has shape \(5, 4\)"):
        load_params(tmp_path / "p.h5", other)


# Checkpoints: what a resume may trust.

def _state(seed=0):
    """A stand-in for compiled functions: named shared arrays (one scalar) and one generator."""
    import types

    import pytensor

    rng = np.random.RandomState(seed)
    state = [pytensor.shared(rng.rand(40, 30).astype(np.float32), name="W"),
             pytensor.shared(np.float32(3.0), name="t")]
    return types.SimpleNamespace(state=state, rngs=[types.SimpleNamespace(storage=[np.random.default_rng(seed)])])


def _save(path, functions, epoch, previous=None):
    save_checkpoint(path, functions, np.random.RandomState(epoch), np.arange(10), {"epoch": epoch},
                    {"status": "running"}, previous=previous)


def test_a_checkpoint_restores_every_array_and_generator_and_keeps_the_one_before(tmp_path):
    a, b = _state(0), _state(1)
    _save(tmp_path / "c.h5", a, 1, previous=tmp_path / "c.prev.h5")
    assert not (tmp_path / "c.prev.h5").exists()
    a.state[1].set_value(np.float32(4.0))
    _save(tmp_path / "c.h5", a, 2, previous=tmp_path / "c.prev.h5")
    assert read_checkpoint(tmp_path / "c.prev.h5").loop == {"epoch": 1}
    shuffle = np.random.RandomState(7)
    order, loop, record = load_checkpoint(tmp_path / "c.h5", b, shuffle)
    assert loop == {"epoch": 2} and record == {"status": "running"} and np.array_equal(order, np.arange(10))
    assert np.array_equal(b.state[0].get_value(), a.state[0].get_value()) and b.state[1].get_value() == 4.0
    assert b.rngs[0].storage[0].random() == a.rngs[0].storage[0].random()
    assert shuffle.randint(1 << 30) == np.random.RandomState(2).randint(1 << 30)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5", "c.prev.h5"]


def test_a_truncated_or_damaged_checkpoint_is_refused_in_one_line(tmp_path):
    a = _state()
    _save(tmp_path / "c.h5", a, 1)
    data = (tmp_path / "c.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"^\S*cut\.h5: unreadable \(.*\)$"):
        read_checkpoint(tmp_path / "cut.h5")
    with h5py.File(tmp_path / "c.h5") as f:                   # one flipped bit inside W's data
        offset = f["state/0000"].id.get_chunk_info(0).byte_offset
    flipped = bytearray(data)
    flipped[offset + 100] ^= 0x10
    (tmp_path / "flip.h5").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match=r"flip\.h5: unreadable"):
        read_checkpoint(tmp_path / "flip.h5")
    with h5py.File(tmp_path / "c.h5", "a") as f:
        del f.attrs["complete"]
    with pytest.raises(CheckpointError, match=r"c\.h5: incomplete"):
        read_checkpoint(tmp_path / "c.h5")
    with pytest.raises(CheckpointError, match=r"nothing\.h5: not found"):
        read_checkpoint(tmp_path / "nothing.h5")


def test_a_checkpoint_of_another_network_is_refused_before_anything_changes(tmp_path):
    import types

    import pytensor

    _save(tmp_path / "c.h5", _state(), 1)
    other = _state(1)
    other.state[0] = pytensor.shared(np.zeros((40, 31), np.float32), name="W")
    with pytest.raises(CheckpointError, match=r"state 0 is W \(40, 30\), this network has W \(40, 31\)"):
        load_checkpoint(tmp_path / "c.h5", other, np.random.RandomState(0))
    assert other.state[1].get_value() == 3.0 and not other.state[0].get_value().any()
    fewer = types.SimpleNamespace(state=other.state[:1], rngs=other.rngs)
    with pytest.raises(CheckpointError, match="2 state arrays, this network has 1"):
        load_checkpoint(tmp_path / "c.h5", fewer, np.random.RandomState(0))
