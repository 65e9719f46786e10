"""``python -m reproduction <command>``: the paper beside our results (the entry point of ``results/``).

- ``diff [RECORD_OR_FOLDER ...] [--markdown | --json]``: every run and benchmark record against the
  paper (default: results/runs and results/bench); also the console script ``bnn-diff``.
- ``plot [RECORD_OR_FOLDER ...] [--out results/figures]``: learning curves and benchmark ratios (PNG).
- ``summary [--network mnist|cifar10|svhn | --params params.h5]``: per-layer parameters, memory,
  MACs and energy (all three paper networks by default).
- ``filters params.h5``: unique binarized 3x3 filters per conv layer, beside the paper's 42 %.
"""
import argparse
import sys
from pathlib import Path

from . import compare, filters, paper, recipes, summary
from .records import RecordError

ROOT = Path(__file__).resolve().parents[1]
ERRORS = (RecordError, paper.PaperDataError, summary.SummaryError, filters.FiltersError, ImportError)


def _diff(args) -> str:
    rows = compare.diff(args.records or None, args.paper)
    return compare.to_json(rows) if args.json else compare.render(rows, args.markdown)


def _plot(args) -> str:
    from .plot import plot_all

    written = plot_all(args.records or None, args.out, args.paper)
    return "\n".join(map(str, written)) if written else "no run or benchmark records found: nothing to plot"


def _summary(args) -> str:
    energy = paper.load_energy(args.paper)
    if args.params:
        name, layers, floats = summary.layers_from_params(args.params)
        return summary.render(summary.summarize(name, layers, energy, floats), args.markdown)
    nets = [args.network] if args.network else list(recipes.PROGRAMS)
    return "\n\n".join(summary.render(summary.summarize(n, summary.network(n), energy), args.markdown)
                       for n in nets)


def _filters(args) -> str:
    layers = filters.analyze(filters.load_conv_weights(args.params))
    return filters.render(layers, paper.load_filters(args.paper)["unique_fraction"].value, args.markdown)


def _add_diff_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("records", nargs="*", type=Path,
                   help="run records, benchmark records or folders (default: results/runs results/bench)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true", help="a Markdown table, for the README")
    fmt.add_argument("--json", action="store_true", help="JSON, for scripts")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m reproduction", description=__doc__.splitlines()[0])
    top.add_argument("--paper", type=Path, default=None, help="folder of the paper's tables (default results/paper)")
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("diff", help="our results against the paper's")
    _add_diff_args(p)
    p.set_defaults(run=_diff)

    p = sub.add_parser("plot", help="learning curves and benchmark ratios as PNG files")
    p.add_argument("records", nargs="*", type=Path, help="records or folders (default: results/runs results/bench)")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "figures",
                   help="output folder (default results/figures)")
    p.set_defaults(run=_plot)

    p = sub.add_parser("summary", help="parameters, memory, MACs and energy per layer")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--network", choices=sorted(recipes.PROGRAMS), help="one of the paper's networks")
    which.add_argument("--params", type=Path, help="a params.h5 written by training")
    p.add_argument("--markdown", action="store_true")
    p.set_defaults(run=_summary)

    p = sub.add_parser("filters", help="unique binarized 3x3 filters of a conv model")
    p.add_argument("params", type=Path, help="a params.h5 of a conv model (CIFAR-10 or SVHN)")
    p.add_argument("--markdown", action="store_true")
    p.set_defaults(run=_filters)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        print(args.run(args))
    except ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def diff_main(argv: list[str] | None = None) -> int:
    """The ``bnn-diff`` console script: ``python -m reproduction diff`` with the same arguments."""
    p = argparse.ArgumentParser(prog="bnn-diff", description="Our run and benchmark records against the paper.")
    p.add_argument("--paper", type=Path, default=None, help="folder of the paper's tables (default results/paper)")
    _add_diff_args(p)
    args = p.parse_args(argv)
    try:
        print(_diff(args))
    except ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
