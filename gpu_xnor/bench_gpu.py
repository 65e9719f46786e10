"""The GPU benchmarks of PAPER.md sections 3.4, 3.5 and 7 items 14-15, timed with CUDA events.

``run(args) -> dict`` is what ``python -m gpu_xnor --device gpu`` calls (gpu_xnor/bench.py owns
the command line and writes the JSON); ``python -m gpu_xnor.bench_gpu`` runs it alone.

1. The matrix product at ``--size`` (8192^3 by default), on random +-1 operands (both uniform;
   the original benchmark's ``rand()/RAND_MAX`` integer division made B almost all -1, which
   does not change timings but is not repeated here):
   - ``baseline``: the paper's 16x16 tiled float kernel, the GEMM only;
   - ``xnor``: packing of A by rows and B by columns plus the paper's XNOR kernel, as the
     original timed it (allocation excluded, as in benchmark-cublas.cu);
   - ``xnor_opt``: the same packing (padded) plus the register-tiled XNOR kernel;
   - ``xnor_gemm_only``, ``xnor_opt_gemm_only``: the two XNOR kernels on pre-packed operands;
   - ``blas``, ``blas_tf32``: one cuBLAS SGEMM, TF32 tensor cores off and on.
   Each is warmed up, then timed ``repeats`` times with CUDA events; the record keeps the
   median. ``faithful`` is the original's measurement instead: one cold call of each, in its
   order XNOR -> baseline -> cuBLAS, wall clock around launch + synchronize.
   All kernels must give exactly the same C on +-1 inputs (the sums are integers below 2^24).
2. The run-time MNIST MLP (PAPER.md 3.4) over the 10,000 test images in one batch, per kernel
   for layers 2-4 (layer 1 always the baseline kernel, its input is not binary): wall clock
   around one forward pass including the input's host->device copy, the per-call packing of
   activations and weights (as the original re-packed the weights every call) and the copy of
   the scores back. Deviation from the original, recorded in ``conditions``: warm-up runs and
   the median of repetitions instead of one cold run (the cold run is kept as ``cold``).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from gpu_xnor import cuda

PAPER = {"xnor_vs_baseline": 23, "xnor_vs_blas": 3.4, "mlp_xnor_vs_baseline": 7}
GEMM_KERNELS = ("baseline", "xnor", "xnor_opt", "xnor_gemm_only", "xnor_opt_gemm_only", "blas",
                "blas_tf32")
MLP_KERNELS = ("baseline", "xnor", "xnor_opt", "blas", "blas_tf32")


def _median_seconds(fn, warmup: int, repeats: int) -> dict:
    """Median (and min) of ``repeats`` CUDA-event timings of ``fn()``, after ``warmup`` calls."""
    drv = cuda.kernels().drv
    for _ in range(warmup):
        fn()
    drv.Context.synchronize()
    times = []
    start, end = drv.Event(), drv.Event()
    for _ in range(repeats):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(end.time_since(start) / 1000.0)
    return {"median": statistics.median(times), "min": min(times), "all": times}


def _wall_seconds(fn) -> float:
    """One call, wall clock, synchronised: the original's std::chrono / time.time() timing."""
    drv = cuda.kernels().drv
    drv.Context.synchronize()
    t0 = time.perf_counter()
    fn()
    drv.Context.synchronize()
    return time.perf_counter() - t0


def _pm1(rng, shape) -> np.ndarray:
    return np.where(rng.random(shape, dtype=np.float32) < 0.5, -1.0, 1.0).astype(np.float32)


