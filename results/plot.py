"""Figures from the records: learning curves per dataset and benchmark ratios beside the paper's.

- ``learning_curves_<dataset>.png``: for every run of the dataset, training and validation loss
  per epoch (left) and validation error per epoch with the test error at each new best epoch
  (right; the original evaluates the test set only then, PAPER.md §1.5), with the paper's BNN
  (Theano) test error as a reference line (Table 1, PAPER.md §5.1).
- ``benchmark_ratios.png``: the speed-ups of every benchmark record beside the paper's 23x, 3.4x
  and 7x on a GTX 750 (PAPER.md §5.4), on a log scale (ours may be below 1).

matplotlib is an optional dependency (``pip install ".[plot]"``); it is imported only here, through
its object-oriented API (no pyplot, so no global figure state), and figures are written
atomically.
"""
from pathlib import Path

from reproduction.files import atomic_output

from .paper import headline_speed, load_table1
from .records import find_records


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


def learning_curves(runs: list[dict], dataset: str, paper_err: float, out: Path) -> Path:
    """One figure for the ``runs`` (run records) of ``dataset``, written to ``out``."""
    Figure, Canvas = _matplotlib()
    fig = Figure(figsize=(11, 4.2))
    Canvas(fig)
    loss_ax, err_ax = fig.subplots(1, 2)
    for i, rec in enumerate(runs):
        color = f"C{i % 10}"
        name = rec.get("run", f"run {i + 1}")
        rows = rec["epochs"]
        ep = [r["epoch"] for r in rows]
        loss_ax.plot(ep, [r.get("train_loss") for r in rows], color=color, label=f"{name} train")
        loss_ax.plot(ep, [r.get("val_loss") for r in rows], color=color, ls="--", label=f"{name} valid")
        err_ax.plot(ep, [r.get("val_err") for r in rows], color=color, label=f"{name} valid")
        best = [r for r in rows if r.get("test_err") is not None]
        err_ax.plot([r["epoch"] for r in best], [r["test_err"] for r in best], color=color, ls="none",
                    marker="o", ms=4, label=f"{name} test (new best epochs)")
    err_ax.axhline(paper_err, color="k", ls=":", label=f"paper, BNN (Theano): {paper_err:.2f} %")
    loss_ax.set(title=f"{dataset}: squared hinge loss", xlabel="epoch", ylabel="loss")
    err_ax.set(title=f"{dataset}: error rate", xlabel="epoch", ylabel="error (%)")
    for ax in (loss_ax, err_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out)


def benchmark_ratios(benches: list[tuple[str, dict]], paper: dict, out: Path) -> Path:
    """Grouped bars: for each ratio, the paper's (GTX 750) and each record's (name, record)."""
    Figure, Canvas = _matplotlib()
    fig = Figure(figsize=(8, 4.2))
    Canvas(fig)
    ax = fig.subplots()
    keys = list(paper)
    width = 0.8 / (1 + len(benches))
    labels = [("paper, GTX 750", {k: paper[k].value for k in keys})]
    labels += [(f"{name} ({rec.get('device', '?')})", rec.get("ratios") or {}) for name, rec in benches]
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
    for _, kind, rec in records:
        if kind == "run":
            runs.setdefault(rec["dataset"], []).append(rec)
    written = [learning_curves(rs, ds, table1.target(ds).value, Path(out_dir) / f"learning_curves_{ds}.png")
               for ds, rs in sorted(runs.items())]
    benches = [(p.stem, rec) for p, kind, rec in records if kind == "bench"]
    if benches:
        out = Path(out_dir) / "benchmark_ratios.png"
        written.append(benchmark_ratios(benches, headline_speed(paper_folder), out))
    return written
