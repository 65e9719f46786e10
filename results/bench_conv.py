"""Benchmark of one 3x3 convolution layer, forward plus backward, in every PyTensor back end.

``python -m results.bench_conv`` times the CIFAR-10 net's second layer shape (SOURCES.md §2.2):
128 -> 128 channels, 3x3, pad 1, batch 50, 32x32, float32, with the loss ``sum(conv3x3(x, w) * G)``
for a fixed random G, so that one call computes the output, dx and dw. Each PyTensor mode available
(CVM, NUMBA, JAX) runs ``reproduction.conv``; PyTorch's ``conv2d`` (true convolution: flipped
filters), with its own thread count and with one thread, is the yardstick when torch is installed,
and raw ``jax.lax.conv_general_dilated`` is shown for reference. All results are first checked
against torch's; then each is warmed up once and timed ``--repeats`` times, and the median is
reported. Other processes may share the CPU, so the load average before and after is recorded.
``reproduction.conv`` runs its GEMMs on ``BNN_CONV_THREADS`` BLAS threads (default 1).
Writes ``results/bench/conv_cpu.json``.
"""
import argparse
import importlib.util
import os
import statistics
import time
from pathlib import Path

import numpy as np

from reproduction.backend import environment
from reproduction.files import write_json

ROOT = Path(__file__).resolve().parents[1]
SIZES = dict(batch=50, c_in=128, c_out=128, height=32, width=32)


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    s = SIZES
    x = rng.standard_normal((s["batch"], s["c_in"], s["height"], s["width"]), dtype=np.float32)
    w = rng.standard_normal((s["c_out"], s["c_in"], 3, 3), dtype=np.float32)
    g = rng.standard_normal((s["batch"], s["c_out"], s["height"], s["width"]), dtype=np.float32)
    return x, w, g


def _pytensor_step(mode):
    """(loss, dx, dw) of one forward+backward through reproduction.conv, compiled in ``mode``."""
    import pytensor
    import pytensor.tensor as pt

    from reproduction.conv import conv3x3

    x, w, g = (pt.tensor4(n, dtype="float32") for n in ("x", "w", "g"))
    loss = (conv3x3(x, w) * g).sum()
    dx, dw = pytensor.grad(loss, [x, w])
    f = pytensor.function([x, w, g], [loss, dx, dw], mode=mode)
    return lambda *a: [np.asarray(v) for v in f(*a)]


def _torch_step(threads=None):
    """PyTorch's conv2d with its own thread count, or ``threads`` (set only during each call)."""
    import torch

    def step(x, w, g):
        if threads is None:
            return _torch_once(x, w, g)
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return _torch_once(x, w, g)
        finally:
            torch.set_num_threads(before)

    return step


def _torch_once(x, w, g):
    import torch

    xt = torch.from_numpy(x).requires_grad_()
    wt = torch.from_numpy(w).requires_grad_()
    loss = (torch.nn.functional.conv2d(xt, wt.flip(2, 3), padding=1) * torch.from_numpy(g)).sum()
    loss.backward()
    return [loss.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()]


def _lax_conv_step():
    import jax
    import jax.numpy as jnp

    def loss(x, w, g):
        y = jax.lax.conv_general_dilated(
            x, w[:, :, ::-1, ::-1], (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW")
        )
        return jnp.sum(y * g)

    f = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))

    def step(x, w, g):
        value, (dx, dw) = jax.block_until_ready(f(x, w, g))
        return [np.asarray(value), np.asarray(dx), np.asarray(dw)]

    return step


def _torch_threads():
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    return torch.get_num_threads()


def _time(step, args, repeats):
    step(*args)  # warm-up: compilation, caches, thread pools
    seconds = []
    for _ in range(repeats):
        t = time.perf_counter()
        step(*args)
        seconds.append(time.perf_counter() - t)
    return seconds


def _version(name):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def _close(a, b, what):
    """Same loss, dx and dw to float32 accuracy (relative to each array's largest entry)."""
    for name, u, v in zip(("loss", "dx", "dw"), a, b):
        scale = max(float(np.max(np.abs(v))), 1e-30)
        err = float(np.max(np.abs(np.asarray(u, np.float64) - v))) / scale
        if err > 1e-4:
            raise RuntimeError(f"bench_conv.py: {what} is off on {name} (relative error {err:.2e})")


def run(repeats=7, modes=None, out=ROOT / "results" / "bench" / "conv_cpu.json"):
    args = _inputs()
    steps = {}
    for mode in modes or ("CVM", "NUMBA", "JAX"):
        if mode == "JAX" and importlib.util.find_spec("jax") is None:
            continue
        if mode == "NUMBA" and importlib.util.find_spec("numba") is None:
            continue
        steps[f"pytensor {mode}"] = _pytensor_step(mode)
    if importlib.util.find_spec("torch") is not None:
        steps["torch conv2d"] = _torch_step()
        steps["torch conv2d, 1 thread"] = _torch_step(1)
    if importlib.util.find_spec("jax") is not None:
        steps["jax lax.conv (reference)"] = _lax_conv_step()

    # torch, an independent implementation, is the reference when present (tests/test_conv.py
    # checks reproduction.conv against an explicit true convolution at small sizes)
    first = steps.get("torch conv2d") or next(iter(steps.values()))
    reference = [np.asarray(v, np.float64) for v in first(*args)]
    for name, step in steps.items():
        _close(step(*args), reference, name)

    load_before = os.getloadavg()
    seconds = {name: _time(step, args, repeats) for name, step in steps.items()}
    load_after = os.getloadavg()
    median = {name: statistics.median(s) for name, s in seconds.items()}
    torch_s = median.get("torch conv2d")
    record = {
        "what": "one 3x3 conv layer (true convolution, pad 1, stride 1), forward + backward, float32",
        "sizes": SIZES,
        "repeats": repeats,
        "statistic": "median after one warm-up call",
        "seconds": median,
        "seconds_all": seconds,
        "ratio_to_torch": {n: s / torch_s for n, s in median.items()} if torch_s else None,
        "conv_blas_threads": os.environ.get("BNN_CONV_THREADS", "1"),
        "torch_threads": _torch_threads(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "machine": environment("CVM"),
        "versions": {
            p: _version(p) for p in ("pytensor", "numpy", "scipy", "jax", "numba", "torch", "threadpoolctl")
        },
    }
    write_json(out, record)
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--modes", nargs="*", default=None, help="PyTensor modes (default: CVM NUMBA JAX)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "conv_cpu.json")
    a = parser.parse_args(argv)
    if a.repeats < 1:
        parser.error("--repeats must be at least 1")
    r = run(a.repeats, a.modes, a.out)
    print(f"{'':28s} {'median s':>9s} {'min s':>7s} {'x torch':>8s}")
    for name, s in r["seconds"].items():
        ratio = f"{r['ratio_to_torch'][name]:8.2f}" if r["ratio_to_torch"] else "       -"
        print(f"{name:28s} {s:9.3f} {min(r['seconds_all'][name]):7.3f} {ratio}")
    print(f"load average before/after: {r['load_average_before'][0]:.2f} / {r['load_average_after'][0]:.2f}"
          f" on {r['machine']['cores']} cores; written {a.out}")


if __name__ == "__main__":
    main()
