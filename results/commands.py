"""``python -m reproduction <command>``: the paper beside our results (the entry point of ``results/``).

- ``diff [RECORD_OR_FOLDER ...] [--markdown | --json]``: every run and benchmark record against the
  paper (default: results/runs and results/bench under the current folder, where the programs
  write); also the console script ``bnn-diff``.
- ``plot [RECORD_OR_FOLDER ...] [--out results/figures]``: learning curves and benchmark ratios (PNG).
- ``summary [--network mnist|cifar10|svhn | --params params.h5 [--architecture SPEC]]``: per-layer
  parameters, memory, MACs and energy (all three paper networks by default).
- ``filters params.h5``: unique binarized 3x3 filters per conv layer, beside the paper's 42 %.

A bad file or option ends in one line on stderr naming it (exit code 2; ``--debug`` shows the
traceback); a closed pipe (``| head``) ends quietly.
"""
import argparse
import errno
import json
import sys
from pathlib import Path

import numpy as np

from reproduction.program import ONE_LINE, Parser, one_line_errors

from . import compare, filters, paper, recipes, summary
from .records import RecordError

ERRORS = (RecordError, paper.PaperDataError, summary.SummaryError, filters.FiltersError, ImportError,
          *ONE_LINE)
DEFAULT_FOLDERS = "results/runs and results/bench under the current folder"


def _diff(args) -> str:
    rows = compare.diff(args.records or None, args.paper)
    return compare.to_json(rows) if args.json else compare.render(rows, args.markdown)


def _plot(args) -> str:
    from .plot import plot_all

    if args.out.exists() and not args.out.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "plot --out: not a folder", str(args.out))
    written = plot_all(args.records or None, args.out, args.paper)
    return "\n".join(map(str, written)) if written else "no run or benchmark records found: nothing to plot"


def _summary(args) -> str:
    energy = paper.load_energy(args.paper)
    if args.params:
        name, layers, floats = params_layers(args.params, args.architecture)
        return summary.render(summary.summarize(name, layers, energy, floats), args.markdown)
    if args.architecture:
        raise summary.SummaryError("--architecture goes with --params (the paper's networks have theirs)")
    nets = [args.network] if args.network else list(recipes.PROGRAMS)
    return "\n\n".join(summary.render(summary.summarize(n, summary.network(n), energy), args.markdown)
                       for n in nets)


def params_layers(path: Path, architecture: str | None = None):
    """The layers of a params.h5 for ``summary``: (name, layers, float parameters per layer).

    A dense model's layers follow from its weights' shapes. A conv model's map sides and pooling do
    not: they come from ``architecture``, else from the file's ``architecture`` attribute, else
    from the ``record.json`` of the run folder the file is in, else (``summary.layers_from_params``)
    from the paper's network for the file's dataset."""
    from reproduction.store import ParamsError, read_params

    try:
        attrs, blocks = read_params(path)
    except ParamsError as e:
        raise summary.SummaryError(str(e)) from None
    dataset = attrs.get("dataset")
    spec = architecture or attrs.get("architecture") or _architecture_beside(path)
    if spec is None or not any(np.ndim(b["W"]) == 4 for b in blocks):
        try:
            return summary.layers_from_params(path)
        except summary.SummaryError as e:
            raise summary.SummaryError(f"{e}; the file does not say its architecture: pass --architecture SPEC "
                                       "(the run's record.json has it)") from None
    try:
        layers = summary.layers_of(spec, recipes.INPUT_SHAPES.get(dataset, (3, 32, 32)))
    except ValueError as e:
        raise summary.SummaryError(f"--architecture {spec}: {e}") from None
    shapes = [tuple(b["W"].shape) for b in blocks]
    want = [(l.n_out, l.n_in, l.k, l.k) if l.kind == "conv" else (l.n_in, l.n_out) for l in layers]
    if shapes != want:
        common = min(len(shapes), len(want))
        first = next((i for i, (s, w) in enumerate(zip(shapes, want)) if s != w), common)
        detail = (f"block{first}/W is {shapes[first]}, {spec} wants {want[first]}" if first < common
                  else f"{len(shapes)} blocks, {spec} has {len(want)} layers")
        raise summary.SummaryError(f"{path}: not the architecture {spec}: {detail}")
    floats = [sum(v.size for k, v in b.items() if k != "W") for b in blocks]
    return f"{dataset or 'model'} {spec} ({Path(path).name})", layers, floats


