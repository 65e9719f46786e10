"""3x3 convolution and 2x2 max pooling for PyTensor graphs (SOURCES.md §2.2 and §7 item 4).

PyTensor 3 has neither, so we build them.

``conv3x3(x, w)`` is Lasagne's ``Conv2DLayer(filter_size=3, pad=1, stride=1, flip_filters=True)``
without its bias: a TRUE convolution with zero padding 1::

    out[n, o, h, v] = sum_{c, i, j} xpad[n, c, h + i, v + j] * w[o, c, 2 - i, 2 - j]

with ``xpad`` the input padded by one zero on each side; x (N, C_in, H, W), w (C_out, C_in, 3, 3),
out (N, C_out, H, W). The flip matters only where weights are exchanged with cross-correlation code.

One Op computes the forward pass; the input gradient is the same Op again, on the output gradient
and the weights with in/out channels swapped and unflipped (``dx = conv3x3(g, flipT(w))``), and the
weight gradient is a second Op. Each runs in every PyTensor back end:

- C back end (CVM) and Python: ``perform``, the "shifted rows" scheme below: nine BLAS GEMMs per
  Op (the forward ones through scipy's wrappers, which, unlike numpy's matmul, accumulate in
  place). All the time is in the GEMMs, so C code calling the same GEMMs would be no faster;
- Numba: the same ``perform`` in Numba's object mode (Numba cannot call scipy's BLAS wrappers);
- JAX on a GPU (any accelerator): XLA's ``lax.conv_general_dilated`` and its derivative (cuDNN).
  JAX on a CPU: the numpy kernels through ``jax.pure_callback``, because they were faster: XLA's
  CPU convolution took 1.8x PyTorch's time, shifted rows in ``jax.numpy`` 2.8x (XLA copies each
  slice), these kernels 1.25x (``python -m results.bench_conv``).

The GEMMs run on ONE BLAS thread unless ``BNN_CONV_THREADS`` (read at each call; 0 = leave BLAS
alone) says otherwise: on this 2-core machine shared with other work, OpenBLAS's two threads wait
on each other at every block of the long weight-gradient GEMMs, and one forward+backward took
10 s instead of 0.55 s (load average 3.5). This needs threadpoolctl; without it BLAS is untouched.

Shifted rows: store the zero-padded images as one matrix X of rows (N*(H+2)*(W+2), C), channels
last. Tap (i, j) of every output position is then the row ``i*(W+2) + j`` further on, so
``Y = sum_ij X[s_ij : s_ij + R] @ Wc[i, j]`` (Wc the cross-correlation weights, (C_in, C_out) per
tap) with every slice contiguous: no im2col copy, and the GEMMs accumulate in place. Rows of Y
that fall on padding (or wrap into the next image) are computed and discarded, 13% extra at 32x32.

``max_pool2x2`` is Lasagne's ``MaxPool2DLayer(pool_size=2)`` (stride 2, ``ignore_border=True``: an
odd last row or column is dropped), an Op too (a crop, a reshape and a max in each back end): as a
PyTensor graph, the crop to an even size is unknown to JAX until run time, and Numba took a minute
to compile the gradient of a corner-slices form.

Pooling ties are common here, not rare: the conv inputs are {-1, 0, +1} and the weights +-H, so the
pre-activations in a window are integers plus the channel's bias and often equal (SOURCES.md §2.2).
Where a window's maximum is attained more than once, ``ties`` says which elements get its gradient:

- ``"first"``: only the first maximal element in row-major window order, (0,0), (0,1), (1,0),
  (1,1). This is cuDNN's ``CUDNN_POOLING_MAX`` backward, which Theano substituted for its own
  pooling on a GPU with cuDNN (Theano issues #5248, #5404), i.e. where the original ran. cuDNN is
  closed; the rule is the one TensorFlow's tests ``_testMaxPoolGradDirect1_1``/``1_2`` assert
  with one expected result on CPU and GPU, where its MaxPoolGrad calls cuDNN's pooling backward:
  all-equal and diagonally tied 2x2 windows send the gradient to the top-left element,
  anti-diagonally tied ones to the top-right one. Theano's unmerged "match cudnn behavior" PR
  #5506 likewise kept "only the first value". The NaN mode does not matter for finite ties
  (Theano set ``CUDNN_PROPAGATE_NAN``).
- ``"all"``: every element equal to the maximum, Theano's CPU ``MaxPoolGrad``
  (``if maxout == x: gx += gz``), so a window with k tied maxima passes k times its gradient.

A different rule is a change to ``_route`` alone.
"""
import os
from contextlib import nullcontext
from functools import lru_cache

