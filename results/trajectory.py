"""How long our training step stays on the original's trajectory (SOURCES.md §1, §2.1).

The MNIST recipe with dropout off (the values at the top of mnist/__main__.py: 784-4096x3-10,
its batch, its first epoch's learning rate), the original's seed (initial weights and the shuffle
before epoch 1 drawn as the original drew them), the real MNIST training images in that order. From the same initial state three trainings
run side by side, batch after batch: the numpy float32 reference of the original's formulas
(results/reference_bnn.py) and our compiled training step in each PyTensor mode asked for. After each
batch the script records, per mode, how many binarized weights (sign of the latent W, sign(0) = +1)
differ from the reference's, the largest difference of the latent weights and, while they are few,
the differing weights themselves; and, from the reference, how many latent weights float32 rounding
put on the wrong side of zero or within reach of it: ``|W| <= |W - W64|``, where W64 is the float64
shadow of the same step (the same formulas and float32 constants, from the same state, evaluated in
float64), i.e. the weights whose sign this step's rounding decides. ``--bounds`` also counts the
weights within the reference's rigorous first-order rounding bound of zero (far more: worst-case
bounds through three layers of batch-norm backward are loose).

    python -m results.trajectory [--data-dir DIR] [--batches 30] [--modes JAX CVM] [--units 4096]
                                 [--bounds] [--out results/bench/trajectory_mnist.json]

It prints one line per batch and writes the JSON record: the conditions, the rows, and the
summary: for each mode the first batch after which a binarized weight differs, and the first batch
after which rounding decides the sign of some latent weight.
"""
import argparse
import os
import sys
import time

from types import SimpleNamespace

import numpy as np

import reproduction  # noqa: F401  (compile-cache and floatX defaults, before PyTensor loads)
from reproduction.backend import environment, load_average
from reproduction.files import write_json
from reproduction.functions import compile_functions
from reproduction.layers import BatchNorm, binary_layers
import mnist.__main__ as mnist_program
from results import recipes, reference_bnn as ref

F32 = np.float32
MNIST = recipes.recipe("mnist")          # the program's recipe: seed, batch, learning rate, widths
SEED, BATCH, LR = MNIST["seed"], MNIST["batch_size"], MNIST["LR_start"]


def build(units, hidden):
    """The MNIST program's MLP (``build_mlp``) with dropout off, drawn from RandomState(seed) in the
    original's order (the Dropout(0) layers still draw their stream seeds, as Lasagne's
    DropoutLayer(p=0.) did)."""
    c = SimpleNamespace(**{**MNIST, "dropout_in": 0.0, "dropout_hidden": 0.0, "num_units": units,
                           "n_hidden_layers": hidden})
    rng = np.random.RandomState(c.seed)
    return mnist_program.build_mlp(c, rng), rng


