"""BinaryNet on CIFAR-10: the paper's binarized ConvNet, as the original ``cifar10.py`` (SOURCES.md §2).

    python -m cifar10 --data-dir DIR                                    # the paper's run: 500 epochs
    python -m cifar10 --epochs 1 --train-size 500 --valid-size 100 --test-size 100   # a short run

Every value below is an option of the same name (``--LR_start 0.01``; ``--epochs`` for num_epochs).
The program body is the one the SVHN program shares: reproduction/convnet.py.
"""
import reproduction  # noqa: F401  (compile-cache and floatX defaults, before PyTensor loads)
from cifar10.data import load_cifar10
from reproduction import convnet, program

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
# splits: train[0:45000], validation[45000:50000], the 10,000 test images (cifar10/data.py)


def load_data(c):
    """The splits of this run (``c``: the recipe and options as parsed)."""
    return load_cifar10(c.data_dir, download=not c.no_download, gcn_zca=c.gcn_zca)


def main(argv=None):
    convnet.main("cifar10", __doc__, program.recipe(globals()), load_data, argv)


if __name__ == "__main__":
    main()
