"""The paper's ConvNets: their usual notation, e.g. ``128C3-128C3-MP2-...-1024FC-1024FC-10FC``
(SOURCES.md §2.2), the layers it stands for, and the program body the CIFAR-10 and SVHN programs
share (the original ``svhn.py`` was ``cifar10.py`` with other constants).

Every block is a binary layer (with its real bias) -> [2x2 max pooling] -> batch norm -> sign; the
last block has no sign, its batch-normalized output is the SVM score. Pooling comes before batch
norm and the sign, as in the original scripts. ``nC3`` is a 3x3 binary convolution with n filters
(pad 1, a true convolution), ``MP2`` 2x2 max pooling, ``nFC`` a binary dense layer of n units.
"""
import numpy as np
import pytensor

from . import binarize, options, program
from .functions import functions, symbolic_inputs, test_outputs, training_updates
from .layers import (BinarizedNeurons, Conv2DLayer, DenseLayer, MaxPool2x2, Nonlinearity, Pass, batch_norm_layer,
                     forward)
from .loss import squared_hinge
from .train import train


def parse(spec: str):
    """``"128C3-MP2-10FC"`` -> [("conv", 128, True), ("dense", 10, False)]: (kind, units, pooled)."""
    blocks = []
    for token in spec.split("-"):
        if token == "MP2":
            if not blocks or blocks[-1][0] != "conv" or blocks[-1][2]:
                raise ValueError(f"{spec!r}: MP2 must follow a convolution")
            blocks[-1] = (blocks[-1][0], blocks[-1][1], True)
        elif token.endswith("C3"):
            blocks.append(("conv", int(token[:-2]), False))
        elif token.endswith("FC"):
            blocks.append(("dense", int(token[:-2]), False))
        else:
            raise ValueError(f"{spec!r}: unknown layer {token!r} (expected nC3, MP2 or nFC)")
    return blocks


def build_convnet(spec, *, rng, activation, in_channels=3, image_size=32, alpha=0.1, epsilon=1e-4,
                  shift_bn=False, pool_ties="first", batch_norm="lasagne", stochastic_neurons=False, **binary_kw):
    """The layers of ``spec``; ``binary_kw`` (H, binary, stochastic, W_LR_scale, init) go to every binary
    layer; ``pool_ties`` is the pooling gradient's rule at tied maxima (``MaxPool2x2``).
    ``activation``: a function (binary_tanh_unit) or "binarized_neurons", the Torch7 models'
    HardTanh -> BinarizedNeurons (stochastic in training with ``stochastic_neurons``); ``batch_norm``:
    "lasagne" or "torch7" (``layers.batch_norm_layer``; the Torch7 models, SOURCES.md §4(a))."""
    layers, channels, size, flat = [], in_channels, image_size, None
    blocks = parse(spec)
    for k, (kind, units, pooled) in enumerate(blocks):
        if kind == "conv":
            layers.append(Conv2DLayer(channels, units, rng=rng, name=f"conv{k}", **binary_kw))
        else:
            n_in = flat if flat is not None else channels * size * size
            layers.append(DenseLayer(n_in, units, rng=rng, name=f"dense{k}", **binary_kw))
            flat = units
        if pooled:
            layers.append(MaxPool2x2(pool_ties))
            size //= 2
        channels = units
        last = k == len(blocks) - 1
        layers.append(batch_norm_layer(batch_norm, units, axes=(0, 2, 3) if kind == "conv" else (0,), alpha=alpha,
                                       epsilon=epsilon, shift_based=shift_bn, output=last, name=f"bn{k}"))
        if not last:
            layers.append(BinarizedNeurons(stochastic_neurons, rng=rng) if activation == "binarized_neurons"
                          else Nonlinearity(activation))
    return layers


def parse_args(dataset: str, doc: str, recipes: dict, argv=None):
    """The options of ``python -m cifar10`` and ``python -m svhn``: the recipe ``--recipe`` chooses
    from their ``options.recipes`` ({"theano": ..., "torch7": ...}), with the command line's
    overrides assigned onto its names, checked."""
    recipe = options.preset(argv, recipes)
    return options.parse(options.parser(f"python -m {dataset}", doc, dataset, recipe), argv, dataset, recipe)


def main(dataset: str, c, recipe: dict, load_data):
    """The program ``python -m cifar10`` and ``python -m svhn`` run: ``c`` is what ``parse_args``
    gave, ``recipe`` one of the program's recipes (for the names the record holds), ``load_data(c)``
    returns the dataset's splits."""
    with program.one_line_errors(c, sigterm=True):
        # schedule_epochs: num_epochs, or on a resume that extends the run, the count it started with
        LR_decay = 1.0 if c.LR_halve_every else (c.LR_fin / c.LR_start) ** (1.0 / c.schedule_epochs)
        rng = np.random.RandomState(c.seed)
        # before the data: nothing else draws from rng, and its size sizes the disk check
        activation = c.activation if c.activation == "binarized_neurons" else getattr(binarize, c.activation)
        cnn = build_convnet(c.architecture, rng=rng, activation=activation, alpha=c.alpha,
                            epsilon=c.epsilon, shift_bn=c.shift_bn, H=c.H, binary=c.binary, stochastic=c.stochastic,
                            W_LR_scale=c.W_LR_scale, pool_ties=c.pool_ties, batch_norm=c.batch_norm,
                            stochastic_neurons=c.stochastic_neurons, init=c.init)
        with program.run_folder(c, program.disk_needed(cnn)):
            splits = program.load(load_data, c)

            print(f"Compiling the training and validation functions ({c.mode})...", flush=True)
            x, t, LR = symbolic_inputs(splits.train.X.shape[1:])
            train_pass = Pass(deterministic=False)
            loss = squared_hinge(forward(cnn, x, train_pass), t)
            updates = training_updates(cnn, loss, train_pass, LR, c.optimizer, **program.lr_vector_options(c))
            train_fn = pytensor.function([x, t, LR], loss, updates=updates, mode=c.mode)
            val_fn = pytensor.function([x, t], test_outputs(cnn, x, t), mode=c.mode)

            run = program.make_run(c, dataset, program.hyperparameters(c, recipe, splits, LR_decay=LR_decay))
            train(functions(train_fn, val_fn, cnn), cnn, splits, run, rng=rng, batch_size=c.batch_size,
                  LR_start=c.LR_start, LR_decay=LR_decay, num_epochs=c.num_epochs, resume=bool(c.resume),
                  progress=program.progress_flag(c), **program.loop_options(c))
        print(f"Run record: {run.record_path}")
