"""The pieces of the original scripts' ``train_fn`` and ``val_fn``: the symbolic inputs, the update
dictionary with its two optimizers, the test graph's outputs, and the list of every piece of state a
checkpoint must hold. The programs put them together in plain sight, as the original scripts did;
``compile_functions`` does the same in one call for tests and benchmarks.
"""
import warnings
from dataclasses import dataclass

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.tensor.random.type import RandomType

from .layers import BatchNorm, Pass, _BinaryLayer, all_params, binary_layers, forward, params_tagged
from .loss import error_rate, squared_hinge
from .updates import adam, adamax_binary_clip_shift, clipping_scaling, shift_adamax, torch7_lr_scale

OPTIMIZERS = {"adam": adam, "shift_adamax": shift_adamax}
#: The Torch7 code's optimizer: one instance over every parameter (``torch7_updates``).
TORCH7_OPTIMIZER = "adamax_binary_clip_shift"

# PyTensor's JAX back end compiles a function with private copies of its shared random generators
# and says so at every compile. That copy is the state we rely on: the training function's own
# storage, which checkpoints save and restore (``rng_containers``). Only this message is ignored.
warnings.filterwarnings("ignore", message=r"The RandomType SharedVariables .* will not be used in the compiled JAX "
                        r"graph\. Instead a copy will be used\.", category=UserWarning)


@dataclass
class Functions:
    train: object      # (inputs, targets, LR) -> mean loss of the batch; applies the updates
    evaluate: object   # (inputs, targets) -> (loss, error rate) on the deterministic graph
    state: list        # shared variables: parameters, optimizer states, batch-norm statistics
    rngs: list         # the training function's random-generator storage (dropout, stochastic binarization)


def symbolic_inputs(input_shape):
    """The inputs of both functions: a batch of images, its ±1 one-hot targets, the learning rate.
    ``input_shape`` is one example's shape, e.g. (1, 28, 28): giving it statically lets the image
    sizes after pooling fold to constants, which JAX needs (its reshapes take static shapes)."""
    return (pt.tensor("inputs", dtype="float32", shape=(None, *input_shape)),
            pt.matrix("targets", dtype="float32"), pt.scalar("LR", dtype="float32"))


def training_updates(layers, loss, train_pass: Pass, LR, optimizer="adam", **lr_vector):
    """The original's update dictionary: one optimizer over the binary W's, fed dLoss/dWb and then
    scaled by each layer's Glorot rate and clipped to [-H, H]; a second, independent one over every
    other trainable parameter with the unscaled rate (SOURCES.md §1.2); the batch-norm running
    averages of the training pass (Lasagne's default updates, SOURCES.md §1.3); and the random
    generators' next states (dropout, stochastic binarization). With the Torch7 code's optimizer,
    ``adamax_binary_clip_shift``, the first part is :func:`torch7_updates` instead (``lr_vector``:
    its options)."""
    if optimizer == TORCH7_OPTIMIZER:
        updates = torch7_updates(layers, loss, train_pass, LR, **lr_vector)
        updates.update(train_pass.updates)
        updates.update(train_pass.rng_updates)
        return updates
    rule = OPTIMIZERS[optimizer]
    binary = binary_layers(layers)
    updates = rule(loss, params_tagged(layers, "trainable"), LR, name=optimizer)
    if binary:
        Ws = [layer.W for layer in binary]
        grads = pytensor.grad(loss, [train_pass.binarized[W] for W in Ws])
        w_updates = rule(grads, Ws, LR, name=f"{optimizer}_W")
        w_updates = clipping_scaling(w_updates, [(l.W, l.W_LR_scale, l.H) for l in binary])
        w_updates.update(updates)
        updates = w_updates
    updates.update(train_pass.updates)
    updates.update(train_pass.rng_updates)   # each random generator to its next state
    return updates


def lr_vector(layers, *, b_LR_scale="W", gamma_LR_scale="1", clip_all=False):
    """The Torch7 models' ``GLRvec`` and ``clipV`` per parameter (SOURCES.md §4(e)): a list of
    (parameter, scale, clipped). A binary layer's W has its layer's scale (``W_LR_scale``) and is
    clipped; its bias has the same scale (``b_LR_scale="W"``) or a number; a batch norm's gamma has
    1/sqrt(1.5/n) (``gamma_LR_scale="Glorot"``, MNIST) or a number, its beta 1; biases, gamma and
    beta are clipped only with ``clip_all`` (the CIFAR-10 model clips every parameter)."""
    out = []
    for layer in layers:
        if isinstance(layer, _BinaryLayer):
            b_scale = layer.W_LR_scale if b_LR_scale == "W" else np.float32(b_LR_scale)
            out += [(layer.W, layer.W_LR_scale, True), (layer.b, b_scale, clip_all)]
        elif isinstance(layer, BatchNorm):
            n = layer.gamma.get_value(borrow=True).size
            g_scale = torch7_lr_scale(n) if gamma_LR_scale == "Glorot" else np.float32(gamma_LR_scale)
            out += [(layer.gamma, g_scale, clip_all), (layer.beta, np.float32(1), clip_all)]
    return out


def torch7_updates(layers, loss, train_pass: Pass, LR, **options):
    """The Torch7 code's step: ``adamax_binary_clip_shift`` over every parameter at once (the
    flattened ``model:getParameters()``), with the scales and clip flags of :func:`lr_vector`. A
    binary W gets the gradient with respect to its binarized value, as in Theano (SOURCES.md §4(b))."""
    entries = lr_vector(layers, **options)
    params = [param for param, _, _ in entries]
    wrt = [train_pass.binarized.get(param, param) for param in params]
    return adamax_binary_clip_shift(pytensor.grad(loss, wrt), params, LR, [s for _, s, _ in entries],
                                    [c for _, _, c in entries], name=TORCH7_OPTIMIZER)


def test_outputs(layers, x, t):
    """The original's ``[test_loss, test_err]``: the squared hinge loss and the error rate of the
    deterministic graph (stored batch-norm statistics, no dropout)."""
    output = forward(layers, x, Pass(deterministic=True))
    return [squared_hinge(output, t), error_rate(output, t)]


def functions(train_fn, val_fn, layers) -> Functions:
    """The compiled pair, with what a checkpoint saves: the parameters, then every other shared
    variable the training function updates (optimizer states, batch-norm statistics), and the
    storage of its random generators (saved separately: see ``rng_containers``)."""
    params = all_params(layers)
    updated = [i.variable for i in train_fn.maker.inputs
               if i.update is not None and not isinstance(i.variable.type, RandomType)]
    return Functions(train_fn, val_fn, params + [v for v in updated if v not in set(params)],
                     rng_containers(train_fn))


def compile_functions(layers, input_shape, *, optimizer="adam", mode=None, **lr_vector) -> Functions:
    """What a program compiles, in one call (for tests and benchmarks)."""
    x, t, LR = symbolic_inputs(input_shape)
    train_pass = Pass(deterministic=False)
    loss = squared_hinge(forward(layers, x, train_pass), t)
    train_fn = pytensor.function([x, t, LR], loss,
                                 updates=training_updates(layers, loss, train_pass, LR, optimizer, **lr_vector),
                                 mode=mode)
    return functions(train_fn, pytensor.function([x, t], test_outputs(layers, x, t), mode=mode), layers)


def rng_containers(function):
    """The storage cells of a compiled function's random generators. The JAX back end works on
    private copies of the shared generators, so the state to checkpoint lives here, not in the
    shared variables."""
    return [c for c in function.input_storage if isinstance(c.type, RandomType)]
