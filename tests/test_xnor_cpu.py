"""The CPU kernels of gpu_xnor/xnor_cpu.c: packing order, exact XNOR products at awkward sizes,
the baseline against numpy, and each SIMD path the compiler can build here."""
import numpy as np
import pytest

from gpu_xnor import cpu

AWKWARD = [(1, 1, 1), (17, 33, 65), (17, 65, 33), (7, 63, 5), (6, 64, 32), (13, 65, 31),
           (5, 127, 70), (3, 129, 97), (100, 784, 300)]  # (M, K, N)


def pm1(rng, shape):
    return np.where(rng.random(shape) < 0.5, np.float32(-1), np.float32(1))


def test_pack_rows_bit_order_and_zero():
    # element 0 -> least significant bit; x >= 0 (0.0 and -0.0 included) -> 1; tail bits 0.
    a = np.full((1, 70), -1, np.float32)
    a[0, [0, 2, 63, 64, 69]] = [1, 0.0, 5, -0.0, 0.5]
    p = cpu.pack_rows(a)
    assert p.dtype == np.uint64 and p.shape == (1, 2)
    assert int(p[0, 0]) == (1 << 0) | (1 << 2) | (1 << 63)
    assert int(p[0, 1]) == (1 << 0) | (1 << 5)


def test_pack_cols_is_pack_rows_of_the_transpose():
    rng = np.random.default_rng(1)
    b = rng.standard_normal((130, 37)).astype(np.float32)
    b[3, 4] = 0.0
    assert np.array_equal(cpu.pack_cols(b), cpu.pack_rows(b.T.copy()).T)


@pytest.mark.parametrize("m,k,n", AWKWARD)
def test_xnor_exact(m, k, n):
    rng = np.random.default_rng(m * 1000 + k + n)
    a, b = pm1(rng, (m, k)), pm1(rng, (k, n))
    want = a @ b  # integers below 2**24: exact in float32
    assert np.array_equal(cpu.xnor_matmul(a, b), want)
    assert np.array_equal(cpu.xnor_matmul(a, b, tiled=True), want)
    assert np.array_equal(cpu.xnor_gemm(cpu.pack_rows(a), cpu.pack_cols(b), k), want)
    assert np.array_equal(cpu.baseline_gemm(a, b), want)


def test_xnor_large_inner_and_wide():
    rng = np.random.default_rng(5)
    a, b = pm1(rng, (100, 784)), pm1(rng, (784, 4096))
    assert np.array_equal(cpu.xnor_matmul(a, b), a @ b)


def test_xnor_signs_any_float_input():
    # Non-±1 inputs are binarized by the packing (x >= 0 -> +1), as the README of the original says.
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((9, 100)).astype(np.float32), rng.standard_normal((100, 11)).astype(np.float32)
    a[0, :5] = 0.0
    sign = lambda x: np.where(x >= 0, np.float32(1), np.float32(-1))
    assert np.array_equal(cpu.xnor_matmul(a, b), sign(a) @ sign(b))


def test_baseline_matches_numpy_on_real_inputs():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((37, 101)).astype(np.float32), rng.standard_normal((101, 45)).astype(np.float32)
    np.testing.assert_allclose(cpu.baseline_gemm(a, b), a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


def test_thread_counts_agree():
    rng = np.random.default_rng(4)
    a, b = pm1(rng, (300, 1000)), pm1(rng, (1000, 500))  # large enough to use both threads
    assert np.array_equal(cpu.xnor_matmul(a, b, threads=1), cpu.xnor_matmul(a, b, threads=2))
    assert np.array_equal(cpu.xnor_matmul(a, b, threads=2), a @ b)
    assert np.array_equal(cpu.baseline_gemm(a[:40], b, threads=2), a[:40] @ b)


def test_bad_shapes_raise_one_line_errors():
    with pytest.raises(ValueError, match="inner dimensions"):
        cpu.xnor_matmul(np.ones((2, 3), np.float32), np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match="k_bits=65 needs 2 words"):
        cpu.xnor_gemm(np.zeros((2, 1), np.uint64), np.zeros((1, 3), np.uint64), 65)
    with pytest.raises(ValueError, match="2-D"):
        cpu.baseline_gemm(np.ones(3, np.float32), np.ones((3, 1), np.float32))


def test_built_once_per_key(tmp_path):
    flags = (("-O3",),)
    path, used = cpu.build(flags, cache=tmp_path)
    assert used == ("-O3",) and path.exists()
    mtime = path.stat().st_mtime_ns
    assert cpu.build(flags, cache=tmp_path)[0] == path and path.stat().st_mtime_ns == mtime
    assert cpu.library_path(("-O2",), tmp_path) != path
    assert not list(tmp_path.glob("*.tmp"))


def _cpu_has(flag):
    try:
        return flag in open("/proc/cpuinfo").read().split()
    except OSError:
        return False


@pytest.mark.parametrize("flags,level,needs", [
    (("-O3", "-mavx2", "-mfma", "-mpopcnt", "-fopenmp"), 256, "avx2"),
    (("-O3", "-fopenmp"), 0, None),
])
def test_other_simd_paths_are_exact(flags, level, needs):
    if needs and not _cpu_has(needs):
        pytest.skip(f"this CPU lacks {needs}")
    try:
        lib = cpu.load((flags,))
    except cpu.BuildError as e:
        pytest.skip(f"compiler cannot build this path: {e}")
    if lib.xnor_simd_level() != level:
        pytest.skip(f"{flags} built SIMD level {lib.xnor_simd_level()}, not {level}")
    rng = np.random.default_rng(6)
    for m, k, n in [(1, 1, 1), (17, 33, 65), (7, 129, 19), (5, 64, 9)]:
        a, b = pm1(rng, (m, k)), pm1(rng, (k, n))
        assert np.array_equal(cpu.xnor_matmul(a, b, lib=lib), a @ b)
        assert np.array_equal(cpu.pack_rows(a, lib=lib), cpu.pack_rows(a))


def test_bitplanes_pack_and_weighted_sum():
    rng = np.random.default_rng(7)
    p = rng.integers(0, 256, (11, 70), dtype=np.uint8)
    planes = cpu.pack_bitplanes(p)
    assert planes.shape == (8, 11, 2)
    for n in range(8):  # plane n is bit n of each pixel, packed like a ±1 row
        assert np.array_equal(planes[n], cpu.pack_rows(np.where((p >> n) & 1, 1, -1).astype(np.float32)))
    b = pm1(rng, (70, 13))
    pb = cpu.pack_cols(b)
    want = sum(2.0 ** n * cpu.xnor_gemm(planes[n], pb, 70) for n in range(8))
    assert np.array_equal(cpu.xnor_gemm_planes(planes, pb, 70), want.astype(np.float32))


def test_bn_sign_rounds_as_numpy():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((300, 257)).astype(np.float32)
    b, mean, scale, beta = (rng.standard_normal(257).astype(np.float32) for _ in range(4))
    y = (x + b - mean) * scale + beta
    assert np.array_equal(cpu.bn_sign(x, b, mean, scale, beta), np.where(y >= 0, 1, -1).astype(np.float32))
