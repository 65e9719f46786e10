"""gpu_xnor/binary_kernels.cu without a GPU: the exact source compiled by g++ under
gpu_xnor/cuda_emulation.h (one fiber per CUDA thread, a barrier for __syncthreads) and run under
AddressSanitizer + UBSan, at awkward sizes, with the launch arithmetic of gpu_xnor/cuda.py;
plus an nvcc compile for sm_90 where nvcc exists. Kernel names: `gemm` is the benchmark's
`baseline`, `xnor_gemm` its `xnor_paper`, `xnor_gemm_opt` its `xnor` (ours)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpu_xnor import cuda

GPU_XNOR = Path(cuda.__file__).parent
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
CXXFLAGS = ["-std=c++17", "-O1", "-g", "-fno-strict-aliasing", "-fno-omit-frame-pointer",
            "-Wall", "-Wno-unknown-pragmas", *SANITIZE]
ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
       "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}

SIZES = [(1, 1, 1), (17, 33, 65), (100, 784, 4096), (3, 63, 5), (5, 64, 3), (2, 65, 7),
         (4, 127, 9), (3, 129, 2), (130, 300, 131)]


def _compile(src_dir: Path, out: Path) -> Path:
    cmd = ["g++", *CXXFLAGS, "-I", str(src_dir), "-x", "c++",
           str(src_dir / "emulate_driver.cpp"), "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


@pytest.fixture(scope="session")
def driver(tmp_path_factory) -> Path:
    """The emulation driver, compiled once per test session."""
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed: the CUDA source cannot be emulated")
    tmp = tmp_path_factory.mktemp("cuda_emulation")
    probe = tmp / "probe.cpp"
    probe.write_text("int main() { return 0; }\n")
    if subprocess.run(["g++", *SANITIZE, str(probe), "-o", str(tmp / "probe")],
                      capture_output=True).returncode != 0:
        pytest.skip("g++ cannot link with -fsanitize=address,undefined here")
    return _compile(GPU_XNOR, tmp / "emulate_driver")


def emulate(driver: Path, tmp: Path, kernel: str, launch, ints, inputs: dict, output: str,
            dtype, shape) -> np.ndarray:
    """Runs ``kernel`` on ``launch`` = (grid, block) with the inputs written as raw files."""
    tmp.mkdir(parents=True, exist_ok=True)
    for name, array in inputs.items():
        np.ascontiguousarray(array).tofile(tmp / name)
    (gx, gy, _), (bx, by, _) = launch
    cmd = [str(driver), str(tmp), kernel, *map(str, (gx, gy, bx, by)), *map(str, ints)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=ENV)
    assert done.returncode == 0, f"{kernel} failed:\n{done.stderr[-4000:]}"
    return np.fromfile(tmp / output, dtype=dtype).reshape(shape)


def pm1(rng, shape) -> np.ndarray:
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


def ref_pack_rows(a: np.ndarray, words: int) -> np.ndarray:
    """Reference packing: bit t of word w = (a[i, 32w + t] >= 0), LSB first, tail bits 0."""
    m, n = a.shape
    bits = np.zeros((m, 32 * words), np.uint64)
    bits[:, :n] = a >= 0
    return (bits.reshape(m, words, 32) << np.arange(32, dtype=np.uint64)).sum(-1).astype(np.uint32)


def pack_rows(driver, tmp, a, words=None):
    m, n = a.shape
    words = cuda.words_for(n) if words is None else words
    return emulate(driver, tmp / "rows", "concatenate_rows_kernel",
                   cuda.pack_rows_launch(m, words), (m, n, words), {"a.f32": a}, "p.u32",
                   np.uint32, (m, words))


def pack_cols(driver, tmp, b, words=None, ldb=None):
    n, k = b.shape
    words = cuda.words_for(n) if words is None else words
    ldb = k if ldb is None else ldb
    return emulate(driver, tmp / "cols", "concatenate_cols_kernel",
                   cuda.pack_cols_launch(words, ldb), (n, k, words, ldb), {"a.f32": b}, "p.u32",
                   np.uint32, (words, ldb))


# ---- packing ----------------------------------------------------------------------------------

def test_pack_bit_order_is_pinned(driver, tmp_path):
    # Element 0 -> least significant bit; x >= 0 -> 1 (so 0.0 and -0.0 pack as +1); a row of 33
    # takes two words, the second holding only element 32 in its bit 0.
    a = -np.ones((2, 33), np.float32)
    a[0, 0] = 1.0
    a[0, 31] = 0.0
    a[1, 1] = -0.0
    a[1, 32] = 0.5
    assert pack_rows(driver, tmp_path, a).tolist() == [[0x80000001, 0], [0x00000002, 1]]
    # Columns: bit t of word (w, j) is B[32w + t, j].
    assert pack_cols(driver, tmp_path, np.ascontiguousarray(a.T)).tolist() == [
        [0x80000001, 0x00000002], [0, 1]]


@pytest.mark.parametrize("m,n", [(1, 1), (3, 31), (5, 32), (7, 33), (9, 100), (100, 784)])
def test_pack_rows_and_cols_match_reference(driver, tmp_path, m, n):
    rng = np.random.default_rng(m * 1000 + n)
    a = rng.standard_normal((m, n)).astype(np.float32)
    words = cuda.words_for(n)
    np.testing.assert_array_equal(pack_rows(driver, tmp_path, a), ref_pack_rows(a, words))
    b = np.ascontiguousarray(a.T)  # (n, m): its columns are a's rows
    np.testing.assert_array_equal(pack_cols(driver, tmp_path, b), ref_pack_rows(a, words).T)


def test_padded_packing_adds_zero_words_and_columns(driver, tmp_path):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((5, 40)).astype(np.float32)
    words, ldb = cuda.opt_words(40), cuda.opt_ldb(5)
    assert (words, ldb) == (8, 8)
    rows = pack_rows(driver, tmp_path, a, words)
    np.testing.assert_array_equal(rows, ref_pack_rows(a, words))
    assert not rows[:, 2:].any()
    cols = pack_cols(driver, tmp_path, np.ascontiguousarray(a.T), words, ldb)
    np.testing.assert_array_equal(cols[:, :5], ref_pack_rows(a, words).T)
    assert not cols[:, 5:].any() and not cols[2:].any()


# ---- XNOR GEMMs: exact against the float product of the same +-1 matrices ---------------------

def xnor_paper(driver, tmp, a, b):
    (m, n), k = a.shape, b.shape[1]
    pa, pb = pack_rows(driver, tmp, a), pack_cols(driver, tmp, b)
    return emulate(driver, tmp / "xnor", "xnor_gemm", cuda.tiled_launch(m, k),
                   (m, pa.shape[1], k, n), {"pa.u32": pa, "pb.u32": pb}, "c.f32", np.float32,
                   (m, k))


def xnor_opt(driver, tmp, a, b):
    (m, n), k = a.shape, b.shape[1]
    words, ldb = cuda.opt_words(n), cuda.opt_ldb(k)
    pa, pb = pack_rows(driver, tmp, a, words), pack_cols(driver, tmp, b, words, ldb)
    return emulate(driver, tmp / "opt", "xnor_gemm_opt", cuda.opt_launch(m, k),
                   (m, words, k, ldb, n), {"pa.u32": pa, "pb.u32": pb}, "c.f32", np.float32,
                   (m, k))


@pytest.mark.parametrize("kernel", [xnor_paper, xnor_opt], ids=["xnor_paper", "xnor"])
@pytest.mark.parametrize("m,n,k", SIZES)
def test_xnor_kernels_equal_float_product_exactly(driver, tmp_path, kernel, m, n, k):
    rng = np.random.default_rng(m + 7 * n + 13 * k)
    a, b = pm1(rng, (m, n)), pm1(rng, (n, k))
    np.testing.assert_array_equal(kernel(driver, tmp_path, a, b), a @ b)


@pytest.mark.parametrize("kernel", [xnor_paper, xnor_opt], ids=["xnor_paper", "xnor"])
def test_xnor_kernels_binarize_real_inputs_with_sign_of_zero_plus_one(driver, tmp_path, kernel):
    rng = np.random.default_rng(5)
    a = rng.standard_normal((9, 70)).astype(np.float32)
    b = rng.standard_normal((70, 11)).astype(np.float32)
    a[0, :5] = 0.0
    b[:3, 0] = -0.0
    sign = lambda x: np.where(x >= 0, 1.0, -1.0).astype(np.float32)  # noqa: E731
    np.testing.assert_array_equal(kernel(driver, tmp_path, a, b), sign(a) @ sign(b))


# ---- the baseline float kernel and batch norm -------------------------------------------------

def baseline(driver, tmp, a, b):
    (m, n), k = a.shape, b.shape[1]
    return emulate(driver, tmp / "gemm", "gemm", cuda.tiled_launch(m, k), (m, n, k),
                   {"a.f32": a, "b.f32": b}, "c.f32", np.float32, (m, k))


@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (17, 33, 65), (40, 100, 50), (16, 16, 16)])
def test_baseline_gemm_matches_numpy(driver, tmp_path, m, n, k):
    rng = np.random.default_rng(m * n * k)
    a = rng.standard_normal((m, n)).astype(np.float32)
    b = rng.standard_normal((n, k)).astype(np.float32)
    np.testing.assert_allclose(baseline(driver, tmp_path, a, b), a @ b, rtol=1e-5, atol=1e-4)
    a, b = pm1(rng, (m, n)), pm1(rng, (n, k))
    np.testing.assert_array_equal(baseline(driver, tmp_path, a, b), a @ b)


def test_threshold_sign_kernel(driver, tmp_path):
    """The threshold form of batch norm + sign: the same bits as the CPU's threshold_sign."""
    rng = np.random.default_rng(3)
    m, k = 7, 10
    x = rng.standard_normal((m, k)).astype(np.float32)
    t = rng.standard_normal(k).astype(np.float32)
    d = np.where(rng.random(k) < 0.5, -1.0, 1.0).astype(np.float32)
    x[0] = d * t  # exactly on the threshold: +1
    t[1], t[2] = -np.inf, np.inf
    y = emulate(driver, tmp_path / "thr", "threshold_sign_kernel", cuda.threshold_launch(m, k),
                (m, k), {"x.f32": x, "td.f32": np.stack([t, d])}, "y.f32", np.float32, (m, k))
    want = np.where(d * x >= t, 1.0, -1.0).astype(np.float32)
    np.testing.assert_array_equal(y, want)
    assert (y[0, 3:] == 1).all() and (y[:, 1] == 1).all() and (y[:, 2] == -1).all()


