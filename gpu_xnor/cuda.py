"""The run-time kernels on an NVIDIA GPU, through PyCUDA, and the GPU device of the benchmark
driver: the counterpart of the original ``Run-time/binary_ops.py`` thunks (SOURCES.md §3.3),
without Theano.

``binary_kernels.cu`` is compiled once per process for the device's own architecture
(``SourceModule(arch="sm_XY", no_extern_c=True)``) on the first call that needs the GPU;
importing this module imports nothing from PyCUDA, so ``import gpu_xnor.cuda`` works on any
machine. The context is the device's primary context (``pycuda.autoprimaryctx``), which the CUDA
runtime, and so cuBLAS, shares.

The kernels, by the benchmark's names (the same on CPU and GPU, ``gpu_xnor/cpu.py``):
  - ``baseline``: the paper's ``gemm``, 16×16 shared-memory tiles, one output per thread;
  - ``xnor_paper``: packing of both operands + the paper's ``xnor_gemm`` (the same tiling over
    32-bit words, one ``__popc`` per word pair);
  - ``xnor``: packing of both operands + ours, ``xnor_gemm_opt`` (128×128 tiles per block,
    8×8 outputs per thread in registers, 128-bit loads);
  - ``blas``: one cuBLAS SGEMM with TF32 off; ``blas_tf32``: with TF32 tensor cores on.

Two levels:

- numpy in, numpy out, with the names of ``gpu_xnor/cpu.py``: ``baseline_gemm(a, b)``,
  ``pack_rows(a)``, ``pack_cols(b)``, ``xnor_gemm(pa, pb, k_bits)`` (ours),
  ``xnor_gemm_paper(pa, pb, k_bits)``, ``xnor_matmul(a, b)`` (ours),
  ``xnor_matmul_paper(a, b)``, ``blas_gemm(a, b, tf32=False)``, ``threshold_sign(s, t, d)``. Each
  copies its inputs to the device and its result back explicitly.
- ``*_dev`` variants on ``pycuda.gpuarray.GPUArray``s, which :class:`Device` times.

Packing is 32-bit words as the original (cpu.py uses 64-bit words; packed arrays of the two
modules are not interchangeable): ``pack_rows(a)`` of A(m, n) is (m, ceil(n/32)) uint32,
``pack_cols(b)`` of B(n, k) is (ceil(n/32), k) uint32, bit t of a word = (x >= 0) for element
t of its group of 32, LSB first; tail bits are 0 in both operands, so they never mismatch and
the XNOR kernels' k_bits − 2 popcount(pa ^ pb) is the exact ±1 product for any sizes. Ours wants
the words padded to a multiple of 8 and B's columns to a multiple of 4 (zero padding, which adds
no mismatches): ``xnor_matmul`` packs that way, and ``xnor_gemm`` pads packed operands given
without it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("binary_kernels.cu")

BLOCK_SIZE = 16  # the original's tile: gemm and xnor_gemm, one output per thread
PACK_THREADS = 64  # the original's packing block
OPT_TILE = 128  # xnor_gemm_opt: outputs per block side (16 threads x 8)
OPT_WORDS = 8  # xnor_gemm_opt: words per shared-memory tile (XNOR_OPT_BK)
OPT_COLS = 4  # xnor_gemm_opt: B's row stride must be a multiple of this (uint4 loads)
ELEMENTWISE_THREADS = 256

_INSTALL_HINT = 'install PyCUDA with: pip install ".[gpu]"'


class CudaUnavailable(RuntimeError):
    """PyCUDA, a GPU or cuBLAS is missing."""


# ---- launch arithmetic: pure functions, also used by the emulation tests ------------------

def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def words_for(bits: int) -> int:
    """32-bit words that hold ``bits`` packed bits: ceil(bits / 32)."""
    return _ceil_div(bits, 32)


def opt_words(bits: int) -> int:
    """Words per packed row for xnor_gemm_opt: ceil(bits/32) rounded up to a multiple of 8."""
    return _ceil_div(words_for(bits), OPT_WORDS) * OPT_WORDS


def opt_ldb(k: int) -> int:
    """Row stride of B's packed words for xnor_gemm_opt: k rounded up to a multiple of 4."""
    return _ceil_div(k, OPT_COLS) * OPT_COLS


