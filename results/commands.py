"""``python -m reproduction <command>``: the paper beside our results (the entry point of ``results/``).

- ``diff [RECORD_OR_FOLDER ...] [--markdown | --json]``: every run and benchmark record against the
  paper (default: results/runs, results/tables and results/bench under the current folder, where
  the programs write); runs of one experiment with several seeds as one row with error bars;
  also the console script ``bnn-diff``.
- ``plot [RECORD_OR_FOLDER ...] [--out results/figures]``: learning curves and benchmark ratios (PNG).
- ``summary [--network mnist|cifar10|svhn | --params params.h5 [--architecture SPEC]]``: per-layer
  parameters, memory, MACs and energy (all three paper networks by default).
- ``filters params.h5``: unique binarized 3x3 filters per conv layer, beside the paper's 42 %.
- ``table [--datasets ...] [--recipes ...] [--seeds N] [--executor local|slurm] [PROGRAM OPTIONS]``:
  the runs of Table 1 (cells x seeds), each the program's own command in its own folder under one
  table folder, on this machine or as Slurm jobs; ``--dry-run`` shows the plan, ``--status`` the
  progress; running it again skips finished runs and resumes interrupted ones (results/table.py).

A bad file or option ends in one line on stderr naming it (exit code 2; ``--debug`` shows the
traceback); a closed pipe (``| head``) ends quietly. ``table`` exits with 0 when every run finished
(or diverged; with ``--executor slurm`` without ``--wait``: is queued, running or finished), 1 when a
run failed or was interrupted, 128 + the signal when a signal stopped it (its runs checkpointed).
"""
import argparse
import errno
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np

from reproduction.options import Parser
from reproduction.program import ONE_LINE, one_line_errors

from . import compare, filters, paper, recipes, run_states, summary, table
from .executor_slurm import SlurmError, SlurmOptions
from .records import RecordError

ERRORS = (RecordError, paper.PaperDataError, summary.SummaryError, filters.FiltersError, ImportError,
          table.TableError, SlurmError, recipes.RecipeError, *ONE_LINE)
DEFAULT_FOLDERS = "results/runs, results/tables and results/bench under the current folder"


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


# --- table ---------------------------------------------------------------------------------------------

def _say(line: str) -> None:
    print(line, flush=True)


def _job_ids(tbl) -> dict:
    """{run name: its last Slurm job's id} for the runs of ``tbl`` that were ever submitted."""
    from .attempts import read_events

    ids = {}
    for run in tbl.runs:
        jobs = [e.get("job") for e in read_events(tbl.events_path(run)) if e.get("event") == "submitted"]
        if jobs:
            ids[run.name] = str(jobs[-1])
    return ids


def _states(tbl, strict: bool):
    """The state of every run; Slurm is asked about those with a job that may still run. ``strict``:
    a Slurm that does not answer stops the command (before it starts anything, so that no run is
    started twice); else the states come from the folders alone, with a warning (the second value)."""
    from .executor_slurm import live_states

    ids = _job_ids(tbl)
    unsettled = [j for name, j in ids.items()
                 if (run_states.read_record(tbl.folder / name) or {}).get("status") not in ("finished", "diverged")]
    jobs, warning = {}, ""
    if unsettled:
        try:
            jobs = live_states(unsettled)
        except SlurmError as e:
            if strict:
                raise SlurmError(f"{e}; runs of {tbl.folder} were submitted to Slurm and may still run there, "
                                 "so nothing is started until Slurm answers") from None
            jobs, warning = None, f"warning: {e}: the states of runs with Slurm jobs are from their folders only"
    return {run.name: run_states.run_state(tbl.run_dir(run), tbl.events_path(run), jobs) for run in tbl.runs}, warning


def _slurm_options(args) -> SlurmOptions:
    extra = {}
    for item in args.slurm_param or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise table.TableError(f"--slurm-param {item}: expected KEY=VALUE (an sbatch option, e.g. account=abc)")
        extra[key.strip().lstrip("-")] = value
    return SlurmOptions(partition=args.partition, time_min=args.time, gpus=args.gpus_per_job, cpus=args.cpus_per_job,
                        mem_gb=args.mem_gb, extra=extra, signal_delay_s=args.signal_delay,
                        max_requeues=args.max_requeues)


def _todo(tbl, states: dict, retry: bool) -> tuple[list, list]:
    """([(Planned, resume)] to start, [lines about the runs left alone])."""
    todo, notes = [], []
    for run in tbl.runs:
        s = states[run.name]
        if s.state == "new" or s.state == "interrupted" or (s.state == "failed" and retry):
            todo.append((run, run_states.holds_run(tbl.run_dir(run))))
        elif s.state == "failed":
            notes.append(f"failed    {run.name}: {s.reason} (not retried: --retry-failed runs it again)")
    return todo, notes


