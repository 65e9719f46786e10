"""The run-time MNIST MLP of gpu_xnor/mlp.py: kernels agree, Algorithm 4's layer 1 is exact, the
packed export round-trips, the PyTensor graph agrees with numpy."""
import h5py
import numpy as np
import pytest

from gpu_xnor import cpu, mlp

SIZES = (784, 96, 80, 64, 10)


@pytest.fixture(scope="module")
def net():
    return mlp.random_mlp(SIZES, seed=3, warn=False)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (60, 1, 28, 28), dtype=np.uint8)


def test_kernels_give_identical_outputs_and_predictions(net, images):
    outs = {k: mlp.forward(net, images, kernel=k) for k in mlp.KERNELS}
    repacked = mlp.forward(net, images, kernel="xnor", repack=True)
    for k in mlp.KERNELS:
        assert np.array_equal(outs[k], outs["baseline"]), k
    assert np.array_equal(repacked, outs["baseline"])
    preds = mlp.predict(net, images, kernel="xnor")
    assert np.array_equal(preds, np.argmax(outs["blas"], axis=1))
    assert len(set(preds)) > 1  # not a degenerate network


def test_forward_matches_a_plain_numpy_reference(net, images):
    x = images.reshape(len(images), -1).astype(np.float32) * np.float32(2 / 255) - np.float32(1)
    h = x
    for i, blk in enumerate(net.blocks):
        y = (h @ blk.wb + blk.b - blk.mean) * blk.scale + blk.beta
        h = np.where(y >= 0, 1, -1).astype(np.float32) if i < len(net.blocks) - 1 else y
    assert np.array_equal(mlp.predict(net, images, kernel="blas"), np.argmax(h, axis=1))


def test_bitplane_layer1_is_exact(net, images):
    P = mlp.flat_pixels(images)
    first = net.blocks[0]
    want = cpu.baseline_gemm(P.astype(np.float32), first.wb)  # integers < 2**24: exact
    got = mlp.layer1_integer(P, first)
    assert np.array_equal(got, want)
    # x·w = (2/255)·p·w − Σw, the float layer 1 on x = 2p/255 − 1, to float32 rounding
    x_dot_w = (2 * got.astype(np.float64) - 255 * first.wb.sum(axis=0)) / 255
    np.testing.assert_allclose(x_dot_w, cpu.baseline_gemm(mlp.scale_pixels(P), first.wb), atol=2e-3)


def test_bitplane_network_agrees_with_the_float_one(net, images):
    a = mlp.forward(net, images, layer1="bitplanes")
    b = mlp.forward(net, images, layer1="baseline")
    assert np.mean(np.argmax(a, 1) == np.argmax(b, 1)) >= 0.9  # signs may flip at float rounding


def test_weights_binarized_with_sign_of_zero_plus_one():
    blocks = [{"W": np.array([[0.0, -0.5], [0.3, -0.0]], np.float32), "b": np.zeros(2, np.float32),
               "beta": np.zeros(2, np.float32), "gamma": np.ones(2, np.float32),
               "mean": np.zeros(2, np.float32), "inv_std": np.ones(2, np.float32)}]
    net = mlp.from_blocks(blocks, "inline")
    assert np.array_equal(net.blocks[0].wb, [[1, -1], [1, 1]])


def test_load_from_params_h5(tmp_path, net, images):
    path = tmp_path / "params.h5"
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        for i, blk in enumerate(net.blocks):
            g = f.create_group(f"block{i}")
            g["W"] = blk.wb * rng.uniform(0.1, 1, blk.wb.shape).astype(np.float32)  # latent reals
            g["b"], g["mean"], g["beta"] = blk.b, blk.mean, blk.beta
            g["gamma"], g["inv_std"] = blk.scale * 2, np.full_like(blk.scale, 0.5)
    loaded = mlp.load_mlp(path)
    assert np.array_equal(mlp.forward(loaded, images), mlp.forward(net, images))
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        mlp.load_mlp(tmp_path / "missing.h5")


def test_packed_export_round_trips(tmp_path, net, images, capsys):
    path = tmp_path / "packed.npz"
    sizes = mlp.export_packed(net, path)
    assert "smaller" in capsys.readouterr().out
    assert sizes["ratio"] > 25 and sizes["packed_bytes"] < sizes["float32_bytes"]
    back = mlp.load_packed(path)
    for a, b in zip(net.blocks, back.blocks):
        assert np.array_equal(a.wb, b.wb) and np.array_equal(a.packed, b.packed)
    assert np.array_equal(mlp.forward(back, images), mlp.forward(net, images))


@pytest.mark.parametrize("kernel,packed", [("xnor", True), ("xnor", False), ("baseline", True), ("blas", True)])
def test_pytensor_function_agrees_with_numpy(net, images, kernel, packed):
    f = mlp.pytensor_function(net, kernel, packed=packed)
    x = mlp.scale_pixels(mlp.flat_pixels(images))
    assert np.array_equal(f(x), mlp.predict(net, images, kernel="xnor"))
