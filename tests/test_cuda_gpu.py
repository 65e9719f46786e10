"""gpu_xnor.cuda and gpu_xnor.bench_gpu on a real GPU (skipped where PyCUDA or a GPU is absent):
the kernels give the exact +-1 product at awkward sizes, the packing has the pinned bit order,
cuBLAS agrees, the run-time MLP predicts the same with every kernel, and the benchmark's record
has the schema gpu_xnor/bench.py writes."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

pytest.importorskip("pycuda", reason='PyCUDA is not installed (pip install ".[gpu]")')

from gpu_xnor import bench_gpu, cuda  # noqa: E402

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


def test_pack_bit_order_is_pinned():
    a = -np.ones((2, 33), np.float32)
    a[0, 0], a[0, 31], a[1, 1], a[1, 32] = 1.0, 0.0, -0.0, 0.5
    assert cuda.pack_rows(a).tolist() == [[0x80000001, 0], [0x00000002, 1]]
    assert cuda.pack_cols(np.ascontiguousarray(a.T)).tolist() == [[0x80000001, 0x00000002],
                                                                 [0, 1]]


@pytest.mark.parametrize("m,n,k", SIZES)
def test_xnor_kernels_equal_float_product_exactly(m, n, k):
    rng = np.random.default_rng(m + 7 * n + 13 * k)
    a, b = pm1(rng, (m, n)), pm1(rng, (n, k))
    expected = a @ b
    np.testing.assert_array_equal(cuda.xnor_matmul(a, b), expected)
    np.testing.assert_array_equal(cuda.xnor_matmul_opt(a, b), expected)
    np.testing.assert_array_equal(cuda.xnor_gemm(cuda.pack_rows(a), cuda.pack_cols(b), n),
                                  expected)


@pytest.mark.parametrize("m,n,k", SIZES)
def test_float_kernels_on_pm1_inputs_are_exact(m, n, k):
    rng = np.random.default_rng(m * 3 + n * 5 + k)
    a, b = pm1(rng, (m, n)), pm1(rng, (n, k))
    expected = a @ b
    np.testing.assert_array_equal(cuda.baseline_gemm(a, b), expected)
    np.testing.assert_array_equal(cuda.blas_gemm(a, b), expected)
    np.testing.assert_array_equal(cuda.blas_gemm(a, b, tf32=True), expected)  # +-1 is exact in TF32


def test_real_inputs_baseline_and_blas_match_numpy_and_xnor_binarizes():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((70, 333)).astype(np.float32)
    b = rng.standard_normal((333, 45)).astype(np.float32)
    a[0, :3] = 0.0
    np.testing.assert_allclose(cuda.baseline_gemm(a, b), a @ b, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(cuda.blas_gemm(a, b), a @ b, rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(cuda.xnor_matmul(a, b), sign(a) @ sign(b))
    np.testing.assert_array_equal(cuda.xnor_matmul_opt(a, b), sign(a) @ sign(b))


def test_bad_input_is_a_one_line_error():
    with pytest.raises(ValueError, match="gpu_xnor/cuda.py: .*inner sizes differ"):
        cuda.xnor_matmul(np.ones((2, 3), np.float32), np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match="float32"):
        cuda.baseline_gemm(np.ones((2, 2)), np.ones((2, 2)))


def test_mlp_same_predictions_with_every_kernel_and_matches_numpy():
    sizes = (784, 256, 256, 256, 10)
    blocks = bench_gpu._random_blocks(sizes, seed=2)
    rng = np.random.default_rng(2)
    for blk in blocks:  # non-trivial batch norm
        n = blk["W"].shape[1]
        blk["b"] = rng.standard_normal(n).astype(np.float32)
        blk["mean"] = rng.standard_normal(n).astype(np.float32)
        blk["beta"] = rng.standard_normal(n).astype(np.float32)
    x = (rng.integers(0, 256, (500, 784)).astype(np.float32) * np.float32(2 / 255) - 1)
    mlp = bench_gpu.GpuMlp(blocks)
    h = x
    for i, blk in enumerate(blocks):  # numpy reference, PAPER.md 3.4
        h = h @ sign(blk["W"])
        h = ((h + blk["b"]) - blk["mean"]) * (blk["gamma"] * blk["inv_std"]) + blk["beta"]
        h = sign(h) if i < len(blocks) - 1 else h
    want = h.argmax(axis=1)
    for kernel in bench_gpu.MLP_KERNELS:
        got = mlp.scores(x, kernel).argmax(axis=1)
        # layer 1 is float: allow a rare sign flip of a near-zero pre-activation vs numpy
        assert np.mean(got == want) > 0.99, kernel
        if kernel != "baseline":
            np.testing.assert_array_equal(got, mlp.scores(x, "baseline").argmax(axis=1))


def test_bench_quick_record_has_the_schema():
    args = argparse.Namespace(quick=True, size=256, warmup=1, repeats=2, params=None,
                              data_dir=None)
    with pytest.warns(UserWarning):
        record = bench_gpu.run(args)
    assert record["format"] == 1 and record["device"] == "gpu"
    assert record["gemm"]["size"] == [256, 256, 256]
    assert all(record["gemm"]["identical_to_baseline"].values())
    assert record["gemm"]["baseline_equals_numpy"] is True
    assert set(bench_gpu.GEMM_KERNELS) <= set(record["gemm"]["seconds"])
    assert record["mlp"]["images"] == 10000
    assert all(record["mlp"]["same_predictions_as_baseline"].values())
    for key in ("xnor_vs_baseline", "xnor_vs_blas", "mlp_xnor_vs_baseline"):
        assert record["ratios"][key] > 0
    assert record["paper"] == {"xnor_vs_baseline": 23, "xnor_vs_blas": 3.4,
                               "mlp_xnor_vs_baseline": 7}
