"""The command-line options the three training programs share, and what they do with them."""
import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

from .backend import MODES, default_mode, environment
from .train import Run


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
