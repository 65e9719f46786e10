"""The run-time benchmark of SOURCES.md §3.5 and §3.4, one driver for CPU and GPU: the matrix
product per kernel, then the MNIST MLP over the test images per kernel; one record per run, in
``results/bench/<name>.json``. The device part (``gpu_xnor.cpu.Device``, ``gpu_xnor.cuda.Device``)
is only the timer and the kernels.

Kernels (the same names on both devices):
  - ``baseline``: the paper's unoptimised kernel (16×16 tiles, one output per thread / a scalar
    loop), the product only, as the original timed it;
  - ``xnor_paper``: the paper's XNOR kernel (the same tiling over packed words, one popcount per
    word pair), with the packing of both operands, as the original timed it;
  - ``xnor``: ours, the optimised XNOR kernel (CPU: register-blocked, AVX-512 VPOPCNTDQ / AVX2 /
    portable, chosen at run time; GPU: 8×8 outputs per thread, 128-bit loads), with the packing
    of both operands;
  - ``xnor_gemm_only``: ours on operands packed beforehand (GEMM part only; for the bits/cycle);
  - ``blas``: one SGEMM (CPU: the BLAS numpy links, OpenBLAS in the wheels; GPU: cuBLAS with TF32
    off); ``blas_tf32`` (GPU only): cuBLAS with TF32 tensor cores on.
In the MLP, layer 1 always runs ``baseline`` (its input is not binary), as the original; layers
2..L run the kernel named; ``xnor_paper`` re-packs the weights on every call (as the original),
``xnor`` packs them once. The CPU also times ``xnor_alg4``: ours, with layer 1 by Algorithm 4's
bit planes (``mlp.py``); its layer 1 is not the others', so it is reported apart.

Record (``format`` 1; a new record never overwrites another):
  format, device ("cpu" | "gpu"), name, created (UTC ISO time), command (argv),
  quick (bool: a small smoke run, not a measurement), weights ("random" | the --params path),
  machine: {host, cpu | gpu …, cores, system, python, numpy, blas: {library, version, core
      (OpenBLAS's kernel family, e.g. "SkylakeX", "Haswell"), threads}, kernels: {flags, openmp,
      isa (the path ``xnor`` ran: "avx512" | "avx2" | "portable"), isas_supported, library}}
      (GPU: gpu, arch, memory_gib, multiprocessors, driver and PyCUDA versions, nvidia-smi),
  conditions: {warmup, repeats, slow_repeats, slow_kernels, threads, statistic ("median"),
      timer, env (BNN_XNOR_ISA, OPENBLAS_CORETYPE, OMP_NUM_THREADS, OPENBLAS_NUM_THREADS,
      OMP_WAIT_POLICY), load_average_before / _after (1, 5, 15 min), deviations: [text],
      blas_note (null, or a warning that xnor and OpenBLAS use different vector widths)},
  gemm: {size [n, n, n], seconds {kernel: median wall s}, seconds_min {kernel: fastest wall s},
      cpu_seconds {kernel: median process CPU s}, cold_seconds {kernel: the first call}, runs
      {kernel: [wall s of the timed calls]}, exact {kernel: bool, the output equals the exact ±1
      product}},
  mlp: null | {images, data, sizes, seconds, seconds_min, cpu_seconds, cold_seconds, runs,
      test_err {kernel}, identical_scores {kernel: bool, bit-identical to baseline's}, variants
      {xnor_alg4: {seconds, seconds_min, cpu_seconds, runs, test_err,
      same_predictions_as_baseline}}},
  mlp_skipped: null | the one-line reason,
  throughput: {bit_ops (n³), per kernel ``xnor`` and ``xnor_gemm_only``: bit_ops_per_s (wall),
      bit_ops_per_cpu_s; CPU only: clock_ghz (one core, measured), per_core_cycle (wall and
      CPU time), the path's model {instruction mix, per-cycle limits of Zen 4 and of a typical
      Intel core} and mix_per_cycle (that mix run from registers here: the measured ceiling),
      fraction_of_mix; paths: the same for ``xnor_gemm_only`` on ONE thread on every path this
      CPU has},
  ratios: ours: xnor_vs_baseline, xnor_vs_blas, mlp_xnor_vs_baseline; the paper's kernel:
      xnor_paper_vs_baseline, xnor_paper_vs_blas, mlp_xnor_paper_vs_baseline; also
      mlp_xnor_vs_blas, mlp_xnor_alg4_vs_baseline (CPU), xnor_vs_blas_tf32 (GPU) — each
      time(denominator kernel) / time(numerator kernel) from the medians,
  ratios_cpu_time: the same from the process CPU times (all threads; the better measure when
      other work shares the cores), ratios_min: from the fastest calls,
  paper: the paper's three headline claims, read from results/paper/speed.json, keyed by the
      ratio of this record they correspond to — the paper's "XNOR kernel" is ``xnor_paper``:
      {xnor_paper_vs_baseline, xnor_paper_vs_blas, mlp_xnor_paper_vs_baseline} (GTX 750).

Deviations from the original, recorded under ``conditions.deviations``: warm-up calls (on 1/20 of
the images for the MLP) and the median of several timed calls instead of one cold run (the first
call is kept as ``cold_seconds``); ``time.perf_counter`` instead of ``time.time``; uniform ±1
operands (the original's B was almost all −1, a ``rand()/RAND_MAX`` integer division).
"""
from __future__ import annotations

