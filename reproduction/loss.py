"""The objective and the error rate (PAPER.md §1.4)."""
import pytensor.tensor as pt


def squared_hinge(output, target):
    """The L2-SVM loss: ``mean(max(0, 1 - t * y) ** 2)`` over batch x classes, t in {-1, +1}."""
    return pt.mean(pt.sqr(pt.maximum(0.0, 1.0 - target * output)))


def error_rate(output, target):
    """The fraction of examples whose highest score is not the target class."""
    return pt.mean(pt.neq(pt.argmax(output, axis=1), pt.argmax(target, axis=1)))
