"""What the three training programs share around their options (``reproduction/options.py``): the
run folder, the data, the values the record holds, and the one-line ending of a program that cannot
go on.

Order of work, so that a mistake costs seconds, not an epoch: ``parse`` checks every option (and,
with ``--resume``, the run folder and which options may change); ``run_folder`` creates the run
folder and writes a test file into it; then the data is loaded (``load``, which checks the splits
against the batch size) and the functions compiled. Anything that stops a program on the way ends
in one line on stderr and a non-zero exit (``one_line_errors``); ``--debug`` shows the traceback.
"""
import argparse
import contextlib
import os
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path

from .backend import environment
from .dataset import DataError, Splits
from .files import OutputError, check_writable
from .options import EXIT_USAGE, TORCH7_OPTIMIZER_ONLY, OptionError, holds_run
from .train import Run, TrainingError, folder_bytes

#: Exit codes: a run that could not go on, a closed pipe (128 + SIGPIPE, what a process killed by it
#: returns); a bad option gives EXIT_USAGE, a stop signal 128 + its number (Ctrl-C: 130).
EXIT_FAILED, EXIT_PIPE = 1, 141


class RunFolderError(OSError):
    """A run folder that cannot be used or written; ``str(e)`` is one line naming it."""

    exit_code = EXIT_FAILED

#: What ends a program with its one-line message instead of a traceback, and the exit code of each
#: (an ``exit_code`` attribute of the exception wins). ``OSError`` covers a file that cannot be
#: read or written wherever it is met; ``MemoryError`` a machine too small for the data.
ONE_LINE = {OptionError: EXIT_USAGE, RunFolderError: EXIT_FAILED, DataError: EXIT_FAILED,
            TrainingError: EXIT_FAILED, OSError: EXIT_FAILED, MemoryError: EXIT_FAILED}

# --- the run folder --------------------------------------------------------------------------------

def parameter_bytes(layers) -> int:
    """The bytes of a network's parameters as params.h5 stores them (float32)."""
    from .store import blocks

    return sum(4 * v.get_value(borrow=True).size for block in blocks(layers) for v in block.values())


def disk_needed(layers, npz: bool = False) -> int:
    """What a run may write into its folder, estimated before compiling from the size P of its
    parameters: a checkpoint holds the parameters and the optimizer's two moments, about 3 P
    (``train.folder_bytes``; the training loop checks again with the exact sizes)."""
    p = parameter_bytes(layers)
    return folder_bytes(3 * p, p, npz)


def _missing_folders(folder: Path) -> list:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    for f in (folder, *folder.parents):
        if f.exists():
            break
        missing.append(f)
    return missing


