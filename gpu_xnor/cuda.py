"""The run-time kernels on an NVIDIA GPU, through PyCUDA: the counterpart of the original
``Run-time/binary_ops.py`` thunks (PAPER.md section 3.3), without Theano.

``binary_kernels.cu`` is compiled once per process for the device's own architecture
(``SourceModule(arch="sm_XY", no_extern_c=True)``) on the first call that needs the GPU;
importing this module imports nothing from PyCUDA, so ``import gpu_xnor.cuda`` works on any
machine. The context is the device's primary context (``pycuda.autoprimaryctx``), which the CUDA
runtime, and so cuBLAS, shares.

Two levels:

- numpy in, numpy out, with the same signatures as ``gpu_xnor/cpu.py``: ``baseline_gemm(a, b)``,
  ``pack_rows(a)``, ``pack_cols(b)``, ``xnor_gemm(pa, pb, k_bits)``, ``xnor_matmul(a, b)``,
  ``xnor_matmul_opt(a, b)``, ``blas_gemm(a, b, tf32=False)``. Each copies its inputs to the
  device and its result back explicitly.
- ``*_dev`` variants on ``pycuda.gpuarray.GPUArray``s, for timing without the transfers.

Packing is 32-bit words as the original (cpu.py uses 64-bit words; packed arrays of the two
modules are not interchangeable): ``pack_rows(a)`` of A(m, n) is (m, ceil(n/32)) uint32,
``pack_cols(b)`` of B(n, k) is (ceil(n/32), k) uint32, bit t of a word = (x >= 0) for element
t of its group of 32, LSB first; tail bits are 0 in both operands, so they never mismatch and
``xnor_gemm(pa, pb, k_bits)`` = k_bits - 2 popcount(pa ^ pb) is the exact +-1 product for any
sizes. The optimised kernel wants the words padded to a multiple of 8 and B's columns to a
multiple of 4 (zero padding, which adds no mismatches); ``xnor_matmul_opt`` does that.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("binary_kernels.cu")

BLOCK_SIZE = 16  # the original's tile: gemm and xnor_gemm, one output per thread
PACK_THREADS = 64  # the original's packing block
OPT_TILE = 128  # xnor_gemm_opt: outputs per block side (16 threads x 8)
OPT_WORDS = 8  # xnor_gemm_opt: words per shared-memory tile (XNOR_OPT_BK)
OPT_COLS = 4  # xnor_gemm_opt: B's row stride must be a multiple of this (uint4 loads)
BN_THREADS = 256

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


def bn_launch(m: int, k: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(grid, block) for batchnorm_sign_kernel: one thread per element."""
    return (max(1, _ceil_div(m * k, BN_THREADS)), 1, 1), (BN_THREADS, 1, 1)


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
    batchnorm_sign: object


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
                   f("batchnorm_sign_kernel"))


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


def xnor_gemm_dev(pa, pb, k_bits: int, out=None):
    """The paper's XNOR kernel on packed operands: C = k_bits - 2 popcount(pa ^ pb)."""
    K = kernels()
    _check_dev(pa, np.uint32, "pa")
    _check_dev(pb, np.uint32, "pb")
    (m, words), k = pa.shape, pb.shape[1]
    _inner(words, pb.shape[0], "xnor_gemm")
    if not 0 <= k_bits <= 32 * words:
        raise ValueError(f"gpu_xnor/cuda.py: k_bits={k_bits} does not fit {words} words")
    out = K.gpuarray.empty((m, k), np.float32) if out is None else out
    grid, block = tiled_launch(m, k)
    K.xnor_gemm(pa.gpudata, pb.gpudata, out.gpudata, *_i32(m, words, k, k_bits),
                grid=grid[:2], block=block)
    return out