def gemm_closures(a, b) -> tuple[dict, dict]:
    """The timed calls on device arrays a (m, n), b (n, k), with preallocated outputs and
    packed buffers, and the output each writes."""
    K = cuda.kernels()
    gpuarray = K.gpuarray
    (m, n), k = a.shape, b.shape[1]
    out = {name: gpuarray.empty((m, k), np.float32) for name in GEMM_KERNELS}
    words, owords, oldb = cuda.words_for(n), cuda.opt_words(n), cuda.opt_ldb(k)
    pa, pb = gpuarray.empty((m, words), np.uint32), gpuarray.empty((words, k), np.uint32)
    opa, opb = gpuarray.empty((m, owords), np.uint32), gpuarray.empty((owords, oldb), np.uint32)
    rows_grid, rows_block = cuda.pack_rows_launch(m, words)
    cols_grid, cols_block = cuda.pack_cols_launch(words, k)
    orows_grid, _ = cuda.pack_rows_launch(m, owords)
    ocols_grid, _ = cuda.pack_cols_launch(owords, oldb)
    i32 = np.int32

    def pack(words_, ldb, pa_, pb_, rgrid, cgrid):
        K.concatenate_rows(a.gpudata, pa_.gpudata, i32(m), i32(n), i32(words_),
                           grid=rgrid[:2], block=rows_block)
        K.concatenate_cols(b.gpudata, pb_.gpudata, i32(n), i32(k), i32(words_), i32(ldb),
                           grid=cgrid[:2], block=cols_block)

    def xnor_only():
        cuda.xnor_gemm_dev(pa, pb, n, out=out["xnor_gemm_only"])

    def opt_only():
        cuda.xnor_gemm_opt_dev(opa, opb, n, k, out=out["xnor_opt_gemm_only"])

    def xnor():
        pack(words, k, pa, pb, rows_grid, cols_grid)
        cuda.xnor_gemm_dev(pa, pb, n, out=out["xnor"])

    def xnor_opt():
        pack(owords, oldb, opa, opb, orows_grid, ocols_grid)
        cuda.xnor_gemm_opt_dev(opa, opb, n, k, out=out["xnor_opt"])

    calls = {
        "baseline": lambda: cuda.baseline_gemm_dev(a, b, out=out["baseline"]),
        "xnor": xnor,
        "xnor_opt": xnor_opt,
        "xnor_gemm_only": xnor_only,
        "xnor_opt_gemm_only": opt_only,
        "blas": lambda: cuda.blas_gemm_dev(a, b, tf32=False, out=out["blas"]),
        "blas_tf32": lambda: cuda.blas_gemm_dev(a, b, tf32=True, out=out["blas_tf32"]),
    }
    # The *_only variants need packed operands before their first call.
    pack(words, k, pa, pb, rows_grid, cols_grid)
    pack(owords, oldb, opa, opb, orows_grid, ocols_grid)
    return calls, out


def bench_gemm(size: int, warmup: int, repeats: int, seed: int = 0, log=print) -> dict:
    """Section 1 of the module docstring; returns the record's "gemm" part."""
    K = cuda.kernels()
    cuda.cublas()  # handle creation outside the timers, as benchmark-cublas.cu
    m = n = k = size
    rng = np.random.default_rng(seed)
    a, b = K.gpuarray.to_gpu(_pm1(rng, (m, n))), K.gpuarray.to_gpu(_pm1(rng, (n, k)))
    calls, out = gemm_closures(a, b)
    log(f"gemm {m}x{n}x{k}: faithful cold runs (XNOR -> baseline -> cuBLAS)")
    faithful = {name: _wall_seconds(calls[name]) for name in ("xnor", "baseline", "blas")}
    seconds, spread = {}, {}
    for name in GEMM_KERNELS:
        t = _median_seconds(calls[name], warmup, repeats)
        seconds[name], spread[name] = t["median"], {"min": t["min"], "all": t["all"]}
        log(f"  {name:20s} {t['median'] * 1e3:10.3f} ms (median of {repeats})")
    results = {name: out[name].get() for name in GEMM_KERNELS}
    reference = results["baseline"]
    identical = {name: bool(np.array_equal(c, reference)) for name, c in results.items()}
    equal_to_blas = {name: bool(np.array_equal(c, results["blas"])) for name, c in results.items()}
    expected = rng_check = None
    if size <= 2048:  # the host product is affordable: check the baseline itself
        expected = a.get() @ b.get()
        rng_check = bool(np.array_equal(reference, expected))
    return {"size": [m, n, k], "seconds": seconds, "spread": spread,
            "faithful_seconds": faithful, "identical_to_baseline": identical,
            "equal_to_blas": equal_to_blas,
            "baseline_equals_numpy": rng_check,
            "tflops_equivalent": {name: 2.0 * m * n * k / s / 1e12 for name, s in seconds.items()}}


# ---- the MNIST MLP --------------------------------------------------------------------------

def _read_blocks(path) -> list[dict]:
    """params.h5 as reproduction.store.load_blocks reads it; h5py alone where PyTensor (which
    reproduction.store imports) is not installed, as on a bare GPU machine."""
    try:
        from reproduction.store import load_blocks
    except ImportError:
        import h5py

        with h5py.File(path, "r") as f:
            names = sorted((g for g in f if g.startswith("block")), key=lambda g: int(g[5:]))
            if not names:
                raise ValueError(f"{path}: no block0, block1, ... groups; not a params.h5 file")
            return [{key: np.asarray(f[g][key], dtype=np.float32) for key in f[g]}
                    for g in names]
    return load_blocks(path)


