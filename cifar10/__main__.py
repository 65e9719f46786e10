"""BinaryNet on CIFAR-10: the paper's binarized ConvNet, as the original ``cifar10.py`` (SOURCES.md §2).

    python -m cifar10 --data-dir DIR                                    # the paper's run: 500 epochs
    python -m cifar10 --epochs 1 --train-size 500 --valid-size 100 --test-size 100   # a short run

Every value below is an option of the same name (``--LR_start 0.01``; ``--epochs`` for num_epochs).
The program body is the one the SVHN program shares: reproduction/convnet.py.
"""
import reproduction  # noqa: F401  (compile-cache and floatX defaults, before PyTensor loads)
from cifar10.data import load_cifar10
from reproduction import convnet, options, program

# The recipe: the original cifar10.py's hyperparameters (SOURCES.md §2.1)
batch_size = 50
alpha = 0.1            # batch-norm running-average factor
epsilon = 1e-4         # batch-norm epsilon
activation = "binary_tanh_unit"
binary = True
stochastic = False
H = 1.0
W_LR_scale = "Glorot"
num_epochs = 500
LR_start = 0.001
LR_fin = 0.0000003
architecture = "128C3-128C3-MP2-256C3-256C3-MP2-512C3-512C3-MP2-1024FC-1024FC-10FC"
seed = 1234
pool_ties = "first"    # the pooling gradient at tied maxima: cuDNN's rule, where the original ran (SOURCES.md §2.2)
gcn_zca = False        # the data: pixels x*2/255 - 1, no whitening, no augmentation (cifar10/data.py)
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
preprocessing = "pixels"  # x*2/255 - 1
# splits: train[0:45000], validation[45000:50000], the 10,000 test images (cifar10/data.py)

# The "BNN (Torch7)" column: upstream Main_BinaryNet_Cifar10.lua and Models/BinaryNet_Cifar10_Model.lua
# (SOURCES.md §4); the same architecture, each block conv -> [pool] -> shift BN -> HardTanh -> neurons
torch7 = {
    "batch_size": 200,                        # §4(f)
    "activation": "binarized_neurons", "stochastic_neurons": True,   # §4(b), -stcNeurons true
    "batch_norm": "torch7", "shift_bn": True,  # (Spatial)BatchNormalizationShiftPow2; nn.BatchNormalization(10)
    "alpha": 0.125, "epsilon": 1e-5,          # §4(c)
    "init": "torch7",                         # Torch's resets: conv U(±1/sqrt(9 C_in)) (§4(b))
    "optimizer": "adamax_binary_clip_shift",  # §4(d)
    "W_LR_scale": "Glorot_pow2", "b_LR_scale": "W", "clip_all": True,   # GLR a power of two; clip all (§4(e))
    "LR_start": 2.0 ** -6, "LR_halve_every": 50,   # §4(f)
    "select_best": False, "partial_batches": True,  # §4(f); 200 divides every split here
    "preprocessing": "zca",                   # [0, 1], ZCA fitted on the training split, no GCN (§4(g))
    "seed": 432,                              # torch.manualSeed; our draws are numpy's, not Torch's
}


def load_data(c):
    """The splits of this run (``c``: the recipe and options as parsed)."""
    splits = load_cifar10(c.data_dir, download=not c.no_download, gcn_zca=c.gcn_zca)
    if c.preprocessing == "zca":
        from cifar10.preprocess import torch7_zca

        return torch7_zca(program.subsets(splits, c))
    return splits


def parse_args(argv=None):
    """The recipe (``--recipe``: the values above, or with ``torch7``'s) with the command line's
    overrides assigned onto its names, checked."""
    return convnet.parse_args("cifar10", __doc__, options.recipes(globals()), argv)


def main(argv=None):
    convnet.main("cifar10", parse_args(argv), options.recipe(globals()), load_data)


if __name__ == "__main__":
    main()
