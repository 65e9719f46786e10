"""The diff against the paper: every run record and benchmark record beside the paper's number.

For a training run (``results/runs/<run>/record.json``) the paper's number is the BNN (Theano)
test error of Table 1 (PAPER.md §5.1; the Torch7 column is a different recipe, §7 item 12), and
ours is the record's test error at the epoch of best validation error, as the original reports it
(§1.5). For a benchmark record (``results/bench/<name>.json``) the paper's numbers are the speed-ups
23x, 3.4x (8192^3 product) and 7x (MNIST MLP) on a GTX 750 (§5.4).

Tolerances (stated, and printed with ``--json``):

- **Test error.** A full-length run matches if ``|ours - paper| <= 2 * 100 * sqrt(p (1 - p) / n)``
  percentage points, with p the paper's error and n the test images the original evaluated:
  two binomial standard errors, the resolution with which one test set measures an error rate.
  That is 0.19 pp for MNIST (n = 10,000), 0.20 pp for SVHN (n = 26,000) and 0.64 pp for CIFAR-10
  (n = 10,000). The run-to-run spreads the paper itself prints for MNIST (BinaryConnect ± 0.08,
  the float net ± 0.2) and a second Theano MNIST run posted in itayhubara/BinaryNet issue #7
  (0.93 % against 0.96 %) are of the same size or smaller.
- **Speed-ups.** A ratio matches if within ±20 % of the paper's: the original times single runs
  without warm-up, and its own reports for one kernel pair already span 22-23x and 3.3-3.4x
  (PAPER.md §3.7). A ratio measured on a CPU, or a product that is not 8192^3, is not comparable.

A benchmark record of a ``--quick`` run (``"quick": true``) or of one without trained weights
(``"weights": "random"``) is set apart: its rows come last, with the status ``quick run`` or
``random weights`` instead of a comparison, so that it never stands in for a real measurement.

A run is a ``short run`` (not comparable yet) when it ran fewer epochs than the paper, on a subset
of the data, or has not finished; ``not comparable`` when it departs from the Theano recipe
(the values at the top of the dataset's program, read through ``results.recipes``: stochastic
binarization, shift-based BN, another optimizer, batch size, learning rates, network width or
architecture, dropout; all but the number of epochs and the seed).
"""
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from . import recipes
from .paper import headline_speed, load_table1
from .records import find_records
from .tables import text_table

SPEED_TOLERANCE = 0.20
PAPER_GEMM_SIZE = (8192, 8192, 8192)
STATUSES = ("match", "better", "worse", "short run", "not comparable", "diverged", "no result", "no record",
            "quick run", "random weights")
#: Benchmark records that are not measurements to compare: the status their rows get instead.
SET_APART = {"quick run": "a --quick run", "random weights": "no trained weights (random)"}


@dataclass
class Row:
    """One line of the diff. ``diff`` is ours minus the paper's (percentage points for errors)."""

    kind: str  # "run" | "bench"
    subject: str  # dataset, or the benchmark ratio's key
    quantity: str
    paper: float | None
    ours: float | None
    diff: float | None
    tolerance: float | None
    status: str
    conditions: str
    record: str  # the record's path, or "" when there is none
    paper_certainty: str | None = None


def error_tolerance(paper_percent: float, n_test: int) -> float:
    """Two binomial standard errors of an error rate p measured on n images, in percentage points:
    ``2 * 100 * sqrt(p (1 - p) / n)`` with ``p = paper_percent / 100``."""
    p = paper_percent / 100.0
    return 200.0 * math.sqrt(p * (1.0 - p) / n_test)


def _machine(env: dict) -> str:
    if env.get("gpu"):
        return str(env["gpu"])
    cpu = env.get("cpu") or env.get("machine") or "unknown machine"
    return f"{cpu} ({env['cores']} cores)" if env.get("cores") else str(cpu)


def run_row(path: Path, rec: dict, table1) -> Row:
    """Compare one training run with the BNN (Theano) test error of its dataset."""
    ds = rec["dataset"]
    target = table1.target(ds)
    paper = recipes.recipe(ds)
    epochs = paper["num_epochs"]
    sizes = recipes.split_sizes(ds)
    hp = rec.get("hyperparameters", {})
    env = rec.get("environment", {})
    epochs_run = max((e["epoch"] for e in rec["epochs"]), default=0)
    ours = rec.get("test_err")
    tol = error_tolerance(target.value, recipes.test_evaluated(ds))

    short = []
    if epochs_run < epochs:
        short.append(f"{epochs_run}/{epochs} epochs")
    # SVHN: the original evaluates 26,000 of the 26,032 test images (partial batch dropped, §1.5).
    full = {"train_size": sizes["train"], "valid_size": sizes["valid"], "test_size": recipes.test_evaluated(ds)}
    for size, n in full.items():
        if size in hp and hp[size] < n:
            short.append(f"{size.split('_')[0]} {hp[size]}/{sizes[size.split('_')[0]]}")
    if rec.get("status") in ("running", "interrupted", "failed"):
        short.append(rec["status"])
    variant = [f"{k}={hp[k]} (paper {v})" for k, v in paper.items()
               if k not in recipes.RUN_LENGTH and k in hp and hp[k] != v]

    if rec.get("status") == "diverged":
        status = "diverged"
    elif ours is None:
        status = "no result"
    elif variant:
        status = "not comparable"
    elif short:
        status = "short run"
    elif ours - target.value > tol:
        status = "worse"
    elif target.value - ours > tol:
        status = "better"
    else:
        status = "match"

    notes = [f"run {rec.get('run', path.parent.name)}", f"{epochs_run}/{epochs} epochs"]
    notes += [s for s in short if "epochs" not in s]
    notes += [f"variant: {', '.join(variant)}"] if variant else []
    notes += [f"mode {env.get('mode', '?')}", _machine(env)]
    if rec.get("best_epoch") is not None:
        notes.append(f"best epoch {rec['best_epoch']}")
    return Row("run", ds, "test error (%)", target.value, ours,
               None if ours is None else ours - target.value, tol, status, "; ".join(notes), str(path),
               target.certainty)