def xnor_gemm_opt_dev(pa, pb, k_bits: int, k: int, out=None):
    """The optimised XNOR kernel: pa (m, words), pb (words, ldb), words % 8 == 0, ldb % 4 == 0."""
    K = kernels()
    _check_dev(pa, np.uint32, "pa")
    _check_dev(pb, np.uint32, "pb")
    (m, words), ldb = pa.shape, pb.shape[1]
    _inner(words, pb.shape[0], "xnor_gemm_opt")
    if words % OPT_WORDS or ldb % OPT_COLS or k > ldb:
        raise ValueError(f"gpu_xnor/cuda.py: xnor_gemm_opt needs words % {OPT_WORDS} == 0, "
                         f"ldb % {OPT_COLS} == 0 and k <= ldb; got {words}, {ldb}, {k}")
    out = K.gpuarray.empty((m, k), np.float32) if out is None else out
    grid, block = opt_launch(m, k)
    K.xnor_gemm_opt(pa.gpudata, pb.gpudata, out.gpudata, *_i32(m, words, k, ldb, k_bits),
                    grid=grid[:2], block=block)
    return out


def xnor_matmul_dev(a, b, out=None):
    """sign(A) . sign(B) as the original timed it: pack both operands, then xnor_gemm."""
    n = _inner(a.shape[1], b.shape[0], "xnor_matmul")
    return xnor_gemm_dev(pack_rows_dev(a), pack_cols_dev(b), n, out=out)


def xnor_matmul_opt_dev(a, b, out=None):
    """sign(A) . sign(B): pack both operands (padded), then xnor_gemm_opt."""
    n = _inner(a.shape[1], b.shape[0], "xnor_matmul_opt")
    words, k = opt_words(n), b.shape[1]
    return xnor_gemm_opt_dev(pack_rows_dev(a, words), pack_cols_dev(b, words, opt_ldb(k)), n, k,
                             out=out)


def batchnorm_sign_dev(x, bias, mean, scale, beta, sign: bool, out=None):
    """y = ((x + bias) - mean) * scale + beta per column, then +-1 by (y >= 0) if ``sign``."""
    K = kernels()
    _check_dev(x, np.float32, "x")
    m, k = x.shape
    out = K.gpuarray.empty((m, k), np.float32) if out is None else out
    grid, block = bn_launch(m, k)
    K.batchnorm_sign(x.gpudata, out.gpudata, bias.gpudata, mean.gpudata, scale.gpudata,
                     beta.gpudata, *_i32(m, k, int(sign)), grid=grid[:2], block=block)
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
    sgemm(N, N, k, m, n, 1, B, k, A, n, 0, C, k) (PAPER.md section 3.5)."""
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


def xnor_gemm(pa: np.ndarray, pb: np.ndarray, k_bits: int) -> np.ndarray:
    """k_bits - 2 popcount(pa ^ pb): the exact +-1 product of the packed operands."""
    pa, pb = _check(pa, np.uint32, "pa"), _check(pb, np.uint32, "pb")
    return xnor_gemm_dev(_to_gpu(pa), _to_gpu(pb), int(k_bits)).get()


def xnor_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sign(A) . sign(B) (sign(0) = +1) with the paper's packing and XNOR kernels."""
    a, b = _check(a, np.float32, "a"), _check(b, np.float32, "b")
    return xnor_matmul_dev(_to_gpu(a), _to_gpu(b)).get()


def xnor_matmul_opt(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sign(A) . sign(B) with the register-tiled XNOR kernel."""
    a, b = _check(a, np.float32, "a"), _check(b, np.float32, "b")
    return xnor_matmul_opt_dev(_to_gpu(a), _to_gpu(b)).get()


def blas_gemm(a: np.ndarray, b: np.ndarray, tf32: bool = False) -> np.ndarray:
    """A(m,n) . B(n,k) with cuBLAS SGEMM (TF32 tensor cores if ``tf32``)."""
    a, b = _check(a, np.float32, "a"), _check(b, np.float32, "b")
    return blas_gemm_dev(_to_gpu(a), _to_gpu(b), tf32=tf32).get()


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
