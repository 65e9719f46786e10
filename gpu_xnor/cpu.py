"""The CPU kernels of ``xnor_cpu.c`` as numpy functions, and the CPU device of the benchmark driver.

The C source is compiled at first use into a shared library in ``cache_dir()/gpu_xnor``, named by
a hash of the source, the compiler, its flags and the CPU's feature flags, so each machine builds
it once; it is loaded with ctypes. Why this route rather than a PyTensor ``COp``: the kernels are
whole GEMMs with their own OpenMP threading, blocking and instruction-set dispatch, not
element-wise code PyTensor would fuse; a COp would recompile them into every graph's module
through PyTensor's cache and tie them to PyTensor's C flags, while the original also kept its
kernels outside the graph compiler (``binary_ops.py`` compiled ``binary_kernels.cu`` with PyCUDA
in ``make_thunk``, SOURCES.md §3.3). The same numpy-level functions serve the Ops (``ops.py``),
the MLP (``mlp.py``) and the benchmark (``bench.py``); ``gpu_xnor.cuda`` offers the same names on
a GPU.

The kernels, by the benchmark's names (the same on CPU and GPU):
  - ``baseline``: ``baseline_gemm``, the paper's unoptimised 16×16-tiled float kernel;
  - ``xnor_paper``: ``xnor_matmul_paper`` = packing of both operands + ``xnor_gemm_paper``, the
    paper's XNOR kernel (16×16 tiles, one scalar popcount per 64-bit word pair);
  - ``xnor``: ``xnor_matmul`` = packing of both operands + ``xnor_gemm``, ours (register-blocked,
    AVX-512 VPOPCNTDQ, AVX2 or portable, chosen at run time);
  - ``blas``: ``blas_gemm``, numpy's matmul, i.e. the SGEMM of the BLAS numpy links.

Conventions (SOURCES.md §3.1, widened to 64-bit words): C(M,N) = A(M,K)·B(K,N); bit t of word w
is ``x[64w + t] >= 0`` (element 0 in the least significant bit, 0.0 packs as +1); ``pack_rows``
gives (M, W) and ``pack_cols`` gives (W, N) uint64 with W = ceil(K/64); tail bits are 0 in both,
so ``xnor_gemm`` = K − 2·Σ popcount(a ^ b) is the exact ±1 dot product for any K.

Instruction-set path of ``xnor`` (and of the packing): ``isa`` argument, else ``$BNN_XNOR_ISA``,
else the best this CPU has: ``avx512`` (AVX-512 F/BW/DQ/VL + VPOPCNTDQ), ``avx2``, ``portable``.
A path the CPU lacks is refused with one line (:class:`IsaError`). Every path gives the same
numbers; ``tests/test_xnor_cpu.py`` runs each one the CPU has.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

import reproduction

SOURCE = Path(__file__).with_name("xnor_cpu.c")
#: Compiler flag sets, best first; the first one the compiler accepts is used. No -march=native:
#: each instruction-set path carries its own target attribute in the source, so one build runs
#: every path this CPU has (and the AVX2 path contains no AVX-512 instruction).
FLAG_SETS = (
    ("-O3", "-fopenmp", "-ffp-contract=off"),
    ("-O3", "-ffp-contract=off"),
    ("-O3",),
)
ISA_ENV = "BNN_XNOR_ISA"
#: The instruction-set paths, best first, with their code in xnor_cpu.c and what they need.
ISAS = {"avx512": (2, "AVX-512 F/BW/DQ/VL and VPOPCNTDQ"), "avx2": (1, "AVX2 and POPCNT"),
        "portable": (0, "nothing")}


class BuildError(RuntimeError):
    """The C source could not be compiled with any flag set."""


class IsaError(ValueError):
    """An unknown instruction-set path, or one this CPU lacks; ``str(e)`` is one line."""


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def _compiler() -> str:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or "cc"


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
_SIGNATURES = {  # name: (argument types, result type)
    "baseline_gemm": ((_F32, _F32, _F32, _I64, _I64, _I64, _INT), None),
    "pack_rows": ((_F32, _U64, _I64, _I64, _INT, _INT), None),
    "pack_cols": ((_F32, _U64, _I64, _I64, _INT, _INT), None),
    "pack_bitplanes": ((_U8, _U64, _I64, _I64, _INT), None),
    "threshold_sign": ((_F32, _F32, _I64, _I64, _F32, _F32, _INT), None),
    "xnor_gemm": ((_U64, _U64, _F32, _I64, _I64, _I64, _INT, _INT), _INT),
    "xnor_gemm_paper": ((_U64, _U64, _F32, _I64, _I64, _I64, _INT), None),
    "xnor_gemm_planes": ((_U64, _INT, _U64, _F32, _I64, _I64, _I64, _INT, _INT), _INT),
    "xnor_isa_supported": ((_INT,), _INT),
    "xnor_openmp": ((), _INT),
    "xnor_spin": ((_I64, _INT), _I64),
    "xnor_mix": ((_INT, _I64, _INT), _INT),
    "xnor_mix_bits": ((_INT,), _I64),
}


@lru_cache(maxsize=None)
def load(flag_sets=FLAG_SETS, cache=None) -> ctypes.CDLL:
    """The compiled library (built on first use), with argument types set."""
    path, flags = build(flag_sets, cache)
    lib = ctypes.CDLL(str(path))
    for name, (args, result) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = list(args), result
    lib.flags = flags
    return lib


def supported_isas(lib=None) -> list[str]:
    """The paths this CPU (and this build) can run, best first."""
    lib = lib or load()
    return [name for name, (code, _) in ISAS.items() if lib.xnor_isa_supported(code)]


def resolve_isa(isa: str | None = None, lib=None, source: str | None = None) -> str:
    """The path to run: ``isa``, else ``$BNN_XNOR_ISA``, else the best supported. ``source``
    names where ``isa`` came from in the one-line error (e.g. "--isa")."""
    lib = lib or load()
    if isa is None and os.environ.get(ISA_ENV):
        isa, source = os.environ[ISA_ENV], ISA_ENV
    if isa is None:
        return supported_isas(lib)[0]
    source = source or "isa"
    name = str(isa).strip().lower()
    if name not in ISAS:
        raise IsaError(f"{source}={isa!r}: unknown instruction-set path; choose one of "
                       f"{', '.join(ISAS)}")
    if not lib.xnor_isa_supported(ISAS[name][0]):
        raise IsaError(f"{source}={name}: this CPU lacks {ISAS[name][1]} (it runs: "
                       f"{', '.join(supported_isas(lib))})")
    return name


def info(lib=None, isa=None) -> dict:
    """What was built and what runs: flags, OpenMP, the path used, the paths available."""
    lib = lib or load()
    return {"flags": list(lib.flags), "openmp": bool(lib.xnor_openmp()),
            "isa": resolve_isa(isa, lib), "isas_supported": supported_isas(lib),
            "library": lib._name}


def _code(isa, lib) -> int:
    return ISAS[resolve_isa(isa, lib)][0]


def _matrix(x, dtype, name) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=dtype)
    if x.ndim != 2:
        raise ValueError(f"gpu_xnor/cpu.py: {name} must be 2-D, got shape {x.shape}")
    return x


def _inner(a, b, what) -> None:
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"gpu_xnor/cpu.py: {what}: inner dimensions differ, {a.shape} x {b.shape}")


def _status(code: int, what: str) -> None:
    if code == -2:
        raise MemoryError(f"gpu_xnor/cpu.py: {what}: out of memory")
    if code != 0:
        raise IsaError(f"gpu_xnor/cpu.py: {what}: instruction-set path not supported here")


def _aligned_empty(shape, align: int = 64) -> np.ndarray:
    """An uninitialised float32 array whose data starts on an ``align``-byte boundary, so that
    the XNOR kernels can write whole cache lines of it with streaming stores."""
    n = int(np.prod(shape))
    raw = np.empty(n * 4 + align, np.uint8)
    start = -raw.ctypes.data % align
    return raw[start:start + n * 4].view(np.float32).reshape(shape)


def words(k_bits: int) -> int:
    """64-bit words per packed row of ``k_bits`` elements."""
    return (int(k_bits) + 63) // 64


def baseline_gemm(a, b, threads=0, lib=None) -> np.ndarray:
    """A·B with the unoptimised 16×16-tiled scalar kernel (any float inputs). Every product and
    every sum is rounded, in k order: the same result on every machine."""
    lib = lib or load()
    a, b = _matrix(a, np.float32, "a"), _matrix(b, np.float32, "b")
    _inner(a, b, "baseline_gemm")
    c = np.empty((a.shape[0], b.shape[1]), np.float32)
    lib.baseline_gemm(a, b, c, a.shape[0], b.shape[1], a.shape[1], threads)
    return c


def pack_rows(a, threads=0, isa=None, lib=None) -> np.ndarray:
    """A(M,K) float -> (M, ceil(K/64)) uint64, each row packed along K."""
    lib = lib or load()
    a = _matrix(a, np.float32, "a")
    out = np.empty((a.shape[0], words(a.shape[1])), np.uint64)
    lib.pack_rows(a, out, a.shape[0], a.shape[1], _code(isa, lib), threads)
    return out


def pack_cols(b, threads=0, isa=None, lib=None) -> np.ndarray:
    """B(K,N) float -> (ceil(K/64), N) uint64, each column packed along K."""
    lib = lib or load()
    b = _matrix(b, np.float32, "b")
    out = np.empty((words(b.shape[0]), b.shape[1]), np.uint64)
    lib.pack_cols(b, out, b.shape[0], b.shape[1], _code(isa, lib), threads)
    return out


def pack_bitplanes(p, threads=0, lib=None) -> np.ndarray:
    """P(M,K) uint8 -> (8, M, ceil(K/64)) uint64: plane n holds bit n of each value, packed like
    ``pack_rows`` (a set bit stands for +1, a clear bit for −1)."""
    lib = lib or load()
    p = _matrix(p, np.uint8, "p")
    out = np.empty((8, p.shape[0], words(p.shape[1])), np.uint64)
    lib.pack_bitplanes(p, out, p.shape[0], p.shape[1], threads)
    return out


def _packed_operands(pa, pb, k_bits, what):
    pa, pb = _matrix(pa, np.uint64, "pa"), _matrix(pb, np.uint64, "pb")
    w = words(k_bits)
    if pa.shape[1] != w or pb.shape[0] != w:
        raise ValueError(f"gpu_xnor/cpu.py: {what}: k_bits={k_bits} needs {w} words, "
                         f"got pa {pa.shape} and pb {pb.shape}")
    return pa, pb


def xnor_gemm(pa, pb, k_bits, threads=0, isa=None, lib=None) -> np.ndarray:
    """K − 2·popcount(pa ^ pb) summed over the words: the ±1 product of the packed operands,
    with our register-blocked kernel on instruction-set path ``isa``."""
    lib = lib or load()
    pa, pb = _packed_operands(pa, pb, k_bits, "xnor_gemm")
    c = _aligned_empty((pa.shape[0], pb.shape[1]))
    _status(lib.xnor_gemm(pa, pb, c, pa.shape[0], pb.shape[1], int(k_bits), _code(isa, lib),
                          threads), "xnor_gemm")
    return c


def xnor_gemm_paper(pa, pb, k_bits, threads=0, lib=None) -> np.ndarray:
    """The same product with the paper's kernel (16×16 tiles, one scalar popcount per word pair)."""
    lib = lib or load()
    pa, pb = _packed_operands(pa, pb, k_bits, "xnor_gemm_paper")
    c = np.empty((pa.shape[0], pb.shape[1]), np.float32)
    lib.xnor_gemm_paper(pa, pb, c, pa.shape[0], pb.shape[1], int(k_bits), threads)
    return c


