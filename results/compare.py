"""The diff against the paper: every run record and benchmark record beside the paper's number.

For a training run (``results/runs/<run>/record.json``, or a run of a table,
``results/tables/<table>/<run>/record.json``) the paper's number is the test error of Table 1
(SOURCES.md §5.1) in the column of the run's recipe (``hyperparameters["recipe"]``, theano when
absent): BNN (Theano) for the Theano recipe, BNN (Torch7) for the Torch7 recipe; a record is never
compared with the other column (SOURCES.md §7 item 12). Ours is the record's ``test_err``: for the
Theano recipe the test error at the epoch of best validation error, as the original reports it
(SOURCES.md §1.5); for the Torch7 recipe the last epoch's, since the Torch7 code prints every
epoch's test error and selects none (SOURCES.md §4(f)). For a benchmark record
(``results/bench/<name>.json``) the paper's numbers are its three headline speed-ups on a GTX 750,
two for the 8192^3 product and one for the MNIST MLP (``results/paper/speed.json``, SOURCES.md §5.4).

Tolerances (stated, and printed with ``--json``):

- **Test error.** A full-length run matches if ``|ours - paper| <= 2 * 100 * sqrt(p (1 - p) / n)``
  percentage points, with p the paper's error and n the test images the original evaluated:
  two binomial standard errors, the resolution with which one test set measures an error rate.
  That is 0.19 pp for MNIST (n = 10,000), 0.20 pp for SVHN (n = 26,000) and 0.64 pp for CIFAR-10
  (n = 10,000) in the Theano column. The run-to-run spreads the paper itself prints for MNIST
  (BinaryConnect +- 0.08, the float net +- 0.2) and a second Theano MNIST run posted in
  itayhubara/BinaryNet issue #7 (0.93 % against 0.96 %) are of the same size or smaller.
- **Several seeds (error bars).** Records of one experiment that differ only in the seed (and the
  back end; ``results/seeds.py``) make one row: ours is their mean m, shown as ``m +- s`` with s the
  sample standard deviation; n, the seeds, the range and the standard error of the mean s / sqrt(n)
  are in the conditions. The cell is ``reproduced`` when ``|m - paper| <= tol``, with tol the
  test-error tolerance above, else ``better`` or ``worse``. The reasoning: averaging over seeds
  removes most of the seed-to-seed part of one run's deviation, which leaves the test set's own
  resolution as the yardstick, and tol is that resolution. What the mean cannot remove is stated
  beside it: the test set is the same images for every seed and for the paper's run, so its
  sampling error does not shrink with n; and the paper's number is itself one run, carrying its
  own seed's deviation (about s). Where s is comparable to tol, a ``better`` or ``worse`` by less
  than about 2 s is within what the paper's one seed could explain; the row shows s for that reading.
- **Speed-ups.** A ratio matches if within +-20 % of the paper's: the original times single runs
  without warm-up, and its own reports for one kernel pair already differ by up to 5 % (SOURCES.md
  §3.7; results/paper/speed.json). A ratio measured on a CPU, or a product that is not 8192^3, is not comparable.

A benchmark record of a ``--quick`` run (``"quick": true``) or of one without trained weights
(``"weights": "random"``) is set apart: its rows come last, with the status ``quick run`` or
``random weights`` instead of a comparison, so that it never stands in for a real measurement.

A run (or a group of runs) is a ``short run`` (not comparable yet) when it ran fewer epochs than its
recipe, on a subset of the data, or has not finished; ``not comparable`` when it departs from its
recipe (the values at the top of the dataset's program, with the ``torch7`` dict's for the Torch7
recipe, read through ``results.recipes``: stochastic binarization, shift-based BN, another
optimizer, batch size, learning rates, network width or architecture, dropout; all but the number
of epochs and the seed). A group with a diverged member is ``diverged``.
"""
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from . import recipes, seeds
from .paper import headline_speed, load_table1
from .records import find_records
from .tables import text_table

SPEED_TOLERANCE = 0.20
PAPER_GEMM_SIZE = (8192, 8192, 8192)
STATUSES = ("match", "reproduced", "better", "worse", "short run", "not comparable", "diverged", "no result",
            "no record", "quick run", "random weights")
#: Benchmark records that are not measurements to compare: the status their rows get instead.
SET_APART = {"quick run": "a --quick run", "random weights": "no trained weights (random)"}
#: The row of Table 1 each recipe is compared with.
COLUMNS = {"theano": "bnn_theano", "torch7": "bnn_torch7"}
DATASET_ORDER = ("mnist", "cifar10", "svhn")


