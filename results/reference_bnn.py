"""A plain-numpy float32 implementation of one training step of the original, written from its source
(binary_net.py and the MNIST/CIFAR-10 scripts, with Lasagne 6a559dd's DenseLayer, Conv2DLayer,
BatchNormLayer and adam; SOURCES.md §1), independent of PyTensor and of ``reproduction``: the
reference the step-by-step tests and ``results/trajectory.py`` compare our training step against.

Every quantity is a :class:`Val`: its float32 value, computed by the formula as written, and
optionally ``e``, a first-order bound on how far that value is from the exact result of the same
formula on the same inputs (float64, the unit roundoff ``u = 2**-24``):

- each float32 operation adds ``u * |result|`` (one rounding) to the propagated input errors
  (``|y| e_x + |x| e_y`` for a product, ``(e_x + |x/y| e_y) / |y|`` for a quotient, ...);
- a sum of ``n`` terms in any order adds ``gamma_n * sum |terms|``, ``gamma_n = n u / (1 - n u)``
  (Higham, Accuracy and Stability of Numerical Algorithms, eq. 3.5); a matrix product likewise.

Any other float32 implementation of the same formulas, summing in another order or fusing a
multiply-add, also lies within about ``e`` of the exact result, so two implementations agree to
within ``2 e`` (plus a few ``u |value|`` for a reassociated product): that is the tolerance the tests
use, and it is rigorous to first order. The bound assumes each discrete decision (the sign of an
activation or a weight, the straight-through mask ``|y| <= 1``, the maximum of a pooling window) is
the same in both: :class:`Step` counts the decisions whose input lies within its error bound of the
threshold (``undecided``), which the tests require to be zero.

Arithmetic as the original's graph held it (reproduction/updates.py has the sources):
float32 constants ``beta1 = float32(0.9)``, ``beta2 = float32(0.999)``, ``1 - beta1`` and ``1 - beta2``
computed in Python and rounded once, ``epsilon = float32(1e-8)``; batch norm ``1 - alpha`` likewise,
``alpha``, ``eps = float32(1e-4)``; the binary weights' update ``clip(W - scale * step, -H, H)``, which
is what Theano's canonicalizer made of ``W + scale*((W - step) - W)``.
"""
from dataclasses import dataclass, field

import numpy as np

F32 = np.float32
U = 2.0 ** -24


def gamma(n):
    return n * U / (1 - n * U)


def _dyadic_exponent(a, most=30):
    """The least k <= ``most`` with every entry of ``a`` a multiple of 2**-k, else None."""
    a = np.asarray(a, dtype=np.float64)
    for k in range(most + 1):
        scaled = a * 2.0 ** k
        if np.all(scaled == np.round(scaled)):
            return k
    return None


def _exact_sums(terms_abs_sum, *operands):
    """Where a sum of products of the (exact) ``operands`` is exact in every order: all of them
    dyadic, and the sum of the absolute terms below 2**24 units of their last place, so that every
    partial sum, in any order, is representable in float32."""
    ks = [_dyadic_exponent(o) for o in operands]
    if any(k is None for k in ks):
        return np.zeros(np.shape(terms_abs_sum), dtype=bool)
    return terms_abs_sum * 2.0 ** sum(ks) < 2.0 ** 24


