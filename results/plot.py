"""Figures from the records: learning curves per dataset and benchmark ratios beside the paper's.

- ``learning_curves_<dataset>.png``: for every run of the dataset, training and validation loss
  per epoch (left) and validation error per epoch with the test error at each epoch it was
  evaluated (right; the Theano recipe evaluates the test set only at a new best epoch, SOURCES.md
  §1.5), with the paper's test error of each recipe's column as a reference line (Table 1,
  SOURCES.md §5.1). Runs of one experiment with several seeds (``results/seeds.py``) are drawn as
  one curve, the mean over the seeds at each epoch, in a band from the lowest to the highest
  seed's value; their test errors as points, one per seed and evaluation.
- ``benchmark_ratios.png``: the speed-ups of every benchmark record beside the paper's headline
  ones on a GTX 750 (``results/paper/speed.json``, SOURCES.md §5.4), on a log scale (ours may be
  below 1).

matplotlib is an optional dependency (``pip install ".[plot]"``); it is imported only here, through
its object-oriented API (no pyplot, so no global figure state), and figures are written
atomically.
"""
from pathlib import Path

from reproduction.files import atomic_output

from . import seeds
from .compare import paper_pair, paper_target
from .paper import headline_speed, load_table1
from .records import find_records


RECIPE_NAMES = {"theano": "Theano", "torch7": "Torch7"}
RATIO_LABELS = {"xnor_vs_baseline": "XNOR vs baseline\n8192^3", "xnor_vs_blas": "XNOR vs cuBLAS\n8192^3",
                "mlp_xnor_vs_baseline": "MNIST MLP\nXNOR vs baseline"}


class PlotDependencyError(ImportError):
    """matplotlib is not installed."""


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotDependencyError('plots need matplotlib: pip install ".[plot]" (or pip install matplotlib)') \
            from None
    return Figure, FigureCanvasAgg


def _save(fig, path: Path) -> Path:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def _label(group: seeds.Group, i: int) -> str:
    rec = group.records[0]
    name = rec.get("run", f"run {i + 1}")
    if len(group.members) > 1:
        folders = {p.parent.parent.name for p, _ in group.members}
        name = f"{folders.pop() if len(folders) == 1 else name}, {len(group.members)} seeds"
    return name if group.recipe == "theano" else f"{name} ({group.recipe})"


def learning_curves(groups: list[seeds.Group], dataset: str, paper_errs: dict, out: Path) -> Path:
    """One figure for the runs of ``dataset`` (``groups``: ``seeds.group_runs``), with the paper's
    test error of each recipe in ``paper_errs`` ({recipe: percent}), written to ``out``."""
    return _save(curves_figure(groups, dataset, paper_errs), out)


def curves_figure(groups: list[seeds.Group], dataset: str, paper_errs: dict):
    """The figure of ``learning_curves``: loss axes first, error axes second."""
    Figure, Canvas = _matplotlib()
    fig = Figure(figsize=(11, 4.2))
    Canvas(fig)
    loss_ax, err_ax = fig.subplots(1, 2)
    for i, group in enumerate(groups):
        color, name = f"C{i % 10}", _label(group, i)
        band = len(group.members) > 1
        for key, ax, ls, what in (("train_loss", loss_ax, "-", "train"), ("val_loss", loss_ax, "--", "valid"),
                                  ("val_err", err_ax, "-", "valid")):
            points = seeds.per_epoch(group.records, key)
            ep = [e for e, _ in points]
            ax.plot(ep, [s.mean for _, s in points], color=color, ls=ls,
                    label=f"{name} {what}{' (mean)' if band else ''}")
            if band:
                ax.fill_between(ep, [s.low for _, s in points], [s.high for _, s in points], color=color,
                                alpha=0.25 if ls == "-" else 0.12, lw=0,
                                label=f"{name} {what}: lowest to highest seed")
        tested = [(r["epoch"], r["test_err"]) for rec in group.records for r in rec["epochs"]
                  if r.get("test_err") is not None]
        err_ax.plot([e for e, _ in tested], [t for _, t in tested], color=color, ls="none", marker="o", ms=3,
                    label=f"{name} test{' (each seed)' if band else ''}")
    for (recipe, value), ls in zip(sorted(paper_errs.items()), (":", "-.")):
        err_ax.axhline(value, color="k", ls=ls, label=f"paper, BNN ({RECIPE_NAMES.get(recipe, recipe)}): {value:.2f} %")
    loss_ax.set(title=f"{dataset}: squared hinge loss", xlabel="epoch", ylabel="loss")
    err_ax.set(title=f"{dataset}: error rate", xlabel="epoch", ylabel="error (%)")
    for ax in (loss_ax, err_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def benchmark_ratios(benches: list[tuple[str, dict]], paper: dict, out: Path) -> Path:
    """Grouped bars: for each of the paper's ratios (GTX 750), the same pair of kernels in each
    record (name, record): the paper's XNOR kernel, ``xnor_paper`` (``compare.paper_pair``)."""
    Figure, Canvas = _matplotlib()
    fig = Figure(figsize=(8, 4.2))
    Canvas(fig)
    ax = fig.subplots()
    keys = list(paper)
    width = 0.8 / (1 + len(benches))
    labels = [("paper, GTX 750", {k: paper[k].value for k in keys})]
    labels += [(f"{name} ({rec.get('device', '?')})",
                {k: (rec.get("ratios") or {}).get(paper_pair(k)) for k in keys}) for name, rec in benches]
    for j, (label, ratios) in enumerate(labels):
        xs = [i + (j - len(benches) / 2) * width for i, k in enumerate(keys) if ratios.get(k)]
        ys = [ratios[k] for k in keys if ratios.get(k)]
        bars = ax.bar(xs, ys, width, label=label, color=f"C{j % 10}")
        ax.bar_label(bars, fmt="%.2g", fontsize=7)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(keys)), [RATIO_LABELS.get(k, k) for k in keys])
    ax.set(ylabel="speed-up (x, log scale)", title="XNOR kernel speed-ups")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out)


def plot_all(paths: list[Path] | None, out_dir: Path, paper_folder: Path | None = None) -> list[Path]:
    """Every figure the records under ``paths`` (default results/runs, results/bench) allow."""
    _matplotlib()  # fail before reading anything when matplotlib is absent
    table1 = load_table1(paper_folder)
    records = find_records(paths)
    runs = {}
    for path, kind, rec in records:
        if kind == "run":
            runs.setdefault(rec["dataset"], []).append((path, rec))
    written = []
    for ds, found in sorted(runs.items()):
        groups = seeds.group_runs(found)
        paper = {g.recipe: paper_target(table1, ds, g.recipe).value for g in groups}
        written.append(learning_curves(groups, ds, paper, Path(out_dir) / f"learning_curves_{ds}.png"))
    benches = [(p.stem, rec) for p, kind, rec in records if kind == "bench"]
    if benches:
        out = Path(out_dir) / "benchmark_ratios.png"
        written.append(benchmark_ratios(benches, headline_speed(paper_folder), out))
    return written