@dataclass
class Row:
    """One line of the diff. ``diff`` is ours minus the paper's (percentage points for errors).

    A row of several runs of one experiment (seeds) has ``n`` > 1: ``ours`` is their mean, ``std``
    the sample standard deviation, ``sem`` the standard error of the mean, ``low`` and ``high`` the
    range, ``seeds`` and ``records`` its members."""

    kind: str  # "run" | "bench"
    subject: str  # dataset (with the recipe when not theano), or the benchmark ratio's key
    quantity: str
    paper: float | None
    ours: float | None
    diff: float | None
    tolerance: float | None
    status: str
    conditions: str
    record: str  # the record's path (a group's first), or "" when there is none
    paper_certainty: str | None = None
    recipe: str | None = None
    n: int = 1
    std: float | None = None
    sem: float | None = None
    low: float | None = None
    high: float | None = None
    seeds: list | None = None
    records: list | None = None


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


def _subject(dataset: str, recipe: str) -> str:
    return dataset if recipe == "theano" else f"{dataset} ({recipe})"


def paper_target(table1, dataset: str, recipe: str):
    """The paper's test error for ``dataset`` in the column of ``recipe`` (a ``paper.Value``)."""
    return table1.row(COLUMNS[recipe]).values[dataset]


@dataclass
class _Assessed:
    """One run record against its recipe: what makes it short or a variant, and its result."""

    epochs_run: int
    epochs: int
    short: list
    variant: list
    ours: float | None
    status: str | None   # the record's status


def _assess(rec: dict, recipe: str) -> _Assessed:
    ds = rec["dataset"]
    try:
        paper = recipes.recipe(ds, recipe)
    except recipes.RecipeError as e:      # a record of a recipe this checkout's program lacks
        return _Assessed(0, 0, [], [str(e)], rec.get("test_err"), rec.get("status"))
    epochs = paper["num_epochs"]
    sizes = recipes.split_sizes(ds)
    hp = rec.get("hyperparameters", {})
    epochs_run = max((e["epoch"] for e in rec["epochs"]), default=0)
    short = []
    if epochs_run < epochs:
        short.append(f"{epochs_run}/{epochs} epochs")
    # SVHN: the Theano code evaluates 26,000 of the 26,032 test images (partial batch dropped, §1.5).
    full = {"train_size": sizes["train"], "valid_size": sizes["valid"],
            "test_size": recipes.test_evaluated(ds, recipe)}
    for size, n in full.items():
        if size in hp and hp[size] < n:
            short.append(f"{size.split('_')[0]} {hp[size]}/{sizes[size.split('_')[0]]}")
    if rec.get("status") in ("running", "interrupted", "failed"):
        short.append(rec["status"])
    variant = [f"{k}={hp[k]} (paper {v})" for k, v in paper.items()
               if k not in recipes.RUN_LENGTH and k in hp and hp[k] != v]
    return _Assessed(epochs_run, epochs, short, variant, rec.get("test_err"), rec.get("status"))


def _verdict(ours: float, target: float, tol: float, agree: str) -> str:
    if ours - target > tol:
        return "worse"
    if target - ours > tol:
        return "better"
    return agree


def run_row(path: Path, rec: dict, table1) -> Row:
    """Compare one training run with the test error of its recipe's column."""
    ds, recipe = rec["dataset"], recipes.record_recipe(rec)
    target = paper_target(table1, ds, recipe)
    a = _assess(rec, recipe)
    env = rec.get("environment", {})
    tol = error_tolerance(target.value, recipes.test_evaluated(ds, recipe))

    if a.status == "diverged":
        status = "diverged"
    elif a.ours is None:
        status = "no result"
    elif a.variant:
        status = "not comparable"
    elif a.short:
        status = "short run"
    else:
        status = _verdict(a.ours, target.value, tol, "match")

    notes = [f"run {rec.get('run', path.parent.name)}", f"{a.epochs_run}/{a.epochs} epochs"]
    notes += [s for s in a.short if "epochs" not in s]
    notes += [f"variant: {', '.join(a.variant)}"] if a.variant else []
    notes += [f"mode {env.get('mode', '?')}", _machine(env)]
    if recipe == "torch7":
        notes.append("test error of the last epoch")
    elif rec.get("best_epoch") is not None:
        notes.append(f"best epoch {rec['best_epoch']}")
    return Row("run", _subject(ds, recipe), "test error (%)", target.value, a.ours,
               None if a.ours is None else a.ours - target.value, tol, status, "; ".join(notes), str(path),
               target.certainty, recipe)


