"""The run-time benchmark of PAPER.md §3.5 and §3.4 on the CPU: the matrix product per kernel, then
the MNIST MLP over the 10,000 test images per kernel; the record goes to ``results/bench/<name>.json``.

GEMM (§3.5, ``benchmark-cublas.cu``): ±1 matrices of size n×n×n (drawn with a correct coin flip:
the original's B was almost all −1 through an integer division, §3.5). Kernels:
  - ``baseline``: the 16×16-tiled scalar float kernel, the product only (as the original timed it);
  - ``xnor_paper``: packing of both operands + the paper-style XNOR kernel (16×16 tiles, one
    scalar popcount per 64-bit word pair), the CPU analogue of the paper's ``xnor_gemm``;
  - ``xnor``: packing of both operands + the blocked SIMD XNOR kernel (AVX-512 VPOPCNTDQ, AVX2 or
    portable, whichever the build has) — the best XNOR this machine offers;
  - ``xnor_gemm_only``: the blocked kernel on operands packed beforehand (for reference);
  - ``blas``: numpy's matmul, i.e. OpenBLAS SGEMM on the same cores.
All outputs must be equal to BLAS's exactly.

MLP (§3.4): layer 1 with the baseline kernel, layers 2-4 with ``baseline``, ``xnor`` (weights
packed once), ``xnor_repack`` (weights re-packed at every call, as the original), ``blas``; and
``xnor_alg4``, layer 1 by Algorithm 4's bit planes. The test errors of the first four must be
identical. Deviations from the original, recorded under ``conditions``: warm-up calls (on a slice
of the input for the MLP) and the median of several timed calls instead of one untimed-warm-up
single run; ``time.perf_counter`` instead of ``time.time``.
"""
from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from reproduction.backend import load_average
from reproduction.files import write_json

from . import cpu, mlp

PAPER = {"xnor_vs_baseline": 23, "xnor_vs_blas": 3.4, "mlp_xnor_vs_baseline": 7}
GEMM_KERNELS = ("baseline", "xnor_paper", "xnor", "xnor_gemm_only", "blas")
MLP_KERNELS = ("baseline", "xnor", "xnor_repack", "blas", "xnor_alg4")
MUST_AGREE = ("baseline", "xnor", "xnor_repack", "blas")


def log(msg: str) -> None:
    print(msg, flush=True)


