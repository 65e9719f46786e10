"""The run-time MNIST MLP of gpu_xnor/mlp.py against EXACT references, never against a float32 sum
taken in another order: layer 1 against integer arithmetic over the uint8 pixels (p·w is exact),
with the units within float rounding of their threshold identified; layers 2..L against int64
products; batch norm + sign folded into thresholds that equal the float32 formula for every input;
every kernel and every instruction-set path bit-identical."""
import h5py
import numpy as np
import pytest

from gpu_xnor import cpu, mlp

SIZES = (784, 96, 80, 64, 10)
U = 2.0 ** -24  # float32 unit roundoff


def bn_blocks(sizes, seed):
    """Random weights and a batch norm that puts thresholds inside the range of s: mixed signs of
    γ, some γ = 0 (constant units), means and biases on the scale of s."""
    rng = np.random.default_rng(seed)
    blocks = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        spread = np.sqrt(n_in / 3 if i == 0 else n_in)
        gamma = rng.standard_normal(n_out).astype(np.float32)
        gamma[:2] = 0
        blocks.append({"W": rng.uniform(-1, 1, (n_in, n_out)).astype(np.float32),
                       "b": (rng.standard_normal(n_out) * spread / 2).astype(np.float32),
                       "mean": (rng.standard_normal(n_out) * spread / 2).astype(np.float32),
                       "beta": rng.standard_normal(n_out).astype(np.float32),
                       "gamma": gamma, "inv_std": np.full(n_out, 1 / spread, np.float32)})
    return blocks


@pytest.fixture(scope="module")
def net():
    return mlp.from_blocks(bn_blocks(SIZES, seed=3), "inline")


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (60, 1, 28, 28), dtype=np.uint8)
    X[0] = 0  # a blank image: x = -1 everywhere
    X[1, :, :14] = 255
    return X


def exact_layer1(P, wb):
    """x·w for x = 2p/255 - 1 exactly: (2 p·w - 255 Σw) / 255, p·w in integers."""
    w = wb.astype(np.int64)
    z = 2 * (P.astype(np.int64) @ w) - 255 * w.sum(axis=0)
    return z, z / 255.0


def test_sizes_come_from_the_mnist_recipe():
    from mnist.__main__ import n_hidden_layers, num_units

    assert mlp.recipe_sizes() == (784, *[num_units] * n_hidden_layers, 10)
    assert mlp.recipe_sizes(256)[1:-1] == (256,) * n_hidden_layers
    assert mlp.random_mlp(warn=False).sizes == mlp.recipe_sizes()


def test_sizes_are_read_from_the_recipe_where_pytensor_is_absent(monkeypatch):
    """On a machine without PyTensor (a bare GPU machine) mnist/__main__.py cannot be imported:
    the same two assignments are read from its source."""
    import sys

    want = mlp.recipe_sizes()
    monkeypatch.setitem(sys.modules, "mnist.__main__", None)  # makes the import fail
    with pytest.raises(ImportError):
        import mnist.__main__  # noqa: F401
    assert mlp.recipe_sizes() == want


def test_fold_sign_equals_the_float_formula_for_every_input():
    rng = np.random.default_rng(5)
    n = 3000
    b, mean = (rng.standard_normal(n).astype(np.float32) * 40 for _ in range(2))
    beta = rng.standard_normal(n).astype(np.float32) * 5
    scale = (rng.standard_normal(n) * rng.choice([1e-3, 1, 30], n)).astype(np.float32)
    scale[:4], beta[:4] = [0, -0.0, 0, 0], [1, 1, -1, 0]  # constant units: +1, +1, -1, +1
    scale[4], scale[5] = 1e-30, -1e30

    def formula(s):
        return mlp.batchnorm(s, b, mean, scale, beta) >= 0

    # binary layers: every integer s in [-K, K] (K = 400 here)
    t, d = mlp.fold_sign(b, mean, scale, beta, integer=True)
    assert (t[np.isfinite(t)] == np.ceil(t[np.isfinite(t)])).all()  # integer thresholds
    s = np.arange(-400, 401, dtype=np.float32)[:, None]
    assert np.array_equal(d * s >= t, formula(s))
    # real-valued layer 1: random s, and the floats on either side of each threshold
    t, d = mlp.fold_sign(b, mean, scale, beta)
    finite = np.isfinite(t)
    edge = np.stack([np.nextafter(t, np.float32(np.inf)), t, np.nextafter(t, np.float32(-np.inf))])
    edge = np.where(finite, d * edge, np.float32(0)).astype(np.float32)
    for s in (rng.standard_normal((200, n)).astype(np.float32) * 100, edge):
        assert np.array_equal(d * s >= t, formula(s))
    assert list(formula(np.zeros((1, n), np.float32))[0, :4]) == [True, True, False, True]