def test_harness_catches_the_original_unguarded_loads(tmp_path):
    """The original's tile loads had no guards and its grid one extra block row and column
    (SOURCES.md §3.2): put them back, and AddressSanitizer must report the out-of-bounds read."""
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    source = (GPU_XNOR / "binary_kernels.cu").read_text()
    guarded = "As[row][col] = (aRow < m && aCol < n) ? A[aRow * n + aCol] : 0.0f;"
    assert guarded in source
    src = tmp_path / "src"
    src.mkdir()
    (src / "binary_kernels.cu").write_text(source.replace(guarded,
                                                          "As[row][col] = A[aRow * n + aCol];"))
    for name in ("emulate_driver.cpp", "cuda_emulation.h"):
        shutil.copy(GPU_XNOR / name, src / name)
    try:
        broken = _compile(src, tmp_path / "broken")
    except AssertionError as e:
        pytest.skip(f"g++ cannot build with sanitizers here: {str(e)[:200]}")
    m = n = k = 16
    a = np.ones((m, n), np.float32)
    original_grid = ((k // 16 + 1, m // 16 + 1, 1), (16, 16, 1))
    a.tofile(tmp_path / "a.f32")
    a.tofile(tmp_path / "b.f32")
    (gx, gy, _), (bx, by, _) = original_grid
    args = map(str, (gx, gy, bx, by, m, n, k))
    done = subprocess.run([str(broken), str(tmp_path), "gemm", *args], capture_output=True,
                          text=True, timeout=120, env=ENV)
    assert done.returncode != 0
    assert "heap-buffer-overflow" in done.stderr


# ---- nvcc and the lazy import -------------------------------------------------------------------

def test_source_compiles_for_sm90_with_unmangled_kernel_names(tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed: cannot check the CUDA source compiles")
    out = tmp_path / "binary_kernels.cubin"
    done = subprocess.run([nvcc, "-arch=sm_90", "--cubin", "-o", str(out),
                           str(GPU_XNOR / "binary_kernels.cu")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    cubin = out.read_bytes()
    for name in (b"gemm", b"concatenate_rows_kernel", b"concatenate_cols_kernel", b"xnor_gemm",
                 b"xnor_gemm_opt", b"threshold_sign_kernel"):
        assert b"\0" + name + b"\0" in cubin, name  # extern "C": PyCUDA finds them by name


def test_the_gpu_driver_imports_without_pycuda_or_pytensor():
    """Importing the driver loads neither PyCUDA (wanted only on a GPU) nor PyTensor (absent from
    the GPU machine's image): the GPU run needs numpy, PyCUDA and the repository only."""
    code = ("import sys, gpu_xnor, gpu_xnor.cuda, gpu_xnor.bench, gpu_xnor.mlp, gpu_xnor.__main__; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pycuda', 'pytensor'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=GPU_XNOR.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_missing_pycuda_names_the_install_command(monkeypatch):
    import importlib.util

    if importlib.util.find_spec("pycuda") is not None:
        pytest.skip("pycuda is installed here")
    cuda.kernels.cache_clear()
    with pytest.raises(cuda.CudaUnavailable, match=r'pip install "\.\[gpu\]"'):
        cuda.xnor_matmul(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32))


# ---- the GPU driver's Python side on a numpy stand-in for PyCUDA and cuBLAS ---------------------
# What cuda.Device, cuda.py's launch calls, mlp.forward and `python -m gpu_xnor --device gpu` do
# with the kernels, checked where there is no GPU: each fake kernel computes its documented result
# with numpy from the buffers its pointer arguments name, after checking that the launch covers
# its output.

class FakeArray:
    registry: dict = {}

    def __init__(self, a):
        self.a = np.ascontiguousarray(a)
        self.shape, self.dtype, self.flags = self.a.shape, self.a.dtype, self.a.flags
        self.gpudata = id(self)
        FakeArray.registry[self.gpudata] = self

    def get(self):
        return self.a.copy()


def _buf(ptr):
    return FakeArray.registry[int(ptr)].a


def _covers(grid, block, needed):
    assert grid[0] * grid[1] * block[0] * block[1] >= needed, (grid, block, needed)


def _unpack(words: np.ndarray, axis_len: int) -> np.ndarray:
    """uint32 words -> +-1 along their last axis, bit t of word w = element 32w + t."""
    bits = (words[..., None] >> np.arange(32, dtype=np.uint32)) & 1
    return np.where(bits.reshape(*words.shape[:-1], -1)[..., :axis_len] == 1, 1, -1)


def _pack(pm: np.ndarray, words: int) -> np.ndarray:
    bits = np.zeros((pm.shape[0], 32 * words), np.uint64)
    bits[:, :pm.shape[1]] = pm >= 0
    return (bits.reshape(pm.shape[0], words, 32) << np.arange(32, dtype=np.uint64)).sum(-1).astype(np.uint32)


def _fake_kernels():
    from types import SimpleNamespace

    def gemm(A, B, C, m, n, k, grid, block):
        _covers(grid, block, int(m) * int(k))
        _buf(C)[...] = (_buf(A).reshape(m, n).astype(np.float64) @ _buf(B).reshape(n, k)).astype(np.float32)

    def rows(a, b, m, n, words, grid, block):
        _covers(grid, block, int(m) * int(words))
        _buf(b)[...] = _pack(_buf(a).reshape(m, n), int(words))

    def cols(a, b, m, n, words, ldb, grid, block):
        _covers(grid, block, int(words) * int(ldb))
        packed = np.zeros((int(words), int(ldb)), np.uint32)
        packed[:, :n] = _pack(_buf(a).reshape(m, n).T, int(words)).T
        _buf(b)[...] = packed

    def xnor(A, B, C, m, words, k, n_bits, grid, block):
        _covers(grid, block, int(m) * int(k) // 64)  # up to 8x8 outputs per thread
        a = _unpack(_buf(A).reshape(m, words), 32 * int(words)).astype(np.int64)
        b = _unpack(_buf(B).reshape(words, -1).T, 32 * int(words)).astype(np.int64)[:k]
        mismatches = (32 * int(words) - a @ b.T) // 2  # zero tail bits unpack as -1 in both
        _buf(C)[...] = (int(n_bits) - 2 * mismatches).astype(np.float32)

    def opt(A, B, C, m, words, k, ldb, n_bits, grid, block):
        assert int(words) % 8 == 0 and int(ldb) % 4 == 0
        xnor(A, B, C, m, words, k, n_bits, grid, block)

    def threshold(x, y, t, d, m, k, grid, block):
        _covers(grid, block, int(m) * int(k))
        _buf(y)[...] = np.where(_buf(d) * _buf(x) >= _buf(t), np.float32(1), np.float32(-1))

    gpuarray = SimpleNamespace(to_gpu=lambda x: FakeArray(x),
                               empty=lambda shape, dtype: FakeArray(np.full(shape, 7, dtype)))
    drv = SimpleNamespace(Context=SimpleNamespace(synchronize=lambda: None))
    return cuda.Kernels(drv, gpuarray, None, "sm_90", gemm, rows, cols, xnor, opt, threshold)


class FakeCublas:
    modes = []

    def cublasSetMathMode(self, handle, mode):
        self.modes.append(mode)
        return 0

    def cublasSgemm_v2(self, handle, ta, tb, k, m, n, alpha, B, ldb, A, lda, beta, C, ldc):
        # column-major C^T(k, m) = B^T(k, n) A^T(n, m): row-major C = A B
        _buf(C)[...] = (_buf(A).reshape(m, n).astype(np.float64) @ _buf(B).reshape(n, k)).astype(np.float32)
        return 0


@pytest.fixture
def fake_gpu(monkeypatch):
    fake = _fake_kernels()
    monkeypatch.setattr(cuda, "kernels", lambda: fake)
    monkeypatch.setattr(cuda, "cublas", lambda: (FakeCublas(), None))
    monkeypatch.setattr(cuda.Device, "info", lambda self: {"gpu": "numpy stand-in", "arch": "sm_90",
                                                            "multiprocessors": 1})
    yield fake
    FakeArray.registry.clear()


def test_gpu_device_gemm_calls_give_the_exact_product(fake_gpu):
    rng = np.random.default_rng(6)
    a, b = pm1(rng, (37, 100)), pm1(rng, (100, 45))
    dev = cuda.Device()
    calls = dev.gemm_calls(a, b)
    assert set(calls) == set(dev.gemm_kernels)
    want = (a.astype(np.int64) @ b.astype(np.int64)).astype(np.float32)
    for name, call in calls.items():
        out, wall, cpu_s = dev.time(call)
        np.testing.assert_array_equal(dev.download(out), want, err_msg=name)
    assert FakeCublas.modes[-2:] == [0, 3]  # blas: TF32 off, blas_tf32: on


def test_gpu_device_runs_the_one_mlp_driver(fake_gpu):
    from gpu_xnor import cpu, mlp
    from tests.test_mlp import bn_blocks

    net = mlp.from_blocks(bn_blocks((784, 40, 36, 10), seed=4), "inline")
    X = np.random.default_rng(4).integers(0, 256, (30, 784), dtype=np.uint8)
    dev = cuda.Device()
    weights = dev.prepare(net.blocks)
    scores = {k: mlp.forward(net, X, k, dev, weights) for k in dev.mlp_kernels}
    for k, s in scores.items():
        np.testing.assert_array_equal(s, scores["baseline"], err_msg=k)
    # the stand-in's layer 1 is float64-exact; the CPU's differs only within rounding: compare
    # the binary layers from the same layer-1 signs
    h = dev.download(dev.sign(dev.layer1(dev.upload(mlp.scale_pixels(X)), weights[0]), weights[0]))
    cpu_dev = cpu.Device()
    w = cpu_dev.prepare(net.blocks)
    for i in (1, 2):
        s = cpu_dev.product("xnor", h, w[i])
        h = cpu_dev.sign(s, w[i]) if i < 2 else h
    np.testing.assert_array_equal(scores["xnor"], mlp.scores(s, net.blocks[-1]))


def test_gpu_command_line_writes_the_cpu_schema(fake_gpu, tmp_path, monkeypatch):
    import importlib.util
    import json

    from gpu_xnor.__main__ import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "pycuda" else real(name, *a))
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path / "none"))
    assert main(["--device", "gpu", "--quick", "--size", "40", "--out-dir", str(tmp_path),
                 "--name", "g"]) == 0
    record = json.loads((tmp_path / "g.json").read_text())
    assert record["device"] == "gpu" and record["quick"] is True
    assert set(record["gemm"]["seconds"]) == set(cuda.Device.gemm_kernels)
    assert all(record["gemm"]["exact"].values())
    assert {"xnor_vs_baseline", "xnor_vs_blas", "xnor_paper_vs_baseline", "xnor_paper_vs_blas",
            "xnor_vs_blas_tf32", "mlp_xnor_vs_baseline", "mlp_xnor_paper_vs_baseline"} <= set(record["ratios"])
    assert record["mlp"] is None and "no MNIST test set" in record["mlp_skipped"]