def _where(paths: list[Path]) -> str:
    """The runs of a group: ``table <name>`` when they are the run folders of one table folder."""
    folders = {p.parent.parent for p in paths}
    if len(folders) == 1 and (next(iter(folders)) / "table.json").exists():
        return f"table {next(iter(folders)).name}"
    return "runs " + ", ".join(p.parent.name for p in paths)


def group_row(group: seeds.Group, table1) -> Row:
    """Compare the runs of one experiment across seeds with the test error of its recipe's column:
    their mean, standard deviation, standard error and range (module docstring)."""
    ds, recipe = group.dataset, group.recipe
    target = paper_target(table1, ds, recipe)
    tol = error_tolerance(target.value, recipes.test_evaluated(ds, recipe))
    assessed = [_assess(rec, recipe) for rec in group.records]
    results = [a.ours for a in assessed if a.ours is not None and a.status != "diverged"]
    diverged = sum(a.status == "diverged" for a in assessed)
    unfinished = [a.status for a in assessed if a.status in ("running", "interrupted", "failed")]
    stats = seeds.spread(results) if results else None
    first = assessed[0]
    variant = first.variant
    short = list(dict.fromkeys(s for a in assessed for s in a.short if "epochs" not in s and s not in unfinished))

    if diverged:
        status = "diverged"
    elif stats is None:
        status = "no result"
    elif variant:
        status = "not comparable"
    elif any(a.short for a in assessed):
        status = "short run"
    else:
        status = _verdict(stats.mean, target.value, tol, "reproduced")

    paths = [p for p, _ in group.members]
    epochs_run = sorted({a.epochs_run for a in assessed})
    notes = [f"{len(paths)} seeds ({seeds.seeds_text(group.seeds)}), {_where(paths)}"]
    if stats is not None and stats.n > 1:
        notes.append(f"range {stats.low:.2f}-{stats.high:.2f}, s.e. of the mean {stats.sem:.2f}")
    if stats is not None and stats.n < len(paths):
        notes.append(f"mean of the {stats.n} with a result")
    ran = str(epochs_run[0]) if len(epochs_run) == 1 else f"{epochs_run[0]}-{epochs_run[-1]}"
    notes.append(f"{ran}/{first.epochs} epochs")
    notes += short
    for state in ("running", "interrupted", "failed"):
        if state in unfinished:
            notes.append(f"{unfinished.count(state)} {state}")
    notes += [f"{diverged} diverged"] if diverged else []
    notes += [f"variant: {', '.join(variant)}"] if variant else []
    envs = [rec.get("environment", {}) for rec in group.records]
    notes.append("mode " + "/".join(sorted({str(e.get("mode", "?")) for e in envs})))
    notes += sorted({_machine(e) for e in envs})
    if recipe == "torch7":
        notes.append("test error of the last epoch")
    else:
        notes.append("best epochs " + ", ".join(str(rec.get("best_epoch")) for rec in group.records))
    return Row("run", _subject(ds, recipe), "test error (%)", target.value, stats and stats.mean,
               None if stats is None else stats.mean - target.value, tol, status, "; ".join(notes),
               str(paths[0]), target.certainty, recipe, n=len(paths),
               std=stats and stats.std, sem=stats and stats.sem, low=stats and stats.low, high=stats and stats.high,
               seeds=group.seeds, records=[str(p) for p in paths])


def paper_pair(claim_key: str) -> str:
    """The record's ratio that measures what a claim of the paper measured: the paper's headline
    speed-ups (``xnor_vs_baseline``, ...) are ITS XNOR kernel against its baseline and cuBLAS, which
    our records call ``xnor_paper`` (gpu_xnor/bench.py); ``xnor`` is our optimised kernel."""
    return claim_key.replace("xnor_", "xnor_paper_", 1)


