"""The layers of a binarized network, and the symbolic forward pass through a list of them.

A network is a plain list of layers (the original built a Lasagne graph; the order of its layers,
of their parameters and of their random draws is what we keep). Each layer holds its parameters as
PyTensor shared variables, tagged the way the original tagged them: a binary layer's ``W`` carries
only ``"binary"`` (the original replaced Lasagne's ``trainable`` tag), biases and batch-norm
``beta``/``gamma`` are ``"trainable"``, the batch-norm running statistics carry no tag.

Construction draws from one ``numpy.random.RandomState`` in the original's order: each binary layer
draws the seed of its own random stream, then its weights ``W ~ U(-H, H)``; each dropout layer
draws the seed of its stream. With the original's seed (1234) the initial weights are the ones the
original script drew.
"""
from dataclasses import dataclass, field

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.tensor.random.utils import RandomStream

from .binarize import binarize_weights
from .shift import ap2_ste
from .updates import glorot_lr_scale

_SEED_HIGH = 2147462579  # the bound Lasagne's layers pass to randint for their stream seeds


@dataclass
class Pass:
    """One symbolic forward pass. ``deterministic`` selects the test graph: stored batch-norm
    statistics, no dropout, deterministic weights. A training pass collects the binarized weights
    (the gradient is taken with respect to them) and the running-average updates of batch norm."""

    deterministic: bool
    binarized: dict = field(default_factory=dict)
    updates: dict = field(default_factory=dict)


def forward(layers, x, p: Pass):
    """Apply ``layers`` in order to ``x``."""
    for layer in layers:
        x = layer(x, p)
    return x


def _shared(value, name):
    return pytensor.shared(np.asarray(value, dtype=np.float32), name=name)


class _BinaryLayer:
    """What dense and convolution layers share: latent weights W ~ U(-H, H), a real bias b = 0,
    a learning-rate scale, and the binarization of W in each pass (PAPER.md §1.1-1.2)."""

    def __init__(self, w_shape, fan_in, fan_out, n_out, *, rng, H=1.0, binary=True,
                 stochastic=False, W_LR_scale="Glorot", name):
        self.H, self.binary, self.stochastic = float(H), binary, stochastic
        self.W_LR_scale = glorot_lr_scale(fan_in, fan_out) if W_LR_scale == "Glorot" else np.float32(W_LR_scale)
        self.srng = RandomStream(int(rng.randint(1, _SEED_HIGH)))
        self.W = _shared(rng.uniform(-self.H, self.H, size=w_shape), f"{name}.W")
        self.b = _shared(np.zeros(n_out), f"{name}.b")
        self.params = [self.W, self.b]
        self.tags = {self.W: {"binary"} if binary else {"trainable"}, self.b: {"trainable"}}

    def binarized(self, p: Pass):
        Wb = binarize_weights(self.W, self.H, binary=self.binary, deterministic=p.deterministic,
                              stochastic=self.stochastic, srng=self.srng)
        if not p.deterministic:
            p.binarized[self.W] = Wb
        return Wb


class DenseLayer(_BinaryLayer):
    """``x.flatten(2) @ Wb + b`` with W of shape (n_in, n_out), as Lasagne's DenseLayer."""

    def __init__(self, n_in, n_out, **kw):
        kw.setdefault("name", f"dense{n_in}x{n_out}")
        super().__init__((n_in, n_out), n_in, n_out, n_out, **kw)

    def __call__(self, x, p):
        return pt.dot(x.flatten(2), self.binarized(p)) + self.b


class Conv2DLayer(_BinaryLayer):
    """3x3 binary convolution, pad 1, stride 1, a true convolution (Lasagne's ``flip_filters=True``),
    W of shape (n_out, n_in, 3, 3). The Glorot fans are 9 * n_in and 9 * n_out (the original did not
    divide by the pooling size)."""

    def __init__(self, n_in, n_out, **kw):
        kw.setdefault("name", f"conv{n_in}x{n_out}")
        super().__init__((n_out, n_in, 3, 3), 9 * n_in, 9 * n_out, n_out, **kw)

    def __call__(self, x, p):
        from .conv import conv3x3  # the convolution is needed by the ConvNets only

        return conv3x3(x, self.binarized(p)) + self.b.dimshuffle("x", 0, "x", "x")


