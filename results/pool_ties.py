"""How often the 2x2 max-pooling windows of the paper's ConvNets tie, and how much the rule for the
gradient at tied maxima changes the gradient, at the start of training and after a short run
(SOURCES.md §2.2).

Where a window's maximum is attained k > 1 times, cuDNN (the original's GPU runs) passes the
window's gradient to the first maximal element, Theano's CPU ``MaxPoolGrad`` to all k
(``reproduction.conv``, ``ties="first"`` / ``"all"``). Each network is built with its program's
recipe (the values at the top of cifar10/__main__.py and svhn/__main__.py: batch, learning rate,
batch norm, Glorot scales), and trained ``--steps`` steps with the ``--train-ties`` rule on synthetic
data: fresh uniformly random uint8 pixels every batch, scaled ``x * 2/255 - 1`` as the programs do,
and random labels. Every ``--probe-every`` steps (and at the start and the end) one fixed probe
batch of the same kind goes through the training graph (batch statistics, no update), and for
each pooling layer we record, from its input x and the gradient gz reaching its output:

- ``tied_fraction``: the fraction of windows whose maximum is attained more than once, and the
  fractions with k = 1, 2, 3, 4 maximal elements;
- ``gradient_mass_on_tied``: sum |gz| over tied windows / sum |gz|;
- ``gradient_l1_difference``: ``|g_all - g_first|_1 / |g_first|_1`` for the gradient this layer
  passes down, both routings applied to the same gz (= sum (k - 1)|gz| / sum |gz|);

and, for each binary layer, the gradient of the loss with respect to its binarized weights under
each rule (two graphs, the same state and batch): ``relative_l2_difference`` =
``|dW_all - dW_first|_2 / |dW_first|_2`` and ``sign_disagreement``, the fraction of weights where
the two gradients' signs differ (Adam's first steps follow the sign). Layers after the last pooling
are unaffected by construction.

Random pixels are not images: no conv layer's input pixels are pooled directly (the first pooling
follows the second convolution), but the sign patterns that reach the pooled layers would be
smoother, with more equal neighbours, on real CIFAR-10 or SVHN images, so the first pooling
layer's tie fraction here is a measurement on noise, not on the datasets.

    python -m results.pool_ties [--networks cifar10 svhn] [--steps 30] [--probe-every 15]
"""
import argparse
import sys
import time

import numpy as np

import reproduction  # noqa: F401  (compile-cache and floatX defaults, before PyTensor loads)
from reproduction.backend import MODES, default_mode, environment, load_average
from reproduction.conv import POOL_TIES, max_pool2x2, max_pool2x2_grad_numpy, max_pool2x2_numpy
from reproduction.files import write_json

from . import recipes

NETWORKS = ("cifar10", "svhn")   # the paper's ConvNets, with the recipes at the top of their programs
CLASSES = 10


def build(network, spec, ties, seed):
    """The network of ``spec`` built with the program's recipe, pooling gradients following ``ties``."""
    from reproduction import binarize
    from reproduction.convnet import build_convnet

    r = recipes.recipe(network)
    return build_convnet(spec, rng=np.random.RandomState(seed), activation=getattr(binarize, r["activation"]),
                         alpha=r["alpha"], epsilon=r["epsilon"], H=r["H"], binary=r["binary"],
                         stochastic=r["stochastic"], W_LR_scale=r["W_LR_scale"], pool_ties=ties)


def batch(rng, network):
    """A batch of random uint8 pixels, scaled as the programs scale them, and +-1 one-hot random labels."""
    from reproduction.dataset import scale_pixels

    n = recipes.recipe(network)["batch_size"]
    x = scale_pixels(rng.integers(0, 256, (n, *recipes.INPUT_SHAPES[network]), dtype=np.uint8))
    t = -np.ones((n, CLASSES), np.float32)
    t[np.arange(n), rng.integers(0, CLASSES, n)] = 1
    return x, t


