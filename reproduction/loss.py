"""The objective and the error rate (SOURCES.md §1.4), with float32 reductions as the original's
GPU computed them (reproduction/updates.py)."""
import pytensor.tensor as pt


def _mean_all(x, like):
    """The mean of all elements of ``x`` (shaped as ``like``), summed in float32."""
    return pt.sum(x, acc_dtype="float32") / pt.cast(like.shape[0] * like.shape[1], "float32")


def squared_hinge(output, target):
    """The L2-SVM loss: ``mean(max(0, 1 - t * y) ** 2)`` over batch x classes, t in {-1, +1}
    (mnist.py: ``T.mean(T.sqr(T.maximum(0., 1. - target*train_output)))``)."""
    return _mean_all(pt.sqr(pt.maximum(0.0, 1.0 - target * output)), output)


def first_argmax(x):
    """The index of the first maximum of each row, as float32 (``np.argmax``'s rule for ties), built
    from float32 operations: an integer argmax would be int64, which JAX without x64 truncates."""
    index = pt.cumsum(pt.ones_like(x), axis=1) - 1.0
    hits = pt.eq(x, pt.max(x, axis=1, keepdims=True))
    return pt.min(pt.switch(hits, index, pt.cast(x.shape[1], "float32")), axis=1)


def error_rate(output, target):
    """The fraction of examples whose highest score is not the target class: the original's
    ``T.mean(T.neq(T.argmax(y, axis=1), T.argmax(t, axis=1)), dtype=floatX)``, ties going to the
    first maximum as there."""
    wrong = pt.neq(first_argmax(output), first_argmax(target)).astype("float32")
    return pt.sum(wrong, acc_dtype="float32") / pt.cast(output.shape[0], "float32")