import numpy as np
import pytensor.tensor as pt
from pytensor.scalar import upcast
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from scipy.linalg import get_blas_funcs

__all__ = ["conv3x3", "max_pool2x2", "conv3x3_numpy", "conv3x3_grad_w_numpy", "max_pool2x2_numpy",
           "max_pool2x2_grad_numpy", "POOL_TIES", "CUDNN_TIES", "THEANO_CPU_TIES"]

CUDNN_TIES = "first"        # the gradient goes to the first maximal element (cuDNN, the original's GPU runs)
THEANO_CPU_TIES = "all"     # ... to every maximal element (Theano's CPU MaxPoolGrad)
POOL_TIES = (CUDNN_TIES, THEANO_CPU_TIES)


# --- numpy kernels (used by perform; also usable on their own) -------------------------------


@lru_cache(maxsize=1)
def _threadpools():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def _blas_threads():
    """A context in which BLAS uses ``BNN_CONV_THREADS`` threads (default 1; 0: unchanged)."""
    value = os.environ.get("BNN_CONV_THREADS", "1")
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"conv.py: BNN_CONV_THREADS must be an integer, got {value!r}") from None
    pools = _threadpools()
    if n <= 0 or pools is None:
        return nullcontext()
    return pools.limit(limits=n, user_api="blas")


def _check(x, w_or_g, what):
    if x.ndim != 4 or w_or_g.ndim != 4:
        raise ValueError(f"conv.py: {what} needs 4-d arrays, got shapes {x.shape} and {w_or_g.shape}")


def _padded_rows(x):
    """(N, C, H, W) -> (N*(H+2)*(W+2), C): zero-padded images, channels last, one row a pixel."""
    n, c, h, w = x.shape
    xp = np.zeros((n, h + 2, w + 2, c), x.dtype)
    xp[:, 1:-1, 1:-1, :] = x.transpose(0, 2, 3, 1)
    return xp.reshape(-1, c)


def _taps(w_width):
    """(i, j, row offset of tap (i, j)) for the nine taps, on rows of width W + 2."""
    return [(i, j, i * (w_width + 2) + j) for i in range(3) for j in range(3)]


def conv3x3_numpy(x, w):
    """True 3x3 convolution with zero padding 1 (the formula in the module docstring)."""
    _check(x, w, "conv3x3")
    n, c, h, wd = x.shape
    if w.shape[1:] != (c, 3, 3):
        raise ValueError(f"conv.py: conv3x3 weights must be (C_out, {c}, 3, 3), got {w.shape}")
    dtype = np.result_type(x.dtype, w.dtype)
    o = w.shape[0]
    if n == 0 or o == 0 or c == 0:
        return np.zeros((n, o, h, wd), dtype)
    xr = _padded_rows(x.astype(dtype, copy=False))
    rows = xr.shape[0]
    r = rows - (2 * (wd + 2) + 2)
    # cross-correlation weights per tap, (3, 3, C_in, C_out), contiguous so that .T is Fortran order
    wc = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(2, 3, 1, 0), dtype=dtype)
    y = np.zeros((rows, o), dtype)
    (gemm,) = get_blas_funcs(("gemm",), (xr,))
    # BLAS is column-major: a C-order (R, O) block is the Fortran (O, R) matrix Y^T, so we compute
    # Y^T += Wc^T X^T, and every operand is passed without a copy.
    yt = y[:r].T
    with _blas_threads():
        for i, j, s in _taps(wd):
            out = gemm(1.0, wc[i, j].T, xr[s : s + r].T, beta=1.0, c=yt, overwrite_c=True)
            if not np.shares_memory(out, yt):  # BLAS wrapper had to copy: keep the sum anyway
                yt[...] = out
    y = y.reshape(n, h + 2, wd + 2, o)[:, :h, :wd, :]
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2))


