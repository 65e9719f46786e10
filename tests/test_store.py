import h5py
import numpy as np
import pytest

from reproduction.layers import BatchNorm, DenseLayer, Nonlinearity
from reproduction.store import export_npz, load_blocks, load_npz_blocks, load_params, save_params


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
