"""The pieces of the original scripts' ``train_fn`` and ``val_fn``: the symbolic inputs, the update
dictionary with its two optimizers, the test graph's outputs, and the list of every piece of state a
checkpoint must hold. The programs put them together in plain sight, as the original scripts did;
``compile_functions`` does the same in one call for tests and benchmarks.
"""
import warnings
from dataclasses import dataclass

import pytensor
import pytensor.tensor as pt
from pytensor.tensor.random.type import RandomType

from .layers import Pass, all_params, binary_layers, forward, params_tagged
from .loss import error_rate, squared_hinge
from .updates import adam, clipping_scaling, shift_adamax

OPTIMIZERS = {"adam": adam, "shift_adamax": shift_adamax}

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


def training_updates(layers, loss, train_pass: Pass, LR, optimizer="adam"):
    """The original's update dictionary: one optimizer over the binary W's, fed dLoss/dWb and then
    scaled by each layer's Glorot rate and clipped to [-H, H]; a second, independent one over every
    other trainable parameter with the unscaled rate (SOURCES.md §1.2); the batch-norm running
    averages of the training pass (Lasagne's default updates, SOURCES.md §1.3); and the random
    generators' next states (dropout, stochastic binarization)."""
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


def compile_functions(layers, input_shape, *, optimizer="adam", mode=None) -> Functions:
    """What a program compiles, in one call (for tests and benchmarks)."""
    x, t, LR = symbolic_inputs(input_shape)
    train_pass = Pass(deterministic=False)
    loss = squared_hinge(forward(layers, x, train_pass), t)
    train_fn = pytensor.function([x, t, LR], loss, updates=training_updates(layers, loss, train_pass, LR, optimizer),
                                 mode=mode)
    return functions(train_fn, pytensor.function([x, t], test_outputs(layers, x, t), mode=mode), layers)


def rng_containers(function):
    """The storage cells of a compiled function's random generators. The JAX back end works on
    private copies of the shared generators, so the state to checkpoint lives here, not in the
    shared variables."""
    return [c for c in function.input_storage if isinstance(c.type, RandomType)]
