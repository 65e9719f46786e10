"""The CPU kernels of ``xnor_cpu.c`` as numpy functions: baseline GEMM, 64-bit packing, XNOR GEMM.

The C source is compiled at first use into a shared library in ``cache_dir()/gpu_xnor``, named by
a hash of the source, the compiler, its flags and (for ``-march=native``) the CPU's feature
flags, so each machine builds it once; it is loaded with ctypes. Why this route rather than a
PyTensor ``COp``: the kernels are whole GEMMs with their own OpenMP threading, blocking and
SIMD dispatch, not element-wise code PyTensor would fuse; a COp would recompile them into every
graph's module through PyTensor's cache and tie them to PyTensor's C flags (no ``-march=native``,
no OpenMP by default), while the original also kept its kernels outside the graph compiler
(``binary_ops.py`` compiled ``binary_kernels.cu`` with PyCUDA in ``make_thunk``, PAPER.md §3.3).
The same numpy-level functions then serve the Ops (``ops.py``), the MLP and the benchmark, and
``gpu_xnor.cuda`` offers the same signatures on a GPU.

Conventions (PAPER.md §3.1, widened to 64-bit words): C(M,N) = A(M,K)·B(K,N); bit t of word w is
``x[64w + t] >= 0`` (element 0 in the least significant bit, 0.0 packs as +1); ``pack_rows`` gives
(M, W) and ``pack_cols`` gives (W, N) uint64 with W = ceil(K/64); tail bits are 0 in both, so
``xnor_gemm`` = K − 2·Σ popcount(a ^ b) is the exact ±1 dot product for any K.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

import reproduction

SOURCE = Path(__file__).with_name("xnor_cpu.c")
#: Compiler flag sets, best first; the first one the compiler accepts is used.
FLAG_SETS = (
    ("-O3", "-march=native", "-fopenmp"),
    ("-O3", "-fopenmp"),
    ("-O3", "-march=native"),
    ("-O3",),
)


class BuildError(RuntimeError):
    """The C source could not be compiled with any flag set."""


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def _compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or "cc"
    return cc


def library_path(flags, cache=None) -> Path:
    """Where the library built with ``flags`` lives: keyed by source, compiler, flags and CPU."""
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), _compiler().encode(), " ".join(flags).encode(),
                 _cpu_flags().encode(), platform.machine().encode()):
        key.update(part)
        key.update(b"\0")
    folder = Path(cache) if cache else reproduction.cache_dir() / "gpu_xnor"
    return folder / f"xnor_cpu-{key.hexdigest()[:16]}.so"


def build(flag_sets=FLAG_SETS, cache=None) -> tuple[Path, tuple]:
    """Compile ``xnor_cpu.c`` (once per key) and return (library path, flags used)."""
    errors = []
    for flags in flag_sets:
        path = library_path(flags, cache)
        if path.exists():
            return path, tuple(flags)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        cmd = [_compiler(), *flags, "-shared", "-fPIC", str(SOURCE), "-o", tmp]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode == 0:
                os.replace(tmp, path)
                return path, tuple(flags)
            errors.append(f"{' '.join(flags)}: {done.stderr.strip().splitlines()[-1:]}")
        except OSError as e:
            errors.append(f"{' '.join(flags)}: {e}")
        finally:
            Path(tmp).unlink(missing_ok=True)
    raise BuildError(f"{SOURCE}: could not compile with {_compiler()}: " + "; ".join(errors))


_F32 = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
_U64 = np.ctypeslib.ndpointer(np.uint64, flags="C_CONTIGUOUS")
_U8 = np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS")
_I64, _INT = ctypes.c_int64, ctypes.c_int
_SIGNATURES = {
    "baseline_gemm": (_F32, _F32, _F32, _I64, _I64, _I64, _INT),
    "pack_rows": (_F32, _U64, _I64, _I64, _INT),
    "pack_cols": (_F32, _U64, _I64, _I64, _INT),
    "pack_bitplanes": (_U8, _U64, _I64, _I64, _INT),
    "bn_sign": (_F32, _F32, _I64, _I64, _F32, _F32, _F32, _F32, _INT),
    "xnor_gemm": (_U64, _U64, _F32, _I64, _I64, _I64, _INT),
    "xnor_gemm_tiled": (_U64, _U64, _F32, _I64, _I64, _I64, _INT),
    "xnor_gemm_planes": (_U64, _INT, _U64, _F32, _I64, _I64, _I64, _INT),
}


@lru_cache(maxsize=None)
def load(flag_sets=FLAG_SETS, cache=None) -> ctypes.CDLL:
    """The compiled library (built on first use), with argument types set."""
    path, flags = build(flag_sets, cache)
    lib = ctypes.CDLL(str(path))
    for name, args in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = list(args), None
    lib.xnor_simd_level.restype = lib.xnor_openmp.restype = ctypes.c_int
    lib.flags = flags
    return lib


def info(lib=None) -> dict:
    """What was built: flags, SIMD path (512 = AVX-512 VPOPCNTDQ, 256 = AVX2, 0 = portable), OpenMP."""
    lib = lib or load()
    return {"flags": list(lib.flags), "simd": lib.xnor_simd_level(), "openmp": bool(lib.xnor_openmp()),
            "library": lib._name}


def _matrix(x, dtype, name) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=dtype)
    if x.ndim != 2:
        raise ValueError(f"gpu_xnor/cpu.py: {name} must be 2-D, got shape {x.shape}")
    return x


def _inner(a, b, what) -> None:
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"gpu_xnor/cpu.py: {what}: inner dimensions differ, {a.shape} x {b.shape}")


def words(k_bits: int) -> int:
    """64-bit words per packed row of ``k_bits`` elements."""
    return (int(k_bits) + 63) // 64


def baseline_gemm(a, b, threads=0, lib=None) -> np.ndarray:
    """A·B with the unoptimised 16×16-tiled scalar kernel (any float inputs)."""
    lib = lib or load()
    a, b = _matrix(a, np.float32, "a"), _matrix(b, np.float32, "b")
    _inner(a, b, "baseline_gemm")
    c = np.empty((a.shape[0], b.shape[1]), np.float32)
    lib.baseline_gemm(a, b, c, a.shape[0], b.shape[1], a.shape[1], threads)
    return c


def pack_rows(a, threads=0, lib=None) -> np.ndarray:
    """A(M,K) float -> (M, ceil(K/64)) uint64, each row packed along K."""
    lib = lib or load()
    a = _matrix(a, np.float32, "a")
    out = np.empty((a.shape[0], words(a.shape[1])), np.uint64)
    lib.pack_rows(a, out, a.shape[0], a.shape[1], threads)
    return out


def pack_cols(b, threads=0, lib=None) -> np.ndarray:
    """B(K,N) float -> (ceil(K/64), N) uint64, each column packed along K."""
    lib = lib or load()
    b = _matrix(b, np.float32, "b")
    out = np.empty((words(b.shape[0]), b.shape[1]), np.uint64)
    lib.pack_cols(b, out, b.shape[0], b.shape[1], threads)
    return out


def pack_bitplanes(p, threads=0, lib=None) -> np.ndarray:
    """P(M,K) uint8 -> (8, M, ceil(K/64)) uint64: plane n holds bit n of each value, packed like
    ``pack_rows`` (a set bit stands for +1, a clear bit for −1)."""
    lib = lib or load()
    p = _matrix(p, np.uint8, "p")
    out = np.empty((8, p.shape[0], words(p.shape[1])), np.uint64)
    lib.pack_bitplanes(p, out, p.shape[0], p.shape[1], threads)
    return out


def xnor_gemm(pa, pb, k_bits, threads=0, tiled=False, lib=None) -> np.ndarray:
    """K − 2·popcount(pa ^ pb) summed over the words: the ±1 product of the packed operands.

    ``tiled=True`` runs the paper-style kernel (16×16 tiles, scalar popcount) instead of the
    blocked SIMD one; both give the same numbers."""
    lib = lib or load()
    pa, pb = _matrix(pa, np.uint64, "pa"), _matrix(pb, np.uint64, "pb")
    w = words(k_bits)
    if pa.shape[1] != w or pb.shape[0] != w:
        raise ValueError(f"gpu_xnor/cpu.py: xnor_gemm: k_bits={k_bits} needs {w} words, "
                         f"got pa {pa.shape} and pb {pb.shape}")
    c = np.empty((pa.shape[0], pb.shape[1]), np.float32)
    fn = lib.xnor_gemm_tiled if tiled else lib.xnor_gemm
    fn(pa, pb, c, pa.shape[0], pb.shape[1], int(k_bits), threads)
    return c


def xnor_gemm_planes(planes, pb, k_bits, threads=0, lib=None) -> np.ndarray:
    """Σₙ 2ⁿ·xnor_gemm(planes[n], pb): Algorithm 4's weighted sum over bit planes (from
    ``pack_bitplanes``), fused so that no per-plane product is stored; exact below 2²⁴."""
    lib = lib or load()
    planes, pb = np.ascontiguousarray(planes, np.uint64), _matrix(pb, np.uint64, "pb")
    w = words(k_bits)
    if planes.ndim != 3 or planes.shape[2] != w or pb.shape[0] != w:
        raise ValueError(f"gpu_xnor/cpu.py: xnor_gemm_planes: k_bits={k_bits} needs {w} words, "
                         f"got planes {planes.shape} and pb {pb.shape}")
    c = np.empty((planes.shape[1], pb.shape[1]), np.float32)
    lib.xnor_gemm_planes(planes, planes.shape[0], pb, c, planes.shape[1], pb.shape[1], int(k_bits), threads)
    return c


def xnor_matmul(a, b, threads=0, tiled=False, lib=None) -> np.ndarray:
    """sign(A)·sign(B) with sign(0) = +1: both operands packed, then ``xnor_gemm`` (as the
    original's XnorGemm Op did on every call)."""
    a, b = _matrix(a, np.float32, "a"), _matrix(b, np.float32, "b")
    _inner(a, b, "xnor_matmul")
    return xnor_gemm(pack_rows(a, threads, lib), pack_cols(b, threads, lib), a.shape[1],
                     threads, tiled, lib)


def blas_gemm(a, b) -> np.ndarray:
    """A·B through numpy's matmul, i.e. the BLAS SGEMM numpy links (OpenBLAS in the wheels)."""
    a, b = _matrix(a, np.float32, "a"), _matrix(b, np.float32, "b")
    _inner(a, b, "blas_gemm")
    return a @ b


def bn_sign(x, bias, mean, scale, beta, threads=0, lib=None) -> np.ndarray:
    """+1 where (x + bias − mean)·scale + beta >= 0 else −1 (batch norm then sign, fused)."""
    lib = lib or load()
    x = _matrix(x, np.float32, "x")
    vecs = [np.ascontiguousarray(v, dtype=np.float32).reshape(-1) for v in (bias, mean, scale, beta)]
    if any(v.shape != (x.shape[1],) for v in vecs):
        raise ValueError(f"gpu_xnor/cpu.py: bn_sign: parameters must have {x.shape[1]} values")
    out = np.empty_like(x)
    lib.bn_sign(x, out, x.shape[0], x.shape[1], *vecs, threads)
    return out
