"""The ConvNets built from the programs' architecture strings (SOURCES.md §2.2)."""
import numpy as np
import pytest

from reproduction.binarize import binary_tanh_unit
from reproduction.convnet import build_convnet, parse
from reproduction.layers import BatchNorm, Conv2DLayer, DenseLayer, MaxPool2x2, Nonlinearity
from results.summary import network


def _programs():
    import cifar10.__main__ as cifar10
    import svhn.__main__ as svhn

    return {"cifar10": cifar10.architecture, "svhn": svhn.architecture}


def test_parse():
    assert parse("128C3-128C3-MP2-10FC") == [("conv", 128, False), ("conv", 128, True), ("dense", 10, False)]
    for bad in ["MP2-10FC", "10FC-MP2", "3x3-10FC", "16C3-MP2-MP2"]:
        with pytest.raises(ValueError):
            parse(bad)


def test_block_order_is_conv_pool_batchnorm_sign_and_the_last_block_has_no_sign():
    layers = build_convnet("4C3-4C3-MP2-8FC-10FC", rng=np.random.RandomState(0), activation=binary_tanh_unit)
    kinds = [type(layer) for layer in layers]
    assert kinds == [Conv2DLayer, BatchNorm, Nonlinearity, Conv2DLayer, MaxPool2x2, BatchNorm, Nonlinearity,
                     DenseLayer, BatchNorm, Nonlinearity, DenseLayer, BatchNorm]
    assert layers[1].axes == (0, 2, 3) and layers[8].axes == (0,)
    assert layers[7].W.get_value().shape == (4 * 16 * 16, 8)


@pytest.mark.parametrize("dataset, conv, dense", [("cifar10", 4574592, 9447424), ("svhn", None, None)])
def test_the_programs_networks_have_the_papers_weight_counts(dataset, conv, dense):
    spec = _programs()[dataset]
    layers = build_convnet(spec, rng=np.random.RandomState(0), activation=binary_tanh_unit)
    n_conv = sum(l.W.get_value().size for l in layers if isinstance(l, Conv2DLayer))
    n_dense = sum(l.W.get_value().size for l in layers if isinstance(l, DenseLayer))
    if dataset == "cifar10":
        assert (n_conv, n_dense) == (conv, dense)
    else:
        assert n_conv + n_dense == 6397632
    # the summary reads the same network from the program's recipe
    summary = [(l.kind, l.n_out, l.pool == 2) for l in network(dataset)]
    assert summary == parse(spec)
    scales = [float(l.W_LR_scale) for l in layers if hasattr(l, "W_LR_scale")]
    if dataset == "cifar10":   # SOURCES.md §1.2's table
        assert scales == pytest.approx([28.0357, 39.1918, 48.0, 55.4256, 67.8823, 78.3837, 78.3837, 36.9504,
                                        26.2552], abs=1e-4)