class MaxPool2x2:
    """2x2 max pooling, stride 2, trailing odd row/column dropped (``ignore_border=True``). At a
    tied maximum the gradient goes to the window's first maximal element (``ties="first"``, cuDNN's
    rule, where the original ran) or to every one (``"all"``, Theano's CPU rule): SOURCES.md §2.2."""

    params: list = []
    tags: dict = {}

    def __init__(self, ties="first"):
        self.ties = ties

    def __call__(self, x, p):
        from .conv import max_pool2x2

        return max_pool2x2(x, ties=self.ties)


class BatchNorm:
    """Batch normalization with Lasagne's semantics (PAPER.md §1.3)::

        train: mu, var = mean and biased variance of x over ``axes``;  inv_std = 1 / sqrt(var + eps)
               mean    <- (1 - alpha) * mean    + alpha * mu
               inv_std <- (1 - alpha) * inv_std + alpha * inv_std_batch     (the inverse std is averaged)
        test:  mu, inv_std = the stored running values
        y = (x - mu) * (gamma * inv_std) + beta

    ``axes`` is (0,) for dense outputs and (0, 2, 3) for convolution outputs (Lasagne's 'auto').
    With ``shift_based=True`` it is the paper's Algorithm 2 instead: the variance is
    mean(C * AP2(C)) with C = x - mu, and inv_std and gamma are rounded to powers of two (AP2),
    each rounding passing its gradient straight through.
    """

    def __init__(self, n, axes=(0,), alpha=0.1, epsilon=1e-4, shift_based=False, name="bn"):
        self.axes, self.alpha, self.epsilon, self.shift_based = tuple(axes), alpha, epsilon, shift_based
        self.beta = _shared(np.zeros(n), f"{name}.beta")
        self.gamma = _shared(np.ones(n), f"{name}.gamma")
        self.mean = _shared(np.zeros(n), f"{name}.mean")
        self.inv_std = _shared(np.ones(n), f"{name}.inv_std")
        self.params = [self.beta, self.gamma, self.mean, self.inv_std]
        self.tags = {self.beta: {"trainable"}, self.gamma: {"trainable"}, self.mean: set(), self.inv_std: set()}

    def _broadcast(self, v, ndim):
        pattern = ["x"] * ndim
        pattern[1] = 0
        return v.dimshuffle(pattern)

    def __call__(self, x, p):
        if p.deterministic:
            mu, inv_std = self.mean, self.inv_std
        else:
            mu = x.mean(self.axes)
            centered = x - self._broadcast(mu, x.ndim)
            if self.shift_based:
                var = (centered * ap2_ste(centered)).mean(self.axes)
            else:
                var = pt.sqr(centered).mean(self.axes)  # biased, as T.var
            inv_std = 1.0 / pt.sqrt(var + self.epsilon)
            a = np.float32(self.alpha)
            p.updates[self.mean] = (1 - a) * self.mean + a * mu
            p.updates[self.inv_std] = (1 - a) * self.inv_std + a * inv_std
        gamma = self.gamma
        if self.shift_based:
            inv_std, gamma = ap2_ste(inv_std), ap2_ste(gamma)
        scale = self._broadcast(gamma * inv_std, x.ndim)
        return (x - self._broadcast(mu, x.ndim)) * scale + self._broadcast(self.beta, x.ndim)


class Nonlinearity:
    """An activation function as a layer (Lasagne's NonlinearityLayer)."""

    params: list = []
    tags: dict = {}

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, x, p):
        return self.fn(x)


class Dropout:
    """Inverted dropout (Lasagne's DropoutLayer, rescale=True): in training, keep each unit with
    probability 1 - p and divide by 1 - p; at test time, the identity."""

    params: list = []
    tags: dict = {}

    def __init__(self, p, *, rng):
        self.p = float(p)
        self.srng = RandomStream(int(rng.randint(1, _SEED_HIGH)))

    def __call__(self, x, p):
        if p.deterministic or self.p == 0:
            return x
        keep = np.float32(1.0 - self.p)
        mask = self.srng.uniform(low=0.0, high=1.0, size=x.shape, dtype=x.dtype) < keep
        return (x / keep) * mask


def all_params(layers):
    """Every parameter in network order (the original's ``get_all_params``, and its npz order)."""
    return [v for layer in layers for v in layer.params]


def params_tagged(layers, tag):
    return [v for layer in layers for v in layer.params if tag in layer.tags[v]]


def binary_layers(layers):
    return [layer for layer in layers if isinstance(layer, _BinaryLayer) and layer.binary]