def xnor_gemm_planes(planes, pb, k_bits, threads=0, isa=None, lib=None) -> np.ndarray:
    """Σₙ 2ⁿ·xnor_gemm(planes[n], pb): Algorithm 4's weighted sum over bit planes (from
    ``pack_bitplanes``), fused so that no per-plane product is stored; exact below 2²⁴."""
    lib = lib or load()
    planes, pb = np.ascontiguousarray(planes, np.uint64), _matrix(pb, np.uint64, "pb")
    w = words(k_bits)
    if planes.ndim != 3 or planes.shape[2] != w or pb.shape[0] != w:
        raise ValueError(f"gpu_xnor/cpu.py: xnor_gemm_planes: k_bits={k_bits} needs {w} words, "
                         f"got planes {planes.shape} and pb {pb.shape}")
    c = np.empty((planes.shape[1], pb.shape[1]), np.float32)
    _status(lib.xnor_gemm_planes(planes, planes.shape[0], pb, c, planes.shape[1], pb.shape[1],
                                 int(k_bits), _code(isa, lib), threads), "xnor_gemm_planes")
    return c


def xnor_matmul(a, b, threads=0, isa=None, lib=None) -> np.ndarray:
    """sign(A)·sign(B) with sign(0) = +1, ours: both operands packed, then ``xnor_gemm``."""
    a, b = _matrix(a, np.float32, "a"), _matrix(b, np.float32, "b")
    _inner(a, b, "xnor_matmul")
    return xnor_gemm(pack_rows(a, threads, isa, lib), pack_cols(b, threads, isa, lib), a.shape[1],
                     threads, isa, lib)


