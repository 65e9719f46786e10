"""BinaryNet on MNIST: the paper's 3x4096 binarized MLP, as the original ``mnist.py`` (SOURCES.md §2).

    python -m mnist --data-dir ../shared/data/mnist          # the paper's run: 1000 epochs
    python -m mnist --epochs 2 --train-size 5000 --units 256 # a short run of the same program
    python -m mnist --recipe torch7                          # the Torch7 code's 3x2048 MLP (SOURCES.md §4)

Every value below is an option of the same name (``--LR_start 0.01``; a few have the short names
the README uses: ``--epochs``, ``--units``, ``--hidden-layers``).
"""
import argparse

import reproduction  # noqa: F401,I001  (compile-cache and floatX defaults, before PyTensor loads: first)

import numpy as np
import pytensor

from reproduction import options, program
from reproduction.dataset import standardized
from reproduction.functions import functions, symbolic_inputs, test_outputs, training_updates
from reproduction.layers import DenseLayer, Dropout, Pass, activation_layer, batch_norm_layer, forward
from reproduction.loss import squared_hinge
from reproduction.train import train

from mnist.data import load_mnist

# The recipe: the original mnist.py's hyperparameters (SOURCES.md §2.1)
batch_size = 100
alpha = 0.1            # batch-norm running-average factor
epsilon = 1e-4         # batch-norm epsilon
num_units = 4096
n_hidden_layers = 3
num_epochs = 1000
dropout_in = 0.2
dropout_hidden = 0.5
activation = "binary_tanh_unit"
binary = True
stochastic = False
H = 1.0
W_LR_scale = "Glorot"
LR_start = 0.003
LR_fin = 0.0000003
seed = 1234
# Variants the paper describes but its Theano experiments do not use (Algorithms 2 and 3)
shift_bn = False
optimizer = "adam"
# What the Torch7 code does otherwise (SOURCES.md §4), here with the Theano code's values
stochastic_neurons = False
batch_norm = "lasagne"
init = "lasagne"
b_LR_scale = "1"          # (adamax_binary_clip_shift only)
gamma_LR_scale = "1"      # (adamax_binary_clip_shift only)
clip_all = False          # (adamax_binary_clip_shift only)
LR_halve_every = 0        # 0: the exponential decay LR_start -> LR_fin over num_epochs
select_best = True
partial_batches = False
preprocessing = "pixels"  # x*2/255 - 1 (pylearn2's scaling, mnist/data.py)
# splits: train[0:50000], validation[50000:60000], the 10,000 test images (mnist/data.py)

# The "BNN (Torch7)" column: Main_BinaryNet_MNIST.lua and Models/BinaryNet_MNIST_Model.lua (SOURCES.md §4)
torch7 = {
    "num_units": 2048,                        # §4(a)
    "dropout_in": 0.0, "dropout_hidden": 0.0,  # no dropout (§4(a))
    "activation": "binarized_neurons",        # HardTanh -> BinarizedNeurons (§4(b))
    "stochastic_neurons": True,               # -stcNeurons true (§4(f))
    "batch_norm": "torch7", "shift_bn": True,  # BatchNormalizationShiftPow2; nn.BatchNormalization(10) last (§4(c))
    "alpha": 0.125, "epsilon": 1e-5,          # its momentum and eps (§4(c))
    "init": "torch7",                         # W ~ U(-1, 1), b ~ U(±1/sqrt(fan_in)) (§4(b))
    "optimizer": "adamax_binary_clip_shift",  # §4(d)
    "b_LR_scale": "W", "gamma_LR_scale": "Glorot",  # GLRvec; only the weights clipped (§4(e))
    "LR_start": 2.0 ** -6, "LR_halve_every": 20,    # -LR 2^-6, halved every 20 epochs (§4(f))
    "num_epochs": 120,                        # the Torch7 main runs until stopped (-epoch -1); the
                                              # committed run's test error stops improving near epoch
                                              # 90 (README): 120 = LR halved 5 times, about 70 min here
    "select_best": False,                     # the test error of every epoch, nothing selected (§4(f))
    "partial_batches": True,                  # -constBatchSize false (none here: 100 divides every split)
    "preprocessing": "standardize",           # [0, 1], then the training set's mean and std (§4(g))
    "seed": 432,                              # torch.manualSeed(432); our draws are numpy's, not Torch's
}