def compile_probe(layers, ties, mode, input_shape):
    """(x, t) -> (loss, each pooling layer's input, the gradient at each pooling layer's output,
    the gradient with respect to each binary layer's binarized weights), on the training graph
    with every pooling gradient following ``ties``; nothing is updated."""
    import pytensor
    import pytensor.tensor as pt

    from reproduction.layers import MaxPool2x2, Pass, binary_layers
    from reproduction.loss import squared_hinge
    from reproduction.updates import float32_sums

    x = pt.tensor("inputs", dtype="float32", shape=(None, *input_shape))
    t = pt.matrix("targets", dtype="float32")
    p = Pass(deterministic=False)
    pool_in, pool_out, h = [], [], x
    for layer in layers:
        if isinstance(layer, MaxPool2x2):
            pool_in.append(h)
            h = max_pool2x2(h, ties=ties)
            pool_out.append(h)
        else:
            h = layer(h, p)
    loss = squared_hinge(h, t)
    weights = [p.binarized[layer.W] for layer in binary_layers(layers)]
    # Float32 sums in the gradients, as the training step has them (reproduction.updates).
    grads = float32_sums(pytensor.grad(loss, pool_out + weights))
    f = pytensor.function([x, t], [loss, *pool_in, *grads], mode=mode)
    n_pools = len(pool_in)

    def probe(xv, tv):
        out = [np.asarray(v) for v in f(xv, tv)]
        loss_v, rest = float(out[0]), out[1:]
        return loss_v, rest[:n_pools], rest[n_pools : 2 * n_pools], rest[2 * n_pools :]

    return probe


def _ratio(a, b):
    return float(a / b) if b else None


def window_stats(x, gz):
    """Tie statistics of one pooling layer: input x (N, C, H, W), gradient gz at its output."""
    out = max_pool2x2_numpy(x)
    n, c, h, w = x.shape
    windows = x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)
    maxima = (windows == out[:, :, :, None, :, None]).sum(axis=(3, 5))
    gz = np.asarray(gz, dtype=np.float64)
    mass = np.abs(gz)
    first = max_pool2x2_grad_numpy(x, out, gz, ties="first")
    every = max_pool2x2_grad_numpy(x, out, gz, ties="all")
    return {
        "shape": list(x.shape),
        "windows": int(maxima.size),
        "tied_fraction": float((maxima > 1).mean()),
        "maxima_count_fractions": {str(k): float((maxima == k).mean()) for k in (1, 2, 3, 4)},
        "gradient_mass_on_tied": _ratio(mass[maxima > 1].sum(), mass.sum()),
        "gradient_l1_difference": _ratio(np.abs(every - first).sum(), np.abs(first).sum()),
    }


def weight_gradient_stats(name, g_first, g_all):
    # np.asarray first: a JAX array's astype(float64) truncates to float32 and warns.
    a, b = np.asarray(g_first, dtype=np.float64), np.asarray(g_all, dtype=np.float64)
    return {"layer": name,
            "relative_l2_difference": _ratio(np.linalg.norm(b - a), np.linalg.norm(a)),
            "sign_disagreement": float((np.sign(a) != np.sign(b)).mean())}


def measure(probes, layers, train_ties, probe_batch, step):
    """One probe: the layer statistics under the training rule, the weight gradients under both."""
    from reproduction.layers import binary_layers

    results = {ties: probe(*probe_batch) for ties, probe in probes.items()}
    loss, pool_in, pool_grads, _ = results[train_ties]
    names = [layer.W.name for layer in binary_layers(layers)]
    return {"step": step, "loss": loss,
            "pooling_layers": [{"pool": k + 1, **window_stats(x, g)} for k, (x, g) in
                               enumerate(zip(pool_in, pool_grads))],
            "weight_gradients": [weight_gradient_stats(n, a, b) for n, a, b in
                                 zip(names, results["first"][3], results["all"][3])]}


def run_network(network, spec, args):
    from reproduction.functions import compile_functions

    t0 = time.perf_counter()
    r, shape = recipes.recipe(network), recipes.INPUT_SHAPES[network]
    layers = build(network, spec, args.train_ties, args.seed)
    f = compile_functions(layers, shape, optimizer=r["optimizer"], mode=args.mode)
    probes = {ties: compile_probe(layers, ties, args.mode, shape) for ties in POOL_TIES}
    compile_s = time.perf_counter() - t0
    print(f"[{network}] compiled in {compile_s:.1f} s", flush=True)
    rng = np.random.default_rng(args.seed)
    probe_batch = batch(rng, network)
    every = args.probe_every or args.steps
    measurements, losses = [measure(probes, layers, args.train_ties, probe_batch, 0)], []
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        losses.append(float(np.asarray(f.train(*batch(rng, network), np.float32(r["LR_start"])))))
        if step % every == 0 or step == args.steps:
            measurements.append(measure(probes, layers, args.train_ties, probe_batch, step))
            print(f"[{network}] step {step}: probed (train loss {losses[-1]:.4f})", flush=True)
    return {"architecture": spec, "compile_s": compile_s, "train_and_probe_s": time.perf_counter() - t0,
            "train_losses": losses, "probes": measurements}


