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

Constants that are not exact in decimal (batch norm's alpha, 1 - alpha and epsilon, dropout's
retain probability, a non-dyadic H) enter the graphs through :func:`updates.float32_constant`, so
that every back end computes with their float32 values, as the original's fused loops did.
"""
from dataclasses import dataclass, field

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.tensor.random.variable import shared_rng

from pytensor.gradient import zero_grad

from .binarize import binarize_weights
from .shift import ap2, ap2_numpy, ap2_ste
from .updates import float32_constant, glorot_lr_scale

_SEED_HIGH = 2147462579  # the bound Lasagne's layers pass to randint for their stream seeds


@dataclass
class Pass:
    """One symbolic forward pass. ``deterministic`` selects the test graph: stored batch-norm
    statistics, no dropout, deterministic weights. A training pass collects the binarized weights
    (the gradient is taken with respect to them), the running-average updates of batch norm
    (``updates``: state to checkpoint) and the updates of the random generators its draws used
    (``rng_updates``: each generator to its next state, for the compiled function's updates)."""

    deterministic: bool
    binarized: dict = field(default_factory=dict)
    updates: dict = field(default_factory=dict)
    rng_updates: dict = field(default_factory=dict)


def forward(layers, x, p: Pass):
    """Apply ``layers`` in order to ``x``."""
    for layer in layers:
        x = layer(x, p)
    return x


def _shared(value, name):
    # a static shape, so that the graph knows W, b, gamma, ... agree and JAX needs no shape checks
    value = np.asarray(value, dtype=np.float32)
    return pytensor.shared(value, name=name, shape=value.shape)


class SeededStream:
    """A layer's random numbers: one seed drawn from the construction RandomState (the original
    seeded an MRG stream with it), and a fresh generator for each random variable built in a graph,
    spawned from ``SeedSequence(seed)`` (the generators PyTensor's deprecated ``RandomStream(seed)``
    made, so the draws are unchanged). Each draw registers its generator's update in the pass."""

    def __init__(self, seed: int):
        self.seed = int(seed)
        self._seeds = np.random.SeedSequence(self.seed)

    def uniform(self, size, dtype, updates: dict):
        """``U(0, 1)`` draws of shape ``size``; ``updates[generator] = next state``."""
        (child,) = self._seeds.spawn(1)
        rng = shared_rng(np.random.default_rng(child), borrow=True)
        next_rng, draws = rng.uniform(0.0, 1.0, size=size, dtype=dtype)
        updates[rng] = next_rng
        return draws


def count(x, axes):
    """How many values of ``x`` each reduction over ``axes`` sees, as a float32 graph value."""
    n = 1
    for a in axes:
        n = n * x.shape[a]
    return pt.cast(n, "float32")


def mean(x, axes):
    """The mean of ``x`` over ``axes``, summed in float32 and divided by the float32 count, as the
    original's GPU reductions computed ``T.mean`` (SOURCES.md §1.3; reproduction/updates.py)."""
    return pt.sum(x, axis=axes, acc_dtype="float32") / count(x, axes)


def lr_scale(rule, fan_in, fan_out) -> np.float32:
    """A binary layer's learning-rate scale: ``"Glorot"``, 1/sqrt(1.5/(fan_in + fan_out)) in float32
    (binary_net.py; the Torch7 MNIST model); ``"Glorot_pow2"``, the same rounded to a power of two
    (the Torch7 CIFAR-10 and SVHN models, SOURCES.md §4(e)); or a number."""
    if rule == "Glorot":
        return glorot_lr_scale(fan_in, fan_out)
    if rule == "Glorot_pow2":
        return np.float32(ap2_numpy(1.0 / np.sqrt(1.5 / (fan_in + fan_out))))
    return np.float32(rule)


class _BinaryLayer:
    """What dense and convolution layers share: latent weights W ~ U(-H, H), a real bias b = 0,
    a learning-rate scale, and the binarization of W in each pass (SOURCES.md §1.1-1.2)."""

    #: Torch7's default ``reset`` draws W from U(±1/sqrt(fan_in)); only layers without one of their
    #: own use it (SOURCES.md §4(b)).
    torch_default_reset = False

    def __init__(self, w_shape, fan_in, fan_out, n_out, *, rng, H=1.0, binary=True,
                 stochastic=False, W_LR_scale="Glorot", init="lasagne", name):
        self.H, self.binary, self.stochastic = float(H), binary, stochastic
        self.W_LR_scale = lr_scale(W_LR_scale, fan_in, fan_out)
        self.stream = SeededStream(rng.randint(1, _SEED_HIGH))
        if init == "lasagne":       # binary_net.py: W ~ U(-H, H), b = 0 (SOURCES.md §1.2)
            self.W = _shared(rng.uniform(-self.H, self.H, size=w_shape), f"{name}.W")
            self.b = _shared(np.zeros(n_out), f"{name}.b")
        elif init == "torch7":
            # BinaryLinear:reset draws W ~ U(-1, 1) and b ~ U(±1/sqrt(fan_in)); the binary convolution
            # has no reset of its own and inherits nn.SpatialConvolution's, U(±1/sqrt(9 C_in)) for both
            # (SOURCES.md §4(b)). We follow the code, not the paper's "W ~ U(-1, 1)" for every layer.
            bound = 1.0 / np.sqrt(fan_in)
            self.W = _shared(rng.uniform(-bound, bound, size=w_shape) if self.torch_default_reset
                             else rng.uniform(-self.H, self.H, size=w_shape), f"{name}.W")
            self.b = _shared(rng.uniform(-bound, bound, size=n_out), f"{name}.b")
        else:
            raise ValueError(f"init must be lasagne or torch7, not {init!r}")
        self.params = [self.W, self.b]
        self.tags = {self.W: {"binary"} if binary else {"trainable"}, self.b: {"trainable"}}

    def binarized(self, p: Pass):
        H = self.H if self.H in (0.5, 1.0, 2.0) else float32_constant(self.H, f"{self.W.name}.H")
        Wb = binarize_weights(self.W, H, binary=self.binary, deterministic=p.deterministic,
                              stochastic=self.stochastic,
                              uniform=lambda size, dtype: self.stream.uniform(size, dtype, p.rng_updates))
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
    divide by the pooling size). The Torch7 code's cuDNN convolution is a cross-correlation
    (SOURCES.md §4(a)); with weights drawn from a distribution symmetric under the flip, that is the
    same network with its kernels' indices reversed, so the Torch7 recipe keeps this one."""

    torch_default_reset = True

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
    """Batch normalization with Lasagne's semantics (Lasagne 6a559dd ``BatchNormLayer``; SOURCES.md §1.3)::

        train: mu = mean(x), var = mean((x - mu)^2) over ``axes``;  inv_std = 1 / sqrt(var + eps)
               mean    <- (1 - alpha) * mean    + alpha * mu
               inv_std <- (1 - alpha) * inv_std + alpha * inv_std_batch     (the inverse std is averaged)
        test:  mu, inv_std = the stored running values
        y = (x - mu) * (gamma * inv_std) + beta

    in float32 as the original's graph held it: ``1 - alpha`` computed in Python and rounded once
    (float32(0.9) = 0.899999976 for alpha = 0.1), alpha = float32(0.1) = 0.100000001, eps =
    float32(1e-4) = 9.99999975e-05, sums accumulated in float32 (:func:`mean`). ``T.inv``, Theano's
    ``1.0 / x`` in double then rounded (theano/scalar/basic.py:2460 in 0.8.0), equals the float32
    quotient: one double operation on float32 operands rounds as float32 would (53 >= 2*24 + 2).
    The graph optimizer (Theano's, as PyTensor's) compiles ``alpha * (1 / s)`` as ``alpha / s``.

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
        self.name = name

    def _broadcast(self, v, ndim):
        pattern = ["x"] * ndim
        pattern[1] = 0
        return v.dimshuffle(pattern)

    def __call__(self, x, p):
        if p.deterministic:
            mu, inv_std = self.mean, self.inv_std
        else:
            mu = mean(x, self.axes)
            centered = x - self._broadcast(mu, x.ndim)
            if self.shift_based:
                var = mean(centered * ap2_ste(centered), self.axes)
            else:
                var = mean(pt.sqr(centered), self.axes)  # biased, as T.var
            inv_std = 1.0 / pt.sqrt(var + float32_constant(self.epsilon, f"{self.name}.epsilon"))
            self._running_updates(p, (self.mean, mu), (self.inv_std, inv_std))
        gamma = self.gamma
        if self.shift_based:
            inv_std, gamma = ap2_ste(inv_std), ap2_ste(gamma)
        scale = self._broadcast(gamma * inv_std, x.ndim)
        return (x - self._broadcast(mu, x.ndim)) * scale + self._broadcast(self.beta, x.ndim)

    #: The name of the averaging factor in the graph: Lasagne's ``alpha``, Torch's ``momentum``.
    factor_name = "alpha"

    def _running_updates(self, p, *pairs):
        """running <- (1 - alpha) * running + alpha * batch for each (running, batch) pair, with
        ``1 - alpha`` computed in Python and rounded once, as Lasagne and Torch did; returns the new
        running values."""
        m = float32_constant(self.alpha, f"{self.name}.{self.factor_name}")
        keep = float32_constant(1 - self.alpha, f"{self.name}.1-{self.factor_name}")
        for running, batch in pairs:
            p.updates[running] = keep * running + m * batch
        return [p.updates[running] for running, _ in pairs]


#: Torch's nn.BatchNormalization defaults, which the Torch7 models' output layer keeps (SOURCES.md §4(c)).
TORCH_BN_MOMENTUM, TORCH_BN_EPSILON = 0.1, 1e-5


class ShiftBatchNormTorch7(BatchNorm):
    """The Torch7 code's ``BatchNormalizationShiftPow2`` (and its spatial twin for ``axes=(0, 2, 3)``),
    SOURCES.md §4(c), with AP2 as in shift.py. Per feature, over ``axes``::

        train: mu = mean(x);  C = x - mu;  Ĉ = AP2(C);  s = 1 / sqrt(mean(Ĉ * C) + eps)
               x̂ = C * AP2(s);  y = x̂ * AP2(gamma) + beta
               mean    <- (1 - m) * mean    + m * mu
               inv_std <- (1 - m) * inv_std + m * s           (the running *inverse* std, unrounded)
        test:  y = (x - mean) * AP2(inv_std) * AP2(gamma) + beta
        backward (updateGradInput, accGradParameters), g the output gradient:
               dx     = (g - mean(g) - Ĉ * mean(Ĉ * g) * AP2(s)^2) * AP2(s) * AP2(gamma)
               dgamma = sum(AP2(x̂) * g);   dbeta = sum(g)

    m = ``momentum`` (0.125), eps 1e-5. The backward is the code's own, not the derivative of the
    forward (which would see C in two places); it enters the graph as a surrogate with exactly these
    gradients whose value cancels (``z - zero_grad(z)``). The running inverse std starts at 1, and at
    **0** in the spatial version, which creates it zero-filled on its first training call (SOURCES.md
    §4(c)); we keep both. Evaluation always uses the running statistics: the constructor's
    ``runningVal or true`` makes the option void (SOURCES.md §4(c)).
    """

    factor_name = "momentum"

    def __init__(self, n, axes=(0,), momentum=0.125, epsilon=1e-5, name="bn"):
        super().__init__(n, axes=axes, alpha=momentum, epsilon=epsilon, shift_based=True, name=name)
        if len(self.axes) > 1:
            self.inv_std.set_value(np.zeros(n, dtype=np.float32))

    def __call__(self, x, p):
        b = lambda v: self._broadcast(v, x.ndim)    # noqa: E731
        gamma_hat = ap2(self.gamma)
        if p.deterministic:
            return (x - b(self.mean)) * b(ap2(self.inv_std)) * b(gamma_hat) + b(self.beta)
        mu = mean(x, self.axes)
        centered = x - b(mu)
        c_hat = ap2(centered)
        inv_std = 1.0 / pt.sqrt(mean(c_hat * centered, self.axes)
                                + float32_constant(self.epsilon, f"{self.name}.epsilon"))
        self._running_updates(p, (self.mean, mu), (self.inv_std, inv_std))
        s_hat = ap2(inv_std)
        normalized = centered * b(s_hat)
        y = normalized * b(gamma_hat) + b(self.beta)
        # the surrogate: d/dx, d/dgamma and d/dbeta of z are the code's backward formulas
        k = zero_grad
        z = (b(k(s_hat * gamma_hat)) * (x - b(mean(x, self.axes)))
             - b(k(s_hat ** 3 * gamma_hat)) * k(c_hat) * b(mean(k(c_hat) * x, self.axes))
             + k(ap2(normalized)) * b(self.gamma) + b(self.beta))
        return k(y) + (z - k(z))


class BatchNormTorch7(BatchNorm):
    """Torch's plain ``nn.BatchNormalization`` as of early 2016 (THNN ``BatchNormalization.c``), the
    Torch7 models' output layer (SOURCES.md §4(a), §4(c))::

        train: mu = mean(x), var = mean((x - mu)^2);  y = (x - mu) / sqrt(var + eps) * gamma + beta
               mean <- (1 - m) * mean + m * mu;   var_run <- (1 - m) * var_run + m * var * n / (n - 1)
        test:  y = (x - mean) / sqrt(var_run + eps) * gamma + beta

    m = 0.1, eps = 1e-5 (Torch's defaults: the models call ``nn.BatchNormalization(10)``). It keeps the
    running mean and the running **unbiased variance** (``running_var``, starting at 1): torch/nn moved
    from a running inverse std to ``running_var`` in February 2016 (torch/nn PR #609, 2016-02-04,
    converts old modules; PR #700's review, 2016-03-08: "now it's the variance"), before the Torch7
    BinaryNet code was published. ``inv_std`` follows it, 1/sqrt(var_run + eps), for params.h5. Its
    backward is the derivative of the forward, so PyTensor's gradient is the code's.
    """

    factor_name = "momentum"

    def __init__(self, n, axes=(0,), momentum=TORCH_BN_MOMENTUM, epsilon=TORCH_BN_EPSILON, name="bn"):
        super().__init__(n, axes=axes, alpha=momentum, epsilon=epsilon, shift_based=False, name=name)
        self.var = _shared(np.ones(n), f"{name}.var")
        self.params = self.params + [self.var]
        self.tags[self.var] = set()

    def __call__(self, x, p):
        b = lambda v: self._broadcast(v, x.ndim)    # noqa: E731
        eps = float32_constant(self.epsilon, f"{self.name}.epsilon")
        if p.deterministic:
            return (x - b(self.mean)) * b(1.0 / pt.sqrt(self.var + eps)) * b(self.gamma) + b(self.beta)
        mu = mean(x, self.axes)
        centered = x - b(mu)
        squares = mean(pt.sqr(centered), self.axes)
        inv_std = 1.0 / pt.sqrt(squares + eps)
        n = count(x, self.axes)
        _, var = self._running_updates(p, (self.mean, mu), (self.var, squares * n / (n - 1.0)))
        p.updates[self.inv_std] = 1.0 / pt.sqrt(var + eps)
        return centered * b(inv_std) * b(self.gamma) + b(self.beta)


def batch_norm_layer(kind, n, *, axes=(0,), shift_based=False, alpha=0.1, epsilon=1e-4, output=False, name="bn"):
    """The batch norm of a recipe: ``kind`` "lasagne" (binary_net.py's, Algorithm 2 with
    ``shift_based``) or "torch7" (``BatchNormalizationShiftPow2`` with ``shift_based``, else Torch's
    plain one; the ``output`` layer is always Torch's plain ``nn.BatchNormalization`` with its
    defaults, as the Torch7 models have it, SOURCES.md §4(a))."""
    if kind == "lasagne":
        return BatchNorm(n, axes=axes, alpha=alpha, epsilon=epsilon, shift_based=shift_based, name=name)
    if kind != "torch7":
        raise ValueError(f"batch norm must be lasagne or torch7, not {kind!r}")
    if output:
        return BatchNormTorch7(n, axes=axes, name=name)
    if shift_based:
        return ShiftBatchNormTorch7(n, axes=axes, momentum=alpha, epsilon=epsilon, name=name)
    return BatchNormTorch7(n, axes=axes, momentum=alpha, epsilon=epsilon, name=name)


class BinarizedNeurons:
    """The Torch7 models' ``nn.HardTanh -> BinarizedNeurons`` (SOURCES.md §4(b)), in float32 as there::

        h = clamp(x, -1, 1);  p = (h + 1) / 2
        training, stochastic:  y = sign(p - u),   u ~ U[0, 1)   (+1 with probability p)
        otherwise:             y = sign(p - 0.5)                 (Torch's sign(0) = 0: y = 0 where p = 0.5)
        backward:              dy/dx = 1[|x| <= 1]

    ``BinarizedNeurons`` passes the gradient unchanged; the mask is HardTanh's. Its end points are
    the choice here: the GPU HardTanh of early 2016 (cunn's ``hardtanhupdateGradInput_functor``, and
    THCUNN's first float version) zeroes the gradient only where x < -1 or x > 1, so |x| = 1 passes,
    as in Theano's clip; later THNN/THCUNN versions (the templated half-precision one) also zero it at
    |x| = 1. The original ran on a GPU in 2016, so ``mask="inclusive"`` is the default;
    ``"exclusive"`` is the later rule.
    """

    params: list = []
    tags: dict = {}

    def __init__(self, stochastic=True, *, rng, mask="inclusive"):
        if mask not in ("inclusive", "exclusive"):
            raise ValueError(f"mask must be inclusive or exclusive, not {mask!r}")
        self.stochastic, self.mask = stochastic, mask
        self.stream = SeededStream(rng.randint(1, _SEED_HIGH))

    def __call__(self, x, p):
        h = pt.clip(x, -1.0, 1.0)
        prob = (h + 1.0) / 2.0
        if self.stochastic and not p.deterministic:
            threshold = self.stream.uniform(x.shape, x.dtype, p.rng_updates)
        else:
            threshold = np.float32(0.5)
        value = pt.sign(prob - threshold)
        if self.mask == "inclusive":
            through = h                      # clip's gradient: 1 where -1 <= x <= 1
        else:
            through = x * zero_grad(pt.lt(pt.abs(x), 1.0).astype(x.dtype))
        return zero_grad(value) + (through - zero_grad(through))


def activation_layer(name, *, stochastic_neurons=False, rng=None):
    """The hidden units of a recipe: ``binary_tanh_unit`` (binary_net.py's sign with its STE) or
    ``binarized_neurons`` (the Torch7 code's, stochastic in training with ``stochastic_neurons``)."""
    if name == "binarized_neurons":
        return BinarizedNeurons(stochastic_neurons, rng=rng)
    from . import binarize

    if stochastic_neurons:
        raise ValueError("stochastic neurons need the binarized_neurons activation")
    return Nonlinearity(getattr(binarize, name))


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
    probability 1 - p and divide by 1 - p; at test time, the identity. As Lasagne wrote it:
    ``retain = 1 - p`` in Python, ``(x / retain) * (U(0, 1) < retain)`` with float32(retain)."""

    params: list = []
    tags: dict = {}

    def __init__(self, p, *, rng):
        self.p = float(p)
        self.stream = SeededStream(rng.randint(1, _SEED_HIGH))

    def __call__(self, x, p):
        if p.deterministic or self.p == 0:
            return x
        keep = float32_constant(1.0 - self.p, "dropout.retain")
        mask = self.stream.uniform(x.shape, x.dtype, p.rng_updates) < keep
        return (x / keep) * mask


def all_params(layers):
    """Every parameter in network order (the original's ``get_all_params``, and its npz order)."""
    return [v for layer in layers for v in layer.params]


def params_tagged(layers, tag):
    return [v for layer in layers for v in layer.params if tag in layer.tags[v]]


def binary_layers(layers):
    return [layer for layer in layers if isinstance(layer, _BinaryLayer) and layer.binary]