import importlib.metadata
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
from reproduction.dataset import scale_pixels_mnist as scale_pixels  # pylearn2 x/255, then 2X - 1
from reproduction.files import write_json

from . import mlp

FORMAT = 1
#: Ratios of this record that the paper's claims correspond to (speed.json's keys: the paper's
#: "XNOR kernel" is the paper's kernel, ``xnor_paper`` here).
PAPER_PAIR = {"xnor_vs_baseline": "xnor_paper_vs_baseline", "xnor_vs_blas": "xnor_paper_vs_blas",
              "mlp_xnor_vs_baseline": "mlp_xnor_paper_vs_baseline"}
#: Kernels too slow to repeat: no warm-up, ``slow_repeats`` timed calls.
SLOW = {"cpu": ("baseline",), "gpu": ()}
ENV = ("BNN_XNOR_ISA", "OPENBLAS_CORETYPE", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
       "OMP_WAIT_POLICY")
DEVIATIONS = [
    "warm-up calls (MLP: on 1/20 of the images) and the median of the timed calls, instead of the "
    "original's one cold call (the first call is kept as cold_seconds)",
    "time.perf_counter (and the process CPU time) instead of time.time",
    "uniform random +-1 operands (the original's B was almost all -1: rand()/RAND_MAX in integers)",
]
#: Per-cycle limits of each CPU path's inner loop, bits of XOR + popcount per core cycle.
MODEL = {
    "avx512": {"mix": "per 512 bits: vpxorq + vpopcntq + vpaddq (3 vector uops)",
               "zen4": 341, "zen4_why": "4 x 256-bit vector pipes, a 512-bit uop takes 2: 6/4 = 1.5 cycles",
               "intel": 341, "intel_why": "Ice Lake / Sapphire Rapids: 512-bit uops on ports 0 and 5, "
                                          "vpopcntq on port 5: 3/2 = 1.5 cycles"},
    "avx2": {"mix": "per 256 bits: 2 vpxor + 2 vpshufb + 2 vpaddb (Mula's nibble look-up on "
                    "operands split into low and high nibbles)",
             "zen4": 171, "zen4_why": "4 vector pipes, vpshufb on 2 of them: 6/4 = 1.5 cycles",
             "intel": 128, "intel_why": "Haswell..Skylake: 3 vector ports, vpshufb on port 5 only: "
                                        "2 cycles"},
    "portable": {"mix": "per 64 bits: xor + popcnt + add (scalar)",
                 "zen4": 85, "zen4_why": "4 integer ALUs: 3/4 cycle",
                 "intel": 64, "intel_why": "popcnt on port 1 only: 1 cycle"},
}