def test_layer1_signs_are_exact_except_within_rounding_of_the_threshold(net, images):
    """The shared layer-1 routine (the original's float product, then the threshold) gives the
    exact sign of every unit whose exact x·w is farther from its threshold than the float32 error
    bound: recursive summation γ_K·Σ|x| plus the rounding of x = 2p/255 - 1 (5u per pixel)."""
    dev = cpu.Device()
    P = mlp.flat_pixels(images)
    blk = net.blocks[0]
    w = dev.prepare(net.blocks)[0]
    h1 = dev.sign(dev.layer1(mlp.scale_pixels(P), w), w)
    _, s_exact = exact_layer1(P, blk.wb)
    K = P.shape[1]
    bound = K * U / (1 - K * U) * K + 5 * U * K
    margin = blk.d * s_exact - blk.t
    near = np.abs(margin) <= bound
    want = np.where(margin >= 0, 1, -1)
    assert np.array_equal(h1[~near], want[~near])
    assert near.mean() < 0.02  # the exception is rare, so the check above covers nearly all units
    assert len(set(want.ravel())) == 2


def test_every_kernel_and_path_gives_the_exact_scores(net, images):
    """Given layer 1's signs, layers 2..L in int64 and batch norm by the float32 formula (not the
    folded thresholds) give the reference scores; every kernel, on every instruction-set path,
    must give them bit for bit, and the same predictions."""
    P = mlp.flat_pixels(images)
    dev = cpu.Device()
    w = dev.prepare(net.blocks)
    h = dev.sign(dev.layer1(mlp.scale_pixels(P), w[0]), w[0])
    for i, blk in enumerate(net.blocks[1:], start=1):
        s = (h.astype(np.int64) @ blk.wb.astype(np.int64)).astype(np.float32)
        y = mlp.batchnorm(s, blk.b, blk.mean, blk.scale, blk.beta)
        h = np.where(y >= 0, np.float32(1), np.float32(-1))
    want = y
    assert len(set(np.argmax(want, axis=1))) > 1  # not a degenerate network
    for isa in cpu.supported_isas():
        device = cpu.Device(isa=isa)
        weights = device.prepare(net.blocks)
        for kernel in device.mlp_kernels:
            got = mlp.forward(net, images, kernel, device, weights)
            assert np.array_equal(got, want), (isa, kernel)
            assert np.array_equal(mlp.predict(got), np.argmax(want, axis=1))


def test_argmax_ties_go_to_the_lowest_class():
    scores = np.array([[1, 3, 3, 0], [2, 2, 2, 2], [-1, -5, -1, -1]], np.float32)
    assert list(mlp.predict(scores)) == [1, 0, 0]


def test_bitplane_layer1_is_the_exact_product_rounded_once(net, images):
    P = mlp.flat_pixels(images)
    dev = cpu.Device()
    w = dev.prepare(net.blocks)[0]
    z, _ = exact_layer1(P, net.blocks[0].wb)  # |z| <= 2 * 255 * 784 < 2**24: exact in float32
    assert np.array_equal(dev.layer1_alg4(P, w), z.astype(np.float32) / np.float32(255))
    a = mlp.forward(net, images, "xnor", dev, layer1="alg4")
    b = mlp.forward(net, images, "xnor", dev)
    assert np.mean(mlp.predict(a) == mlp.predict(b)) >= 0.9  # apart only through near-threshold units


