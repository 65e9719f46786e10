"""The unique-filters analysis on weights built so that the answer is known."""
import h5py
import numpy as np
import pytest

from results import filters
from results.commands import main


def filters_from_codes(codes):
    """(n_out, n_in) 9-bit codes -> W (n_out, n_in, 3, 3) in {-1, +1}: bit j set means tap j is +1."""
    codes = np.asarray(codes)
    bits = (codes[..., None] >> np.arange(9)) & 1
    return (2.0 * bits - 1.0).reshape(*codes.shape, 3, 3).astype(np.float32)


def test_all_filters_equal():
    W = np.tile(np.random.default_rng(0).uniform(-1, 1, (1, 1, 3, 3)), (8, 4, 1, 1))
    layer = filters.analyze_layer("conv", W)
    assert (layer.total, layer.unique_per_map, layer.unique_in_layer) == (32, 4, 1)
    assert layer.fraction_per_map == pytest.approx(1 / 8)


def test_all_filters_distinct():
    # Codes with tap 0 set are canonical and distinct: no two are equal or negations of each other.
    codes = (2 * np.arange(40) + 1).reshape(10, 4)
    layer = filters.analyze_layer("conv", filters_from_codes(codes))
    assert layer.unique_per_map == layer.unique_in_layer == layer.total == 40


def test_a_filter_and_its_negation_count_once():
    f = filters_from_codes([[0b101100110]])
    W = np.concatenate([f, -f, f, -f * 0.5], axis=0)  # scaling does not change the sign
    layer = filters.analyze_layer("conv", W)
    assert (layer.unique_per_map, layer.unique_in_layer) == (1, 1)
    g = filters_from_codes([[0b101100111]])  # differs from f in one tap: a new filter
    assert filters.analyze_layer("conv", np.concatenate([W, g])).unique_in_layer == 2


def test_sign_of_zero_is_plus_one():
    ones = np.ones((1, 1, 3, 3), np.float32)
    zero_tap = ones.copy()
    zero_tap[0, 0, 1, 1] = 0.0  # sign(0) = +1: the same filter as all ones
    minus_tap = ones.copy()
    minus_tap[0, 0, 1, 1] = -0.1
    codes = filters.canonical_codes(np.concatenate([ones, zero_tap, minus_tap]))
    assert codes[0, 0] == codes[1, 0] != codes[2, 0]
    assert codes[0, 0] == 511


def test_per_map_counts_each_input_map_separately():
    # Map 0 holds one filter 4 times, map 1 the same filter twice and another twice.
    a, b = 0b1, 0b11
    layer = filters.analyze_layer("conv", filters_from_codes([[a, a], [a, a], [a, b], [a, b]]))
    assert (layer.unique_per_map, layer.unique_in_layer, layer.total) == (3, 2, 8)


def test_average_is_unweighted_over_conv_layers(tmp_path):
    path = tmp_path / "params.h5"
    with h5py.File(path, "w") as f:
        f.attrs["dataset"] = "cifar10"
        f.create_group("block0").create_dataset("W", data=filters_from_codes([[1], [1]]))  # 1/2 unique
        distinct = filters_from_codes((2 * np.arange(8) + 1).reshape(4, 2))
        f.create_group("block1").create_dataset("W", data=distinct)  # all unique: 1
        f.create_group("block2").create_dataset("W", data=np.ones((2, 10), np.float32))  # dense: skipped
    layers = filters.analyze(filters.load_conv_weights(path))
    assert [l.name for l in layers] == ["block0", "block1"]
    assert filters.average(layers) == pytest.approx(0.75)
    assert filters.average(layers, per_map=False) == pytest.approx(0.75)


def test_per_layer_count_is_bounded_by_256_canonical_filters():
    W = np.random.default_rng(1).uniform(-1, 1, (64, 64, 3, 3))
    layer = filters.analyze_layer("conv", W)
    assert layer.unique_in_layer <= 256 < layer.unique_per_map


def test_errors_and_cli(tmp_path, capsys):
    path = tmp_path / "mlp.h5"
    with h5py.File(path, "w") as f:
        f.create_group("block0").create_dataset("W", data=np.ones((784, 10), np.float32))
    with pytest.raises(filters.FiltersError, match="mlp.h5: no conv layers"):
        filters.load_conv_weights(path)
    assert main(["filters", str(path)]) == 2
    assert "no conv layers" in capsys.readouterr().err
    with h5py.File(path, "a") as f:
        f.create_group("block1").create_dataset("W", data=filters_from_codes([[1, 3], [1, 5]]))
    assert main(["filters", str(path)]) == 0
    out = capsys.readouterr().out
    assert "block1" in out and "75.0" in out and "42" in out


@pytest.mark.parametrize("content", [None, b"not hdf5 at all", b""])
def test_a_missing_or_bad_params_file_is_one_line(tmp_path, capsys, content):
    path = tmp_path / "params.h5"
    if content is not None:
        path.write_bytes(content)
    assert main(["filters", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and err.count("\n") == 1 and "Traceback" not in err, err
