"""The options of a training program, made from the recipes at its top, and their checks.

A program's recipe is the plain values at its top (numbers, strings, booleans), the hyperparameters
of the original script (SOURCES.md §2.1). ``parser`` gives every recipe name an option whose
default is the top's value, so an override from the command line is assigned onto the same name:
``python -m mnist --epochs 10`` sets ``num_epochs``, ``--LR_start 0.01`` sets ``LR_start``. The
namespace ``parse`` returns holds the recipe as this run uses it, and the run record is built from it.
Editing a value at a program's top changes the run, as in the original scripts.

Two recipes. The values at a program's top are the Theano code's, the paper's "BNN (Theano)" column;
a module-level dict ``torch7`` beside them holds the values the Torch7 code differs in, the "BNN
(Torch7)" column (SOURCES.md §4). ``--recipe torch7`` makes ``{**top values, **torch7}`` the
options' defaults (``recipes``, ``preset``); options given beside it override them, and the record
names the recipe (``hyperparameters["recipe"]``). Every name the Torch7 recipe uses is also a top
value, with the Theano code's value, so every name is an option in both.

Every option is checked before any work (``parse``): a bad one ends the program in one line naming
it (:class:`OptionError`).

Resuming (``--resume DIR``) takes the options the run was started with from its record. Options given
beside it either apply or are refused with one line naming the option:

- ``--progress``, ``--data-dir``, ``--no-download``, ``--debug`` apply (they change neither the
  numbers nor the files of the run; the data is checked against its checksums wherever it is);
- ``--epochs N`` applies when N is at least the number of epochs already trained: the run continues
  to epoch N. The learning-rate schedule stays the one the run started with: its ``LR_decay`` was
  fixed from the first ``--epochs`` (``schedule_epochs`` in the record's options), so epochs past
  that count keep decaying by the same factor, below ``LR_fin``. (Changing the decay mid-run would
  make the record's single ``LR_decay`` untrue; for the paper's schedule over N epochs, start a new
  run with ``--epochs N``.)
- every other option (a recipe value, ``--train-size``, ``--mode``, ...) is refused when it differs
  from the run's: a checkpoint continues only the network, data and back end it was written by (the
  back ends keep different random-generator states), and a run is one recipe.

"""
import argparse
import importlib.util
import json
import math
import re
from pathlib import Path

from .backend import MODES, default_mode

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
    "pool_ties": "max-pool gradient at tied maxima: to the first maximal element (cuDNN) or to all (Theano CPU)",
    "stochastic_neurons": "stochastic binarized neurons in training, sign(hard_sigmoid(x) - U[0,1)) (Torch7)",
    "batch_norm": "lasagne (binary_net.py's) or torch7 (BatchNormalizationShiftPow2 with --shift-bn; Torch's "
                  "nn.BatchNormalization at the output)",
    "init": "lasagne (W ~ U(-H, H), b = 0) or torch7 (Torch's resets)",
    "b_LR_scale": "the biases' learning-rate scale with adamax_binary_clip_shift: W (their layer's) or a number",
    "gamma_LR_scale": "batch-norm gamma's learning-rate scale with adamax_binary_clip_shift: Glorot "
                      "(1/sqrt(1.5/n)) or a number",
    "clip_all": "clip every parameter to [-1, 1], not only the binary weights (adamax_binary_clip_shift)",
    "LR_halve_every": "halve the learning rate after every N epochs (Torch7); 0: the exponential decay to LR_fin",
    "select_best": "report the test error at the best validation epoch (Theano); else at the last epoch (Torch7)",
    "partial_batches": "train and evaluate the last, shorter batch too (Torch7), instead of dropping it",
    "preprocessing": "the data preparation: pixels (x*2/255 - 1), or the Torch7 code's (standardize, zca, gcn_lcn)",
}
#: The short option of a recipe name, where the README's commands use one; the others are --<name>.
SHORT = {"num_epochs": "--epochs", "num_units": "--units", "n_hidden_layers": "--hidden-layers",
         "gcn_zca": "--gcn-zca", "shift_bn": "--shift-bn"}
#: The options of the run whose names have dashes.
RUN_FLAGS = {"train_size": "--train-size", "valid_size": "--valid-size", "test_size": "--test-size",
             "data_dir": "--data-dir", "no_download": "--no-download"}
