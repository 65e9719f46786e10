"""BinaryNet on CIFAR-10: the paper's binarized ConvNet (PAPER.md §2), as the original ``cifar10.py``.

    python -m cifar10 --data-dir DIR                                    # the paper's run: 500 epochs
    python -m cifar10 --epochs 1 --train-size 500 --valid-size 100 --test-size 100   # a short run
"""
import argparse

import numpy as np

import reproduction  # noqa: F401  (compile-cache and floatX defaults, before PyTensor loads)
from reproduction.binarize import binary_tanh_unit
from reproduction.cli import add_common_arguments, compile_and_train, load, resolve, run_variant_hyperparameters
from reproduction.convnet import build_convnet
from reproduction.updates import lr_decay

# The paper's hyperparameters (the original cifar10.py; PAPER.md §2.1)
batch_size = 50
alpha = 0.1            # batch-norm running-average factor
epsilon = 1e-4         # batch-norm epsilon
activation = binary_tanh_unit
binary = True
stochastic = False
H = 1.0
W_LR_scale = "Glorot"
num_epochs = 500
LR_start = 0.001
LR_fin = 0.0000003
architecture = "128C3-128C3-MP2-256C3-256C3-MP2-512C3-512C3-MP2-1024FC-1024FC-10FC"
# splits: train[0:45000], validation[45000:50000], the 10,000 test images; pixels x*2/255 - 1,
# no whitening, no augmentation (cifar10/data.py)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cifar10", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, dataset="cifar10", num_epochs=num_epochs)
    m = parser.add_argument_group("network and data")
    m.add_argument("--architecture", default=architecture, help=f"the network (paper: {architecture})")
    m.add_argument("--gcn-zca", action="store_true",
                   help="global contrast normalisation + ZCA whitening (not in the code behind 11.40 %%)")
    return resolve(parser.parse_args(argv), "cifar10")


def main(argv=None):
    args = parse_args(argv)
    from cifar10.data import load_cifar10

    splits = load(load_cifar10, args, gcn_zca=args.gcn_zca)
    hyperparameters = {
        "batch_size": batch_size, "alpha": alpha, "epsilon": epsilon, "architecture": args.architecture,
        "num_epochs": args.epochs, "paper_epochs": num_epochs, "activation": "binary_tanh_unit",
        "binary": binary, "H": H, "W_LR_scale": W_LR_scale, "LR_start": LR_start, "LR_fin": LR_fin,
        "LR_decay": lr_decay(LR_start, LR_fin, args.epochs), "gcn_zca": args.gcn_zca,
        **run_variant_hyperparameters(args, splits),
    }
    rng = np.random.RandomState(args.seed)
    layers = build_convnet(args.architecture, rng=rng, activation=activation, alpha=alpha, epsilon=epsilon,
                           shift_bn=args.shift_bn, H=H, binary=binary, stochastic=args.stochastic,
                           W_LR_scale=W_LR_scale)
    compile_and_train(args, "cifar10", layers, splits, hyperparameters, rng)


if __name__ == "__main__":
    main()
