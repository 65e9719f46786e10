"""The training programs' recipes and splits, as the analysis reads them.

Each recipe is written once, at the top of its program (``mnist/__main__.py``, ``cifar10/__main__.py``,
``svhn/__main__.py``); each split's size once, in its data loader. Everything here that needs them
(the diff's "is this the paper's recipe", the model summaries, the step benchmarks) reads them
through this module, by plain imports: the analysis sits above the programs.
"""
import cifar10.__main__ as cifar10_program
import mnist.__main__ as mnist_program
import svhn.__main__ as svhn_program
from cifar10 import data as cifar10_data
from mnist import data as mnist_data
from reproduction.program import recipe as _recipe
from svhn import data as svhn_data

PROGRAMS = {"mnist": mnist_program, "cifar10": cifar10_program, "svhn": svhn_program}
LOADERS = {"mnist": mnist_data, "cifar10": cifar10_data, "svhn": svhn_data}
#: One example's shape, the input of each program's network.
INPUT_SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32), "svhn": (3, 32, 32)}
#: Recipe values that set how long and on what a run trains, not what it trains: a run that differs
#: from the paper only in these is a short run of the paper's recipe, not a variant.
RUN_LENGTH = ("num_epochs", "seed")


def recipe(dataset: str) -> dict:
    """The values at the top of the dataset's program: the paper's (Theano) recipe."""
    return _recipe(vars(PROGRAMS[dataset]))


def split_sizes(dataset: str) -> dict:
    """{"train": n, "valid": n, "test": n}: the original's splits."""
    return dict(LOADERS[dataset].SPLIT_SIZES)


def test_evaluated(dataset: str) -> int:
    """The test images the original evaluated: whole batches only (SOURCES.md §1.5), so 26,000 of
    SVHN's 26,032."""
    batch = recipe(dataset)["batch_size"]
    return split_sizes(dataset)["test"] // batch * batch


def architecture(dataset: str) -> str:
    """The network in the usual notation: the ConvNets' ``architecture``; the MLP's hidden layers
    as ``nFC`` blocks (``4096FC-4096FC-4096FC-10FC``)."""
    r = recipe(dataset)
    if "architecture" in r:
        return r["architecture"]
    return "-".join([f"{r['num_units']}FC"] * r["n_hidden_layers"] + ["10FC"])
