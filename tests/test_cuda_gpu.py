"""gpu_xnor.cuda on a real GPU (skipped where PyCUDA or a GPU is absent): the kernels give the exact
±1 product at awkward sizes, the packing has the pinned bit order, cuBLAS agrees, the one MLP
driver gives bit-identical scores with every kernel and matches the exact reference, and
`python -m gpu_xnor --device gpu` writes a record of the CPU's schema with the same names."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pycuda", reason='PyCUDA is not installed (pip install ".[gpu]")')

from gpu_xnor import cuda, mlp  # noqa: E402

try:
    cuda.kernels()
except cuda.CudaUnavailable as e:
    pytest.skip(f"no usable GPU: {e}", allow_module_level=True)

SIZES = [(1, 1, 1), (17, 33, 65), (100, 784, 4096), (3, 63, 5), (2, 65, 7), (4, 127, 9),
         (130, 300, 131), (257, 4096, 129), (1000, 1000, 1000)]


def pm1(rng, shape) -> np.ndarray:
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


def sign(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, 1.0, -1.0).astype(np.float32)


def exact(a, b):
    return (a.astype(np.int64) @ b.astype(np.int64)).astype(np.float32)


def test_pack_bit_order_is_pinned():
    a = -np.ones((2, 33), np.float32)
    a[0, 0], a[0, 31], a[1, 1], a[1, 32] = 1.0, 0.0, -0.0, 0.5
    assert cuda.pack_rows(a).tolist() == [[0x80000001, 0], [0x00000002, 1]]
    assert cuda.pack_cols(np.ascontiguousarray(a.T)).tolist() == [[0x80000001, 0x00000002],
                                                                 [0, 1]]


@pytest.mark.parametrize("m,n,k", SIZES)
def test_xnor_kernels_equal_the_exact_product(m, n, k):
    rng = np.random.default_rng(m + 7 * n + 13 * k)
    a, b = pm1(rng, (m, n)), pm1(rng, (n, k))
    want = exact(a, b)
    np.testing.assert_array_equal(cuda.xnor_matmul(a, b), want)
    np.testing.assert_array_equal(cuda.xnor_matmul_paper(a, b), want)
    pa, pb = cuda.pack_rows(a), cuda.pack_cols(b)
    np.testing.assert_array_equal(cuda.xnor_gemm_paper(pa, pb, n), want)
    np.testing.assert_array_equal(cuda.xnor_gemm(pa, pb, n), want)


@pytest.mark.parametrize("m,n,k", SIZES)
def test_float_kernels_on_pm1_inputs_are_exact(m, n, k):
    rng = np.random.default_rng(m * 3 + n * 5 + k)
    a, b = pm1(rng, (m, n)), pm1(rng, (n, k))
    want = exact(a, b)
    np.testing.assert_array_equal(cuda.baseline_gemm(a, b), want)
    np.testing.assert_array_equal(cuda.blas_gemm(a, b), want)
    np.testing.assert_array_equal(cuda.blas_gemm(a, b, tf32=True), want)  # +-1 is exact in TF32


def test_real_inputs_baseline_and_blas_match_numpy_and_xnor_binarizes():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((70, 333)).astype(np.float32)
    b = rng.standard_normal((333, 45)).astype(np.float32)
    a[0, :3] = 0.0
    want = a.astype(np.float64) @ b
    np.testing.assert_allclose(cuda.baseline_gemm(a, b), want, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(cuda.blas_gemm(a, b), want, rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(cuda.xnor_matmul(a, b), exact(sign(a), sign(b)))
    np.testing.assert_array_equal(cuda.xnor_matmul_paper(a, b), exact(sign(a), sign(b)))


def test_threshold_sign_is_the_exact_comparison():
    rng = np.random.default_rng(4)
    s = rng.standard_normal((50, 77)).astype(np.float32)
    t = rng.standard_normal(77).astype(np.float32)
    d = np.where(rng.random(77) < 0.5, -1.0, 1.0).astype(np.float32)
    s[0] = d * t
    np.testing.assert_array_equal(cuda.threshold_sign(s, t, d), np.where(d * s >= t, 1.0, -1.0))


def test_bad_input_is_a_one_line_error():
    with pytest.raises(ValueError, match="gpu_xnor/cuda.py: .*inner sizes differ"):
        cuda.xnor_matmul(np.ones((2, 3), np.float32), np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match="float32"):
        cuda.baseline_gemm(np.ones((2, 2)), np.ones((2, 2)))


def test_mlp_driver_gives_the_exact_scores_with_every_kernel():
    """The one driver on the GPU device: layers 2..L in int64 and the float32 batch-norm formula,
    from the GPU's own layer-1 signs, give the scores every kernel must give bit for bit."""
    from tests.test_mlp import bn_blocks

    net = mlp.from_blocks(bn_blocks((784, 256, 256, 256, 10), seed=2), "inline")
    X = np.random.default_rng(2).integers(0, 256, (500, 784), dtype=np.uint8)
    dev = cuda.Device()
    w = dev.prepare(net.blocks)
    h = dev.download(dev.sign(dev.layer1(dev.upload(mlp.scale_pixels(X)), w[0]), w[0]))
    for blk in net.blocks[1:]:
        s = (h.astype(np.int64) @ blk.wb.astype(np.int64)).astype(np.float32)
        y = mlp.batchnorm(s, blk.b, blk.mean, blk.scale, blk.beta)
        h = sign(y)
    for kernel in dev.mlp_kernels:
        np.testing.assert_array_equal(mlp.forward(net, X, kernel, dev, w), y, err_msg=kernel)


def test_gpu_record_has_the_cpu_schema_and_names(tmp_path):
    from gpu_xnor.__main__ import main

    assert main(["--device", "gpu", "--quick", "--size", "256", "--out-dir", str(tmp_path),
                 "--name", "gpu-quick"]) == 0
    record = json.loads((tmp_path / "gpu-quick.json").read_text())
    assert record["format"] == 1 and record["device"] == "gpu" and record["quick"] is True
    assert record["gemm"]["size"] == [256, 256, 256]
    assert set(record["gemm"]["seconds"]) == {"baseline", "xnor_paper", "xnor", "xnor_gemm_only",
                                              "blas", "blas_tf32"}
    assert all(record["gemm"]["exact"].values())
    for key in ("xnor_vs_baseline", "xnor_vs_blas", "xnor_paper_vs_baseline", "xnor_paper_vs_blas",
                "xnor_vs_blas_tf32"):
        assert record["ratios"][key] > 0
    if record["mlp"] is not None:
        assert all(record["mlp"]["identical_scores"].values())
        assert record["ratios"]["mlp_xnor_paper_vs_baseline"] > 0