def test_weights_binarized_with_sign_of_zero_plus_one():
    blocks = bn_blocks((784, 10), seed=1)
    blocks[0]["W"][:2, :2] = [[0.0, -0.5], [0.3, -0.0]]
    net = mlp.from_blocks(blocks, "inline")
    assert np.array_equal(net.blocks[0].wb[:2, :2], [[1, -1], [1, 1]])


def _write_h5(path, blocks):
    with h5py.File(path, "w") as f:
        for i, blk in enumerate(blocks):
            g = f.create_group(f"block{i}")
            for k, v in blk.items():
                g[k] = v


def test_load_from_params_h5_and_npz(tmp_path, net, images):
    blocks = bn_blocks(SIZES, seed=3)
    _write_h5(tmp_path / "params.h5", blocks)
    np.savez(tmp_path / "orig.npz", *[blk[k] for blk in blocks
                                      for k in ("W", "b", "beta", "gamma", "mean", "inv_std")])
    dev = cpu.Device()
    want = mlp.forward(net, images, "xnor", dev)
    for name in ("params.h5", "orig.npz"):
        loaded = mlp.load_mlp(tmp_path / name)
        assert loaded.weights == str(tmp_path / name)
        assert np.array_equal(mlp.forward(loaded, images, "xnor", dev), want)


def test_bad_parameter_files_are_one_line_errors(tmp_path):
    cases = {"missing.h5": None, "corrupt.h5": b"not an HDF5 file"}
    for name, content in cases.items():
        if content:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(mlp.ParamsError, match=f"^{tmp_path / name}: [^\n]*$"):
            mlp.load_mlp(tmp_path / name)
    wrong = bn_blocks((784, 96, 10), seed=2)
    wrong[1]["W"] = wrong[1]["W"][:50]  # 50 inputs after 96 outputs
    _write_h5(tmp_path / "wrong.h5", wrong)
    with pytest.raises(mlp.ParamsError, match=r"wrong.h5: block1/W has shape \(50, 10\), expected \(96, n\)"):
        mlp.load_mlp(tmp_path / "wrong.h5")
    _write_h5(tmp_path / "classes.h5", bn_blocks((784, 96, 7), seed=2))
    with pytest.raises(mlp.ParamsError, match="classes.h5: the last block has 7 outputs, not 10"):
        mlp.load_mlp(tmp_path / "classes.h5")


def test_packed_export_round_trips(tmp_path, net, images, capsys):
    path = tmp_path / "packed.npz"
    sizes = mlp.export_packed(net, path)
    assert "smaller" in capsys.readouterr().out
    assert sizes["ratio"] > 25 and sizes["packed_bytes"] < sizes["float32_bytes"]
    back = mlp.load_packed(path)
    for a, b in zip(net.blocks, back.blocks):
        assert np.array_equal(a.wb, b.wb) and np.array_equal(a.t, b.t) and np.array_equal(a.d, b.d)
    dev = cpu.Device()
    assert np.array_equal(mlp.forward(back, images, "xnor", dev), mlp.forward(net, images, "xnor", dev))


@pytest.mark.parametrize("kernel,packed", [("xnor", True), ("xnor", False), ("xnor_paper", True),
                                           ("baseline", True), ("blas", True)])
def test_pytensor_function_agrees_bit_for_bit(net, images, kernel, packed):
    f = mlp.pytensor_function(net, kernel, packed=packed)
    s_last = f(mlp.scale_pixels(mlp.flat_pixels(images)))
    want = mlp.forward(net, images, "xnor", cpu.Device())
    assert np.array_equal(mlp.scores(s_last, net.blocks[-1]), want)