def _dry_run(tbl, states: dict, args) -> str:
    where = (f"as Slurm jobs ({_slurm_text(_slurm_options(args))})" if args.executor == "slurm"
             else f"on this machine, {args.jobs} at a time")
    lines = [f"table {tbl.folder}: {len(tbl.runs)} runs, {where}; each command runs in the table folder "
             f"with {table.python()}"]
    for run in tbl.runs:
        s = states[run.name]
        if s.state in ("new", "interrupted") or (s.state == "failed" and args.retry_failed):
            resume = run_states.holds_run(tbl.run_dir(run))
            action = "would resume" if resume else "would start"
            command = "python " + " ".join(tbl.command(run, resume))
        else:
            action = "left alone" + (" (--retry-failed runs it again)" if s.state == "failed" else "")
            command = "python " + " ".join(tbl.command(run, run_states.holds_run(tbl.run_dir(run))))
        detail = f"; {s.reason or s.where}" if (s.reason or s.where) else ""
        lines += [f"{run.name}: {s.state}{detail}; {action}", f"  folder   {tbl.run_dir(run)}", f"  command  {command}"]
    return "\n".join(lines)


def _slurm_text(o: SlurmOptions) -> str:
    parts = [f"partition {o.partition or '(default)'}", f"time {o.time_min} min"]
    parts += [f"{v} {k}{'s' * (v > 1)} per job" for k, v in (("GPU", o.gpus), ("CPU", o.cpus)) if v]
    parts += [f"{o.mem_gb:g} GB per job"] if o.mem_gb else []
    parts += [f"--{k}={v}" for k, v in o.extra.items()]
    return ", ".join(parts)


