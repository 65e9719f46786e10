"""BinaryNet on SVHN: the paper's binarized ConvNet (PAPER.md §2), as the original ``svhn.py``.

    python -m svhn --data-dir DIR                                    # the paper's run: 200 epochs
    python -m svhn --epochs 1 --train-size 500 --valid-size 100 --test-size 100   # a short run
"""
import argparse

import numpy as np

import reproduction  # noqa: F401  (compile-cache and floatX defaults, before PyTensor loads)
from reproduction.binarize import binary_tanh_unit
from reproduction.cli import add_common_arguments, compile_and_train, load, resolve, run_variant_hyperparameters
from reproduction.convnet import build_convnet
from reproduction.updates import lr_decay

# The paper's hyperparameters (the original svhn.py; PAPER.md §2.1)
batch_size = 50
alpha = 0.1            # batch-norm running-average factor
epsilon = 1e-4         # batch-norm epsilon
activation = binary_tanh_unit
binary = True
stochastic = False
H = 1.0
W_LR_scale = "Glorot"
num_epochs = 200
LR_start = 0.001
LR_fin = 0.000001
architecture = "64C3-64C3-MP2-128C3-128C3-MP2-256C3-256C3-MP2-1024FC-1024FC-10FC"  # CIFAR-10's at half the conv widths
# splits: pylearn2's: training = train + extra less the validation set (598,388 images),
# validation = 400 per class from train + 200 per class from extra (seed 322), test 26,032;
# raw pixels x*2/255 - 1, no GCN/LCN (svhn/data.py). Partial batches are dropped, so the test
# error covers 26,000 images, as in the original.


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m svhn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, dataset="svhn", num_epochs=num_epochs)
    m = parser.add_argument_group("network and data")
    m.add_argument("--architecture", default=architecture, help=f"the network (paper: {architecture})")
    return resolve(parser.parse_args(argv), "svhn")


def main(argv=None):
    args = parse_args(argv)
    from svhn.data import load_svhn

    splits = load(load_svhn, args)
    hyperparameters = {
        "batch_size": batch_size, "alpha": alpha, "epsilon": epsilon, "architecture": args.architecture,
        "num_epochs": args.epochs, "paper_epochs": num_epochs, "activation": "binary_tanh_unit",
        "binary": binary, "H": H, "W_LR_scale": W_LR_scale, "LR_start": LR_start, "LR_fin": LR_fin,
        "LR_decay": lr_decay(LR_start, LR_fin, args.epochs),
        **run_variant_hyperparameters(args, splits),
    }
    rng = np.random.RandomState(args.seed)
    layers = build_convnet(args.architecture, rng=rng, activation=activation, alpha=alpha, epsilon=epsilon,
                           shift_bn=args.shift_bn, H=H, binary=binary, stochastic=args.stochastic,
                           W_LR_scale=W_LR_scale)
    compile_and_train(args, "svhn", layers, splits, hyperparameters, rng)


if __name__ == "__main__":
    main()