CHOICES = {"optimizer": ("adam", "shift_adamax", "adamax_binary_clip_shift"),
           "activation": ("binary_tanh_unit", "binarized_neurons"), "pool_ties": ("first", "all"),
           "batch_norm": ("lasagne", "torch7"), "init": ("lasagne", "torch7"),
           "preprocessing": ("pixels", "standardize", "zca", "gcn_lcn")}
#: The data preparations each program has: the Theano code's pixels, and the Torch7 code's
#: (SOURCES.md §4(g)).
PREPROCESSING = {"mnist": ("pixels", "standardize"), "cifar10": ("pixels", "zca"), "svhn": ("pixels", "gcn_lcn")}
#: The recipes a program has: the values at its top ("theano") and those with its ``torch7`` dict.
RECIPES = ("theano", "torch7")
#: Options that only the Torch7 code's optimizer reads, with the value that means "not used".
TORCH7_OPTIMIZER_ONLY = {"b_LR_scale": "1", "gamma_LR_scale": "1", "clip_all": False}
#: Options that apply to a resumed run (see the module docstring); ``num_epochs`` has its own rule.
APPLY_ON_RESUME = ("progress", "data_dir", "no_download", "debug")#: A bad option: argparse's own exit code.
EXIT_USAGE = 2


class OptionError(ValueError):
    """An option that cannot be used; ``str(e)`` is one line naming it."""

    exit_code = EXIT_USAGE


def recipe(namespace: dict) -> dict:
    """The recipe of a program: its public top-level names bound to numbers, strings or booleans
    (pass ``globals()`` or ``vars(module)``)."""
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and isinstance(v, (bool, int, float, str))}


def recipes(namespace: dict) -> dict:
    """Both recipes of a program: {"theano": its top values, "torch7": them updated with its
    ``torch7`` dict}. A name in ``torch7`` that is not a top value is a mistake in the program."""
    theano = recipe(namespace)
    torch7 = namespace.get("torch7", {})
    unknown = sorted(set(torch7) - set(theano))
    if unknown:
        raise KeyError(f"torch7 recipe names without a top value: {', '.join(unknown)}")
    return {"theano": theano, "torch7": {**theano, **torch7}}


def preset(argv, all_recipes: dict) -> dict:
    """The recipe ``--recipe`` chooses on the command line ``argv`` (default: theano); a bad name is
    left to the full parser, which refuses it in one line."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--recipe", default="theano")
    known, _ = pre.parse_known_args(argv)
    return all_recipes.get(known.recipe, all_recipes["theano"])


def flag(name: str) -> str:
    """The option that sets ``name``: ``num_epochs`` -> ``--epochs``, ``train_size`` -> ``--train-size``."""
    return SHORT.get(name) or RUN_FLAGS.get(name) or f"--{name}"


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line: ``error: ...`` (no usage block; ``--help`` has it)."""

    def error(self, message):
        line = f"error: {message}"
        if len(line) > 100 and " (choose from " in line:   # the choices are in --help
            line = line[:line.index(" (choose from ")]
        hint = f" (see {self.prog} --help)"
        self.exit(EXIT_USAGE, line + (hint if len(line + hint) <= 100 else "") + "\n")