def bench_rows(path: Path, rec: dict, speed: dict) -> list[Row]:
    """Compare a benchmark record's ratios of the paper's kernels with the paper's (GTX 750),
    our optimised kernel's ratio beside each. A --quick record is set apart; a record with random
    weights only for the MLP, whose timings do not depend on the weights but whose test error does."""
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
        ours = ratios.get(paper_pair(key))
        notes = [f"record {path.stem}", f"{device}: {name}", "paper: GTX 750"]
        if ratios.get(key) is not None:
            notes.insert(1, f"our xnor {ratios[key]:.1f}x")
        comparable = device == "gpu"
        if key.startswith("mlp"):
            if mlp_err:
                same = len(set(mlp_err.values())) == 1
                errs = ", ".join(f"{k} {v}" for k, v in mlp_err.items())
                notes.append("test error identical across kernels" if same else f"test error differs: {errs}")
        else:
            notes.append(f"size {'x'.join(map(str, size)) or '?'} (paper 8192^3)")
            comparable = comparable and size == PAPER_GEMM_SIZE
        if apart == "quick run" or (apart and key.startswith("mlp")):
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
        rows.append(Row("bench", paper_pair(key), "speed-up (x)", claim.value, ours,
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
    """Every record under ``paths`` (default: ``records.default_paths()``) against the paper: one
    row per run, or per experiment run with several seeds (``group_row``); a ``no record`` row for
    each cell of Table 1 (dataset, and recipe where the program has it) without a run; benchmark
    records after the runs, those set apart (``set_apart``) last."""
    table1 = load_table1(paper_folder)
    speed = headline_speed(paper_folder)
    found, benches = [], []
    for path, kind, rec in find_records(paths):
        if kind == "run":
            found.append((path, rec))
        else:
            benches.append((set_apart(rec) is not None, bench_rows(path, rec, speed)))
    runs = [run_row(*g.members[0], table1) if len(g.members) == 1 else group_row(g, table1)
            for g in seeds.group_runs(found)]
    have = {r.subject for r in runs}
    for ds in DATASET_ORDER:
        for recipe in recipes.available(ds):
            if _subject(ds, recipe) not in have:
                target = paper_target(table1, ds, recipe)
                runs.append(Row("run", _subject(ds, recipe), "test error (%)", target.value, None, None,
                                error_tolerance(target.value, recipes.test_evaluated(ds, recipe)),
                                "no record", "no run record found", "", target.certainty, recipe))
    runs.sort(key=lambda r: (DATASET_ORDER.index(r.subject.split()[0]), list(COLUMNS).index(r.recipe), r.record))
    benches.sort(key=lambda b: b[0])   # records set apart last; stable, each record's rows together
    return runs + [row for _, rows in benches for row in rows]


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def _ours(r: Row) -> str:
    """Ours as printed: the value, or for several seeds mean +- standard deviation."""
    if r.n > 1 and r.std is not None:
        return f"{r.ours:.2f} ± {r.std:.2f}"
    return _fmt(r.ours)


def render(rows: list[Row], markdown: bool = False) -> str:
    headers = ["subject", "quantity", "paper", "ours", "diff", "tol", "status", "conditions"]
    body = [[r.subject, r.quantity, _fmt(r.paper), _ours(r), "-" if r.diff is None else f"{r.diff:+.2f}",
             _fmt(r.tolerance), r.status, r.conditions] for r in rows]
    torch7 = any(r.recipe == "torch7" for r in rows)
    columns = ("BNN (Theano) and BNN (Torch7) columns of Table 1, each run against the column of its recipe"
               if torch7 else "BNN (Theano) column of Table 1")
    note = (f"Paper: {columns} and the GTX 750 speed-ups, each against the same pair of kernels here "
            "(xnor_paper: the paper's XNOR kernel; our optimised xnor beside it). Tolerance: 2 binomial standard "
            "errors of the paper's test error; +-20 % for speed-ups (see results/compare.py).")
    if any(r.n > 1 for r in rows):
        note += (" A row of several seeds shows the mean ± sample standard deviation (n, range and standard "
                 "error of the mean under conditions); it is reproduced when the mean is within the tolerance.")
    if torch7:
        note += " Torch7 recipe: the last epoch's test error (its code selects no best epoch)."
    if any(r.status in SET_APART for r in rows):
        note += (" Benchmark records of a --quick run, and the MLP of records without trained weights, are "
                 "listed last and not compared (quick run, random weights).")
    return text_table(headers, body, markdown) + "\n\n" + note


def to_json(rows: list[Row]) -> str:
    return json.dumps({
        "format": 1,
        "tolerance": {
            "test_error": "2 * 100 * sqrt(p (1 - p) / n) percentage points; "
                          "p = paper's error, n = test images evaluated",
            "seeds": "runs differing only in the seed: reproduced when |mean - paper| is within the test-error "
                     "tolerance; ours = mean, std = sample standard deviation, sem = std / sqrt(n)",
            "speed": f"ratio within +-{SPEED_TOLERANCE:.0%} of the paper's; GPU and 8192^3 only",
        },
        "rows": [asdict(r) for r in rows],
    }, indent=2)
