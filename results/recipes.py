"""The training programs' recipes, splits and options, as the analysis reads them.

Each recipe is written once, at the top of its program (``mnist/__main__.py``, ``cifar10/__main__.py``,
``svhn/__main__.py``); each split's size once, in its data loader. Everything here that needs them
(the diff's "is this the paper's recipe", the model summaries, the step benchmarks, the table of
runs) reads them through this module, by plain imports: the analysis sits above the programs.

Two recipes, one per column of the paper's Table 1 (SOURCES.md §5.1): ``theano``, the values at a
program's top (the Theano scripts, SOURCES.md §2.1), and ``torch7``, those values updated by the
program's module-level dict ``torch7`` (the Torch7 code's settings, SOURCES.md §4), selected by
``python -m <dataset> --recipe torch7``. A program without that dict has the Theano recipe only.
A run record names its recipe in ``hyperparameters["recipe"]`` (absent in older records: theano).
"""
import contextlib
import io

import cifar10.__main__ as cifar10_program
import mnist.__main__ as mnist_program
import svhn.__main__ as svhn_program
from cifar10 import data as cifar10_data
from mnist import data as mnist_data
from reproduction import options
from svhn import data as svhn_data

PROGRAMS = {"mnist": mnist_program, "cifar10": cifar10_program, "svhn": svhn_program}
LOADERS = {"mnist": mnist_data, "cifar10": cifar10_data, "svhn": svhn_data}
#: The recipes, in the order of the paper's columns; the first is the programs' default.
RECIPES = options.RECIPES
#: One example's shape, the input of each program's network.
INPUT_SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32), "svhn": (3, 32, 32)}
#: Recipe values that set how long and on what a run trains, not what it trains: a run that differs
#: from the paper only in these is a short run of the paper's recipe, not a variant.
RUN_LENGTH = ("num_epochs", "seed")


class RecipeError(ValueError):
    """A recipe a program does not have, or options its parser refuses; ``str(e)`` is one line."""


def recipe(dataset: str, name: str = "theano") -> dict:
    """The values a run of ``python -m <dataset> --recipe <name>`` starts from: the values at the
    top of the program, updated by its ``torch7`` dict for the Torch7 recipe."""
    if name not in RECIPES:
        raise RecipeError(f"unknown recipe {name!r} (expected one of {', '.join(RECIPES)})")
    if name not in available(dataset):
        raise RecipeError(f"python -m {dataset} has no {name} recipe (no dict {name!r} in {dataset}/__main__.py)")
    return options.recipes(vars(PROGRAMS[dataset]))[name]


def available(dataset: str) -> list[str]:
    """The recipes ``python -m <dataset>`` has: theano, and torch7 where its dict is there."""
    return [name for name in RECIPES if name == "theano" or isinstance(getattr(PROGRAMS[dataset], name, None), dict)]


def record_recipe(record: dict) -> str:
    """The recipe a run record was trained with (records from before the Torch7 recipe: theano)."""
    return (record.get("hyperparameters") or {}).get("recipe") or "theano"


def parse_options(dataset: str, argv: list[str]):
    """``argv`` parsed and checked by the program's own parser, as ``python -m <dataset> ARGV``
    would at its start (nothing is loaded, compiled or written); the namespace, or a
    ``RecipeError`` with the program's one-line complaint."""
    module = PROGRAMS[dataset]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return module.parse_args(list(argv))
    except SystemExit as e:
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        message = lines[-1].removeprefix("error: ") if lines else f"refused (exit code {e.code})"
        raise RecipeError(f"python -m {dataset}: {message}") from None


def split_sizes(dataset: str) -> dict:
    """{"train": n, "valid": n, "test": n}: the original's splits."""
    return dict(LOADERS[dataset].SPLIT_SIZES)


def test_evaluated(dataset: str, name: str = "theano") -> int:
    """The test images the original code of the recipe evaluated: the Theano code whole batches
    only (SOURCES.md §1.5), so 26,000 of SVHN's 26,032; the Torch7 code every image (partial
    batches allowed, SOURCES.md §4(f))."""
    n = split_sizes(dataset)["test"]
    if name == "torch7":
        return n
    batch = recipe(dataset)["batch_size"]
    return n // batch * batch


def architecture(dataset: str) -> str:
    """The network in the usual notation: the ConvNets' ``architecture``; the MLP's hidden layers
    as ``nFC`` blocks (``4096FC-4096FC-4096FC-10FC``)."""
    r = recipe(dataset)
    if "architecture" in r:
        return r["architecture"]
    return "-".join([f"{r['num_units']}FC"] * r["n_hidden_layers"] + ["10FC"])
