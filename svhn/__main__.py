"""BinaryNet on SVHN: the paper's binarized ConvNet at half the conv widths, as the original
``svhn.py`` (SOURCES.md §2).

    python -m svhn --data-dir DIR                                    # the paper's run: 200 epochs
    python -m svhn --epochs 1 --train-size 500 --valid-size 100 --test-size 100   # a short run

Every value below is an option of the same name (``--LR_start 0.01``; ``--epochs`` for num_epochs).
The program body is the one the CIFAR-10 program shares: reproduction/convnet.py.
"""
import reproduction  # noqa: F401  (compile-cache and floatX defaults, before PyTensor loads)
from reproduction import convnet, program
from svhn.data import load_svhn

# The recipe: the original svhn.py's hyperparameters (SOURCES.md §2.1)
batch_size = 50
alpha = 0.1            # batch-norm running-average factor
epsilon = 1e-4         # batch-norm epsilon
activation = "binary_tanh_unit"
binary = True
stochastic = False
H = 1.0
W_LR_scale = "Glorot"
num_epochs = 200
LR_start = 0.001
LR_fin = 0.000001
architecture = "64C3-64C3-MP2-128C3-128C3-MP2-256C3-256C3-MP2-1024FC-1024FC-10FC"
seed = 1234
pool_ties = "first"    # the pooling gradient at tied maxima: cuDNN's rule, where the original ran (SOURCES.md §2.2)
# Variants the paper describes but its Theano experiments do not use (Algorithms 2 and 3)
shift_bn = False
optimizer = "adam"
# splits: pylearn2's: training = train + extra less the validation set (598,388 images),
# validation = 400 per class from train + 200 per class from extra (seed 322), test 26,032;
# raw pixels x*2/255 - 1, no GCN/LCN (svhn/data.py). Partial batches are dropped, so the test
# error covers 26,000 images, as in the original.


def load_data(c):
    """The splits of this run (``c``: the recipe and options as parsed)."""
    return load_svhn(c.data_dir, download=not c.no_download)


def main(argv=None):
    convnet.main("svhn", __doc__, program.recipe(globals()), load_data, argv)


if __name__ == "__main__":
    main()