def conv3x3_grad_w_numpy(x, g):
    """Gradient of ``sum(g * conv3x3(x, w))`` with respect to w, shape (C_out, C_in, 3, 3)::

        dw[o, c, i, j] = sum_{n, h, v} g[n, o, h, v] * xpad[n, c, h + 2 - i, v + 2 - j]
    """
    _check(x, g, "conv3x3 weight gradient")
    n, c, h, wd = x.shape
    if g.shape[0] != n or g.shape[2:] != (h, wd):
        raise ValueError(f"conv.py: output gradient {g.shape} does not match input {x.shape}")
    dtype = np.result_type(x.dtype, g.dtype)
    o = g.shape[1]
    if n == 0 or o == 0 or c == 0:
        return np.zeros((o, c, 3, 3), dtype)
    xr = _padded_rows(x.astype(dtype, copy=False))
    r = xr.shape[0] - (2 * (wd + 2) + 2)
    # g on the same padded grid as Y (top-left aligned, zeros on the discarded rows)
    gp = np.zeros((n, h + 2, wd + 2, o), dtype)
    gp[:, :h, :wd, :] = g.transpose(0, 2, 3, 1)
    gr = gp.reshape(-1, o)[:r]
    dwc = np.empty((3, 3, c, o), dtype)
    with _blas_threads():
        for i, j, s in _taps(wd):
            # numpy's BLAS: 20% faster than scipy's on these long-K products (measured)
            np.matmul(xr[s : s + r].T, gr, out=dwc[i, j])
    return np.ascontiguousarray(dwc[::-1, ::-1].transpose(3, 2, 0, 1))


def _windows(x):
    """(N, C, H, W) -> (N, C, H//2, 2, W//2, 2), the odd last row/column dropped (a view)."""
    n, c, h, w = x.shape
    return x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)


def max_pool2x2_numpy(x):
    """``out[n, c, a, b] = max(x[n, c, 2a:2a+2, 2b:2b+2])``."""
    if x.ndim != 4:
        raise ValueError(f"conv.py: max_pool2x2 needs a 4-d array, got shape {x.shape}")
    return _windows(x).max(axis=(3, 5))


def _check_ties(ties):
    if ties not in POOL_TIES:
        raise ValueError(f"conv.py: max_pool2x2 ties must be one of {POOL_TIES}, got {ties!r}")
    return ties


def _route(hit, ties, xp):
    """Which elements of each window get its gradient: ``hit`` (N, C, H//2, 2, W//2, 2) marks the
    elements equal to the window's maximum; ``"all"`` keeps them all, ``"first"`` the first one in
    row-major window order. ``xp`` is numpy or jax.numpy."""
    if _check_ties(ties) == "all":
        return hit
    by_window = hit.transpose(0, 1, 2, 4, 3, 5)  # (N, C, H//2, W//2, 2, 2): its own inverse
    flat = by_window.reshape(*by_window.shape[:4], 4)
    first = flat & (xp.cumsum(flat, axis=-1) == 1)
    return first.reshape(by_window.shape).transpose(0, 1, 2, 4, 3, 5)


def max_pool2x2_grad_numpy(x, out, gz, ties=THEANO_CPU_TIES):
    """``gx = gz`` at the maximal elements of each window that ``ties`` selects (see the module
    docstring), 0 elsewhere and on the dropped row/column."""
    n, c, h, w = x.shape
    hit = _route(_windows(x) == out[:, :, :, None, :, None], ties, np)
    gx = np.zeros_like(x, dtype=gz.dtype)
    gx[:, :, : h // 2 * 2, : w // 2 * 2] = (hit * gz[:, :, :, None, :, None]).reshape(
        n, c, h // 2 * 2, w // 2 * 2
    )
    return gx


# --- jax kernels ---------------------------------------------------------------------------


def _conv3x3_jax(x, w):
    """XLA's convolution (cuDNN on a GPU); it cross-correlates, so the filters are flipped here."""
    import jax

    dims = ("NCHW", "OIHW", "NCHW")
    flipped = w[:, :, ::-1, ::-1]
    return jax.lax.conv_general_dilated(x, flipped, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dims)


def _conv3x3_grad_w_jax(x, g):
    import jax
    import jax.numpy as jnp

    w0 = jnp.zeros((g.shape[1], x.shape[1], 3, 3), jnp.result_type(x, g))
    _, pullback = jax.vjp(lambda w: _conv3x3_jax(x, w), w0)
    return pullback(g.astype(w0.dtype))[0]


def _on_host(kernel, out_shape, out_type):
    """``kernel`` (a numpy function) as a JAX function, through a host callback; ``out_shape``
    gives the result's shape from the arguments' shapes."""
    import jax

    def host(*args):
        return np.asarray(kernel(*(np.asarray(a) for a in args)), dtype=out_type.dtype)

    def run(*args):
        result = jax.ShapeDtypeStruct(out_shape(*(a.shape for a in args)), out_type.dtype)
        return jax.pure_callback(host, result, *args)

    return run


def _conv_shape(x, w):
    return (x[0], w[0], x[2], x[3])


def _grad_w_shape(x, g):
    return (g[1], x[1], 3, 3)


