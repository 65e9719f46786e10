"""What the three training programs share: options made from the recipe at a program's top, the run
folder, the data, and the one-line ending of a failed run.

A program's recipe is the plain values at its top (numbers, strings, booleans), the hyperparameters
of the original script (SOURCES.md §2.1). ``parse_args`` gives every recipe name an option whose
default is the top's value, so an override from the command line is assigned onto the same name:
``python -m mnist --epochs 10`` sets ``num_epochs``, ``--LR_start 0.01`` sets ``LR_start``. The
namespace that comes back holds the recipe as this run uses it, and the run record is built from it.
Editing a value at a program's top changes the run, as in the original scripts.
"""
import argparse
import contextlib
import json
import sys
from datetime import datetime
from pathlib import Path

from .backend import MODES, default_mode, environment
from .dataset import DataError, Splits
from .train import Run, TrainingDiverged

#: What each recipe name means, for --help. A name without an entry is still an option.
MEANING = {
    "batch_size": "examples per batch",
    "alpha": "batch-norm running-average factor",
    "epsilon": "batch-norm epsilon",
    "num_units": "units per hidden layer",
    "n_hidden_layers": "hidden layers",
    "num_epochs": "epochs to train; the learning-rate schedule is compressed to fit",
    "dropout_in": "dropout probability of the input",
    "dropout_hidden": "dropout probability after each hidden layer",
    "activation": "the hidden units' nonlinearity (a function of reproduction.binarize)",
    "binary": "binarize the weights",
    "stochastic": "stochastic weight binarization during training (Eq. 2)",
    "H": "the binary weights' magnitude; latent weights are clipped to [-H, H]",
    "W_LR_scale": "the binary weights' learning-rate scale: Glorot, or a number",
    "LR_start": "learning rate of the first epoch",
    "LR_fin": "learning rate the exponential decay reaches after the last epoch",
    "architecture": "the network, in the usual notation",
    "gcn_zca": "global contrast normalisation + ZCA whitening (not in the code behind 11.40 %%)",
    "shift_bn": "shift-based batch norm (Algorithm 2)",
    "optimizer": "adam, or shift_adamax (Algorithm 3)",
    "seed": "numpy seed for initialisation and shuffling",
}
#: The short option of a recipe name, where the README's commands use one; the others are --<name>.
SHORT = {"num_epochs": "--epochs", "num_units": "--units", "n_hidden_layers": "--hidden-layers",
         "gcn_zca": "--gcn-zca", "shift_bn": "--shift-bn"}
CHOICES = {"optimizer": ("adam", "shift_adamax"), "activation": ("binary_tanh_unit",)}


def recipe(namespace: dict) -> dict:
    """The recipe of a program: its public top-level names bound to numbers, strings or booleans
    (pass ``globals()`` or ``vars(module)``)."""
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and isinstance(v, (bool, int, float, str))}


def parser(prog: str, doc: str, dataset: str, recipe_values: dict) -> argparse.ArgumentParser:
    """The options of a training program: the run (data, run folder, back end) and one per recipe
    value, its default the program's value."""
    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("run")
    g.add_argument("--train-size", type=int, default=None, metavar="N",
                   help="use only the first N training images (default: the whole training split)")
    g.add_argument("--valid-size", type=int, default=None, metavar="N",
                   help="use only the first N validation images (default: all)")
    g.add_argument("--test-size", type=int, default=None, metavar="N",
                   help="use only the first N test images (default: all)")
    g.add_argument("--data-dir", default=None, metavar="DIR",
                   help=f"folder with the official {dataset} files (default: ${dataset.upper()}_DATA_DIR, "
                        f"then ~/.cache/binarynet/data/{dataset}; downloaded there when missing)")
    g.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    g.add_argument("--out", default=None, metavar="DIR",
                   help=f"run folder for record.json, params.h5, checkpoint.h5 (default: results/runs/{dataset}-<time>)")
    g.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the run in DIR from its last checkpoint, with the options it was started with")
    g.add_argument("--mode", choices=MODES, default=None,
                   help=f"PyTensor back end (default: the fastest installed, here {default_mode()})")
    g.add_argument("--progress", choices=("auto", "bar", "lines"), default="auto",
                   help="a progress bar (auto: on a terminal) or plain lines")
    r = p.add_argument_group("the recipe (default: the paper's, the values at the top of the program)")
    for name, value in recipe_values.items():
        flag = SHORT.get(name, f"--{name}")
        meaning = MEANING.get(name, name)
        if isinstance(value, bool):
            r.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                           help=f"{meaning} (paper: {'yes' if value else 'no'})")
        else:
            metavar = None if name in CHOICES else {int: "N", float: "X"}.get(type(value), "VALUE")
            r.add_argument(flag, dest=name, type=type(value), choices=CHOICES.get(name), metavar=metavar,
                           help=f"{meaning} (paper: {value})")
    if "optimizer" in recipe_values:
        r.add_argument("--shift-adamax", dest="optimizer", action="store_const", const="shift_adamax",
                       help="shift-based AdaMax instead of Adam (Algorithm 3): --optimizer shift_adamax")
    p.set_defaults(**recipe_values)
    return p


def resolve(args: argparse.Namespace, dataset: str) -> argparse.Namespace:
    """Apply ``--resume`` (the options come from the run's record) and choose the run folder and mode."""
    if args.resume:
        record_path = Path(args.resume) / "record.json"
        try:
            saved = json.loads(record_path.read_text())["options"]
        except (OSError, ValueError, KeyError) as e:
            sys.exit(f"{record_path}: cannot resume from it ({e})")
        args = argparse.Namespace(**{**saved, "resume": args.resume, "out": args.resume,
                                     "progress": args.progress})
    if args.out is None:
        args.out = str(Path("results") / "runs" / f"{dataset}-{datetime.now():%Y%m%d-%H%M%S}")
    if args.mode is None:
        args.mode = default_mode()
    return args


def subsets(splits: Splits, args) -> Splits:
    """The first ``--train-size`` / ``--valid-size`` / ``--test-size`` examples of each split."""
    return Splits(splits.train.subset(args.train_size), splits.valid.subset(args.valid_size),
                  splits.test.subset(args.test_size))


def load(load_data, args) -> Splits:
    """A program's ``load_data(args)``, cut to the sizes asked for; a missing or bad file ends the
    program with its one-line message."""
    try:
        return subsets(load_data(args), args)
    except DataError as e:
        sys.exit(str(e))


def hyperparameters(args, recipe_values: dict, splits: Splits, **derived) -> dict:
    """What the record says the run used: every recipe value as this run has it, the values derived
    from them (``LR_decay``), the sizes of the splits and the back end."""
    return {**{name: getattr(args, name) for name in recipe_values}, **derived,
            "train_size": len(splits.train), "valid_size": len(splits.valid), "test_size": len(splits.test),
            "mode": args.mode}


def make_run(args, dataset, hyperparameters, *, save_npz=False) -> Run:
    options = {k: v for k, v in vars(args).items() if k != "resume"}
    env = environment(args.mode)
    env["command"] = " ".join(["python -m", dataset, *sys.argv[1:]])
    return Run(Path(args.out), dataset, hyperparameters, env, options, save_npz)


def progress_flag(args):
    return {"auto": None, "bar": True, "lines": False}[args.progress]


@contextlib.contextmanager
def one_line_errors():
    """End the program with one line, not a traceback, when training stops for a known reason."""
    try:
        yield
    except TrainingDiverged as e:
        sys.exit(str(e))