def _random_blocks(sizes=(784, 4096, 4096, 4096, 10), seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    blocks = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        z = np.zeros(n_out, np.float32)
        blocks.append({"W": rng.standard_normal((n_in, n_out)).astype(np.float32), "b": z,
                       "beta": z, "gamma": np.ones(n_out, np.float32), "mean": z,
                       "inv_std": np.full(n_out, 1.0 / np.sqrt(n_in), np.float32)})
    return blocks


def load_test_set(data_dir, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """(x float32 (10000, 784) = 2p/255 - 1, labels, description); random pixels if missing."""
    try:
        from mnist.data import load_mnist

        test = load_mnist(data_dir, download=False).test
        pixels, labels, what = test.X.reshape(len(test.X), -1), test.y, "MNIST test set"
    except Exception as e:  # missing files, or the loader's dependencies absent
        warnings.warn(f"gpu_xnor/bench_gpu.py: MNIST not loaded ({e}); timing random pixels")
        rng = np.random.default_rng(seed)
        pixels = rng.integers(0, 256, (10000, 784), dtype=np.uint8)
        labels = rng.integers(0, 10, 10000)
        what = f"random pixels (MNIST not loaded: {e})"
    x = (pixels.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0))
    return np.ascontiguousarray(x), np.asarray(labels), what


class GpuMlp:
    """The run-time MLP on the GPU: sign(W) and the batch-norm vectors resident on the device
    (the original loaded them once into shared variables), the input copied in per call."""

    def __init__(self, blocks: list[dict]):
        gpuarray = cuda.kernels().gpuarray
        self.layers = []
        for blk in blocks:
            w = np.where(blk["W"] >= 0, 1.0, -1.0).astype(np.float32)
            scale = (blk["gamma"] * blk["inv_std"]).astype(np.float32)
            self.layers.append({key: gpuarray.to_gpu(np.ascontiguousarray(v, np.float32)) for
                                key, v in (("W", w), ("b", blk["b"]), ("mean", blk["mean"]),
                                           ("scale", scale), ("beta", blk["beta"]))})

    def scores(self, x: np.ndarray, kernel: str) -> np.ndarray:
        """(10000, 10) scores: layer 1 baseline, layers 2-4 ``kernel``, BN, sign after 1-3."""
        h = cuda.kernels().gpuarray.to_gpu(x)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = _dense(h, layer["W"], "baseline" if i == 0 else kernel)
            h = cuda.batchnorm_sign_dev(h, layer["b"], layer["mean"], layer["scale"],
                                        layer["beta"], sign=i < last, out=h)
        return h.get()


def _dense(h, w, kernel: str):
    if kernel == "baseline":
        return cuda.baseline_gemm_dev(h, w)
    if kernel == "xnor":
        return cuda.xnor_matmul_dev(h, w)  # packs the weights again, as the original did
    if kernel == "xnor_opt":
        return cuda.xnor_matmul_opt_dev(h, w)
    if kernel in ("blas", "blas_tf32"):
        return cuda.blas_gemm_dev(h, w, tf32=kernel == "blas_tf32")
    raise ValueError(f"gpu_xnor/bench_gpu.py: unknown kernel {kernel!r}")


def bench_mlp(params, data_dir, warmup: int, repeats: int, images=None, hidden: int = 4096,
              log=print) -> dict:
    """Section 2 of the module docstring; returns the record's "mlp" part."""
    if params:
        blocks, weights = _read_blocks(params), str(params)
    else:
        warnings.warn("gpu_xnor/bench_gpu.py: no --params given; random weights, so the test "
                      "error is chance level (the timings are unaffected)")
        blocks = _random_blocks((784, hidden, hidden, hidden, 10))
        weights = f"random (no --params), hidden {hidden}"
    x, y, data = load_test_set(data_dir)
    if images:
        x, y = x[:images], y[:images]
    mlp = GpuMlp(blocks)
    seconds, cold, spread, test_err, predictions = {}, {}, {}, {}, {}
    for kernel in MLP_KERNELS:
        cold[kernel] = _wall_seconds(lambda: mlp.scores(x, kernel))
        for _ in range(warmup):
            mlp.scores(x, kernel)
        def forward():
            predictions[kernel] = mlp.scores(x, kernel).argmax(axis=1)

        times = [_wall_seconds(forward) for _ in range(repeats)]
        seconds[kernel], spread[kernel] = statistics.median(times), {"min": min(times),
                                                                     "all": times}
        test_err[kernel] = float(np.mean(predictions[kernel] != y))
        log(f"  mlp {kernel:10s} {seconds[kernel] * 1e3:10.3f} ms  "
            f"test error {100 * test_err[kernel]:.2f}%")
    same = {k: bool(np.array_equal(predictions[k], predictions["baseline"])) for k in MLP_KERNELS}
    return {"images": int(len(x)), "weights": weights, "data": data, "seconds": seconds,
            "cold_seconds": cold, "spread": spread, "test_err": test_err,
            "same_predictions_as_baseline": same}


# ---- the record -----------------------------------------------------------------------------

def _nvidia_smi() -> dict:
    try:
        q = "name,driver_version,clocks.max.sm,clocks.sm,power.limit"
        line = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20).stdout.splitlines()[0]
        return dict(zip(q.split(","), (v.strip() for v in line.split(","))))
    except Exception as e:  # no nvidia-smi: the record says so rather than failing
        return {"nvidia_smi": f"unavailable ({e})"}