def _max_pool2x2_jax(x):
    return _windows(x).max(axis=(3, 5))


def _max_pool2x2_grad_jax(x, out, gz, ties=THEANO_CPU_TIES):
    import jax.numpy as jnp

    n, c, h, w = x.shape
    hit = _route(_windows(x) == out[:, :, :, None, :, None], ties, jnp)
    gx = (hit * gz[:, :, :, None, :, None]).reshape(n, c, h // 2 * 2, w // 2 * 2).astype(gz.dtype)
    return jnp.pad(gx, ((0, 0), (0, 0), (0, h % 2), (0, w % 2)))


# --- the Ops ---------------------------------------------------------------------------------


def _flip_transpose(w):
    """Weights of the input gradient: channels swapped, taps unflipped (see the module docstring)."""
    return w.dimshuffle(1, 0, 2, 3)[:, :, ::-1, ::-1]


def _as4d(v, what):
    v = pt.as_tensor_variable(v)
    if v.ndim != 4:
        raise ValueError(f"conv.py: {what} must be a 4-d tensor, got {v.ndim} dimensions")
    if v.dtype not in ("float32", "float64"):
        raise TypeError(f"conv.py: {what} must be float32 or float64, got {v.dtype}")
    return v


class Conv3x3(Op):
    """out = conv3x3(x, w); see the module docstring."""

    __props__ = ()

    def make_node(self, x, w):
        x, w = _as4d(x, "conv3x3 input"), _as4d(w, "conv3x3 weights")
        if w.type.shape[2:] not in ((3, 3), (None, None), (3, None), (None, 3)):
            raise ValueError(f"conv.py: conv3x3 weights must be 3x3, got static shape {w.type.shape}")
        cx, cw = x.type.shape[1], w.type.shape[1]
        if cx is not None and cw is not None and cx != cw:
            raise ValueError(f"conv.py: conv3x3 input has {cx} channels, weights expect {cw}")
        dtype = upcast(x.dtype, w.dtype)
        n, _, h, wd = x.type.shape
        out = pt.tensor(dtype=dtype, shape=(n, w.type.shape[0], h, wd))
        return Apply(self, [x, w], [out])

    def perform(self, node, inputs, output_storage):
        x, w = inputs
        output_storage[0][0] = conv3x3_numpy(x, w).astype(node.outputs[0].dtype, copy=False)

    def infer_shape(self, fgraph, node, shapes):
        (n, _, h, wd), (o, _, _, _) = shapes
        return [(n, o, h, wd)]

    def pullback(self, inputs, outputs, output_grads):
        x, w = inputs
        (g,) = output_grads
        return [conv3x3(g, _flip_transpose(w)).astype(x.dtype), Conv3x3GradW()(x, g).astype(w.dtype)]


class Conv3x3GradW(Op):
    """dw = d sum(g * conv3x3(x, w)) / dw, inputs (x, g); see ``conv3x3_grad_w_numpy``."""

    __props__ = ()

    def make_node(self, x, g):
        x, g = _as4d(x, "conv3x3 input"), _as4d(g, "conv3x3 output gradient")
        dtype = upcast(x.dtype, g.dtype)
        out = pt.tensor(dtype=dtype, shape=(g.type.shape[1], x.type.shape[1], 3, 3))
        return Apply(self, [x, g], [out])

    def perform(self, node, inputs, output_storage):
        x, g = inputs
        output_storage[0][0] = conv3x3_grad_w_numpy(x, g).astype(node.outputs[0].dtype, copy=False)

    def infer_shape(self, fgraph, node, shapes):
        (_, c, _, _), (_, o, _, _) = shapes
        return [(o, c, 3, 3)]

    def pullback(self, inputs, outputs, output_grads):
        # dw(x, g) is bilinear and <h, dw(x, g)> = <g, conv3x3(x, h)>, so both gradients are convolutions.
        x, g = inputs
        (hw,) = output_grads
        return [conv3x3(g, _flip_transpose(hw)).astype(x.dtype), conv3x3(x, hw).astype(g.dtype)]


class MaxPool2x2(Op):
    """out = max_pool2x2(x); see ``max_pool2x2_numpy``. ``ties`` chooses the gradient's rule."""

    __props__ = ("ties",)

    def __init__(self, ties=THEANO_CPU_TIES):
        self.ties = _check_ties(ties)

    def make_node(self, x):
        x = _as4d(x, "max_pool2x2 input")
        n, c, h, w = x.type.shape
        half = [None if d is None else d // 2 for d in (h, w)]
        out = pt.tensor(dtype=x.dtype, shape=(n, c, *half))
        return Apply(self, [x], [out])

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = max_pool2x2_numpy(inputs[0])

    def infer_shape(self, fgraph, node, shapes):
        ((n, c, h, w),) = shapes
        return [(n, c, h // 2, w // 2)]

    def pullback(self, inputs, outputs, output_grads):
        return [MaxPool2x2Grad(self.ties)(inputs[0], outputs[0], output_grads[0])]


class MaxPool2x2Grad(Op):
    """gx from (x, out, gz); see ``max_pool2x2_grad_numpy``."""

    __props__ = ("ties",)

    def __init__(self, ties=THEANO_CPU_TIES):
        self.ties = _check_ties(ties)

    def make_node(self, x, out, gz):
        x, out, gz = (_as4d(v, "max_pool2x2 gradient input") for v in (x, out, gz))
        return Apply(self, [x, out, gz], [pt.tensor(dtype=gz.dtype, shape=x.type.shape)])

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = max_pool2x2_grad_numpy(*inputs, ties=self.ties)

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[0]]


def conv3x3(x, w):
    """True 3x3 convolution, zero padding 1, stride 1, no bias: (N, C_in, H, W) -> (N, C_out, H, W)."""
    return Conv3x3()(x, w)


def max_pool2x2(x, ties=THEANO_CPU_TIES):
    """2x2 max pooling, stride 2, odd trailing row/column dropped: (N, C, H, W) -> (N, C, H//2, W//2).

    ``out[n, c, a, b] = max(x[n, c, 2a:2a+2, 2b:2b+2])``. Where the maximum is tied, the gradient
    goes to every tied element (``ties="all"``, Theano's CPU rule) or to the first in row-major
    window order (``ties="first"``, cuDNN's, where the original ran); SOURCES.md §2.2.
    """
    return MaxPool2x2(ties)(_as4d(x, "max_pool2x2 input"))


# --- back-end registrations ------------------------------------------------------------------


def _register_jax():
    try:
        from pytensor.link.jax.dispatch import jax_funcify
    except ImportError:  # jax not installed: the JAX mode is unavailable anyway
        return

    def on_cpu():
        import jax

        return jax.default_backend() == "cpu"

    @jax_funcify.register(Conv3x3)
    def _jax_conv3x3(op, node=None, **kwargs):
        return _on_host(conv3x3_numpy, _conv_shape, node.outputs[0].type) if on_cpu() else _conv3x3_jax

    @jax_funcify.register(Conv3x3GradW)
    def _jax_conv3x3_grad_w(op, node=None, **kwargs):
        if on_cpu():
            return _on_host(conv3x3_grad_w_numpy, _grad_w_shape, node.outputs[0].type)
        return _conv3x3_grad_w_jax

    @jax_funcify.register(MaxPool2x2)
    def _jax_max_pool2x2(op, node=None, **kwargs):
        return _max_pool2x2_jax

    @jax_funcify.register(MaxPool2x2Grad)
    def _jax_max_pool2x2_grad(op, node=None, **kwargs):
        ties = op.ties

        def grad(x, out, gz):
            return _max_pool2x2_grad_jax(x, out, gz, ties)

        return grad


def _register_numba():
    try:
        import numba
        from pytensor.link.numba.dispatch import basic as numba_basic
    except ImportError:
        return

    def objmode_perform(op, node, **kwargs):
        # What PyTensor's generic fallback does, without its warning: the work is nine BLAS calls,
        # so object mode costs nothing measurable. No cache key: Numba will not cache the graph.
        ret_sig = numba_basic.get_numba_type(node.outputs[0].type)

        def py_perform(inputs):
            storage = [[None]]
            op.perform(node, inputs, storage)
            return storage[0][0]

        if len(node.inputs) == 1:

            @numba_basic.numba_njit
            def perform(a):
                with numba.objmode(ret=ret_sig):
                    ret = py_perform((a,))
                return ret

        elif len(node.inputs) == 2:

            @numba_basic.numba_njit
            def perform(a, b):
                with numba.objmode(ret=ret_sig):
                    ret = py_perform((a, b))
                return ret

        else:

            @numba_basic.numba_njit
            def perform(a, b, c):
                with numba.objmode(ret=ret_sig):
                    ret = py_perform((a, b, c))
                return ret

        return perform

    for op_type in (Conv3x3, Conv3x3GradW, MaxPool2x2, MaxPool2x2Grad):
        numba_basic.numba_funcify.register(op_type)(objmode_perform)


_register_jax()
_register_numba()