def _default_folder(dataset: str) -> Path:
    """A new folder results/runs/<dataset>-<time>[-k] under the current folder, created here: ``mkdir``
    fails when the name exists, so two runs started in the same second (even by two processes) take
    different folders."""
    parent = Path("results") / "runs"
    stem = f"{dataset}-{datetime.now():%Y%m%d-%H%M%S}"
    parent.mkdir(parents=True, exist_ok=True)
    for k in range(1, 1000):
        folder = parent / (stem if k == 1 else f"{stem}-{k}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise RunFolderError(f"{parent}: cannot find a free name {stem}-<k>")


@contextlib.contextmanager
def run_folder(args: argparse.Namespace, need_bytes: int = 0):
    """The run folder, created (a new one unless resuming) and write-tested before the data is
    loaded; sets ``args.out``. When the program stops before anything was written into a folder it
    created, the folder is removed again, so a failed start leaves nothing behind."""
    created = []
    try:
        if args.resume:
            folder = Path(args.resume)
        elif args.out is None:
            created = _missing_folders(Path("results") / "runs")
            folder = _default_folder(args.dataset)
            created.insert(0, folder)
        else:
            folder = Path(args.out)
            created = _missing_folders(folder)
            folder.mkdir(parents=True, exist_ok=True)
            if not created and holds_run(folder):  # another process took it since the options were checked
                raise RunFolderError(f"--out {folder} holds a run already; continue it with --resume {folder}")
    except RunFolderError:
        raise
    except OSError as e:
        raise RunFolderError(f"{args.out or 'results/runs'}: cannot create the run folder "
                             f"({e.strerror or e})") from None
    args.out = str(folder)
    # What a resumed run writes replaces files already there.
    have = sum(p.stat().st_size for p in folder.iterdir() if p.suffix in (".h5", ".npz") and p.is_file())
    try:
        try:
            check_writable(folder, max(0, need_bytes - have))
        except OutputError as e:
            raise RunFolderError(str(e)) from None
        yield folder
    except BaseException:
        for f in created:
            try:
                f.rmdir()   # only when empty: a run that wrote something keeps it
            except OSError:
                break
        raise


# --- data, records, the ending -----------------------------------------------------------------------

def subsets(splits: Splits, args) -> Splits:
    """The first ``--train-size`` / ``--valid-size`` / ``--test-size`` examples of each split."""
    return Splits(splits.train.subset(args.train_size), splits.valid.subset(args.valid_size),
                  splits.test.subset(args.test_size))


def load(load_data, args) -> Splits:
    """A program's ``load_data(args)``, cut to the sizes asked for; every split must hold one batch
    (the loop evaluates whole batches only). A missing or bad file is a ``DataError``."""
    splits = subsets(load_data(args), args)
    for name, option, split in (("training", "train_size", splits.train), ("validation", "valid_size", splits.valid),
                                ("test", "test_size", splits.test)):
        if len(split) < args.batch_size:
            raise DataError(f"the {args.dataset} {name} split has {len(split)} images, fewer than one batch "
                            f"of {args.batch_size} (a data folder with fewer images than the official files?)")
    return splits


def hyperparameters(args, recipe_values: dict, splits: Splits, **derived) -> dict:
    """What the record says the run used: every recipe value as this run has it, the values derived
    from them (``LR_decay``), the sizes of the splits and the back end."""
    return {"recipe": args.recipe, **{name: getattr(args, name) for name in recipe_values}, **derived,
            "train_size": len(splits.train), "valid_size": len(splits.valid), "test_size": len(splits.test),
            "mode": args.mode}


def lr_vector_options(args) -> dict:
    """The options of the Torch7 code's optimizer (``functions.lr_vector``) in this run's recipe."""
    return {name: getattr(args, name) for name in TORCH7_OPTIMIZER_ONLY if hasattr(args, name)}


def loop_options(args) -> dict:
    """The training loop's options in this run's recipe (``train.train``: the Torch7 loop's)."""
    return {name: getattr(args, name) for name in ("select_best", "LR_halve_every", "partial_batches")
            if hasattr(args, name)}


def make_run(args, dataset, hyperparameters, *, save_npz=False) -> Run:
    options = {k: v for k, v in vars(args).items() if k not in ("resume", "debug", "dataset")}
    env = environment(args.mode)
    env["command"] = " ".join(["python -m", dataset, *sys.argv[1:]])
    return Run(Path(args.out), dataset, hyperparameters, env, options, save_npz)


def progress_flag(args):
    return {"auto": None, "bar": True, "lines": False}[args.progress]


def _line(e: BaseException) -> str:
    """An exception's message: one line (and any indented detail lines it has); an OSError names its file."""
    if isinstance(e, OSError) and not isinstance(e, RunFolderError) and e.filename is not None:
        text = f"{e.filename}: {e.strerror or e}"
    else:
        text = str(e) or type(e).__name__
    if isinstance(e, MemoryError):
        text = f"out of memory{': ' + text if str(e) else ''}"
    # Details a message puts on lines of their own stay there, indented under the first.
    return "\n  ".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


class Terminated(KeyboardInterrupt):
    """SIGTERM (what a scheduler or ``kill`` sends) outside the training loop, which has its own
    handlers: ends the program as Ctrl-C does, with the signal's exit code."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _terminate(signum, frame):
    raise Terminated(signum)


@contextlib.contextmanager
def one_line_errors(args=None, known=tuple(ONE_LINE), interrupted=None, code=None, sigterm=False):
    """End the program with one line on stderr and a non-zero exit, not a traceback, when it stops
    for a known reason (``known``; exit code ``code``, else the exception's ``exit_code``, else its
    entry in ``ONE_LINE``); on Ctrl-C, and with ``sigterm`` on SIGTERM too (128 + the signal, with
    the line ``interrupted``: a training program's says whether anything was trained); and,
    quietly, when the reader of its output went away (``| head``: 141). ``args.debug`` re-raises
    instead."""
    debug = bool(getattr(args, "debug", False))
    previous = None
    if sigterm and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    except BrokenPipeError:
        with contextlib.suppress(OSError):   # nothing more can reach the pipe: stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(EXIT_PIPE) from None
    except KeyboardInterrupt as e:
        if debug:
            raise
        signum = getattr(e, "signum", signal.SIGINT)
        line = interrupted or _interrupted(args)
        if signum != signal.SIGINT:
            line = line.replace("interrupted", f"stopped by {signal.Signals(signum).name}", 1)
        print(f"error: {line}", file=sys.stderr, flush=True)
        raise SystemExit(128 + signum) from None
    except known as e:
        if debug:
            raise
        exit_code = code or getattr(e, "exit_code", None) or next(
            (c for t, c in ONE_LINE.items() if isinstance(e, t)), EXIT_FAILED)
        print(f"error: {_line(e)}", file=sys.stderr, flush=True)
        raise SystemExit(exit_code) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupted(args) -> str:
    out = getattr(args, "out", None)
    if out and (Path(out) / "record.json").exists():
        return f"interrupted; continue with: python -m {args.dataset} --resume {out}"
    return "interrupted before training started; nothing was trained"