def _ratio(num, den):
    return None if not num or not den else num / den


def run(args) -> dict:
    """Both benchmarks; returns the record (format 1, the schema of gpu_xnor/bench.py)."""
    quick = bool(getattr(args, "quick", False))
    size = getattr(args, "size", None) or (1024 if quick else 8192)
    warmup = getattr(args, "warmup", None)
    warmup = (1 if quick else 3) if warmup is None else warmup
    repeats = getattr(args, "repeats", None) or (3 if quick else 10)
    log = print
    K = cuda.kernels()
    machine = {**cuda.device_info(), **_nvidia_smi(), "host": platform.node(),
               "python": platform.python_version(), "numpy": np.__version__}
    log(f"GPU benchmark on {machine['gpu']} ({machine['arch']}), size {size}, "
        f"warm-up {warmup}, repeats {repeats}")
    gemm = bench_gemm(size, warmup, repeats, log=log)
    mlp_warmup, mlp_repeats = (0, 1) if quick else (warmup, repeats)
    mlp = bench_mlp(getattr(args, "params", None), getattr(args, "data_dir", None),
                    mlp_warmup, mlp_repeats, images=getattr(args, "images", None),
                    hidden=getattr(args, "hidden", None) or 4096, log=log)
    s, ms, fs = gemm["seconds"], mlp["seconds"], gemm["faithful_seconds"]
    ratios = {
        "xnor_vs_baseline": _ratio(s["baseline"], s["xnor"]),
        "xnor_vs_blas": _ratio(s["blas"], s["xnor"]),
        "mlp_xnor_vs_baseline": _ratio(ms["baseline"], ms["xnor"]),
        "xnor_opt_vs_baseline": _ratio(s["baseline"], s["xnor_opt"]),
        "xnor_opt_vs_blas": _ratio(s["blas"], s["xnor_opt"]),
        "xnor_opt_vs_blas_tf32": _ratio(s["blas_tf32"], s["xnor_opt"]),
        "mlp_xnor_opt_vs_baseline": _ratio(ms["baseline"], ms["xnor_opt"]),
        "mlp_xnor_vs_blas": _ratio(ms["blas"], ms["xnor"]),
        "faithful_xnor_vs_baseline": _ratio(fs["baseline"], fs["xnor"]),
        "faithful_xnor_vs_blas": _ratio(fs["blas"], fs["xnor"]),
    }
    conditions = {
        "timer": "CUDA events around launches on device-resident operands (gemm); wall clock "
                 "with synchronize around one forward pass including transfers (mlp)",
        "warmup": warmup, "repeats": repeats, "statistic": "median",
        "mlp_warmup": mlp_warmup, "mlp_repeats": mlp_repeats,
        "deviation": "the original timed one cold run; here warm-up + median, the cold runs are "
                     "kept as gemm.faithful_seconds and mlp.cold_seconds",
        "operands": "uniform random +-1 (the original's B was almost all -1, a rand() bug)",
        "xnor_includes": "packing of both operands + XNOR GEMM (allocation excluded)",
        "blas": "cuBLAS SGEMM via ctypes, CUBLAS_DEFAULT_MATH (blas) and "
                "CUBLAS_TF32_TENSOR_OP_MATH (blas_tf32)",
        "kernel_arch": K.arch,
    }
    return {"format": 1, "device": "gpu", "machine": machine, "conditions": conditions,
            "gemm": gemm, "mlp": mlp, "ratios": ratios, "paper": dict(PAPER)}


def main(argv=None) -> int:
    """``python -m gpu_xnor.bench_gpu``: the GPU benchmark alone, JSON to --out."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--params", default=None, help="params.h5 of a trained MNIST MLP")
    p.add_argument("--data-dir", default=None, help="folder with the MNIST files")
    p.add_argument("--out", default="results/bench/gpu.json")
    args = p.parse_args(argv)
    record = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(out)
    print(json.dumps(record["ratios"], indent=2))
    print(f"wrote {out}")
    ok = all(record["gemm"]["identical_to_baseline"].values()) and all(
        record["mlp"]["same_predictions_as_baseline"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