def log(msg: str) -> None:
    print(msg, flush=True)


def paper_claims() -> dict:
    """The paper's three headline ratios keyed by this record's corresponding ratio."""
    # The one place that reads the paper's numbers (results/paper/speed.json).
    from results.paper import headline_speed

    return {PAPER_PAIR[k]: v.value for k, v in headline_speed().items() if k in PAPER_PAIR}


def make_device(device: str, threads: int = 0, isa: str | None = None):
    if device == "gpu":
        from . import cuda

        return cuda.Device()
    from . import cpu

    return cpu.Device(threads=threads, isa=isa)


# ---------------------------------------------------------------- machine --------------------

def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def blas_info() -> dict:
    """The BLAS numpy calls, as threadpoolctl sees it (OpenBLAS's kernel family is ``core``)."""
    try:
        import threadpoolctl

        for pool in threadpoolctl.threadpool_info():
            if pool.get("user_api") == "blas":
                return {"library": pool.get("internal_api"), "version": pool.get("version"),
                        "core": pool.get("architecture"), "threads": pool.get("num_threads")}
    except ImportError:
        pass
    return {"library": "unknown (threadpoolctl not installed)"}


#: OpenBLAS kernel families (threadpoolctl's ``architecture``) that use AVX-512.
AVX512_BLAS_CORES = ("skylakex", "cooperlake", "sapphirerapids")


def blas_note(machine_: dict) -> str | None:
    """A warning when our XNOR path and the BLAS kernels use different vector widths."""
    isa = (machine_.get("kernels") or {}).get("isa")
    core = str((machine_.get("blas") or {}).get("core") or "").lower()
    if not isa or not core or isa == "portable":
        return None
    if (isa == "avx512") != (core in AVX512_BLAS_CORES):
        return (f"xnor runs the {isa} path while OpenBLAS runs its {core} kernels: for a like-for-like "
                f"comparison set OPENBLAS_CORETYPE={'SkylakeX' if isa == 'avx512' else 'Haswell'}")
    return None


