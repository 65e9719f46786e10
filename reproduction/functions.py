"""The compiled training and evaluation functions of a network (the original scripts' ``train_fn``
and ``val_fn``), and the list of every piece of state a checkpoint must hold."""
from dataclasses import dataclass

import pytensor
import pytensor.tensor as pt
from pytensor.tensor.random.type import RandomType

from .layers import Pass, all_params, binary_layers, forward, params_tagged
from .loss import error_rate, squared_hinge
from .updates import adam, clipping_scaling, shift_adamax

OPTIMIZERS = {"adam": adam, "shift_adamax": shift_adamax}


@dataclass
class Functions:
    train: object      # (inputs, targets, LR) -> mean loss of the batch; applies the updates
    evaluate: object   # (inputs, targets) -> (loss, error rate) on the deterministic graph
    state: list        # shared variables: parameters, optimizer states, batch-norm statistics
    rngs: list         # the training function's random-generator storage (dropout, stochastic binarization)


def training_updates(layers, loss, binarized, lr, optimizer="adam"):
    """The original's update dictionary: one optimizer over the binary W's, fed dLoss/dWb and then
    scaled by each layer's Glorot rate and clipped to [-H, H]; a second, independent one over every
    other trainable parameter with the unscaled rate (PAPER.md §1.2)."""
    rule = OPTIMIZERS[optimizer]
    binary = binary_layers(layers)
    updates = rule(loss, params_tagged(layers, "trainable"), lr, name=optimizer)
    if binary:
        Ws = [layer.W for layer in binary]
        grads = pytensor.grad(loss, [binarized[W] for W in Ws])
        w_updates = rule(grads, Ws, lr, name=f"{optimizer}_W")
        w_updates = clipping_scaling(w_updates, [(l.W, l.W_LR_scale, l.H) for l in binary])
        w_updates.update(updates)
        updates = w_updates
    return updates


def compile_functions(layers, input_shape, *, optimizer="adam", mode=None) -> Functions:
    """``input_shape``: one example's shape, e.g. (1, 28, 28). Giving it statically lets the image
    sizes after pooling fold to constants, which JAX needs (its reshapes take static shapes)."""
    x = pt.tensor("inputs", dtype="float32", shape=(None, *input_shape))
    t = pt.matrix("targets", dtype="float32")
    lr = pt.scalar("LR", dtype="float32")

    train_pass = Pass(deterministic=False)
    loss = squared_hinge(forward(layers, x, train_pass), t)
    updates = training_updates(layers, loss, train_pass.binarized, lr, optimizer)
    updates.update(train_pass.updates)
    train = pytensor.function([x, t, lr], loss, updates=updates, mode=mode)

    test_out = forward(layers, x, Pass(deterministic=True))
    evaluate = pytensor.function([x, t], [squared_hinge(test_out, t), error_rate(test_out, t)], mode=mode)

    params = all_params(layers)
    state = params + [v for v in updates if v not in set(params)]
    return Functions(train, evaluate, state, rng_containers(train))


def rng_containers(function):
    """The storage cells of a compiled function's random generators. The JAX back end works on
    private copies of the shared generators, so the state to checkpoint lives here, not in the
    shared variables."""
    return [c for c in function.input_storage if isinstance(c.type, RandomType)]