def _architecture_beside(path: Path):
    """The ``architecture`` in the record.json beside ``path`` (a run folder's), or None."""
    try:
        record = json.loads((Path(path).parent / "record.json").read_bytes())
        return record["hyperparameters"].get("architecture") or None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _filters(args) -> str:
    layers = filters.analyze(filters.load_conv_weights(args.params))
    return filters.render(layers, paper.load_filters(args.paper)["unique_fraction"].value, args.markdown)


def _paper_folder(text: str) -> Path:
    """``--paper``: a folder holding the paper's tables (table1_test_error.json, ...)."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {'not a folder' if path.exists() else 'no such folder'}; "
                                         "it takes a folder of the paper's tables, like results/paper")
    return path


def _common(p: argparse.ArgumentParser, sub: bool = False) -> None:
    """--paper and --debug, before the command's name or after it (where a default would override
    the value given before, so there is none)."""
    p.add_argument("--paper", type=_paper_folder, default=argparse.SUPPRESS if sub else None,
                   help="folder of the paper's tables (default results/paper of the installed package)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS if sub else False,
                   help="show the traceback when the command stops on an error")


def _add_diff_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("records", nargs="*", type=Path,
                   help=f"run records, benchmark records or folders (default: {DEFAULT_FOLDERS}, where the "
                        "programs write; from a checkout's root, the committed records)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true", help="a Markdown table, for the README")
    fmt.add_argument("--json", action="store_true", help="JSON, for scripts")


def parser() -> argparse.ArgumentParser:
    top = Parser(prog="python -m reproduction", description=__doc__.splitlines()[0])
    _common(top)
    sub = top.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("diff", help="our results against the paper's")
    _add_diff_args(p)
    p.set_defaults(run=_diff)

    p = sub.add_parser("plot", help="learning curves and benchmark ratios as PNG files")
    p.add_argument("records", nargs="*", type=Path, help=f"records or folders (default: {DEFAULT_FOLDERS})")
    p.add_argument("--out", type=Path, default=Path("results") / "figures",
                   help="output folder (default results/figures under the current folder)")
    p.set_defaults(run=_plot)

    p = sub.add_parser("summary", help="parameters, memory, MACs and energy per layer")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--network", choices=sorted(recipes.PROGRAMS), help="one of the paper's networks")
    which.add_argument("--params", type=Path, help="a params.h5 written by training")
    p.add_argument("--architecture", metavar="SPEC",
                   help="with --params: the conv model's architecture, e.g. 16C3-MP2-32FC-10FC (default: from "
                        "the record.json beside the file, else the paper's for its dataset)")
    p.add_argument("--markdown", action="store_true")
    p.set_defaults(run=_summary)

    p = sub.add_parser("filters", help="unique binarized 3x3 filters of a conv model")
    p.add_argument("params", type=Path, help="a params.h5 of a conv model (CIFAR-10 or SVHN)")
    p.add_argument("--markdown", action="store_true")
    p.set_defaults(run=_filters)
    for sp in sub.choices.values():
        _common(sp, sub=True)
    return top


def _run(args, run) -> int:
    """``run(args)`` printed; a known error as one line on stderr, exit code 2."""
    try:
        with one_line_errors(args, ERRORS, interrupted="interrupted", code=2):
            print(run(args))
    except SystemExit as e:
        return e.code
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return _run(args, args.run)


def diff_main(argv: list[str] | None = None) -> int:
    """The ``bnn-diff`` console script: ``python -m reproduction diff`` with the same arguments."""
    p = Parser(prog="bnn-diff", description="Our run and benchmark records against the paper.")
    _common(p)
    _add_diff_args(p)
    return _run(p.parse_args(argv), _diff)


if __name__ == "__main__":
    sys.exit(main())
