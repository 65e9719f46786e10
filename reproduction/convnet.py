"""The paper's ConvNets from their usual notation, e.g. ``128C3-128C3-MP2-...-1024FC-1024FC-10FC``
(PAPER.md §2.2).

Every block is a binary layer (with its real bias) -> [2x2 max pooling] -> batch norm -> sign; the
last block has no sign, its batch-normalized output is the SVM score. Pooling comes before batch
norm and the sign, as in the original scripts. ``nC3`` is a 3x3 binary convolution with n filters
(pad 1, a true convolution), ``MP2`` 2x2 max pooling, ``nFC`` a binary dense layer of n units.
"""
from .layers import BatchNorm, Conv2DLayer, DenseLayer, MaxPool2x2, Nonlinearity


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
                  shift_bn=False, **binary_kw):
    """The layers of ``spec``; ``binary_kw`` (H, binary, stochastic, W_LR_scale) go to every binary layer."""
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
            layers.append(MaxPool2x2())
            size //= 2
        channels = units
        layers.append(BatchNorm(units, axes=(0, 2, 3) if kind == "conv" else (0,), alpha=alpha, epsilon=epsilon,
                                shift_based=shift_bn, name=f"bn{k}"))
        if k < len(blocks) - 1:
            layers.append(Nonlinearity(activation))
    return layers
