"""The command-line options the three training programs share, and what they do with them."""
import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

from .backend import MODES, default_mode, environment
from .dataset import Splits
from .download import DataError
from .train import Run, TrainingDiverged, train
from .updates import lr_decay


def add_common_arguments(parser: argparse.ArgumentParser, *, dataset: str, num_epochs: int) -> None:
    g = parser.add_argument_group("run")
    g.add_argument("--epochs", type=int, default=num_epochs, metavar="N",
                   help=f"epochs to train; the learning-rate schedule is compressed to fit (paper: {num_epochs})")
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
    g.add_argument("--seed", type=int, default=1234, help="numpy seed for initialisation and shuffling (paper: 1234)")
    g.add_argument("--progress", choices=("auto", "bar", "lines"), default="auto",
                   help="a progress bar (auto: on a terminal) or plain lines")
    v = parser.add_argument_group("variants (off in the paper's Theano experiments)")
    v.add_argument("--stochastic", action="store_true",
                   help="stochastic weight binarization during training (Eq. 2)")
    v.add_argument("--shift-bn", action="store_true", help="shift-based batch norm (Algorithm 2)")
    v.add_argument("--shift-adamax", action="store_true", help="shift-based AdaMax instead of Adam (Algorithm 3)")


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


def make_run(args, dataset, hyperparameters, *, save_npz=False) -> Run:
    options = {k: v for k, v in vars(args).items() if k != "resume"}
    env = environment(args.mode)
    env["command"] = " ".join(["python -m", dataset, *sys.argv[1:]])
    return Run(Path(args.out), dataset, hyperparameters, env, options, save_npz)


def progress_flag(args):
    return {"auto": None, "bar": True, "lines": False}[args.progress]


def subsets(splits: Splits, args) -> Splits:
    """The first ``--train-size`` / ``--valid-size`` / ``--test-size`` examples of each split."""
    return Splits(splits.train.subset(args.train_size), splits.valid.subset(args.valid_size),
                  splits.test.subset(args.test_size))


def load(loader, args, **kw) -> Splits:
    """Call a dataset loader; a missing or bad file ends the program with its one-line message."""
    try:
        return subsets(loader(args.data_dir, download=not args.no_download, **kw), args)
    except DataError as e:
        sys.exit(str(e))


def run_variant_hyperparameters(args, splits: Splits) -> dict:
    """The hyperparameters every program records beside its own."""
    return {"stochastic": args.stochastic, "shift_bn": args.shift_bn,
            "optimizer": "shift_adamax" if args.shift_adamax else "adam", "seed": args.seed,
            "train_size": len(splits.train), "valid_size": len(splits.valid), "test_size": len(splits.test),
            "mode": args.mode}


def compile_and_train(args, dataset, layers, splits, hyperparameters, rng, *, save_npz=False):
    """Compile the network's functions, then run the original's training loop; the record's path
    is printed at the end. A diverging run ends the program with its message."""
    from .functions import compile_functions

    print(f"Compiling the training and validation functions ({args.mode})...", flush=True)
    functions = compile_functions(layers, splits.train.X.shape[1:], optimizer=hyperparameters["optimizer"], mode=args.mode)
    run = make_run(args, dataset, hyperparameters, save_npz=save_npz)
    try:
        train(functions, layers, splits, run, rng=rng, num_epochs=hyperparameters["num_epochs"],
              batch_size=hyperparameters["batch_size"], LR_start=hyperparameters["LR_start"],
              LR_decay=lr_decay(hyperparameters["LR_start"], hyperparameters["LR_fin"],
                                hyperparameters["num_epochs"]),
              resume=bool(args.resume), progress=progress_flag(args))
    except TrainingDiverged as e:
        sys.exit(str(e))
    print(f"Run record: {run.record_path}")
    return run