def xnor_matmul_paper(a, b, threads=0, isa=None, lib=None) -> np.ndarray:
    """sign(A)·sign(B), the paper's way: both operands packed (as the original's XnorGemm Op did
    on every call, SOURCES.md §3.3; the packing is the same as ours), then ``xnor_gemm_paper``."""
    a, b = _matrix(a, np.float32, "a"), _matrix(b, np.float32, "b")
    _inner(a, b, "xnor_matmul_paper")
    return xnor_gemm_paper(pack_rows(a, threads, isa, lib), pack_cols(b, threads, isa, lib),
                           a.shape[1], threads, lib)


def blas_gemm(a, b) -> np.ndarray:
    """A·B through numpy's matmul, i.e. the BLAS SGEMM numpy links (OpenBLAS in the wheels)."""
    a, b = _matrix(a, np.float32, "a"), _matrix(b, np.float32, "b")
    _inner(a, b, "blas_gemm")
    return a @ b


def threshold_sign(s, t, d, threads=0, lib=None) -> np.ndarray:
    """+1 where d·s >= t, else −1, per column (d = ±1): batch norm + sign in threshold form."""
    lib = lib or load()
    s = _matrix(s, np.float32, "s")
    t, d = (np.ascontiguousarray(v, dtype=np.float32).reshape(-1) for v in (t, d))
    if t.shape != (s.shape[1],) or d.shape != (s.shape[1],):
        raise ValueError(f"gpu_xnor/cpu.py: threshold_sign: t and d must have {s.shape[1]} values")
    out = np.empty_like(s)
    lib.threshold_sign(s, out, s.shape[0], s.shape[1], t, d, threads)
    return out


