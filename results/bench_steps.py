"""What one training and one evaluation step of the paper's ConvNets cost on this machine, per
PyTensor back end, and what that implies for a paper-length run (SOURCES.md §2).

For each network (the ``architecture`` at the top of ``cifar10/__main__.py`` and ``svhn/__main__.py``,
built with their recipes) and each mode: the time of ``compile_functions`` (both functions), of
the first training call (which may still compile or allocate), then the median of ``--repeats``
training steps and of as many evaluation (forward-only, deterministic) steps, on one batch of 50
random inputs in [-1, 1] with random ±1 one-hot targets. Every timed call waits until its
outputs and updated state are ready (JAX otherwise returns before the work is done). The implied hours of a paper run are
``steps/epoch * epochs * step_s + eval_batches/epoch * epochs * eval_step_s``, counting validation
and test every epoch (an upper bound: the original evaluates the test set only when the validation
error improves); compile time is left out. Load averages before and after are recorded, since
other work on the cores inflates the times.

    python -m results.bench_steps [--networks cifar10 svhn] [--modes JAX CVM NUMBA] [--repeats 3]
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

import reproduction  # noqa: F401  (compile-cache and floatX defaults, before PyTensor loads)
from reproduction import binarize
from reproduction.backend import MODES, environment, load_average
from reproduction.files import write_json

from . import recipes

NETWORKS = ("cifar10", "svhn")


def log(msg):
    print(msg, flush=True)



def _sync(f, out):
    """Wait for the call's work to finish: the JAX back end dispatches asynchronously and returns
    before the step is done (and its shared-variable updates, which the output does not wait for)."""
    values = list(out) if isinstance(out, (list, tuple)) else [out]
    values += [c.storage[0] for c in f.train.input_storage + f.evaluate.input_storage]
    for v in values:
        if hasattr(v, "block_until_ready"):
            v.block_until_ready()
    return out


def paper_run(network, step_s, eval_step_s):
    n, r = recipes.split_sizes(network), recipes.recipe(network)
    epochs, batch = r["num_epochs"], r["batch_size"]
    steps = n["train"] // batch
    eval_batches = n["valid"] // batch + n["test"] // batch
    train_h = steps * epochs * step_s / 3600
    eval_h = eval_batches * epochs * eval_step_s / 3600
    return {"steps_per_epoch": steps, "eval_batches_per_epoch": eval_batches, "epochs": epochs,
            "train_hours": train_h, "eval_hours": eval_h, "hours": train_h + eval_h}


def bench_one(network, mode, repeats, architecture=None, seed=0):
    from reproduction.convnet import build_convnet
    from reproduction.functions import compile_functions

    p = recipes.recipe(network)
    spec = architecture or p["architecture"]
    rng = np.random.RandomState(seed)
    layers = build_convnet(spec, rng=rng, activation=getattr(binarize, p["activation"]), alpha=p["alpha"],
                           epsilon=p["epsilon"], H=p["H"], binary=p["binary"], stochastic=p["stochastic"],
                           W_LR_scale=p["W_LR_scale"])
    batch = p["batch_size"]
    x = rng.uniform(-1, 1, (batch, *recipes.INPUT_SHAPES[network])).astype(np.float32)
    t = -np.ones((batch, 10), dtype=np.float32)
    t[np.arange(batch), rng.randint(0, 10, batch)] = 1
    lr = np.float32(p["LR_start"])

    t0 = time.perf_counter()
    f = compile_functions(layers, recipes.INPUT_SHAPES[network], optimizer=p["optimizer"], mode=mode)
    compile_s = time.perf_counter() - t0
    log(f"[{network} {mode}] compile {compile_s:.1f} s")
    t0 = time.perf_counter()
    loss = float(_sync(f, f.train(x, t, lr)))
    first_s = time.perf_counter() - t0
    log(f"[{network} {mode}] first call {first_s:.2f} s (loss {loss:.3f})")
    steps, evals = [], []
    for r in range(repeats):
        t0 = time.perf_counter()
        _sync(f, f.train(x, t, lr))
        steps.append(time.perf_counter() - t0)
        log(f"[{network} {mode}] step {r + 1}/{repeats}: {steps[-1]:.3f} s")
    _sync(f, f.evaluate(x, t))  # the evaluation function's first call
    for r in range(repeats):
        t0 = time.perf_counter()
        _sync(f, f.evaluate(x, t))
        evals.append(time.perf_counter() - t0)
    step_s, eval_s = statistics.median(steps), statistics.median(evals)
    log(f"[{network} {mode}] step {step_s:.3f} s, eval step {eval_s:.3f} s")
    return {"architecture": spec, "compile_s": compile_s, "first_call_s": first_s, "step_s": step_s,
            "step_runs": steps, "eval_step_s": eval_s, "eval_step_runs": evals,
            "paper_run": paper_run(network, step_s, eval_s)}


def table(record):
    lines = [f"{'network':<8} {'mode':<6} {'compile s':>10} {'first s':>8} {'step s':>8} {'eval s':>8} "
             f"{'paper run h':>12}"]
    for network, modes in record["results"].items():
        for mode, r in modes.items():
            if "skipped" in r:
                lines.append(f"{network:<8} {mode:<6} skipped: {r['skipped']}")
                continue
            lines.append(f"{network:<8} {mode:<6} {r['compile_s']:10.1f} {r['first_call_s']:8.2f} "
                         f"{r['step_s']:8.3f} {r['eval_step_s']:8.3f} {r['paper_run']['hours']:12.0f}")
    lines.append(f"load average {record['conditions']['load_average_before']} -> "
                 f"{record['conditions']['load_average_after']}")
    return "\n".join(lines)


def parse(argv=None):
    parser = argparse.ArgumentParser(prog="python -m results.bench_steps", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, default=list(NETWORKS))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=["JAX", "CVM", "NUMBA"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--architecture", default=None,
                        help="override every network's architecture (for tests; default: the paper's)")
    parser.add_argument("--skip", nargs="*", default=[], metavar="NETWORK:MODE:REASON",
                        help="record a combination as skipped with the reason, without running it")
    parser.add_argument("--out", default="results/bench/convnet_steps_cpu.json")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    skips = {tuple(s.split(":", 2)[:2]): s.split(":", 2)[2] for s in args.skip}
    record = {"format": 1, "device": "cpu", "machine": environment(args.modes[0]),
              "environments": {m: environment(m) for m in args.modes},
              "conditions": {"batch": {n: recipes.recipe(n)["batch_size"] for n in args.networks}, "repeats": args.repeats, "statistic": "median",
                             "timer": "time.perf_counter", "optimizer": "adam",
                             "inputs": "uniform [-1, 1], random ±1 one-hot targets",
                             "architecture_override": args.architecture,
                             "paper_run": "steps/epoch*epochs*step_s + (valid+test batches)/epoch*epochs*"
                                          "eval_step_s; compile time excluded",
                             "env": {k: os.environ.get(k) for k in
                                     ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "XLA_FLAGS")},
                             "load_average_before": load_average()},
              "results": {}}
    for network in args.networks:
        record["results"][network] = {}
        for mode in args.modes:
            if (network, mode) in skips:
                record["results"][network][mode] = {"skipped": skips[network, mode]}
                continue
            record["results"][network][mode] = bench_one(network, mode, args.repeats, args.architecture)
    record["conditions"]["load_average_after"] = load_average()
    write_json(args.out, record)
    print(table(record))
    print(f"record: {args.out}")
    return record


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