def reference_state(layers):
    blocks, bns = binary_layers(layers), [layer for layer in layers if isinstance(layer, BatchNorm)]
    out = [ref.Block("dense", d.W.get_value(), d.b.get_value(), bn.beta.get_value(), bn.gamma.get_value(),
                     bn.mean.get_value(), bn.inv_std.get_value(), d.W_LR_scale, act=i < len(blocks) - 1)
           for i, (d, bn) in enumerate(zip(blocks, bns))]
    zeros = lambda names, arrays: {n: np.zeros_like(a) for n, a in zip(names, arrays)}
    Wn = [f"W{i}" for i in range(len(out))]
    rest = [f"{p}{i}" for i in range(len(out)) for p in ("b", "beta", "gamma")]
    rest_arrays = [a for blk in out for a in (blk.b, blk.beta, blk.gamma)]
    return (out, ref.Adam(F32(0), zeros(Wn, [b.W for b in out]), zeros(Wn, [b.W for b in out])),
            ref.Adam(F32(0), zeros(rest, rest_arrays), zeros(rest, rest_arrays)))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m results.trajectory", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"), help="the MNIST files")
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--modes", nargs="+", default=["JAX", "CVM"], choices=["JAX", "CVM", "NUMBA"])
    p.add_argument("--units", type=int, default=MNIST["num_units"])
    p.add_argument("--hidden-layers", type=int, default=MNIST["n_hidden_layers"])
    p.add_argument("--bounds", action="store_true", help="also count weights within the rigorous rounding bound")
    p.add_argument("--out", default="results/bench/trajectory_mnist.json")
    args = p.parse_args(argv)
    if args.batches < 1 or args.units < 1:
        p.error("--batches and --units must be positive")

    from mnist.data import load_mnist
    from reproduction.dataset import DataError
    try:
        train = load_mnist(args.data_dir, download=False).train
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    nets = {}
    for mode in args.modes:
        layers, rng = build(args.units, args.hidden_layers)
        t0 = time.time()
        nets[mode] = (layers, compile_functions(layers, (1, 28, 28), mode=mode))
        print(f"{mode}: compiled in {time.time() - t0:.1f}s", flush=True)
    layers, rng = build(args.units, args.hidden_layers)
    state = reference_state(layers)
    wide_state = reference_state(layers)
    order = np.arange(len(train))
    rng.shuffle(order)                      # the original's shuffle before epoch 1 (reproduction/train.py)

    rows, first_diff, first_near_zero = [], {m: None for m in args.modes}, None
    load_before = load_average()
    for k in range(args.batches):
        index = order[k * BATCH:(k + 1) * BATCH]
        x, t = train.inputs(index), train.targets(index)
        t0 = time.time()
        step = ref.train_step(*state, x, t, F32(LR), bounds=args.bounds)
        one_step = ref.train_step(*state, x, t, F32(LR), dtype=np.float64)
        wide = ref.train_step(*wide_state, x, t, F32(LR), dtype=np.float64)
        ref_s = time.time() - t0
        state, wide_state = ref.advance(*state, step), ref.advance(*wide_state, wide)
        row = {"batch": k + 1, "loss_reference": float(step.loss.v), "loss_float64": float(wide.loss.v),
               "reference_seconds": round(ref_s, 2), "modes": {}}
        for name, shadow in (("accumulated", wide), ("this_step", one_step)):
            rounding = [np.abs(new["W"].v.astype(np.float64) - w64["W"].v) for new, w64 in zip(step.blocks, shadow.blocks)]
            row[f"signs_decided_by_rounding_{name}"] = [
                int(np.sum((r > 0) & (np.abs(new["W"].v) <= r))) for new, r in zip(step.blocks, rounding)]
            row[f"max_rounding_of_a_weight_{name}"] = [float(r.max()) for r in rounding]
        near = row["signs_decided_by_rounding_accumulated"]
        if args.bounds:
            row["weights_within_the_rigorous_bound"] = [
                int(np.sum((new["W"].e > 0) & (np.abs(new["W"].d) <= new["W"].e))) for new in step.blocks]
            row["undecided"] = step.undecided
        for mode, (net, functions) in nets.items():
            t0 = time.time()
            loss = float(functions.train(x, t, F32(LR)))
            secs = time.time() - t0
            diffs, worst, which = [], 0.0, []
            for layer, (d, blk, w64) in enumerate(zip(binary_layers(net), state[0], wide_state[0])):
                W = np.asarray(d.W.get_value(borrow=True))
                differ = (W >= 0) != (blk.W >= 0)
                diffs.append(int(differ.sum()))
                worst = max(worst, float(np.max(np.abs(W.astype(np.float64) - blk.W))))
                if differ.sum() <= 10:
                    which += [{"layer": layer, "index": [int(i) for i in ix], "reference": float(blk.W[ix]),
                               "ours": float(W[ix]), "float64_trajectory": float(w64.W[ix])}
                              for ix in zip(*np.nonzero(differ))]
            row["modes"][mode] = {"loss": loss, "seconds": round(secs, 2), "binarized_weights_differing": diffs,
                                  "max_latent_difference": worst}
            if which and sum(diffs) <= 10:
                row["modes"][mode]["differing_weights"] = which
            if first_diff[mode] is None and sum(diffs):
                first_diff[mode] = k + 1
        if first_near_zero is None and sum(near):
            first_near_zero = k + 1
        rows.append(row)
        print(f"batch {k + 1}: loss {row['loss_reference']:.6f} (ref), signs decided by rounding {near}; "
              + "; ".join(f"{m}: loss {r['loss']:.6f}, differing signs {r['binarized_weights_differing']}, "
                          f"max |dW| {r['max_latent_difference']:.3g}" for m, r in row["modes"].items()),
              flush=True)

    record = {
        "what": "batches our training step (per PyTensor mode) and the numpy reference of the original's "
                "formulas stay identical in every binarized weight, MNIST recipe, dropout off",
        "conditions": {"network": f"784-{args.units}x{args.hidden_layers}-10", "batch": BATCH, "lr": LR,
                       "seed": SEED, "data": "MNIST train[0:50000], the original's epoch-1 order",
                       "dropout": "off", "batches": args.batches,
                       "load_average_before": load_before, "load_average_after": load_average()},
        "environment": {m: environment(m) for m in args.modes},
        "summary": {"first_batch_with_a_differing_binarized_weight": first_diff,
                    "first_batch_where_rounding_decides_a_weights_sign": first_near_zero},
        "rows": rows,
    }
    write_json(args.out, record)
    print(f"summary: {record['summary']}\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