def machine(device) -> dict:
    base = {"host": socket.gethostname(), "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "numpy": np.__version__}
    if device.name == "gpu":
        return {**device.info(), **base}
    from . import cpu

    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        compiler = subprocess.run([cpu._compiler(), "--version"], capture_output=True,
                                  text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        compiler = cpu._compiler()
    return {**base, "cpu": model, "cores": os.cpu_count(), "blas": blas_info(),
            "compiler": compiler, "pytensor": _version("pytensor"),
            "kernels": cpu.info(device.lib, device.isa)}


# ---------------------------------------------------------------- timing ---------------------

def timed(device, fn, warmup: int, repeats: int, label: str):
    """``warmup`` + ``repeats`` calls, each timed by the device; returns (stats, last output)."""
    walls, cpus, out, cold = [], [], None, None
    for r in range(warmup + repeats):
        out, wall, cpu_s = device.time(fn)
        cold = wall if cold is None else cold
        if r >= warmup:
            walls.append(wall)
            cpus.append(cpu_s)
            log(f"  {label}: run {r - warmup + 1}/{repeats}: {wall:.4f} s (CPU {cpu_s:.4f} s)")
    return {"median": statistics.median(walls), "min": min(walls), "cpu": statistics.median(cpus),
            "cold": cold, "runs": walls}, out


def _split(stats: dict) -> dict:
    return {"seconds": {k: v["median"] for k, v in stats.items()},
            "seconds_min": {k: v["min"] for k, v in stats.items()},
            "cpu_seconds": {k: v["cpu"] for k, v in stats.items()},
            "cold_seconds": {k: v["cold"] for k, v in stats.items()},
            "runs": {k: v["runs"] for k, v in stats.items()}}


def pm1(rng, shape) -> np.ndarray:
    return np.where(rng.random(shape, dtype=np.float32) < 0.5, np.float32(-1), np.float32(1))


# ---------------------------------------------------------------- the matrix product ---------

def bench_gemm(device, size: int, warmup: int, repeats: int, slow_repeats: int, seed: int = 0) -> dict:
    """Every kernel on the same n×n ±1 operands; each output must equal the exact product: the
    first kernel's whole output against 16 rows computed exactly (float64 sums of ±1), the
    others' against the first's."""
    rng = np.random.default_rng(seed)
    a, b = pm1(rng, (size, size)), pm1(rng, (size, size))
    rows = np.sort(rng.choice(size, min(size, 16), replace=False))
    exact_rows = (a[rows].astype(np.float64) @ b.astype(np.float64)).astype(np.float32)
    calls = device.gemm_calls(a, b)
    stats, exact, reference = {}, {}, None
    for name in device.gemm_kernels:
        slow = name in SLOW[device.name]
        w, n = (0, slow_repeats) if slow else (warmup, repeats)
        log(f"[gemm {size}^3] {name} ({w} warm-up, {n} timed)")
        stats[name], out = timed(device, calls[name], w, n, name)
        out = device.download(out)
        ok = bool(np.array_equal(out[rows], exact_rows))
        if reference is None:
            reference = out
        else:
            ok = ok and bool(np.array_equal(out, reference))
        exact[name] = ok
        del out
    return {"size": [size, size, size], **_split(stats), "exact": exact}


# ---------------------------------------------------------------- the MLP --------------------

def bench_mlp(device, net: mlp.MLP, X, y, warmup: int, repeats: int, slow_repeats: int) -> dict:
    """Every kernel on the test images; the scores must be bit-identical to baseline's."""
    P = mlp.flat_pixels(X)
    x = scale_pixels(P)  # on the host, before timing, as the original
    weights = device.prepare(net.blocks)
    warm = max(1, len(P) // 20)
    stats, errors, identical, first, preds = {}, {}, {}, None, {}
    for name in device.mlp_kernels:
        slow = name in SLOW[device.name]
        n = slow_repeats if slow else repeats
        log(f"[mlp {len(P)} images] {name} ({warmup} warm-up on {warm} images, {n} timed)")
        for _ in range(warmup):
            mlp.forward(net, P[:warm], name, device, weights, x[:warm])
        stats[name], s = timed(device, lambda: mlp.forward(net, P, name, device, weights, x), 0, n, name)
        first = s if first is None else first
        identical[name] = bool(np.array_equal(s, first))
        preds[name] = mlp.predict(s)
        errors[name] = mlp.test_error(preds[name], y)
    variants = {}
    if device.name == "cpu":
        name = "xnor_alg4"
        log(f"[mlp {len(P)} images] {name} ({warmup} warm-up, {repeats} timed)")
        for _ in range(warmup):
            mlp.forward(net, P[:warm], "xnor", device, weights, layer1="alg4")
        st, s = timed(device, lambda: mlp.forward(net, P, "xnor", device, weights, layer1="alg4"),
                      0, repeats, name)
        pred = mlp.predict(s)
        variants[name] = {"seconds": st["median"], "seconds_min": st["min"], "cpu_seconds": st["cpu"],
                          "runs": st["runs"],
                          "test_err": mlp.test_error(pred, y),
                          "same_predictions_as_baseline": bool(np.array_equal(pred, preds["baseline"]))}
    return {"images": int(len(P)), "sizes": list(net.sizes), **_split(stats), "test_err": errors,
            "identical_scores": identical, "variants": variants}


# ---------------------------------------------------------------- throughput -----------------

def throughput(device, gemm: dict, repeats: int = 3) -> dict:
    """Bit operations per second of ``xnor`` and ``xnor_gemm_only``; on a CPU also per core-cycle,
    beside each instruction-set path's model and its mix run from registers, and the same for
    every path this CPU has on ONE thread (``paths``: ours on packed operands of the same size;
    a core's own figure, which other work on the other cores disturbs least)."""
    n = gemm["size"][0]
    bits = float(n) ** 3
    out = {"bit_ops": bits, "definition": "one bit of XOR + popcount = one binary multiply-"
                                          "accumulate; an n^3 product has n^3"}
    for k in ("xnor", "xnor_gemm_only"):
        out[k] = {"bit_ops_per_s": bits / gemm["seconds"][k],
                  "bit_ops_per_cpu_s": bits / gemm["cpu_seconds"][k]}
    if device.name != "cpu":
        return out
    from . import cpu

    threads = device.threads or os.cpu_count()
    ghz = cpu.clock_ghz(1, lib=device.lib)
    out.update({"clock_ghz": ghz, "threads": threads, "isa": device.isa,
                "clock_note": "a dependent chain of one-cycle additions on one core, best of 5"})

    # Each path's ceiling measured once, so that every figure of a path is set against the same one.
    isas = cpu.supported_isas(device.lib)
    mixes = {isa: cpu.mix_bits_per_second(isa, 1, lib=device.lib) for isa in {*isas, device.isa}}

    def per_cycle(isa, wall_s, cpu_s, threads=threads):
        mix = mixes[isa]
        mix_per_cycle = None if mix is None else mix / (ghz * 1e9)
        wall, cpu_time = bits / wall_s / (threads * ghz * 1e9), bits / cpu_s / (ghz * 1e9)
        return {"per_core_cycle": wall, "per_core_cycle_cpu_time": cpu_time, "model": MODEL[isa],
                "mix_per_cycle": mix_per_cycle,
                "fraction_of_mix": None if not mix_per_cycle else wall / mix_per_cycle,
                "fraction_of_mix_cpu_time": None if not mix_per_cycle else cpu_time / mix_per_cycle}

    for k in ("xnor", "xnor_gemm_only"):
        out[k].update(per_cycle(device.isa, gemm["seconds"][k], gemm["cpu_seconds"][k]))
    out["paths"] = {}
    rng = np.random.default_rng(1)
    pa = cpu.pack_rows(pm1(rng, (n, n)), lib=device.lib)
    pb = cpu.pack_cols(pm1(rng, (n, n)), lib=device.lib)
    for isa in isas:
        log(f"[throughput] xnor_gemm_only on the {isa} path, one thread (1 warm-up, {repeats} timed)")
        st, _ = timed(device, lambda: cpu.xnor_gemm(pa, pb, n, 1, isa, device.lib), 1, repeats, isa)
        out["paths"][isa] = {"threads": 1, "seconds": st["median"], "cpu_seconds": st["cpu"],
                             "bit_ops_per_s": bits / st["median"],
                             **per_cycle(isa, st["median"], st["cpu"], threads=1)}
    return out


# ---------------------------------------------------------------- the record -----------------

def _ratio(num, den):
    return None if not num or not den else num / den


def ratios(gemm: dict, mlp_part: dict | None, key: str) -> dict:
    g, m = gemm[key], (mlp_part or {}).get(key, {})
    alg4 = ((mlp_part or {}).get("variants") or {}).get("xnor_alg4") or {}
    out = {"xnor_vs_baseline": _ratio(g["baseline"], g["xnor"]),
           "xnor_vs_blas": _ratio(g["blas"], g["xnor"]),
           "mlp_xnor_vs_baseline": _ratio(m.get("baseline"), m.get("xnor")),
           "xnor_paper_vs_baseline": _ratio(g["baseline"], g["xnor_paper"]),
           "xnor_paper_vs_blas": _ratio(g["blas"], g["xnor_paper"]),
           "mlp_xnor_paper_vs_baseline": _ratio(m.get("baseline"), m.get("xnor_paper")),
           "mlp_xnor_vs_blas": _ratio(m.get("blas"), m.get("xnor"))}
    if "blas_tf32" in g:
        out["xnor_vs_blas_tf32"] = _ratio(g["blas_tf32"], g["xnor"])
    if alg4:
        out["mlp_xnor_alg4_vs_baseline"] = _ratio(m.get("baseline"), alg4.get(key))
    return out


def run(args, device, net: mlp.MLP | None, data) -> dict:
    """The benchmark as a record (see the module docstring). ``data``: (X, y, where) or None."""
    threads = getattr(device, "threads", 0) or (os.cpu_count() if device.name == "cpu" else None)
    record = {"format": FORMAT, "device": device.name, "name": args.name,
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "command": " ".join(["python -m gpu_xnor", *args.argv]), "quick": bool(args.quick),
              "weights": net.weights if net else None, "machine": machine(device),
              "conditions": {"warmup": args.warmup, "repeats": args.repeats,
                             "slow_repeats": args.slow_repeats, "slow_kernels": list(SLOW[device.name]),
                             "threads": threads, "statistic": "median",
                             "timer": "time.perf_counter around one call" + (
                                 ", between two context synchronisations" if device.name == "gpu" else ""),
                             "env": {k: os.environ.get(k) for k in ENV},
                             "load_average_before": load_average(), "deviations": DEVIATIONS}}
    record["conditions"]["blas_note"] = blas_note(record["machine"])
    log(f"[machine] {json.dumps(record['machine'])}")
    record["gemm"] = bench_gemm(device, args.size, args.warmup, args.repeats, args.slow_repeats)
    record["throughput"] = throughput(device, record["gemm"])
    record["mlp"], record["mlp_skipped"] = None, None
    if data is None:
        record["mlp_skipped"] = args.mlp_skipped
    else:
        X, y, where = data
        record["mlp"] = {"data": where, **bench_mlp(device, net, X, y, args.warmup, args.repeats,
                                                    args.slow_repeats)}
    record["ratios"] = ratios(record["gemm"], record["mlp"], "seconds")
    record["ratios_cpu_time"] = ratios(record["gemm"], record["mlp"], "cpu_seconds")
    record["ratios_min"] = ratios(record["gemm"], record["mlp"], "seconds_min")
    record["paper"] = paper_claims()
    record["conditions"]["load_average_after"] = load_average()
    return record


def agreement_problems(record) -> list:
    """What must hold for the record to count: every GEMM output exact, the MLP's scores
    bit-identical across kernels."""
    gemm, mlp_part = record.get("gemm") or {}, record.get("mlp") or {}
    problems = [f"gemm {k}: output is not the exact product" for k, ok in (gemm.get("exact") or {}).items()
                if not ok]
    problems += [f"mlp {k}: scores differ from baseline's" for k, ok in
                 (mlp_part.get("identical_scores") or {}).items() if not ok]
    errs = mlp_part.get("test_err") or {}
    if len(set(errs.values())) > 1:
        problems.append(f"mlp test errors differ across kernels: {errs}")
    return problems


def _fmt_ratio(v):
    return "n/a" if v is None else f"{v:8.2f}x"


def table(record) -> str:
    """The printed summary: machine, conditions, times, throughput, ratios beside the paper's."""
    mach, cond = record["machine"], record["conditions"]
    kern, blas = mach.get("kernels") or {}, mach.get("blas") or {}
    if record["device"] == "cpu":
        head = (f"machine: {mach.get('cpu')} ({mach.get('cores')} cores), BLAS {blas.get('library')} "
                f"{blas.get('version')} core {blas.get('core')}; xnor path {kern.get('isa')} "
                f"(supported: {', '.join(kern.get('isas_supported', []))})")
    else:
        head = f"machine: {mach.get('gpu')} ({mach.get('arch')}, {mach.get('multiprocessors')} SMs)"
    lines = [head,
             f"conditions: device={record['device']} threads={cond.get('threads')} warm-up={cond['warmup']} "
             f"repeats={cond['repeats']} (slow kernels {', '.join(cond['slow_kernels']) or '-'}: "
             f"{cond['slow_repeats']}, no warm-up), median; load average {cond.get('load_average_before')} "
             f"-> {cond.get('load_average_after')}; env {json.dumps({k: v for k, v in cond['env'].items() if v})}"
             + ("; QUICK RUN (not a measurement)" if record.get("quick") else ""),
             f"weights: {record.get('weights')}"]
    if cond.get("blas_note"):
        lines.append(f"NOTE: {cond['blas_note']}")
    g = record["gemm"]
    lines.append(f"GEMM {'x'.join(map(str, g['size']))}: kernel, median wall s, fastest wall s, median CPU s, exact")
    for k, s in g["seconds"].items():
        lines.append(f"  {k:<16} {s:10.4f} {g['seconds_min'][k]:10.4f} {g['cpu_seconds'][k]:10.4f}  {g['exact'][k]}")
    tp = record.get("throughput") or {}
    for k in ("xnor", "xnor_gemm_only"):
        if k in tp:
            t = tp[k]
            line = f"  {k}: {t['bit_ops_per_s']:.3g} bit-ops/s"
            if "per_core_cycle" in t:
                line += (f" = {t['per_core_cycle']:.0f} per core-cycle ({t['per_core_cycle_cpu_time']:.0f} "
                         f"by CPU time) at {tp['clock_ghz']:.2f} GHz")
            lines.append(line)
    if tp.get("paths"):
        lines.append("bits per core-cycle of ours (packed operands, one thread) on each path: achieved "
                     "(by CPU time) / the mix from registers here / model Zen 4, Intel")
        for isa, t in tp["paths"].items():
            mix = "n/a" if t["mix_per_cycle"] is None else f"{t['mix_per_cycle']:.0f}"
            lines.append(f"  {isa:<9} {t['per_core_cycle']:5.0f} ({t['per_core_cycle_cpu_time']:.0f}) / {mix} / "
                         f"{t['model']['zen4']}, {t['model']['intel']}   [{t['model']['mix']}]")
    m = record.get("mlp")
    if m:
        lines.append(f"MLP {'-'.join(map(str, m['sizes']))}, {m['images']} test images ({m['data']}): kernel, "
                     "median wall s, fastest wall s, median CPU s, test error, scores identical to baseline")
        for k, s in m["seconds"].items():
            lines.append(f"  {k:<16} {s:10.4f} {m['seconds_min'][k]:10.4f} {m['cpu_seconds'][k]:10.4f}  "
                         f"{100 * m['test_err'][k]:6.2f} %  {m['identical_scores'][k]}")
        for k, v in (m.get("variants") or {}).items():
            lines.append(f"  {k:<16} {v['seconds']:10.4f} {v['seconds_min']:10.4f} {v['cpu_seconds']:10.4f}  "
                         f"{100 * v['test_err']:6.2f} %"
                         f"  (layer 1 by bit planes; same predictions: {v['same_predictions_as_baseline']})")
    else:
        lines.append(f"MLP: skipped ({record.get('mlp_skipped')})")
    paper = record.get("paper") or {}
    lines.append("ratios: median wall time, fastest wall time, median CPU time (ours: xnor; the paper's "
                 "kernel: xnor_paper)")
    for k, v in record["ratios"].items():
        lines.append(f"  {k:<28} {_fmt_ratio(v)} {_fmt_ratio(record['ratios_min'].get(k))} "
                     f"{_fmt_ratio(record['ratios_cpu_time'].get(k))}"
                     + (f"   paper {paper[k]}x (GTX 750, {'MNIST MLP' if k.startswith('mlp') else '8192^3'})"
                        if k in paper else ""))
    return "\n".join(lines)


def main(args) -> int:
    """Run, write the record (``args`` checked by ``__main__.parse``), print the table."""
    device, net, data = args.device_obj, args.net, args.data
    record = run(args, device, net, data)
    out = args.out
    write_json(out, record)
    print(table(record))
    print(f"record: {out}")
    problems = agreement_problems(record)
    for p in problems:
        print(f"python -m gpu_xnor: FAILED: {p}", file=sys.stderr)
    return 1 if problems else 0