# ---------------------------------------------------------------- the machine's limits -------

def clock_ghz(threads: int, seconds: float = 0.05, tries: int = 5, lib=None) -> float:
    """The clock while ``threads`` threads spin (a dependent chain of one-cycle additions, 4 per
    iteration): the best of ``tries`` runs of about ``seconds`` each."""
    lib = lib or load()
    n, best = int(seconds * 1e9), float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        lib.xnor_spin(n, threads)
        best = min(best, time.perf_counter() - t0)
    return 4 * n / best / 1e9


def mix_bits_per_second(isa: str, threads: int, seconds: float = 0.05, tries: int = 5,
                        lib=None) -> float | None:
    """Bits per second of path ``isa``'s inner-loop instruction mix run from registers on
    ``threads`` threads (the path's ceiling on this machine), best of ``tries``; None where it
    cannot run (a non-x86 CPU, or no popcnt instruction)."""
    lib = lib or load()
    code = ISAS[isa][0]
    n = max(1, int(seconds * 3e9 * 64 / lib.xnor_mix_bits(code)))
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        if lib.xnor_mix(code, n, threads) != 0:
            return None
        best = min(best, time.perf_counter() - t0)
    return lib.xnor_mix_bits(code) * n * threads / best


# ---------------------------------------------------------------- the device of the driver ---