def parser(prog: str, doc: str, dataset: str, recipe_values: dict) -> Parser:
    """The options of a training program: the run (data, run folder, back end) and one per recipe
    value, its default the program's value."""
    p = Parser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("run")
    g.add_argument("--train-size", type=int, default=None, metavar="N",
                   help="use only the first N training images (default: the whole training split)")
    g.add_argument("--valid-size", type=int, default=None, metavar="N",
                   help="use only the first N validation images (default: all; at least one batch)")
    g.add_argument("--test-size", type=int, default=None, metavar="N",
                   help="use only the first N test images (default: all; at least one batch)")
    g.add_argument("--data-dir", default=None, metavar="DIR",
                   help=f"folder with the official {dataset} files (default: ${dataset.upper()}_DATA_DIR, "
                        f"then ~/.cache/binarynet/data/{dataset}; downloaded there when missing)")
    g.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    g.add_argument("--out", default=None, metavar="DIR",
                   help=f"a new run folder for record.json, params.h5, checkpoint.h5 (default: "
                        f"results/runs/{dataset}-<time> under the current folder); never an existing run's")
    g.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the run in DIR from its last checkpoint, with the options it was started "
                        "with; --epochs N extends it (same learning-rate decay), --progress, --data-dir apply")
    g.add_argument("--mode", choices=MODES, default=None,
                   help=f"PyTensor back end (default: the fastest installed, here {default_mode()})")
    g.add_argument("--progress", choices=("auto", "bar", "lines"), default="auto",
                   help="a progress bar (auto: on a terminal) or plain lines")
    g.add_argument("--debug", action="store_true", help="show the traceback when the program stops on an error")
    g.add_argument("--recipe", choices=RECIPES, default="theano",
                   help="the paper's column whose code to follow: theano (the values at the top of the program) or "
                        "torch7 (those with its torch7 dict); options given beside it override its values")
    r = p.add_argument_group("the recipe (default: the paper's, the values at the top of the program)")
    for name, value in recipe_values.items():
        meaning = MEANING.get(name, name)
        if isinstance(value, bool):
            r.add_argument(flag(name), dest=name, action=argparse.BooleanOptionalAction,
                           help=f"{meaning} (paper: {'yes' if value else 'no'})")
        else:
            metavar = None if name in CHOICES else {int: "N", float: "X"}.get(type(value), "VALUE")
            r.add_argument(flag(name), dest=name, type=type(value), choices=CHOICES.get(name), metavar=metavar,
                           help=f"{meaning} (paper: {value})")
    if "optimizer" in recipe_values:
        r.add_argument("--shift-adamax", dest="optimizer", action="store_const", const="shift_adamax",
                       help="shift-based AdaMax instead of Adam (Algorithm 3): --optimizer shift_adamax")
    p.set_defaults(**recipe_values)
    return p


def parse(p: argparse.ArgumentParser, argv, dataset: str, recipe_values: dict) -> argparse.Namespace:
    """The options of this run: parsed, checked, and with ``--resume`` merged with the run's own.
    A bad option ends the program with one line (exit code 2)."""
    args = p.parse_args(argv)
    args.dataset = dataset
    try:
        given = given_options(p, argv, vars(args))
        if args.resume:
            args = resume_options(args, given, dataset)
        check(args, recipe_values)
        return resolve(args, dataset)
    except OptionError as e:
        p.exit(getattr(e, "exit_code", EXIT_USAGE), f"error: {e}\n")


def given_options(p: argparse.ArgumentParser, argv, names) -> set:
    """The destinations the command line sets, told apart from defaults: argparse leaves an
    attribute the namespace already has alone unless an option sets it, so parsing again onto a
    namespace of markers shows which were set (``--no-dropout`` sets two)."""
    unset = object()
    namespace = argparse.Namespace(**{name: unset for name in names})
    p.parse_args(argv, namespace)
    return {name for name in names if getattr(namespace, name) is not unset}


def resume_options(args: argparse.Namespace, given: set, dataset: str) -> argparse.Namespace:
    """The options of the run in ``args.resume``, with those given now that apply (module docstring)."""
    folder = Path(args.resume)
    record = read_run_record(folder, "--resume")
    if record.get("dataset") != dataset:
        raise OptionError(f"--resume {folder}: a {record.get('dataset')} run; resume it with "
                          f"python -m {record.get('dataset')} --resume {folder}")
    saved = record.get("options")
    if not isinstance(saved, dict):
        raise OptionError(f"--resume {folder}: its record.json has no options to resume with")
    done = max((row.get("epoch", 0) for row in record.get("epochs") or [] if isinstance(row, dict)), default=0)
    merged = {**vars(args), **saved, "resume": str(folder), "out": str(folder)}
    merged.setdefault("schedule_epochs", saved.get("num_epochs"))
    for name in sorted(given - {"resume"}):
        now, then = getattr(args, name), saved.get(name, getattr(args, name))
        if name in APPLY_ON_RESUME:
            merged[name] = now
        elif name == "num_epochs":
            if now < done:
                raise OptionError(f"--epochs {now}: this run has trained {done} epoch{'s' * (done != 1)} already")
            merged[name] = now
        elif name == "out":
            if Path(now).resolve() != folder.resolve():
                raise OptionError(f"--out {now} with --resume {folder}: a resumed run writes into its own folder")
        elif name == "mode" and now != then:
            raise OptionError(f"--mode {now}: this run trains on {then}; a checkpoint resumes only on the back "
                              "end that wrote it")
        elif now != then:
            raise OptionError(f"{flag(name)} {now}: this run was started with {then}, and a resumed run keeps "
                              "its options")
    return argparse.Namespace(**merged)