def tiled_launch(m: int, k: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(grid, block) for gemm and xnor_gemm: one 16x16 block per 16x16 tile of C(m, k).

    The original used ``(k/16 + 1, m/16 + 1)``, one block row and column too many whenever 16
    divides the size; ceil is enough now that the loads are guarded."""
    return (_ceil_div(k, BLOCK_SIZE), _ceil_div(m, BLOCK_SIZE), 1), (BLOCK_SIZE, BLOCK_SIZE, 1)


def opt_launch(m: int, k: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(grid, block) for xnor_gemm_opt: 16x16 threads per 128x128 tile of C(m, k)."""
    return (_ceil_div(k, OPT_TILE), _ceil_div(m, OPT_TILE), 1), (16, 16, 1)


def pack_rows_launch(m: int, words: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(grid, block) for concatenate_rows_kernel: one thread per output word."""
    return (max(1, _ceil_div(m * words, PACK_THREADS)), 1, 1), (PACK_THREADS, 1, 1)


def pack_cols_launch(words: int, ldb: int) -> tuple[tuple[int, int, int],
                                                   tuple[int, int, int]]:
    """(grid, block) for concatenate_cols_kernel: one thread per output word."""
    return (max(1, _ceil_div(words * ldb, PACK_THREADS)), 1, 1), (PACK_THREADS, 1, 1)


def threshold_launch(m: int, k: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(grid, block) for threshold_sign_kernel: one thread per element."""
    return (max(1, _ceil_div(m * k, ELEMENTWISE_THREADS)), 1, 1), (ELEMENTWISE_THREADS, 1, 1)


# ---- PyCUDA, imported and compiled on first use -------------------------------------------

@dataclass(frozen=True)
class Kernels:
    """The compiled module's kernels and the PyCUDA modules that launch them."""

    drv: object
    gpuarray: object
    device: object
    arch: str
    gemm: object
    concatenate_rows: object
    concatenate_cols: object
    xnor_gemm: object
    xnor_gemm_opt: object
    threshold_sign: object


@functools.lru_cache(maxsize=None)
def kernels() -> Kernels:
    """Compiles binary_kernels.cu once per process for the current device's architecture."""
    try:
        import pycuda.autoprimaryctx  # noqa: F401  (creates and pushes the primary context)
        import pycuda.driver as drv
        import pycuda.gpuarray as gpuarray
        from pycuda.compiler import SourceModule
    except ImportError as e:
        raise CudaUnavailable(f"gpu_xnor/cuda.py: PyCUDA is not installed ({e}); {_INSTALL_HINT}")
    except Exception as e:  # pycuda.driver.Error and friends: no driver or no device
        raise CudaUnavailable(f"gpu_xnor/cuda.py: no usable CUDA device: {e}")
    device = drv.Context.get_device()
    major, minor = device.compute_capability()
    arch = f"sm_{major}{minor}"
    module = SourceModule(SOURCE.read_text(), arch=arch, no_extern_c=True,
                          options=["-O3"], include_dirs=[str(SOURCE.parent)])
    f = module.get_function
    return Kernels(drv, gpuarray, device, arch, f("gemm"), f("concatenate_rows_kernel"),
                   f("concatenate_cols_kernel"), f("xnor_gemm"), f("xnor_gemm_opt"),
                   f("threshold_sign_kernel"))


def _check(x: np.ndarray, dtype, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"gpu_xnor/cuda.py: {name} must be 2-D, got shape {x.shape}")
    if x.dtype != dtype:
        raise ValueError(f"gpu_xnor/cuda.py: {name} must be {np.dtype(dtype)}, got {x.dtype}")
    return np.ascontiguousarray(x)


def _check_dev(x, dtype, name: str):
    if len(x.shape) != 2 or x.dtype != dtype or not x.flags.c_contiguous:
        raise ValueError(f"gpu_xnor/cuda.py: {name} must be a C-contiguous 2-D {np.dtype(dtype)}"
                         f" GPUArray, got {x.dtype} {x.shape}")


def _inner(a_cols: int, b_rows: int, what: str) -> int:
    if a_cols != b_rows:
        raise ValueError(f"gpu_xnor/cuda.py: {what}: inner sizes differ ({a_cols} vs {b_rows})")
    return a_cols


def _i32(*values: int):
    return [np.int32(v) for v in values]


# ---- device-array level -------------------------------------------------------------------

def baseline_gemm_dev(a, b, out=None):
    """C(m,k) = A(m,n) . B(n,k) with the paper's 16x16 tiled float kernel (`gemm`)."""
    K = kernels()
    _check_dev(a, np.float32, "a")
    _check_dev(b, np.float32, "b")
    (m, n), k = a.shape, b.shape[1]
    _inner(n, b.shape[0], "baseline_gemm")
    out = K.gpuarray.empty((m, k), np.float32) if out is None else out
    grid, block = tiled_launch(m, k)
    K.gemm(a.gpudata, b.gpudata, out.gpudata, *_i32(m, n, k), grid=grid[:2], block=block)
    return out


def pack_rows_dev(a, words: int | None = None):
    """A(m, n) float32 -> (m, words) uint32, words >= ceil(n/32) (extra words are 0)."""
    K = kernels()
    _check_dev(a, np.float32, "a")
    m, n = a.shape
    words = words_for(n) if words is None else words
    out = K.gpuarray.empty((m, words), np.uint32)
    grid, block = pack_rows_launch(m, words)
    K.concatenate_rows(a.gpudata, out.gpudata, *_i32(m, n, words), grid=grid[:2], block=block)
    return out


def pack_cols_dev(b, words: int | None = None, ldb: int | None = None):
    """B(n, k) float32 -> (words, ldb) uint32 packed along n; extra words and columns are 0."""
    K = kernels()
    _check_dev(b, np.float32, "b")
    n, k = b.shape
    words = words_for(n) if words is None else words
    ldb = k if ldb is None else ldb
    out = K.gpuarray.empty((words, ldb), np.uint32)
    grid, block = pack_cols_launch(words, ldb)
    K.concatenate_cols(b.gpudata, out.gpudata, *_i32(n, k, words, ldb), grid=grid[:2],
                       block=block)
    return out


def xnor_gemm_paper_dev(pa, pb, k_bits: int, out=None):
    """The paper's XNOR kernel on packed operands: C = k_bits - 2 popcount(pa ^ pb)."""
    K = kernels()
    _check_dev(pa, np.uint32, "pa")
    _check_dev(pb, np.uint32, "pb")
    (m, words), k = pa.shape, pb.shape[1]
    _inner(words, pb.shape[0], "xnor_gemm_paper")
    if not 0 <= k_bits <= 32 * words:
        raise ValueError(f"gpu_xnor/cuda.py: k_bits={k_bits} does not fit {words} words")
    out = K.gpuarray.empty((m, k), np.float32) if out is None else out
    grid, block = tiled_launch(m, k)
    K.xnor_gemm(pa.gpudata, pb.gpudata, out.gpudata, *_i32(m, words, k, k_bits),
                grid=grid[:2], block=block)
    return out


def xnor_gemm_dev(pa, pb, k_bits: int, k: int, out=None):
    """Ours, xnor_gemm_opt: pa (m, words), pb (words, ldb), words % 8 == 0, ldb % 4 == 0; the
    first k columns of pb are the product's."""
    K = kernels()
    _check_dev(pa, np.uint32, "pa")
    _check_dev(pb, np.uint32, "pb")
    (m, words), ldb = pa.shape, pb.shape[1]
    _inner(words, pb.shape[0], "xnor_gemm")
    if words % OPT_WORDS or ldb % OPT_COLS or k > ldb:
        raise ValueError(f"gpu_xnor/cuda.py: xnor_gemm needs words % {OPT_WORDS} == 0, "
                         f"ldb % {OPT_COLS} == 0 and k <= ldb; got {words}, {ldb}, {k}")
    out = K.gpuarray.empty((m, k), np.float32) if out is None else out
    grid, block = opt_launch(m, k)
    K.xnor_gemm_opt(pa.gpudata, pb.gpudata, out.gpudata, *_i32(m, words, k, ldb, k_bits),
                    grid=grid[:2], block=block)
    return out


def xnor_matmul_paper_dev(a, b, out=None):
    """sign(A) . sign(B) as the original timed it: pack both operands, then xnor_gemm."""
    n = _inner(a.shape[1], b.shape[0], "xnor_matmul_paper")
    return xnor_gemm_paper_dev(pack_rows_dev(a), pack_cols_dev(b), n, out=out)


def pack_weights_dev(b):
    """B(n, k) packed for ours: (opt_words(n), opt_ldb(k)), the padding zero."""
    n, k = b.shape
    return pack_cols_dev(b, opt_words(n), opt_ldb(k))


def xnor_matmul_dev(a, b, out=None, packed_b=None):
    """sign(A) . sign(B), ours: pack both operands (padded; B not when ``packed_b`` is given, from
    ``pack_weights_dev``), then xnor_gemm_opt."""
    n = _inner(a.shape[1], b.shape[0], "xnor_matmul")
    pb = pack_weights_dev(b) if packed_b is None else packed_b
    return xnor_gemm_dev(pack_rows_dev(a, opt_words(n)), pb, n, b.shape[1], out=out)


def threshold_sign_dev(s, t, d, out=None):
    """+1 where d[j] * s >= t[j] (d = +-1), else -1: batch norm + sign in threshold form."""
    K = kernels()
    _check_dev(s, np.float32, "s")
    m, k = s.shape
    out = K.gpuarray.empty((m, k), np.float32) if out is None else out
    grid, block = threshold_launch(m, k)
    K.threshold_sign(s.gpudata, out.gpudata, t.gpudata, d.gpudata, *_i32(m, k), grid=grid[:2],
                     block=block)
    return out


# ---- cuBLAS through ctypes ----------------------------------------------------------------

_CUBLAS_DEFAULT_MATH = 0  # cublasMath_t: full fp32 FMAs
_CUBLAS_TF32_TENSOR_OP_MATH = 3  # fp32 in and out, TF32 tensor cores inside


def _cublas_candidates() -> list[str]:
    names = [ctypes.util.find_library("cublas"), "libcublas.so.13", "libcublas.so.12",
             "libcublas.so"]
    # pip's nvidia-cublas wheels (where PyTorch and CuPy get theirs) and the toolkit.
    for base in sys.path:
        for sub in ("nvidia/cu13/lib", "nvidia/cublas/lib", "nvidia/cu12/lib"):
            names += sorted(glob.glob(os.path.join(base, sub, "libcublas.so*")), reverse=True)
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    names += sorted(glob.glob(os.path.join(cuda_home, "lib64", "libcublas.so*")), reverse=True)
    return [n for n in names if n]


@functools.lru_cache(maxsize=None)
def cublas():
    """(library, handle): cuBLAS loaded with ctypes, one handle for the process."""
    kernels()  # the primary context must be current before cublasCreate
    lib, tried = None, []
    for name in _cublas_candidates():
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError as e:
            tried.append(f"{name}: {e}")
    if lib is None:
        raise CudaUnavailable("gpu_xnor/cuda.py: cannot load libcublas; tried " + "; ".join(tried))
    p, i, f = ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)
    lib.cublasCreate_v2.argtypes = [ctypes.POINTER(p)]
    lib.cublasSetMathMode.argtypes = [p, i]
    lib.cublasSgemm_v2.argtypes = [p, i, i, i, i, i, f, p, i, p, i, f, p, i]
    handle = p()
    status = lib.cublasCreate_v2(ctypes.byref(handle))
    if status != 0:
        raise CudaUnavailable(f"gpu_xnor/cuda.py: cublasCreate failed with status {status}")
    return lib, handle


def blas_gemm_dev(a, b, tf32: bool = False, out=None):
    """C(m,k) = A(m,n) . B(n,k) with cuBLAS SGEMM, TF32 tensor cores off or on.

    Row-major through column-major cuBLAS as the original benchmark: C^T = B^T A^T, i.e.
    sgemm(N, N, k, m, n, 1, B, k, A, n, 0, C, k) (SOURCES.md §3.5)."""
    K = kernels()
    lib, handle = cublas()
    _check_dev(a, np.float32, "a")
    _check_dev(b, np.float32, "b")
    (m, n), k = a.shape, b.shape[1]
    _inner(n, b.shape[0], "blas_gemm")
    out = K.gpuarray.empty((m, k), np.float32) if out is None else out
    status = lib.cublasSetMathMode(handle, _CUBLAS_TF32_TENSOR_OP_MATH if tf32
                                   else _CUBLAS_DEFAULT_MATH)
    one, zero = ctypes.c_float(1.0), ctypes.c_float(0.0)
    status = status or lib.cublasSgemm_v2(
        handle, 0, 0, k, m, n, ctypes.byref(one), int(b.gpudata), k, int(a.gpudata), n,
        ctypes.byref(zero), int(out.gpudata), k)
    if status != 0:
        raise RuntimeError(f"gpu_xnor/cuda.py: cuBLAS SGEMM failed with status {status}")
    return out


# ---- numpy level: the same signatures as gpu_xnor/cpu.py -----------------------------------

def _to_gpu(x: np.ndarray):
    return kernels().gpuarray.to_gpu(x)


def baseline_gemm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A(m,n) . B(n,k) with the paper's baseline kernel; float32 in and out."""
    a, b = _check(a, np.float32, "a"), _check(b, np.float32, "b")
    return baseline_gemm_dev(_to_gpu(a), _to_gpu(b)).get()


def pack_rows(a: np.ndarray) -> np.ndarray:
    """Rows of A(m, n) -> (m, ceil(n/32)) uint32; bit t = (x >= 0), LSB first."""
    return pack_rows_dev(_to_gpu(_check(a, np.float32, "a"))).get()


def pack_cols(b: np.ndarray) -> np.ndarray:
    """Columns of B(n, k) -> (ceil(n/32), k) uint32; bit t of word (w, j) = B[32w+t, j] >= 0."""
    return pack_cols_dev(_to_gpu(_check(b, np.float32, "b"))).get()


def xnor_gemm_paper(pa: np.ndarray, pb: np.ndarray, k_bits: int) -> np.ndarray:
    """k_bits - 2 popcount(pa ^ pb) with the paper's kernel: the exact +-1 product."""
    pa, pb = _check(pa, np.uint32, "pa"), _check(pb, np.uint32, "pb")
    return xnor_gemm_paper_dev(_to_gpu(pa), _to_gpu(pb), int(k_bits)).get()


def xnor_gemm(pa: np.ndarray, pb: np.ndarray, k_bits: int, n: int | None = None) -> np.ndarray:
    """The same with ours; operands not padded for it are padded with zero words and columns.
    ``n``: the product's columns (default: pb's)."""
    pa, pb = _check(pa, np.uint32, "pa"), _check(pb, np.uint32, "pb")
    _inner(pa.shape[1], pb.shape[0], "xnor_gemm")
    n = pb.shape[1] if n is None else n
    words = _ceil_div(max(pa.shape[1], 1), OPT_WORDS) * OPT_WORDS
    pa = np.pad(pa, ((0, 0), (0, words - pa.shape[1])))
    pb = np.pad(pb, ((0, words - pb.shape[0]), (0, opt_ldb(pb.shape[1]) - pb.shape[1])))
    return xnor_gemm_dev(_to_gpu(pa), _to_gpu(pb), int(k_bits), n).get()


def xnor_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sign(A) . sign(B) (sign(0) = +1), ours: padded packing + xnor_gemm_opt."""
    a, b = _check(a, np.float32, "a"), _check(b, np.float32, "b")
    return xnor_matmul_dev(_to_gpu(a), _to_gpu(b)).get()


def xnor_matmul_paper(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sign(A) . sign(B) with the paper's packing and XNOR kernels."""
    a, b = _check(a, np.float32, "a"), _check(b, np.float32, "b")
    return xnor_matmul_paper_dev(_to_gpu(a), _to_gpu(b)).get()


def blas_gemm(a: np.ndarray, b: np.ndarray, tf32: bool = False) -> np.ndarray:
    """A(m,n) . B(n,k) with cuBLAS SGEMM (TF32 tensor cores if ``tf32``)."""
    a, b = _check(a, np.float32, "a"), _check(b, np.float32, "b")
    return blas_gemm_dev(_to_gpu(a), _to_gpu(b), tf32=tf32).get()


def threshold_sign(s: np.ndarray, t: np.ndarray, d: np.ndarray) -> np.ndarray:
    """+1 where d·s >= t per column (d = +-1), else -1."""
    s = _check(s, np.float32, "s")
    t, d = (np.ascontiguousarray(v, np.float32).reshape(-1) for v in (t, d))
    if t.shape != (s.shape[1],) or d.shape != (s.shape[1],):
        raise ValueError(f"gpu_xnor/cuda.py: threshold_sign: t and d must have {s.shape[1]} values")
    return threshold_sign_dev(_to_gpu(s), _to_gpu(t), _to_gpu(d)).get()


def device_info() -> dict:
    """The GPU's name, architecture, memory, and the driver and CUDA versions, for records."""
    K = kernels()
    drv = K.drv

    def version(v: int) -> str:
        return f"{v // 1000}.{(v % 1000) // 10}"

    import pycuda
    return {"gpu": K.device.name(), "arch": K.arch,
            "memory_gib": round(K.device.total_memory() / 2**30, 1),
            "multiprocessors": K.device.get_attribute(drv.device_attribute.MULTIPROCESSOR_COUNT),
            "driver_cuda": version(drv.get_driver_version()),
            "pycuda_built_for_cuda": ".".join(map(str, drv.get_version())),
            "pycuda": pycuda.VERSION_TEXT}


def nvidia_smi() -> dict:
    """The GPU's name, driver, clocks and power limit as nvidia-smi reports them, for records."""
    q = "name,driver_version,clocks.max.sm,clocks.sm,power.limit"
    try:
        line = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20).stdout.splitlines()[0]
        return dict(zip(q.split(","), (v.strip() for v in line.split(","))))
    except (OSError, IndexError, subprocess.SubprocessError) as e:
        return {"nvidia_smi": f"unavailable ({e})"}


