"""BinaryNet on MNIST: the paper's 3x4096 binarized MLP (PAPER.md §2), as the original ``mnist.py``.

    python -m mnist --data-dir ../shared/data/mnist          # the paper's run: 1000 epochs
    python -m mnist --epochs 2 --train-size 5000 --units 256 # a short run of the same program
"""
import argparse

import numpy as np

import reproduction  # noqa: F401  (compile-cache and floatX defaults, before PyTensor loads)
from reproduction.binarize import binary_tanh_unit
from reproduction.cli import add_common_arguments, compile_and_train, load, resolve, run_variant_hyperparameters
from reproduction.layers import BatchNorm, DenseLayer, Dropout, Nonlinearity
from reproduction.updates import lr_decay

# The paper's hyperparameters (the original mnist.py; PAPER.md §2.1)
batch_size = 100
alpha = 0.1            # batch-norm running-average factor
epsilon = 1e-4         # batch-norm epsilon
num_units = 4096
n_hidden_layers = 3
num_epochs = 1000
dropout_in = 0.2
dropout_hidden = 0.5
activation = binary_tanh_unit
binary = True
stochastic = False
H = 1.0
W_LR_scale = "Glorot"
LR_start = 0.003
LR_fin = 0.0000003
# splits: train[0:50000], validation[50000:60000], the 10,000 test images (mnist/data.py)


def build_mlp(rng, *, units, hidden_layers, dropout_in, dropout_hidden, stochastic, shift_bn):
    """Dropout(0.2) -> [Dense -> BN -> sign -> Dropout(0.5)] x hidden_layers -> Dense 10 -> BN."""
    binary_kw = dict(rng=rng, H=H, binary=binary, stochastic=stochastic, W_LR_scale=W_LR_scale)
    bn_kw = dict(alpha=alpha, epsilon=epsilon, shift_based=shift_bn)
    layers = [Dropout(dropout_in, rng=rng)]
    n_in = 28 * 28
    for k in range(hidden_layers):
        layers += [DenseLayer(n_in, units, name=f"dense{k}", **binary_kw), BatchNorm(units, name=f"bn{k}", **bn_kw),
                   Nonlinearity(activation), Dropout(dropout_hidden, rng=rng)]
        n_in = units
    layers += [DenseLayer(n_in, 10, name=f"dense{hidden_layers}", **binary_kw),
               BatchNorm(10, name=f"bn{hidden_layers}", **bn_kw)]
    return layers


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mnist", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, dataset="mnist", num_epochs=num_epochs)
    m = parser.add_argument_group("network")
    m.add_argument("--units", type=int, default=num_units, help=f"units per hidden layer (paper: {num_units})")
    m.add_argument("--hidden-layers", type=int, default=n_hidden_layers,
                   help=f"hidden layers (paper: {n_hidden_layers})")
    m.add_argument("--no-dropout", action="store_true", help="train without dropout (the paper uses 0.2 / 0.5)")
    m.add_argument("--no-npz", action="store_true",
                   help="do not export mnist_parameters.npz (the original's layout) at each best epoch")
    return resolve(parser.parse_args(argv), "mnist")


def main(argv=None):
    args = parse_args(argv)
    from mnist.data import load_mnist

    splits = load(load_mnist, args)
    p_in, p_hidden = (0.0, 0.0) if args.no_dropout else (dropout_in, dropout_hidden)
    hyperparameters = {
        "batch_size": batch_size, "alpha": alpha, "epsilon": epsilon, "num_units": args.units,
        "n_hidden_layers": args.hidden_layers, "num_epochs": args.epochs, "paper_epochs": num_epochs,
        "dropout_in": p_in, "dropout_hidden": p_hidden, "activation": "binary_tanh_unit", "binary": binary,
        "H": H, "W_LR_scale": W_LR_scale, "LR_start": LR_start, "LR_fin": LR_fin,
        "LR_decay": lr_decay(LR_start, LR_fin, args.epochs), **run_variant_hyperparameters(args, splits),
    }
    rng = np.random.RandomState(args.seed)
    layers = build_mlp(rng, units=args.units, hidden_layers=args.hidden_layers, dropout_in=p_in,
                       dropout_hidden=p_hidden, stochastic=args.stochastic, shift_bn=args.shift_bn)
    compile_and_train(args, "mnist", layers, splits, hyperparameters, rng, save_npz=not args.no_npz)


if __name__ == "__main__":
    main()