@dataclass
class Device:
    """The CPU part of the benchmark driver (``bench.py``, ``mlp.forward``): a timer and the
    kernels, on numpy arrays. ``threads`` = 0: OpenMP's default (all cores); ``isa`` resolved
    as in :func:`resolve_isa`."""

    threads: int = 0
    isa: str | None = None
    name: str = field(default="cpu", init=False)
    #: The GEMM benchmark's kernels; ``xnor_gemm_only`` is ours on operands packed beforehand.
    gemm_kernels: tuple = field(default=("baseline", "xnor_paper", "xnor", "xnor_gemm_only",
                                         "blas"), init=False)
    mlp_kernels: tuple = field(default=("baseline", "xnor_paper", "xnor", "blas"), init=False)

    def __post_init__(self):
        self.lib = load()
        self.isa = resolve_isa(self.isa, self.lib)

    # -- timing: wall clock and the process's CPU time (all threads) around one call
    def time(self, fn):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t0, time.process_time() - c0

    def upload(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x, dtype=np.float32)

    def download(self, x) -> np.ndarray:
        return np.asarray(x)

    # -- the matrix product benchmark
    def gemm_calls(self, a: np.ndarray, b: np.ndarray) -> dict:
        th, isa, lib = self.threads, self.isa, self.lib
        pa, pb = pack_rows(a, th, isa, lib), pack_cols(b, th, isa, lib)
        k = a.shape[1]
        return {"baseline": lambda: baseline_gemm(a, b, th, lib),
                "xnor_paper": lambda: xnor_matmul_paper(a, b, th, isa, lib),
                "xnor": lambda: xnor_matmul(a, b, th, isa, lib),
                "xnor_gemm_only": lambda: xnor_gemm(pa, pb, k, th, isa, lib),
                "blas": lambda: blas_gemm(a, b)}

    # -- the MLP: weights prepared once, then one call per layer
    def prepare(self, blocks) -> list[dict]:
        return [{"wb": blk.wb, "packed": pack_cols(blk.wb, self.threads, self.isa, self.lib),
                 "t": blk.t, "d": blk.d} for blk in blocks]

    def layer1(self, x, w) -> np.ndarray:
        return baseline_gemm(x, w["wb"], self.threads, self.lib)

    def product(self, kernel: str, h, w) -> np.ndarray:
        th, isa, lib = self.threads, self.isa, self.lib
        if kernel == "baseline":
            return baseline_gemm(h, w["wb"], th, lib)
        if kernel == "xnor_paper":  # weights re-packed on every call, as the original
            return xnor_matmul_paper(h, w["wb"], th, isa, lib)
        if kernel == "xnor":
            return xnor_gemm(pack_rows(h, th, isa, lib), w["packed"], h.shape[1], th, isa, lib)
        if kernel == "blas":
            return blas_gemm(h, w["wb"])
        raise ValueError(f"gpu_xnor/cpu.py: kernel must be one of {self.mlp_kernels}, got {kernel!r}")

    def sign(self, s, w) -> np.ndarray:
        return threshold_sign(s, w["t"], w["d"], self.threads, self.lib)

    def layer1_alg4(self, P, w) -> np.ndarray:
        """Layer 1 by Algorithm 4 (bit planes), as float32: Σₙ 2ⁿ(sₙ·w) / 255 (see mlp.py)."""
        s = xnor_gemm_planes(pack_bitplanes(P, self.threads, self.lib), w["packed"], P.shape[1],
                             self.threads, self.isa, self.lib)
        return s / np.float32(255)
