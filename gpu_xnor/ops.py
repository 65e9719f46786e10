"""PyTensor Ops for the run-time kernels: the counterpart of the original ``binary_ops.py``.

As there (SOURCES.md §3.3): the Ops compute C = A·B for float32 matrices, inference only (no
gradient), with the work done outside PyTensor's C back end: ``perform`` calls the numpy-level
functions of ``gpu_xnor.cpu`` (``device="cpu"``) or of ``gpu_xnor.cuda`` (``device="gpu"``,
imported only then), which have the same names. In the benchmark's vocabulary:
``BaselineGemm`` is ``baseline`` (the original's ``Gemm`` Op), ``XnorGemmPaper`` is ``xnor_paper``
(the original's ``XnorGemm`` Op: both operands packed on every call, then the paper's kernel),
``XnorGemm`` is ``xnor`` (ours, both operands packed on every call), and ``XnorGemmPacked`` is
ours with the weights already packed (by the same device module's ``pack_cols``), which is what a
deployed network would do. Unlike the original, any sizes work (no multiple-of-16/512 asserts,
SOURCES.md §3.2): the kernels pad the tails.
"""
from __future__ import annotations

import importlib

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

DEVICES = ("cpu", "gpu")


def kernels(device: str):
    """The module holding the numpy-level kernels for ``device``."""
    if device not in DEVICES:
        raise ValueError(f"gpu_xnor/ops.py: device must be one of {DEVICES}, got {device!r}")
    return importlib.import_module("gpu_xnor.cpu" if device == "cpu" else "gpu_xnor.cuda")


def _float_matrix(x, name):
    x = pt.as_tensor_variable(x)
    if x.ndim != 2 or x.dtype != "float32":
        raise TypeError(f"gpu_xnor/ops.py: {name} must be a float32 matrix, got {x.type}")
    return x


class _Gemm(Op):
    __props__ = ("device",)

    def __init__(self, device: str = "cpu"):
        if device not in DEVICES:
            raise ValueError(f"gpu_xnor/ops.py: device must be one of {DEVICES}, got {device!r}")
        self.device = device

    def make_node(self, a, b):
        a, b = _float_matrix(a, "a"), self._second(b)
        return Apply(self, [a, b], [pt.matrix(dtype="float32")])

    def _second(self, b):
        return _float_matrix(b, "b")

    def infer_shape(self, fgraph, node, shapes):
        return [(shapes[0][0], shapes[1][1])]

    def pullback(self, inputs, outputs, cotangents):   # PyTensor 3's name for grad
        raise NotImplementedError(f"{type(self).__name__} is for inference only, as in the original")


class BaselineGemm(_Gemm):
    """C = A·B with the unoptimised tiled float kernel (the original's ``Gemm`` Op)."""

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = kernels(self.device).baseline_gemm(*inputs)


class XnorGemmPaper(_Gemm):
    """C = sign(A)·sign(B) (sign(0) = +1): both packed per call, then the paper's XNOR kernel."""

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = kernels(self.device).xnor_matmul_paper(*inputs)


class XnorGemm(_Gemm):
    """C = sign(A)·sign(B) (sign(0) = +1): both packed per call, then our XNOR kernel."""

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = kernels(self.device).xnor_matmul(*inputs)


class XnorGemmPacked(_Gemm):
    """C = sign(A)·B where B is given packed by ``pack_cols`` (an unsigned integer matrix): only
    A is packed per call. K is A's column count."""

    def _second(self, b):
        b = pt.as_tensor_variable(b)
        if b.ndim != 2 or not b.dtype.startswith("uint"):
            raise TypeError(f"gpu_xnor/ops.py: packed weights must be an unsigned matrix, got {b.type}")
        return b

    def perform(self, node, inputs, output_storage):
        a, packed = inputs
        k = kernels(self.device)
        output_storage[0][0] = np.asarray(k.xnor_gemm(k.pack_rows(a), packed, a.shape[1]),
                                          dtype=np.float32)


def pack_weights(wb: np.ndarray, device: str = "cpu") -> np.ndarray:
    """The packed form of a weight matrix for ``XnorGemmPacked`` on ``device``."""
    return kernels(device).pack_cols(np.asarray(wb, dtype=np.float32))