# ---- the device of the driver ---------------------------------------------------------------

class Device:
    """The GPU part of the benchmark driver (``bench.py``, ``mlp.forward``): a timer and the
    kernels, on device arrays (the names and the contract of ``gpu_xnor.cpu.Device``)."""

    name = "gpu"
    #: ``xnor_gemm_only`` is ours on operands packed beforehand.
    gemm_kernels = ("baseline", "xnor_paper", "xnor", "xnor_gemm_only", "blas", "blas_tf32")
    mlp_kernels = ("baseline", "xnor_paper", "xnor", "blas", "blas_tf32")

    def __init__(self):
        self.K = kernels()
        cublas()  # handle creation outside the timers, as benchmark-cublas.cu

    def info(self) -> dict:
        return {**device_info(), **nvidia_smi()}

    def time(self, fn):
        """Wall clock between two context synchronisations around one call (the original's
        timing: ``time.time()`` / ``std::chrono`` around launch + synchronize), and the
        process's CPU time."""
        drv = self.K.drv
        drv.Context.synchronize()
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        drv.Context.synchronize()
        return out, time.perf_counter() - t0, time.process_time() - c0

    def upload(self, x: np.ndarray):
        return self.K.gpuarray.to_gpu(np.ascontiguousarray(x, dtype=np.float32))

    def download(self, x) -> np.ndarray:
        return x.get()

    def gemm_calls(self, a: np.ndarray, b: np.ndarray) -> dict:
        """The timed calls on device copies of a (m, n) and b (n, k), with preallocated outputs
        and packed buffers (allocation is not timed, as benchmark-cublas.cu)."""
        gpuarray = self.K.gpuarray
        a, b = self.upload(a), self.upload(b)
        (m, n), k = a.shape, b.shape[1]
        out = {name: gpuarray.empty((m, k), np.float32) for name in self.gemm_kernels}
        words, owords, oldb = words_for(n), opt_words(n), opt_ldb(k)
        pa, pb = gpuarray.empty((m, words), np.uint32), gpuarray.empty((words, k), np.uint32)
        opa, opb = gpuarray.empty((m, owords), np.uint32), gpuarray.empty((owords, oldb), np.uint32)
        i32 = np.int32

        def pack(words_, ldb, pa_, pb_):
            K = self.K
            grid, block = pack_rows_launch(m, words_)
            K.concatenate_rows(a.gpudata, pa_.gpudata, i32(m), i32(n), i32(words_),
                               grid=grid[:2], block=block)
            grid, block = pack_cols_launch(words_, ldb)
            K.concatenate_cols(b.gpudata, pb_.gpudata, i32(n), i32(k), i32(words_), i32(ldb),
                               grid=grid[:2], block=block)

        def xnor_paper():
            pack(words, k, pa, pb)
            return xnor_gemm_paper_dev(pa, pb, n, out=out["xnor_paper"])

        def xnor():
            pack(owords, oldb, opa, opb)
            return xnor_gemm_dev(opa, opb, n, k, out=out["xnor"])

        pack(owords, oldb, opa, opb)  # xnor_gemm_only's operands
        return {"baseline": lambda: baseline_gemm_dev(a, b, out=out["baseline"]),
                "xnor_paper": xnor_paper,
                "xnor": xnor,
                "xnor_gemm_only": lambda: xnor_gemm_dev(opa, opb, n, k, out=out["xnor_gemm_only"]),
                "blas": lambda: blas_gemm_dev(a, b, tf32=False, out=out["blas"]),
                "blas_tf32": lambda: blas_gemm_dev(a, b, tf32=True, out=out["blas_tf32"])}

    def prepare(self, blocks) -> list[dict]:
        """sign(W), ours' packed sign(W) and the thresholds, resident on the device (the original
        loaded its parameters once into shared variables)."""
        prepared = []
        for blk in blocks:
            wb = self.upload(blk.wb)
            prepared.append({"wb": wb, "packed": pack_weights_dev(wb), "t": self.upload(blk.t),
                             "d": self.upload(blk.d)})
        return prepared

    def layer1(self, x, w):
        return baseline_gemm_dev(x, w["wb"])

    def product(self, kernel: str, h, w):
        if kernel == "baseline":
            return baseline_gemm_dev(h, w["wb"])
        if kernel == "xnor_paper":  # the weights packed again on every call, as the original
            return xnor_matmul_paper_dev(h, w["wb"])
        if kernel == "xnor":
            return xnor_matmul_dev(h, w["wb"], packed_b=w["packed"])
        if kernel in ("blas", "blas_tf32"):
            return blas_gemm_dev(h, w["wb"], tf32=kernel == "blas_tf32")
        raise ValueError(f"gpu_xnor/cuda.py: kernel must be one of {self.mlp_kernels}, got {kernel!r}")

    def sign(self, s, w):
        return threshold_sign_dev(s, w["t"], w["d"], out=s)

    def layer1_alg4(self, P, w):
        raise ValueError("gpu_xnor/cuda.py: Algorithm 4's layer 1 is implemented on the CPU only")