def _wait(tbl, poll: float) -> int | None:
    """Report the runs' changes of state until no run is queued or running; the stop signal (None)."""
    stopped = []
    previous = {s: signal.signal(s, lambda signum, frame: stopped.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    seen, trouble = {}, ""
    try:
        while not stopped:
            states, warning = _states(tbl, strict=False)
            if warning and warning != trouble:
                _say(warning + "; still waiting")
            trouble = warning
            for name, s in states.items():
                now = (s.state, s.epoch)
                if seen.get(name) != now:
                    seen[name] = now
                    _say(f"{name}: {s.state}{f', epoch {s.epoch}/{s.epochs}' if s.epochs else ''}"
                         f"{f' ({s.where or s.reason})' if s.where or s.reason else ''}")
            if not warning and not any(s.state in ("queued", "running") for s in states.values()):
                return None
            deadline = time.monotonic() + poll
            while not stopped and time.monotonic() < deadline:
                time.sleep(min(0.2, poll))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    _say(f"{signal.Signals(stopped[0]).name}: stopped waiting; the jobs go on in Slurm "
         f"(python -m reproduction table --status --out {tbl.folder})")
    return stopped[0]


def _table(args) -> str:
    from .executor_local import run_local
    from .executor_slurm import submit

    slurm_given = [f for f, v in (("--partition", args.partition), ("--gpus-per-job", args.gpus_per_job),
                                  ("--cpus-per-job", args.cpus_per_job), ("--mem-gb", args.mem_gb),
                                  ("--slurm-param", args.slurm_param), ("--wait", args.wait)) if v]
    if args.executor != "slurm" and slurm_given:
        raise table.TableError(f"{slurm_given[0]}: a Slurm option (give --executor slurm)")
    if args.status and not (args.out / table.TABLE_FILE).exists():
        raise table.no_table(args.out)
    tbl = table.plan(args.out, args.datasets, args.recipes, args.seeds, args.program_options)
    if args.status:
        states, warning = _states(tbl, strict=False)
        return (warning + "\n" if warning else "") + run_states.render(tbl, states, args.markdown)
    if args.dry_run:
        states, warning = _states(tbl, strict=False)
        return (warning + "\n" if warning else "") + _dry_run(tbl, states, args)

    stopped = None
    with table.command_lock(tbl):
        table.save(tbl)
        states, _ = _states(tbl, strict=True)
        todo, notes = _todo(tbl, states, args.retry_failed)
        counts = {k: sum(s.state == k for s in states.values()) for k in run_states.STATES}
        _say(f"table {tbl.folder}: {len(tbl.runs)} runs: "
             + ", ".join(f"{n} {k}" for k, n in counts.items() if n) + f"; {len(todo)} to run")
        for line in notes:
            _say(line)
        if args.executor == "local":
            _, stopped = run_local(tbl, todo, args.jobs, say=_say)
        else:
            submit(tbl, todo, _slurm_options(args), say=_say)
    if args.executor == "slurm" and args.wait:
        stopped = _wait(tbl, args.poll)
    states, warning = _states(tbl, strict=False)
    view = (warning + "\n" if warning else "") + run_states.render(tbl, states)
    settled = ("finished", "diverged") + (("queued", "running") if args.executor == "slurm" and not args.wait else ())
    code = 128 + stopped if stopped else int(any(s.state not in settled for s in states.values()))
    if code:
        _say(view)
        raise SystemExit(code)
    return view


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text}: not a whole number") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"{text}: must be at least {minimum}")
        return n
    return parse


def _positive(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: not a number") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"{text}: must be above 0")
    return x


def _typed(parse):
    """An argparse type from a function raising ``TableError``: its message, on one line."""
    def typed(text):
        try:
            return parse(text)
        except table.TableError as e:
            raise argparse.ArgumentTypeError(str(e).split(": ", 1)[-1]) from None
    return typed


def _add_table_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=table.DEFAULT_FOLDER, metavar="DIR",
                   help=f"the table folder (default {table.DEFAULT_FOLDER} under the current folder); run again "
                        "on the same folder to go on")
    p.add_argument("--datasets", type=_typed(lambda t: table.parse_list("--datasets", t, table.DATASETS)),
                   metavar="LIST", help="comma-separated, of mnist, cifar10, svhn (default: all three, or the table's)")
    p.add_argument("--recipes", type=_typed(lambda t: table.parse_list("--recipes", t, recipes.RECIPES)),
                   metavar="LIST", help="theano, torch7: the columns of Table 1 (default: every recipe each "
                                        "program has, or the table's)")
    p.add_argument("--seeds", type=_typed(table.parse_seeds), metavar="N|LIST",
                   help="N seeds (each recipe's own seed and the next N - 1), or a list: 1234,1300 (one seed: 7,); "
                        "default 1, or the table's")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--dry-run", action="store_true",
                      help="print each run's state, folder and command; start nothing, write nothing")
    what.add_argument("--status", action="store_true", help="print each run's state, last epoch and test error")
    p.add_argument("--markdown", action="store_true", help="with --status: a Markdown table")
    p.add_argument("--retry-failed", action="store_true", help="run failed runs again (resuming where they hold "
                                                               "a checkpoint)")
    p.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="local: this machine (default); slurm: one Slurm job per run, through submitit")
    p.add_argument("--jobs", type=_count(1), default=1, metavar="K", help="local: runs at a time (default 1)")
    s = p.add_argument_group("Slurm (--executor slurm)")
    s.add_argument("--partition", help="the partition (default: the cluster's)")
    s.add_argument("--time", type=_count(1), default=24 * 60, metavar="MIN",
                   help="time limit of each job in minutes (default 1440); a job at its limit checkpoints and "
                        "is requeued")
    s.add_argument("--gpus-per-job", type=_count(1), metavar="G", help="GPUs per job (default none)")
    s.add_argument("--cpus-per-job", type=_count(1), metavar="C", help="CPUs per job (default: the cluster's)")
    s.add_argument("--mem-gb", type=_positive, metavar="GB", help="memory per job (default: the cluster's)")
    s.add_argument("--slurm-param", action="append", metavar="KEY=VALUE",
                   help="any other sbatch option, e.g. account=abc or qos=high (repeatable)")
    s.add_argument("--signal-delay", type=_count(10), default=120, metavar="S",
                   help="seconds before the time limit at which a job is told to checkpoint (default 120)")
    s.add_argument("--max-requeues", type=_count(0), default=1000, metavar="N",
                   help="requeues after a time limit before a job gives up (default 1000)")
    s.add_argument("--wait", action="store_true", help="after submitting, report every change until no job is "
                                                        "queued or running")
    s.add_argument("--poll", type=_positive, default=30.0, metavar="S", help="with --wait: seconds between looks "
                                                                              "(default 30)")


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

    p = sub.add_parser("table", help="the runs of Table 1 x seeds, here or on Slurm, resumable",
                       description="The runs of Table 1 (datasets x recipes) times seeds, each the program's own "
                                   "command in its own folder under one table folder.", allow_abbrev=False,
                       epilog="Any other option is a program option, passed to every run (--epochs 20, "
                              "--train-size 5000, --units 512, --data-dir DIR, --mode JAX, ...).")
    _add_table_args(p)
    p.set_defaults(run=_table)

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
    p = parser()
    args, rest = p.parse_known_args(argv)
    if rest and args.command != "table":
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    args.program_options = rest
    return _run(args, args.run)


def diff_main(argv: list[str] | None = None) -> int:
    """The ``bnn-diff`` console script: ``python -m reproduction diff`` with the same arguments."""
    p = Parser(prog="bnn-diff", description="Our run and benchmark records against the paper.")
    _common(p)
    _add_diff_args(p)
    return _run(p.parse_args(argv), _diff)


if __name__ == "__main__":
    sys.exit(main())