def bench_rows(path: Path, rec: dict, speed: dict) -> list[Row]:
    """Compare a benchmark record's three ratios with 23x, 3.4x and 7x (GTX 750)."""
    ratios = rec.get("ratios") or {}
    device = rec.get("device", "?")
    machine = rec.get("machine") or {}
    name = next((str(machine[k]) for k in ("gpu", "gpu_name", "name", "cpu", "processor") if machine.get(k)),
                "unknown machine")
    size = tuple((rec.get("gemm") or {}).get("size") or ())
    mlp_err = (rec.get("mlp") or {}).get("test_err") or {}
    apart = set_apart(rec)
    rows = []
    for key, claim in speed.items():
        ours = ratios.get(key)
        notes = [f"record {path.stem}", f"{device}: {name}", "paper: GTX 750"]
        comparable = device == "gpu"
        if key.startswith("mlp"):
            if mlp_err:
                same = len(set(mlp_err.values())) == 1
                errs = ", ".join(f"{k} {v}" for k, v in mlp_err.items())
                notes.append("test error identical across kernels" if same else f"test error differs: {errs}")
        else:
            notes.append(f"size {'x'.join(map(str, size)) or '?'} (paper 8192^3)")
            comparable = comparable and size == PAPER_GEMM_SIZE
        if apart:
            status = apart
            notes.insert(1, f"set apart: {SET_APART[apart]}")
        elif ours is None:
            status = "no result"
        elif not comparable:
            status = "not comparable"
        elif ours < claim.value * (1 - SPEED_TOLERANCE):
            status = "worse"
        elif ours > claim.value * (1 + SPEED_TOLERANCE):
            status = "better"
        else:
            status = "match"
        rows.append(Row("bench", key, "speed-up (x)", claim.value, ours,
                        None if ours is None else ours - claim.value, claim.value * SPEED_TOLERANCE, status,
                        "; ".join(notes), str(path), claim.certainty))
    return rows


def set_apart(rec: dict) -> str | None:
    """``quick run`` or ``random weights`` for a benchmark record that is not a measurement to compare."""
    if rec.get("quick"):
        return "quick run"
    if rec.get("weights") == "random":
        return "random weights"
    return None


def diff(paths: list[Path] | None = None, paper_folder: Path | None = None) -> list[Row]:
    """Every record under ``paths`` (default results/runs and results/bench under the current
    folder) against the paper, plus a ``no record`` row for each dataset without a run; benchmark
    records set apart (``set_apart``) last."""
    table1 = load_table1(paper_folder)
    speed = headline_speed(paper_folder)
    runs, benches = [], []
    for path, kind, rec in find_records(paths):
        if kind == "run":
            runs.append(run_row(path, rec, table1))
        else:
            benches.extend(bench_rows(path, rec, speed))
    order = {ds: i for i, ds in enumerate(("mnist", "cifar10", "svhn"))}
    for ds in set(order) - {r.subject for r in runs}:
        target = table1.target(ds)
        runs.append(Row("run", ds, "test error (%)", target.value, None, None,
                        error_tolerance(target.value, recipes.test_evaluated(ds)),
                        "no record", "no run record found", "", target.certainty))
    runs.sort(key=lambda r: (order[r.subject], r.record))
    benches.sort(key=lambda r: r.status in SET_APART)   # stable: each record's rows stay together
    return runs + benches


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def render(rows: list[Row], markdown: bool = False) -> str:
    headers = ["subject", "quantity", "paper", "ours", "diff", "tol", "status", "conditions"]
    body = [[r.subject, r.quantity, _fmt(r.paper), _fmt(r.ours), "-" if r.diff is None else f"{r.diff:+.2f}",
             _fmt(r.tolerance), r.status, r.conditions] for r in rows]
    note = ("Paper: BNN (Theano) column of Table 1 and the GTX 750 speed-ups. Tolerance: 2 binomial standard "
            "errors of the paper's test error; +-20 % for speed-ups (see results/compare.py).")
    if any(r.status in SET_APART for r in rows):
        note += (" Benchmark records of a --quick run or without trained weights are listed last and not "
                 "compared (quick run, random weights).")
    return text_table(headers, body, markdown) + "\n\n" + note


def to_json(rows: list[Row]) -> str:
    return json.dumps({
        "format": 1,
        "tolerance": {
            "test_error": "2 * 100 * sqrt(p (1 - p) / n) percentage points; "
                          "p = paper's error, n = test images evaluated",
            "speed": f"ratio within +-{SPEED_TOLERANCE:.0%} of the paper's; GPU and 8192^3 only",
        },
        "rows": [asdict(r) for r in rows],
    }, indent=2)