def build_mlp(c, rng):
    """Dropout(dropout_in) -> [Dense -> BN -> sign -> Dropout(dropout_hidden)] x n_hidden_layers
    -> Dense 10 -> BN, as mnist.py l.126-170; with the Torch7 recipe's values, the network of
    BinaryNet_MNIST_Model.lua (SOURCES.md §4(a)): the dropouts are identities, the sign is
    HardTanh -> BinarizedNeurons, the batch norms Torch7's."""
    binary_kw = dict(rng=rng, H=c.H, binary=c.binary, stochastic=c.stochastic, W_LR_scale=c.W_LR_scale,
                     init=c.init)
    bn_kw = dict(alpha=c.alpha, epsilon=c.epsilon, shift_based=c.shift_bn)
    layers = [Dropout(c.dropout_in, rng=rng)]
    n_in = 28 * 28
    for k in range(c.n_hidden_layers):
        layers += [DenseLayer(n_in, c.num_units, name=f"dense{k}", **binary_kw),
                   batch_norm_layer(c.batch_norm, c.num_units, name=f"bn{k}", **bn_kw),
                   activation_layer(c.activation, stochastic_neurons=c.stochastic_neurons, rng=rng),
                   Dropout(c.dropout_hidden, rng=rng)]
        n_in = c.num_units
    layers += [DenseLayer(n_in, 10, name=f"dense{c.n_hidden_layers}", **binary_kw),
               batch_norm_layer(c.batch_norm, 10, name=f"bn{c.n_hidden_layers}", output=True, **bn_kw)]
    return layers


def load_data(c):
    """The splits of this run (``c``: the recipe and options as parsed). ``standardize``: the Torch7
    code's preparation, fitted on the training images this run trains on (``--train-size``)."""
    splits = load_mnist(c.data_dir, download=not c.no_download)
    return standardized(program.subsets(splits, c)) if c.preprocessing == "standardize" else splits


def parse_args(argv=None):
    """The recipe (``--recipe``: the values above, or with ``torch7``'s) with the command line's
    overrides assigned onto its names, checked."""
    values = options.preset(argv, options.recipes(globals()))
    p = options.parser("python -m mnist", __doc__, "mnist", values)
    p.add_argument("--no-dropout", action=_NoDropout, nargs=0, help="train without dropout (sets dropout_in and "
                   f"dropout_hidden to 0; the paper uses {dropout_in} / {dropout_hidden})")
    p.add_argument("--no-npz", action="store_true",
                   help="do not export mnist_parameters.npz (the original's layout) at each best epoch")
    return options.parse(p, argv, "mnist", values)


def main(argv=None):
    c = parse_args(argv)
    with program.one_line_errors(c, sigterm=True):
        # schedule_epochs: num_epochs, or on a resume that extends the run, the count it started with
        LR_decay = 1.0 if c.LR_halve_every else (c.LR_fin / c.LR_start) ** (1.0 / c.schedule_epochs)
        rng = np.random.RandomState(c.seed)
        mlp = build_mlp(c, rng)      # before the data: nothing else draws from rng, and its size sizes the disk check
        with program.run_folder(c, program.disk_needed(mlp, npz=not c.no_npz)):
            splits = program.load(load_data, c)

            print(f"Compiling the training and validation functions ({c.mode})...", flush=True)
            x, t, LR = symbolic_inputs(splits.train.X.shape[1:])
            train_pass = Pass(deterministic=False)
            loss = squared_hinge(forward(mlp, x, train_pass), t)
            updates = training_updates(mlp, loss, train_pass, LR, c.optimizer, **program.lr_vector_options(c))
            train_fn = pytensor.function([x, t, LR], loss, updates=updates, mode=c.mode)
            val_fn = pytensor.function([x, t], test_outputs(mlp, x, t), mode=c.mode)

            run = program.make_run(c, "mnist", program.hyperparameters(c, options.recipe(globals()), splits,
                                                                       LR_decay=LR_decay), save_npz=not c.no_npz)
            train(functions(train_fn, val_fn, mlp), mlp, splits, run, rng=rng, batch_size=c.batch_size,
                  LR_start=c.LR_start, LR_decay=LR_decay, num_epochs=c.num_epochs, resume=bool(c.resume),
                  progress=program.progress_flag(c), **program.loop_options(c))
        print(f"Run record: {run.record_path}")


class _NoDropout(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        namespace.dropout_in = namespace.dropout_hidden = 0.0


if __name__ == "__main__":
    main()