class Val:
    """A float32 value and (or None) a float64 bound on its rounding error."""

    __slots__ = ("v", "e")
    __array_ufunc__ = None  # numpy scalars and arrays defer to the reflected operators below

    def __init__(self, v, e=None):
        self.v = _floating(v)
        self.e = e

    @staticmethod
    def exact(v, bounds):
        v = _floating(v)
        return Val(v, np.zeros(v.shape) if bounds else None)

    @property
    def d(self):
        return self.v.astype(np.float64)

    def _op(self, o, v, v64, propagated):
        """The float32 result ``v`` of one correctly rounded operation whose float64 value on the same
        float32 operands is ``v64``: the bound adds one rounding, ``u |v|``, except where the inputs
        are exact and so is the operation (any implementation then gets it exactly)."""
        if self.e is None:
            return Val(v)
        exact = (v.astype(np.float64) == v64) & (propagated == 0)
        return Val(v, propagated + np.where(exact, 0.0, U * np.abs(v64)))

    def __add__(self, o):
        o = _val(o, self)
        return self._op(o, self.v + o.v, self.d + o.d, None if self.e is None else self.e + o.e)

    __radd__ = __add__

    def __sub__(self, o):
        o = _val(o, self)
        return self._op(o, self.v - o.v, self.d - o.d, None if self.e is None else self.e + o.e)

    def __rsub__(self, o):
        return _val(o, self) - self

    def __mul__(self, o):
        o = _val(o, self)
        prop = None if self.e is None else np.abs(o.d) * self.e + np.abs(self.d) * o.e + self.e * o.e
        return self._op(o, self.v * o.v, self.d * o.d, prop)

    __rmul__ = __mul__

    def __truediv__(self, o):
        o = _val(o, self)
        v, v64 = self.v / o.v, self.d / o.d
        if self.e is None:
            return Val(v)
        denominator = np.abs(o.d) - o.e
        with np.errstate(divide="ignore", invalid="ignore"):
            # a divisor within its error bound of zero leaves the quotient unbounded
            propagated = np.where(denominator > 0, (self.e + np.abs(v64) * o.e) / denominator, np.inf)
        return self._op(o, v, v64, propagated)

    def __rtruediv__(self, o):
        return _val(o, self) / self

    def __neg__(self):
        return Val(-self.v, self.e)

    def __getitem__(self, index):
        return Val(self.v[index], None if self.e is None else self.e[index])

    def reshape(self, *shape):
        return Val(self.v.reshape(*shape), None if self.e is None else self.e.reshape(*shape))

    @property
    def T(self):
        return Val(self.v.T, None if self.e is None else self.e.T)

    def bcast(self, ndim, axis=1):
        """A per-channel vector shaped to broadcast along ``axis`` of an ``ndim``-array."""
        shape = [1] * ndim
        shape[axis] = -1
        return self.reshape(shape)


def _floating(v):
    """``v`` as an array: float32 unless it is float64 already (the float64 shadow of a step)."""
    v = np.asarray(v)
    return v if v.dtype == np.float64 else v.astype(F32)


def _val(x, like):
    if isinstance(x, Val):
        return x
    return Val.exact(x, like.e is not None)