def machine() -> dict:
    """CPU model, cores, versions, BLAS and compiler, for the record."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # the layout of show_config differs across numpy versions
        blas = "unknown"
    try:
        compiler = subprocess.run([cpu._compiler(), "--version"], capture_output=True,
                                  text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        compiler = cpu._compiler()
    import pytensor

    return {"host": socket.gethostname(), "cpu": model, "cores": os.cpu_count(),
            "system": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "numpy": np.__version__, "blas": blas, "pytensor": pytensor.__version__,
            "compiler": compiler, "kernels": cpu.info()}


def timed(fn, warmup: int, repeats: int, label: str) -> tuple[dict, object]:
    """``repeats`` calls after ``warmup`` calls: their wall times, the median, and the median
    process CPU time (all threads; a check on wall times taken while others share the cores)."""
    for _ in range(warmup):
        fn()
    wall, cpu_time, out = [], [], None
    for r in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu_time.append(time.process_time() - c0)
        log(f"  {label}: run {r + 1}/{repeats}: {wall[-1]:.4f} s (CPU {cpu_time[-1]:.4f} s)")
    return {"median": statistics.median(wall), "runs": wall, "cpu": statistics.median(cpu_time)}, out


def bench_gemm(size: int, warmup: int, repeats: int, slow_repeats: int, threads: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    a = np.where(rng.random((size, size)) < 0.5, np.float32(-1), np.float32(1))
    b = np.where(rng.random((size, size)) < 0.5, np.float32(-1), np.float32(1))
    pa, pb = cpu.pack_rows(a, threads), cpu.pack_cols(b, threads)
    calls = {
        "baseline": lambda: cpu.baseline_gemm(a, b, threads),
        "xnor_paper": lambda: cpu.xnor_matmul(a, b, threads, tiled=True),
        "xnor": lambda: cpu.xnor_matmul(a, b, threads),
        "xnor_gemm_only": lambda: cpu.xnor_gemm(pa, pb, size, threads),
        "blas": lambda: cpu.blas_gemm(a, b),
    }
    stats, equal, reference = {}, {}, None
    for name in ("blas", *[k for k in GEMM_KERNELS if k != "blas"]):
        slow = name in ("baseline", "xnor_paper")
        w = min(warmup, 1) if slow else warmup
        log(f"[gemm {size}^3] {name} ({w} warm-up)")
        stats[name], out = timed(calls[name], w, slow_repeats if slow else repeats, name)
        if reference is None:
            reference = out
        equal[name] = bool(np.array_equal(out, reference))
    return {"size": [size, size, size], **_split(stats), "equal_to_blas": equal}


def _split(stats: dict) -> dict:
    return {"seconds": {k: v["median"] for k, v in stats.items()},
            "cpu_seconds": {k: v["cpu"] for k, v in stats.items()},
            "runs": {k: v["runs"] for k, v in stats.items()}}


def bench_mlp(net: mlp.MLP, X, y, warmup: int, repeats: int, slow_repeats: int, threads: int) -> dict:
    variants = {
        "baseline": dict(kernel="baseline"),
        "xnor": dict(kernel="xnor"),
        "xnor_repack": dict(kernel="xnor", repack=True),
        "blas": dict(kernel="blas"),
        "xnor_alg4": dict(kernel="xnor", layer1="bitplanes"),
    }
    warm_X = X[: max(1, len(X) // 20)]
    stats, errors, same, first = {}, {}, {}, None
    for name in MLP_KERNELS:
        kw = dict(variants[name], threads=threads)
        n = slow_repeats if name == "baseline" else repeats
        log(f"[mlp {len(X)} images] {name} ({warmup} warm-up on {len(warm_X)} images, {n} timed)")
        for _ in range(warmup):
            mlp.predict(net, warm_X, **kw)
        stats[name], pred = timed(lambda: mlp.predict(net, X, **kw), 0, n, name)
        errors[name] = mlp.test_error(pred, y)
        first = pred if first is None else first
        if name in MUST_AGREE:
            same[name] = bool(np.array_equal(pred, first))
    return {"images": int(len(X)), "weights": net.weights, **_split(stats), "test_err": errors,
            "same_predictions_as_baseline": same}


def _ratio(num, den):
    return None if not num or not den else num / den


def run(args) -> dict:
    """The CPU benchmark as a record (see the module docstring)."""
    threads = args.threads
    record = {"format": 1, "device": "cpu", "machine": machine(),
              "conditions": {"warmup": args.warmup, "repeats": args.repeats,
                             "slow_repeats": args.slow_repeats, "threads": threads or os.cpu_count(),
                             "quick": bool(args.quick), "statistic": "median",
                             "timer": "time.perf_counter",
                             "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
                             "mlp_warmup_images": "1/20 of the images",
                             "load_average_before": load_average()}}
    record["gemm"] = bench_gemm(args.size, args.warmup, args.repeats, args.slow_repeats, threads)
    record["mlp"] = None
    data = load_test_set(args)
    if data is not None:
        net = make_mlp(args)
        X, y = data
        record["mlp"] = bench_mlp(net, X, y, args.warmup, args.repeats, args.slow_repeats, threads)
    g, m = record["gemm"]["seconds"], (record["mlp"] or {}).get("seconds", {})
    record["ratios"] = {
        "xnor_vs_baseline": _ratio(g["baseline"], g["xnor"]),
        "xnor_vs_blas": _ratio(g["blas"], g["xnor"]),
        "mlp_xnor_vs_baseline": _ratio(m.get("baseline"), m.get("xnor")),
        "xnor_paper_vs_baseline": _ratio(g["baseline"], g["xnor_paper"]),
        "xnor_paper_vs_blas": _ratio(g["blas"], g["xnor_paper"]),
        "mlp_xnor_repack_vs_baseline": _ratio(m.get("baseline"), m.get("xnor_repack")),
        "mlp_xnor_vs_blas": _ratio(m.get("blas"), m.get("xnor")),
        "mlp_xnor_alg4_vs_baseline": _ratio(m.get("baseline"), m.get("xnor_alg4")),
    }
    gc, mc = record["gemm"]["cpu_seconds"], (record["mlp"] or {}).get("cpu_seconds", {})
    record["ratios_cpu_time"] = {
        "xnor_vs_baseline": _ratio(gc["baseline"], gc["xnor"]),
        "xnor_vs_blas": _ratio(gc["blas"], gc["xnor"]),
        "mlp_xnor_vs_baseline": _ratio(mc.get("baseline"), mc.get("xnor")),
    }
    record["paper"] = dict(PAPER)
    record["conditions"]["load_average_after"] = load_average()
    return record



def load_test_set(args):
    """The 10,000 MNIST test images (or the first ``--images``), or None with a message."""
    from mnist.data import load_mnist
    from reproduction.dataset import DataError

    try:
        test = load_mnist(args.data_dir, download=args.download).test
    except (DataError, OSError) as e:
        log(f"[mlp] skipped: MNIST test set not available ({e}); pass --data-dir or --download")
        return None
    n = args.images or len(test.y)
    return test.X[:n], test.y[:n]


def make_mlp(args) -> mlp.MLP:
    if args.params:
        return mlp.load_mlp(args.params)
    hidden = args.hidden
    log(f"[mlp] WARNING: no --params: random ±1 weights (hidden {hidden}); the test error is chance")
    return mlp.random_mlp((784, hidden, hidden, hidden, 10), seed=0, warn=False)


def agreement_problems(record) -> list:
    """What must hold for the record to count: exact GEMM outputs, identical MLP test errors
    (and, in a GPU record, its own identity flags)."""
    gemm, mlp_part = record.get("gemm") or {}, record.get("mlp") or {}
    problems = [f"gemm {k} differs from {flags.split('_')[-1]}"
                for flags in ("equal_to_blas", "identical_to_baseline")
                for k, ok in (gemm.get(flags) or {}).items() if not ok]
    problems += [f"mlp {k} predictions differ from baseline"
                 for k, ok in (mlp_part.get("same_predictions_as_baseline") or {}).items() if not ok]
    errs = {k: v for k, v in (mlp_part.get("test_err") or {}).items() if k in MUST_AGREE}
    if len(set(errs.values())) > 1:
        problems.append(f"mlp test errors differ across kernels: {errs}")
    return problems


def table(record) -> str:
    """The printed summary: machine, conditions, times, ratios beside the paper's, test errors."""
    mach, cond = record["machine"], record["conditions"]
    kern = mach.get("kernels") if isinstance(mach.get("kernels"), dict) else {}
    lines = [f"machine: {mach.get('cpu') or mach.get('gpu')} ({mach.get('cores', '?')} cores), "
             f"BLAS {mach.get('blas', 'cuBLAS' if record['device'] == 'gpu' else '?')}, "
             f"kernels built with {json.dumps(kern.get('flags'))} simd={kern.get('simd')}",
             f"conditions: device={record['device']} warm-up={cond.get('warmup')} repeats={cond.get('repeats')} "
             f"(slow kernels {cond.get('slow_repeats')}) threads={cond.get('threads')}, median; "
             f"load average {cond.get('load_average_before')} -> {cond.get('load_average_after')}"]
    g = record["gemm"]
    lines.append(f"GEMM {'x'.join(map(str, g['size']))}:")
    for k, s in g["seconds"].items():
        lines.append(f"  {k:<16} {s:10.4f} s" + _cpu_note(g, k))
    m = record.get("mlp")
    if m:
        lines.append(f"MLP, {m['images']} test images, weights: {m['weights']}:")
        for k, s in m["seconds"].items():
            err = (m.get("test_err") or {}).get(k)
            lines.append(f"  {k:<16} {s:10.4f} s" + _cpu_note(m, k)
                         + ("" if err is None else f"   test error {100 * err:.2f}%"))
    else:
        lines.append("MLP: skipped (no MNIST test set)")
    lines.append("ratios (ours vs paper):")
    for k, v in record["ratios"].items():
        paper = record["paper"].get(k)
        lines.append(f"  {k:<28} {'n/a' if v is None else f'{v:8.2f}x'}"
                     + (f"   paper {paper}x" if paper else ""))
    if record.get("ratios_cpu_time"):
        lines.append("ratios by process CPU time: " + ", ".join(
            f"{k} {'n/a' if v is None else f'{v:.2f}x'}" for k, v in record["ratios_cpu_time"].items()))
    return "\n".join(lines)


def _cpu_note(part: dict, kernel: str) -> str:
    c = (part.get("cpu_seconds") or {}).get(kernel)
    return "" if c is None else f" (CPU {c:8.4f} s)"


def main(args) -> int:
    if args.device == "gpu":
        import importlib.util

        if importlib.util.find_spec("pycuda") is None:
            print("gpu_xnor: --device gpu needs PyCUDA and a CUDA GPU (pip install pycuda)", file=sys.stderr)
            return 2
        from . import bench_gpu

        record = bench_gpu.run(args)
    else:
        record = run(args)
    name = args.name or f"{record['device']}-{socket.gethostname() or platform.machine()}"
    out = Path(args.out_dir) / f"{name}.json"
    write_json(out, record)
    print(table(record))
    print(f"record: {out}")
    problems = agreement_problems(record)
    for p in problems:
        print(f"gpu_xnor: FAILED: {p}", file=sys.stderr)
    return 1 if problems else 0