def read_run_record(folder: Path, option: str) -> dict:
    """The record.json of the run folder ``folder``; an ``option`` error when there is none."""
    if not folder.exists():
        raise OptionError(f"{option} {folder}: no such folder")
    if not folder.is_dir():
        raise OptionError(f"{option} {folder}: not a folder (a run folder: results/runs/<run>)")
    path = folder / "record.json"
    if not path.exists():
        raise OptionError(f"{option} {folder}: not a run folder (no record.json)")
    try:
        record = json.loads(path.read_bytes())
    except OSError as e:
        raise OptionError(f"{path}: cannot read ({e.strerror or e})") from None
    except ValueError as e:
        raise OptionError(f"{path}: not valid JSON ({json_problem(e)})") from None
    if not isinstance(record, dict):
        raise OptionError(f"{path}: not a run record")
    return record


def json_problem(e: ValueError) -> str:
    """A JSON decoding error in few words: ``Expecting value: line 1 column 2``."""
    if isinstance(e, json.JSONDecodeError):
        return f"{e.msg}: line {e.lineno} column {e.colno}"
    return " ".join(str(e).split())[:60]


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds a run: a record or a checkpoint."""
    return any((Path(folder) / name).exists() for name in ("record.json", "checkpoint.h5", "checkpoint.prev.h5"))


# --- the checks ------------------------------------------------------------------------------------

def _whole(minimum):
    def check(v):
        if v < minimum:
            return f"must be at least {minimum}"
    return check


def _real(low, high=math.inf, low_open=True, high_open=False):
    """A finite number in an interval, e.g. (0, 1]."""
    def check(v):
        inside = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
        if not math.isfinite(v) or not inside:
            if high == math.inf:
                return "must be a number above 0" if low == 0 and low_open else f"must be at least {low}"
            return f"must be in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    return check


def _number_above_zero(v, word):
    try:
        x = float(v)
    except ValueError:
        return f"must be {word} or a number above 0"
    if not (math.isfinite(x) and x > 0):
        return f"must be {word} or a number above 0"


def _lr_scale(v):
    return None if v in ("Glorot", "Glorot_pow2") else _number_above_zero(v, "Glorot, Glorot_pow2")


def _seed(v):
    if not 0 <= v < 2 ** 32:
        return "must be in 0 .. 2**32 - 1 (numpy's seeds)"


#: The check of each recipe value a program may have: a message when the value is bad.
CHECKS = {
    "num_epochs": _whole(1), "batch_size": _whole(1), "num_units": _whole(1), "n_hidden_layers": _whole(0),
    "dropout_in": _real(0, 1, low_open=False, high_open=True),
    "dropout_hidden": _real(0, 1, low_open=False, high_open=True),
    "alpha": _real(0, 1), "epsilon": _real(0), "LR_start": _real(0), "LR_fin": _real(0), "H": _real(0),
    "W_LR_scale": _lr_scale, "seed": _seed, "LR_halve_every": _whole(0),
    "b_LR_scale": lambda v: None if v == "W" else _number_above_zero(v, "W"),
    "gamma_LR_scale": lambda v: None if v == "Glorot" else _number_above_zero(v, "Glorot"),
}


def check_architecture(spec: str, in_channels: int = 3, image_size: int = 32, classes: int = 10) -> None:
    """A ConvNet in the usual notation that this code can build: ``nC3``, ``MP2`` after a
    convolution, ``nFC``, n >= 1, convolutions before dense layers, at most as many poolings as
    halve ``image_size`` to 1, and ``classes`` units at the end (the squared hinge loss's outputs)."""
    from .convnet import parse as parse_architecture   # convnet.py imports this module

    tokens = spec.split("-")
    for token in tokens:
        m = re.fullmatch(r"(\d+)(C3|FC)|MP2", token)
        if not m:
            raise OptionError(f"--architecture {spec}: unknown layer {token!r} (expected nC3, MP2 or nFC)")
        if m.group(1) is not None and int(m.group(1)) < 1:
            raise OptionError(f"--architecture {spec}: {token} has no units")
    try:
        blocks = parse_architecture(spec)
    except ValueError as e:
        raise OptionError(f"--architecture {spec}: {str(e).split(': ', 1)[-1]}") from None
    kinds = [kind for kind, _, _ in blocks]
    if "dense" in kinds and "conv" in kinds[kinds.index("dense"):]:
        raise OptionError(f"--architecture {spec}: a convolution after a dense layer")
    pools = sum(pooled for _, _, pooled in blocks)
    if image_size >> pools < 1:
        raise OptionError(f"--architecture {spec}: {pools} poolings shrink {image_size}x{image_size} images to nothing")
    if blocks[-1][:2] != ("dense", classes):
        raise OptionError(f"--architecture {spec}: must end with {classes}FC (one output per class)")


def mode_problem(mode: str):
    """Why the back end ``mode`` cannot run here, or None."""
    if mode == "JAX" and importlib.util.find_spec("jax") is None:
        return 'jax is not installed (pip install ".[jax]")'
    if mode == "NUMBA" and importlib.util.find_spec("numba") is None:
        return "numba is not installed (pip install numba)"
    if mode == "CVM":
        import pytensor

        if not pytensor.config.cxx:
            return "PyTensor finds no C++ compiler (install g++, or set PYTENSOR_FLAGS=cxx=...)"
    return None


def check(args: argparse.Namespace, recipe_values: dict) -> None:
    """Every option of this run, before any work: an ``OptionError`` naming the first bad one."""
    for name in recipe_values:
        problem = CHECKS.get(name, lambda v: None)(getattr(args, name))
        if problem:
            raise OptionError(f"{flag(name)} {getattr(args, name)}: {problem}")
    if "architecture" in recipe_values:
        check_architecture(args.architecture)
    check_combinations(args, recipe_values)
    for name, split in (("train_size", "training"), ("valid_size", "validation"), ("test_size", "test")):
        n = getattr(args, name)
        if n is not None and n < args.batch_size:
            why = "must be at least 1" if n < 1 else f"fewer {split} images than one batch ({args.batch_size})"
            raise OptionError(f"{flag(name)} {n}: {why}")
    if args.mode is not None:
        problem = mode_problem(args.mode)
        if problem and args.resume:
            raise OptionError(f"--resume {args.resume}: the run's back end, {args.mode}, cannot run here: {problem}")
        if problem:
            raise OptionError(f"--mode {args.mode}: {problem}")
    if args.data_dir and Path(args.data_dir).expanduser().exists() and not Path(args.data_dir).expanduser().is_dir():
        raise OptionError(f"--data-dir {args.data_dir}: not a folder")
    if args.out is not None and not args.resume:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise OptionError(f"--out {out}: a file, not a folder")
        if out.is_dir() and holds_run(out):
            raise OptionError(f"--out {out} holds a run already; continue it with --resume {out}")


def check_combinations(args: argparse.Namespace, recipe_values: dict) -> None:
    """Recipe values that only mean something together (an ``OptionError`` naming the first that
    does not): the optimizer-only options, stochastic neurons, the data preparations a program has."""
    if getattr(args, "optimizer", None) != "adamax_binary_clip_shift":
        for name, unused in TORCH7_OPTIMIZER_ONLY.items():
            if name in recipe_values and getattr(args, name) != unused:
                raise OptionError(f"{flag(name)} {getattr(args, name)}: only the adamax_binary_clip_shift optimizer "
                                  "reads it (--optimizer adamax_binary_clip_shift)")
    if getattr(args, "stochastic_neurons", False) and getattr(args, "activation", None) != "binarized_neurons":
        raise OptionError("--stochastic_neurons: needs --activation binarized_neurons (the Torch7 code's neurons)")
    if getattr(args, "gcn_zca", False) and getattr(args, "preprocessing", "pixels") != "pixels":
        raise OptionError(f"--gcn-zca with --preprocessing {args.preprocessing}: choose one data preparation")
    dataset_choices = PREPROCESSING.get(getattr(args, "dataset", None) or "", CHOICES["preprocessing"])
    if "preprocessing" in recipe_values and args.preprocessing not in dataset_choices:
        raise OptionError(f"--preprocessing {args.preprocessing}: this program has {', '.join(dataset_choices)}")


def resolve(args: argparse.Namespace, dataset: str) -> argparse.Namespace:
    """The back end (the fastest installed, unless chosen) and the learning-rate schedule's length:
    ``schedule_epochs`` is ``num_epochs`` except for a resumed run that ``--epochs`` extended."""
    if getattr(args, "schedule_epochs", None) is None:
        args.schedule_epochs = args.num_epochs
    if args.mode is None:
        args.mode = default_mode()
        problem = mode_problem(args.mode)
        if problem:
            raise OptionError(f"no PyTensor back end can run here: {problem}")
    args.dataset = dataset
    return args