def sqrt(x):
    v = np.sqrt(x.v)
    if x.e is None:
        return Val(v)
    root = np.sqrt(x.d)
    low = np.sqrt(np.maximum(x.d - x.e, 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        propagated = np.where(root + low > 0, x.e / (root + low), 0.0)
    return x._op(None, v, root, np.minimum(propagated, np.sqrt(x.e)))


def total(x, axis):
    """A float32 sum over ``axis`` (a tuple), in numpy's order; bounded for any order."""
    v = x.v.sum(axis=axis, dtype=x.v.dtype)
    if x.e is None:
        return Val(v)
    n = int(np.prod([x.v.shape[a] for a in axis]))
    abs_sum = np.abs(x.d).sum(axis=axis)
    rounding = np.where(_exact_sums(abs_sum, x.v) & (x.e.sum(axis=axis) == 0), 0.0, gamma(n) * abs_sum)
    return Val(v, x.e.sum(axis=axis) + rounding)


def mean(x, axis):
    n = int(np.prod([x.v.shape[a] for a in axis]))
    return total(x, axis) / F32(n)


def matmul(a, b):
    v = a.v @ b.v
    if a.e is None:
        return Val(v)
    A, B = np.abs(a.d), np.abs(b.d)
    terms = A @ B
    propagated = A @ b.e + a.e @ B + a.e @ b.e
    exact = _exact_sums(terms, a.v, b.v) & (propagated == 0)
    return Val(v, propagated + np.where(exact, 0.0, gamma(a.v.shape[-1]) * terms))


def where(mask, x, y):
    y = _val(y, x)
    return Val(np.where(mask, x.v, y.v), None if x.e is None else np.where(mask, x.e, y.e))


def maximum0(x):
    """``max(0, x)``: 1-Lipschitz, so the bound passes unchanged."""
    return Val(np.maximum(F32(0), x.v), x.e)


def clip(x, lo, hi):
    return Val(np.clip(x.v, F32(lo), F32(hi)), x.e)


# --- the discrete decisions --------------------------------------------------------------------

def _undecided(x, threshold):
    """How many entries of ``x`` lie within their error bound of ``threshold`` (inexact ones only)."""
    if x.e is None:
        return 0
    return int(np.sum((x.e > 0) & (np.abs(x.v.astype(np.float64) - threshold) <= x.e + U)))


def sign_unit(y):
    """The binary activation ``2 * round(clip((y + 1) / 2, 0, 1)) - 1`` in float32: +1 where
    ``(y + 1) / 2 >= 0.5`` (sign(0) = +1; binary_net.py l.34-43)."""
    return np.where((y.v + F32(1)) / F32(2) >= F32(0.5), F32(1), F32(-1))


def ste_mask(y):
    """The straight-through estimator of the binary activation: the gradient of
    ``clip((y + 1) / 2, 0, 1)`` times 2, i.e. 1 where ``0 <= (y + 1) / 2 <= 1``, both ends included."""
    h = (y.v + F32(1)) / F32(2)
    return (h >= F32(0)) & (h <= F32(1))


def binarize(W, H=1.0):
    """binary_net.py ``binarization``, deterministic: +H where ``round(clip((W/H + 1) / 2, 0, 1))``
    is 1 (half away from zero, so W = 0 gives +H), else -H."""
    p = np.clip((W / F32(H) + F32(1)) / F32(2), F32(0), F32(1))
    return np.where(p >= F32(0.5), F32(H), F32(-H))


# --- layers ------------------------------------------------------------------------------------

def conv3x3(x, w):
    """Lasagne's Conv2DLayer(filter_size=3, pad=1, flip_filters=True): a true convolution,
    ``out[n,o,h,v] = sum_{c,i,j} xpad[n,c,h+i,v+j] * w[o,c,2-i,2-j]``, in float32."""
    n, c, H, W = x.v.shape
    wf = w.v[:, :, ::-1, ::-1]
    xp = np.pad(x.v, ((0, 0), (0, 0), (1, 1), (1, 1)))
    v = np.zeros((n, w.v.shape[0], H, W), np.result_type(x.v, w.v))
    for i in range(3):
        for j in range(3):
            v += np.einsum("nchw,oc->nohw", xp[:, :, i:i + H, j:j + W], wf[:, :, i, j])
    if x.e is None:
        return Val(v)
    X, Wd = np.abs(xp.astype(np.float64)), np.abs(wf.astype(np.float64))
    ep = np.pad(x.e, ((0, 0), (0, 0), (1, 1), (1, 1)))
    propagated, terms = np.zeros(v.shape), np.zeros(v.shape)
    for i in range(3):
        for j in range(3):
            propagated += np.einsum("nchw,oc->nohw", ep[:, :, i:i + H, j:j + W], Wd[:, :, i, j])
            terms += np.einsum("nchw,oc->nohw", X[:, :, i:i + H, j:j + W], Wd[:, :, i, j])
    exact = _exact_sums(terms, x.v, w.v) & (propagated == 0) & np.all(w.e == 0)
    return Val(v, propagated + np.where(exact, 0.0, gamma(9 * c) * terms))


def conv3x3_backward(x, w, g):
    """Gradients of :func:`conv3x3` with respect to its input and its (binarized) weights."""
    n, c, H, W = x.v.shape
    wf = w.v[:, :, ::-1, ::-1]
    xp = np.pad(x.v, ((0, 0), (0, 0), (1, 1), (1, 1)))
    gxp = np.zeros(xp.shape, np.result_type(g.v, wf))
    gwf = np.zeros(wf.shape, np.result_type(g.v, xp))
    for i in range(3):
        for j in range(3):
            gxp[:, :, i:i + H, j:j + W] += np.einsum("nohw,oc->nchw", g.v, wf[:, :, i, j])
            gwf[:, :, i, j] = np.einsum("nohw,nchw->oc", g.v, xp[:, :, i:i + H, j:j + W])
    gx, gw = Val(gxp[:, :, 1:-1, 1:-1]), Val(gwf[:, :, ::-1, ::-1])
    if g.e is None:
        return gx, gw
    G, X, Wd = np.abs(g.v.astype(np.float64)), np.abs(xp.astype(np.float64)), np.abs(wf.astype(np.float64))
    o = w.v.shape[0]
    ex, ew = np.zeros(xp.shape), np.zeros(wf.shape)
    for i in range(3):
        for j in range(3):
            ex[:, :, i:i + H, j:j + W] += np.einsum("nohw,oc->nchw", g.e + gamma(9 * o) * G, Wd[:, :, i, j])
            ew[:, :, i, j] = np.einsum("nohw,nchw->oc", g.e, X[:, :, i:i + H, j:j + W]) \
                + gamma(n * H * W) * np.einsum("nohw,nchw->oc", G, X[:, :, i:i + H, j:j + W])
    return Val(gx.v, ex[:, :, 1:-1, 1:-1]), Val(gw.v, ew[:, :, ::-1, ::-1].copy())


def _windows(a):
    n, c, h, w = a.shape
    return a[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)


def max_pool(x, ties="first"):
    """2x2 max pooling, stride 2, odd edges dropped; returns the output and the winners, and the
    number of undecided windows (a loser within the error bounds of the maximum). The winners of a
    tied window: its first maximal element in row-major order (``ties="first"``: cuDNN, where the
    original ran) or every maximal one (``"all"``: Theano's CPU MaxPoolGrad); SOURCES.md §2.2."""
    win = _windows(x.v)
    out = win.max(axis=(3, 5))
    maxima = win == out[:, :, :, None, :, None]
    hit = maxima
    if ties == "first":   # an exact tie is decided by position, the same in any implementation
        n, c, h2, _, w2, _ = maxima.shape
        flat = maxima.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h2, w2, 4)
        first = np.zeros_like(flat)
        np.put_along_axis(first, flat.argmax(axis=-1)[..., None], True, axis=-1)
        hit = first.reshape(n, c, h2, w2, 2, 2).transpose(0, 1, 2, 4, 3, 5)
    undecided = 0
    e = None
    if x.e is not None:
        ew = _windows(x.e)
        e = ew.max(axis=(3, 5))
        gap = out[:, :, :, None, :, None].astype(np.float64) - win
        undecided = int(np.sum(~maxima & (gap <= ew + e[:, :, :, None, :, None])))
    return Val(out, e), hit, undecided


def max_pool_backward(x_shape, hit, g):
    gv = np.zeros(x_shape, g.v.dtype)
    _windows(gv)[...] = np.where(hit, g.v[:, :, :, None, :, None], F32(0))
    if g.e is None:
        return Val(gv)
    ge = np.zeros(x_shape)
    _windows(ge)[...] = np.where(hit, g.e[:, :, :, None, :, None], 0.0)
    return Val(gv, ge)


# --- the network -------------------------------------------------------------------------------

@dataclass
class Block:
    """One binary layer (+ real bias) -> [max pool] -> batch norm -> [sign]; ``kind`` is "dense" or
    "conv". Arrays are float32; ``scale`` is the layer's float32 Glorot learning-rate scale;
    ``ties`` the pooling gradient's rule at tied maxima (:func:`max_pool`)."""

    kind: str
    W: np.ndarray
    b: np.ndarray
    beta: np.ndarray
    gamma: np.ndarray
    mean: np.ndarray
    inv_std: np.ndarray
    scale: np.float32
    pool: bool = False
    act: bool = True
    ties: str = "first"


@dataclass
class Adam:
    """One Adam instance's state: its step counter and a moment pair per parameter (by name)."""

    t: np.float32
    m: dict
    v: dict


@dataclass
class Step:
    """The result of one training step: the loss, the new blocks and Adam states (Val), and the
    decisions that lay within rounding of their threshold."""

    loss: Val
    blocks: list
    adam_W: dict
    adam_rest: dict
    t_W: Val
    t_rest: Val
    undecided: dict = field(default_factory=dict)


@dataclass
class Hyper:
    H: float = 1.0
    alpha: float = 0.1
    epsilon: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.999
    adam_epsilon: float = 1e-8


def _bn_forward(a, block, h, axes, bounds):
    mu = mean(a, axes)
    c = a - mu.bcast(a.v.ndim)
    var = mean(c * c, axes)
    inv = F32(1) / sqrt(var + F32(h.epsilon))
    gam = Val.exact(block.gamma, bounds)
    s = gam * inv
    y = c * s.bcast(a.v.ndim) + Val.exact(block.beta, bounds).bcast(a.v.ndim)
    return y, (mu, c, var, inv, s, gam)


def _bn_backward(gy, saved, axes):
    mu, c, var, inv, s, gam = saved
    nd = gy.v.ndim
    n = int(np.prod([gy.v.shape[a] for a in axes]))
    gbeta = total(gy, axes)
    gs = total(gy * c, axes)
    ggamma = gs * inv
    ginv = gs * gam
    gvar = ginv * F32(-0.5) * inv * inv * inv
    gc = gy * s.bcast(nd) + gvar.bcast(nd) * F32(2) * c / F32(n)
    gmu = -total(gc, axes)
    ga = gc + (gmu / F32(n)).bcast(nd)
    return ga, gbeta, ggamma, mu, inv


def _step_range(p, q, g, e_g, c1, c2, eps):
    """The largest change of ``f(x) = (p + c1 x) / (sqrt(q + c2 x^2) + eps)`` (the Adam step over
    ``a``, as a function of the gradient) for x within ``e_g`` of ``g``, in float64: ``f`` is smooth
    with at most two critical points, so its extremes on the interval are at the ends or there."""
    def f(x):
        return (p + c1 * x) / (np.sqrt(q + c2 * x * x) + eps)

    f0 = f(g)
    worst = np.maximum(np.abs(f(g - e_g) - f0), np.abs(f(g + e_g) - f0))
    # f'(x) = 0  <=>  c1 q + c1 eps S = p c2 x with S = sqrt(q + c2 x^2): squared, a quadratic in x
    qa = p * p * c2 * c2 - c1 * c1 * eps * eps * c2
    qb = -2 * p * c1 * c2 * q
    qc = c1 * c1 * q * q - c1 * c1 * eps * eps * q
    with np.errstate(divide="ignore", invalid="ignore"):
        disc = np.sqrt(np.maximum(qb * qb - 4 * qa * qc, 0))
        for root in ((-qb + disc) / (2 * qa), (-qb - disc) / (2 * qa)):
            inside = np.isfinite(root) & (np.abs(root - g) <= e_g)
            worst = np.where(inside, np.maximum(worst, np.abs(f(np.where(inside, root, g)) - f0)), worst)
    return worst


def _adam_step(state_m, state_v, g, a, c):
    """``m``, ``v`` and ``step = a m / (sqrt(v) + eps)``. The step's bound takes the gradient's error
    through the exact range of the step over the gradient's interval (numerator and denominator move
    together: a first step is ``a (1 - beta1) / sqrt(1 - beta2)`` times the sign of g, whatever g's
    error, unless the interval reaches zero), plus the roundings of m, v and the step."""
    m = c["beta1"] * state_m + c["1-beta1"] * g
    v = c["beta2"] * state_v + c["1-beta2"] * (g * g)
    step = a * m / (sqrt(v) + c["epsilon"])
    if step.e is None:
        return m, v, step
    eps, c1, c2 = c["epsilon"].d, c["1-beta1"].d, c["1-beta2"].d
    p, q, G, A, M, S = c["beta1"].d * state_m.d, c["beta2"].d * state_v.d, g.d, a.d, m.d, np.sqrt(v.d)
    # the roundings of m and v alone (their inputs taken exact), then the step's own five operations
    r_m = U * (np.abs(p) + np.abs(c1 * G) + np.abs(M))
    r_v = U * (np.abs(q) + 2 * np.abs(c2 * G * G) + np.abs(v.d))
    with np.errstate(divide="ignore", invalid="ignore"):
        d_v = np.where(S > 0, A * np.abs(M) / (2 * S * (S + eps) ** 2), 0.0)
    step.e = (A * _step_range(p, q, G, g.e, c1, c2, eps) + A / (S + eps) * r_m + d_v * r_v
              + np.abs(M) / (S + eps) * a.e + 6 * U * np.abs(step.d))
    return m, v, step


def _adam_rate(t_prev, lr, c, bounds):
    """``t = t + 1``, ``a_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)`` in float32; the powers are
    libm ``powf``, allowed one ulp."""
    t = Val.exact(t_prev + F32(1), bounds)
    p2, p1 = c["beta2"].v ** t.v, c["beta1"].v ** t.v
    e = (lambda p: 2 * U * abs(float(p))) if bounds else (lambda p: None)
    q2 = F32(1) - Val(p2, e(p2))
    q1 = F32(1) - Val(p1, e(p1))
    return t, Val.exact(lr, bounds) * sqrt(q2) / q1


def train_step(blocks, adam_W, adam_rest, x, targets, lr, h=Hyper(), bounds=False, dtype=F32) -> Step:
    """One step of ``train_fn`` on the batch ``x`` (float32) with ±1 one-hot ``targets``: the loss
    on the current parameters, then both Adam instances, the scale and clip of every W, and the
    batch-norm running averages. ``adam_rest`` holds the moments of "b{i}", "beta{i}", "gamma{i}",
    ``adam_W`` those of "W{i}". Inputs are taken as exact. ``dtype=np.float64`` evaluates the same
    formulas, with the same float32 constants, in float64: the float64 shadow of a float32 step,
    which shows how much float32 rounding moved each value."""
    if dtype == np.float64:
        def wide(a):
            return np.asarray(a, dtype=np.float64)
        blocks = [Block(b.kind, wide(b.W), wide(b.b), wide(b.beta), wide(b.gamma), wide(b.mean), wide(b.inv_std),
                        b.scale, b.pool, b.act, b.ties) for b in blocks]
        adam_W, adam_rest = (Adam(a.t, {k: wide(m) for k, m in a.m.items()}, {k: wide(v) for k, v in a.v.items()})
                             for a in (adam_W, adam_rest))
        x = wide(x)
    c = {k: Val.exact(F32(v), bounds) for k, v in
         {"beta1": h.beta1, "beta2": h.beta2, "1-beta1": 1 - h.beta1, "1-beta2": 1 - h.beta2,
          "epsilon": h.adam_epsilon}.items()}
    undecided = {"activation": 0, "ste": 0, "pool": 0, "weight": 0}

    # forward
    act = Val.exact(x, bounds)
    saved = []
    for i, blk in enumerate(blocks):
        Wb = Val.exact(binarize(blk.W, h.H), bounds)
        inp = act
        if blk.kind == "conv":
            a = conv3x3(inp, Wb) + Val.exact(blk.b, bounds).bcast(4)
            axes = (0, 2, 3)
        else:
            inp = inp.reshape(inp.v.shape[0], -1)
            a = matmul(inp, Wb) + Val.exact(blk.b, bounds).bcast(2)
            axes = (0,)
        pre_pool_shape, hit = a.v.shape, None
        if blk.pool:
            a, hit, u = max_pool(a, blk.ties)
            undecided["pool"] += u
        y, bn = _bn_forward(a, blk, h, axes, bounds)
        if blk.act:
            undecided["activation"] += _undecided(y, 0.0)
            undecided["ste"] += _undecided(y, 1.0) + _undecided(y, -1.0)
            act = Val.exact(sign_unit(y), bounds)
        else:
            act = y
        saved.append((inp, Wb, pre_pool_shape, hit, bn, y, axes))

    t = Val.exact(targets, bounds)
    q = maximum0(F32(1) - t * act)
    count = F32(q.v.size)
    loss = total(q * q, tuple(range(q.v.ndim))) / count

    # backward
    grads = {}
    g = -t * (F32(2) * q / count)
    for i in reversed(range(len(blocks))):
        blk = blocks[i]
        inp, Wb, pre_pool_shape, hit, bn, y, axes = saved[i]
        if blk.act:
            g = where(ste_mask(y), g, F32(0))
        ga, grads[f"beta{i}"], grads[f"gamma{i}"], mu, inv = _bn_backward(g, bn, axes)
        bn_stats = (mu, inv)
        saved[i] = saved[i] + (bn_stats,)
        if blk.pool:
            ga = max_pool_backward(pre_pool_shape, hit, ga)
        if blk.kind == "conv":
            grads[f"b{i}"] = total(ga, (0, 2, 3))
            gx, grads[f"W{i}"] = conv3x3_backward(inp, Wb, ga)
        else:
            grads[f"b{i}"] = total(ga, (0,))
            gx = matmul(ga, Wb.T)
            grads[f"W{i}"] = matmul(inp.T, ga)
        if i > 0:
            g = gx.reshape(saved[i - 1][5].v.shape)

    # the two Adam instances
    t_W, a_W = _adam_rate(adam_W.t, lr, c, bounds)
    t_rest, a_rest = _adam_rate(adam_rest.t, lr, c, bounds)
    new_W, new_rest, new_blocks = {}, {}, []
    for i, blk in enumerate(blocks):
        m, v, step = _adam_step(Val.exact(adam_W.m[f"W{i}"], bounds), Val.exact(adam_W.v[f"W{i}"], bounds),
                                grads[f"W{i}"], a_W, c)
        new_W[f"W{i}"] = (m, v)
        W = clip(Val.exact(blk.W, bounds) - F32(blk.scale) * step, -h.H, h.H)
        undecided["weight"] += _undecided(W, 0.0)
        params = {}
        for name, value in (("b", blk.b), ("beta", blk.beta), ("gamma", blk.gamma)):
            key = f"{name}{i}"
            m, v, step = _adam_step(Val.exact(adam_rest.m[key], bounds), Val.exact(adam_rest.v[key], bounds),
                                    grads[key], a_rest, c)
            new_rest[key] = (m, v)
            params[name] = Val.exact(value, bounds) - step
        mu, inv = saved[i][-1]
        keep, alpha = F32(1 - h.alpha), F32(h.alpha)
        params["mean"] = keep * Val.exact(blk.mean, bounds) + alpha * mu
        params["inv_std"] = keep * Val.exact(blk.inv_std, bounds) + alpha * inv
        new_blocks.append(dict(W=W, **params))
    return Step(loss, new_blocks, new_W, new_rest, t_W, t_rest, undecided)


def advance(blocks, adam_W, adam_rest, step: Step):
    """The float32 state after ``step`` (dropping the bounds), for free-running the reference."""
    new_blocks = []
    for blk, new in zip(blocks, step.blocks):
        new_blocks.append(Block(blk.kind, new["W"].v, new["b"].v, new["beta"].v, new["gamma"].v,
                                new["mean"].v, new["inv_std"].v, blk.scale, blk.pool, blk.act, blk.ties))
    aW = Adam(step.t_W.v, {k: mv[0].v for k, mv in step.adam_W.items()}, {k: mv[1].v for k, mv in step.adam_W.items()})
    aR = Adam(step.t_rest.v, {k: mv[0].v for k, mv in step.adam_rest.items()},
              {k: mv[1].v for k, mv in step.adam_rest.items()})
    return new_blocks, aW, aR