def table(record):
    lines = []
    for network, r in record["results"].items():
        lines.append(f"{network}: {r['architecture']}, trained with ties={record['conditions']['train_ties']}")
        lines.append(f"{'step':>5} {'pool':>4} {'windows':>9} {'tied %':>7} {'k=2 %':>6} {'k=3 %':>6} "
                     f"{'k=4 %':>6} {'|gz| on tied %':>15} {'L1 diff %':>10}")
        for m in r["probes"]:
            for s in m["pooling_layers"]:
                k = s["maxima_count_fractions"]
                lines.append(f"{m['step']:5d} {s['pool']:4d} {s['windows']:9d} {100 * s['tied_fraction']:7.2f} "
                             f"{100 * k['2']:6.2f} {100 * k['3']:6.2f} {100 * k['4']:6.2f} "
                             f"{_pct(s['gradient_mass_on_tied']):>15} {_pct(s['gradient_l1_difference']):>10}")
        lines.append(f"{'step':>5} {'binary layer':<14} {'dW rel. L2 diff %':>18} {'sign differs %':>15}")
        for m in r["probes"]:
            for w in m["weight_gradients"]:
                lines.append(f"{m['step']:5d} {w['layer']:<14} {_pct(w['relative_l2_difference']):>18} "
                             f"{100 * w['sign_disagreement']:15.3f}")
    lines.append(f"load average {record['conditions']['load_average_before']} -> "
                 f"{record['conditions']['load_average_after']}")
    return "\n".join(lines)


def _pct(v):
    return "n/a" if v is None else f"{100 * v:.3f}"


def parse(argv=None):
    parser = argparse.ArgumentParser(prog="python -m results.pool_ties", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, default=list(NETWORKS))
    parser.add_argument("--steps", type=int, default=30, help="training steps (default 30)")
    parser.add_argument("--probe-every", type=int, default=15,
                        help="probe every N steps, besides the start and the end (0: only those)")
    parser.add_argument("--train-ties", choices=POOL_TIES, default="first",
                        help="the tie rule of the training steps (default: first, cuDNN's)")
    parser.add_argument("--mode", choices=MODES, default=None, help="PyTensor back end (default: the programs')")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--architecture", default=None,
                        help="override every network's architecture (for tests; default: the paper's)")
    parser.add_argument("--out", default="results/bench/pool_ties.json")
    args = parser.parse_args(argv)
    if args.steps < 0:
        parser.error(f"--steps must be >= 0, got {args.steps}")
    if args.probe_every < 0:
        parser.error(f"--probe-every must be >= 0, got {args.probe_every}")
    args.mode = args.mode or default_mode()
    return args


def main(argv=None):
    args = parse(argv)
    record = {"format": 1, "device": "cpu", "machine": environment(args.mode),
              "conditions": {"steps": args.steps, "probe_every": args.probe_every,
                             "train_ties": args.train_ties, "seed": args.seed,
                             "recipes": {n: recipes.recipe(n) for n in args.networks},
                             "data": "synthetic: uniform random uint8 pixels (3x32x32), fresh each step, "
                                     "scaled x*2/255-1; uniform random labels; one fixed probe batch "
                                     "of the same kind",
                             "probe": "training graph (batch-norm batch statistics), no update; layer "
                                      "statistics under train_ties, weight gradients under both rules",
                             "architecture_override": args.architecture,
                             "load_average_before": load_average()},
              "results": {}}
    for network in args.networks:
        record["results"][network] = run_network(network, args.architecture or recipes.architecture(network), args)
    record["conditions"]["load_average_after"] = load_average()
    write_json(args.out, record)
    print(table(record))
    print(f"record: {args.out}")
    return record


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
