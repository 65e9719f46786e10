"""The run-time MNIST MLP of the original ``Run-time/mnist.py`` (SOURCES.md §3.4): one driver for
every device and kernel.

784 → units → … → units → 10, the sizes of the MNIST program's recipe (``mnist/__main__.py``:
``num_units``, ``n_hidden_layers``). Each block is a dense layer with sign(W) (sign(0) = +1), its
bias, and batch norm with the stored statistics, y = ((s + b) − mean)·scale + β with
scale = γ·inv_std (float32, each operation rounded); blocks 1..L−1 end in sign (y ≥ 0 → +1), the
last in argmax. Layer 1 always runs the baseline float kernel, whatever the chosen kernel, because
its input x = 2p/255 − 1 is not binary (as the original); layers 2..L run the chosen kernel:
``baseline``, ``xnor_paper``, ``xnor`` or ``blas`` (and ``blas_tf32`` on a GPU).

Exact by construction, the same predictions with every kernel:
  - layer 1 is ONE routine for every kernel (the device's ``layer1``, the original's float
    product), so every kernel sees the same s₁;
  - batch norm + sign is folded into a per-unit threshold (:func:`fold_sign`): +1 ⟺ d·s ≥ t with
    d = ±1, which equals sign(((s + b) − mean)·scale + β) evaluated in float32 for EVERY float32
    s with |s| ≤ 2²⁴, since that expression is monotone in s (each rounded operation is); for the
    binary layers, whose s are integers, t is an integer (the standard BNN inference form). The
    comparison is exact, so it gives the same bits on every device;
  - the products of layers 2..L are integers below 2²⁴, exact with every kernel;
  - the scores of the last layer are computed on the host with numpy in float32, and argmax
    breaks ties towards the LOWEST class index (``numpy.argmax``), on every device.
On a given machine every kernel therefore gives bit-identical scores. The CPU's baseline kernel
rounds every product and sum in a fixed order (no fused multiply-add), so s₁, and everything
after it, is the same on every CPU; a GPU's baseline kernel uses fused multiply-adds (nvcc's
default, kept as the original), so a unit whose s₁ lies within float rounding of its threshold may
differ between a CPU and a GPU.

Beyond the original, Algorithm 4 (SOURCES.md §5.5) for layer 1: with pixels p ∈ 0..255 written
as bit planes p = Σ_{n=0..7} 2ⁿ·pₙ, pₙ ∈ {0,1}, and sₙ = 2pₙ − 1 ∈ {±1}, each plane's product
with ±1 weights is an XNOR product: pₙ·w = (sₙ·w + Σw)/2, where sₙ·w = K − 2·popcount(Sₙ ^ W).
Hence p·w = (Σₙ 2ⁿ·(sₙ·w) + 255·Σw) / 2 (an exact integer) and
x·w = (2/255)·p·w − Σw = (1/255)·Σₙ 2ⁿ·(sₙ·w): 8 XNOR products and one division
(``layer1="alg4"``, CPU only). Its s₁ is the exact x·w rounded once, not the original's float sum,
so a near-threshold unit may differ from the other kernels'.
"""
from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reproduction.dataset import scale_pixels_mnist as scale_pixels  # pylearn2 x/255, then 2X - 1
from reproduction.files import atomic_output

N_INPUTS, N_CLASSES = 28 * 28, 10
LAYER1 = ("baseline", "alg4")
#: |s| bound for which fold_sign's thresholds are exact (float32 holds every integer up to it).
S_BOUND = float(2 ** 24)


class ParamsError(ValueError):
    """A parameter file that cannot serve as the MLP; ``str(e)`` is one line naming the file."""


def recipe_sizes(units: int | None = None) -> tuple:
    """(784, units, …, units, 10): ``num_units`` and ``n_hidden_layers`` of the MNIST program's
    recipe (``mnist/__main__.py``), ``units`` replacing ``num_units`` when given."""
    num_units, n_hidden_layers = _recipe()
    return (N_INPUTS, *[units or num_units] * n_hidden_layers, N_CLASSES)


def _recipe() -> tuple[int, int]:
    try:
        from mnist.__main__ import n_hidden_layers, num_units
    except ImportError:
        # mnist/__main__.py imports PyTensor, absent where only the kernels run (a bare GPU
        # machine): read the same two assignments at the top of the file instead.
        import mnist

        tree = ast.parse((Path(mnist.__file__).parent / "__main__.py").read_text())
        found = {t.id: ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign) for t in node.targets
                 if isinstance(t, ast.Name) and t.id in ("num_units", "n_hidden_layers")}
        num_units, n_hidden_layers = found["num_units"], found["n_hidden_layers"]
    return int(num_units), int(n_hidden_layers)


# ---------------------------------------------------------------- batch norm + sign ----------

def batchnorm(s, b, mean, scale, beta) -> np.ndarray:
    """((s + b) − mean)·scale + β in float32, each operation rounded (numpy ufuncs, no fusion):
    the original's dense bias then Lasagne's inference batch norm (SOURCES.md §1.3, §3.4)."""
    return ((np.asarray(s, np.float32) + b) - mean) * scale + beta


def _keys(x: np.ndarray) -> np.ndarray:
    """float32 → int64 keys in the order of the values (−0.0 and +0.0 share the key 0)."""
    bits = np.asarray(x, np.float32).view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def _floats(keys: np.ndarray) -> np.ndarray:
    bits = np.where(keys < 0, (-keys) | 0x80000000, keys).astype(np.uint32)
    return bits.view(np.float32)


def fold_sign(b, mean, scale, beta, integer: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit (t, d), d = ±1, such that  d·s ≥ t  ⟺  batchnorm(s) ≥ 0  for every float32 s with
    |s| ≤ 2²⁴. batchnorm is non-decreasing in s where scale ≥ 0 and non-increasing where scale < 0
    (rounding is monotone), so g(u) = batchnorm(d·u) is non-decreasing and t is the least u with
    g(u) ≥ 0, found by bisection over the float32 values in order (−inf: always +1; +inf: never).
    ``integer``: s is an integer (a binary layer), and t is rounded up to one."""
    b, mean, scale, beta = (np.asarray(v, np.float32).reshape(-1) for v in (b, mean, scale, beta))
    d = np.where(scale < 0, np.float32(-1), np.float32(1))

    def g(u):
        return batchnorm(d * u, b, mean, scale, beta) >= 0

    lo = np.full(b.shape, _keys(np.float32(-S_BOUND)), np.int64)  # g(lo) false, unless always
    hi = np.full(b.shape, _keys(np.float32(S_BOUND)), np.int64)  # g(hi) true, unless never
    always, never = g(_floats(lo)), ~g(_floats(hi))
    open_ = ~(always | never)
    while True:
        todo = open_ & (hi - lo > 1)
        if not todo.any():
            break
        mid = (lo + hi) // 2
        ok = g(_floats(mid))
        hi = np.where(todo & ok, mid, hi)
        lo = np.where(todo & ~ok, mid, lo)
    t = _floats(hi).copy()
    if integer:
        t = np.ceil(t)
    t[always], t[never] = -np.inf, np.inf
    return t.astype(np.float32), d


# ---------------------------------------------------------------- the network ----------------

@dataclass
class Block:
    """One dense layer and its batch norm, ready for inference: ``wb`` = sign(W) as float32 ±1,
    ``scale`` = γ·inv_std, and (t, d) = ``fold_sign`` of the batch norm (integer t after a binary
    input, i.e. for every block but the first)."""

    wb: np.ndarray
    b: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    beta: np.ndarray
    t: np.ndarray
    d: np.ndarray


@dataclass
class MLP:
    blocks: list
    weights: str  # "random" or the parameter file, for the record

    @property
    def sizes(self) -> tuple:
        return (self.blocks[0].wb.shape[0], *[blk.wb.shape[1] for blk in self.blocks])


def sign(x: np.ndarray) -> np.ndarray:
    """The original's SignNumpy: +1 where x ≥ 0, else −1, as float32."""
    return np.where(np.asarray(x) >= 0, np.float32(1), np.float32(-1))


def make_block(wb, b, mean, scale, beta, binary_input: bool) -> Block:
    f32 = [np.ascontiguousarray(v, np.float32).reshape(-1) for v in (b, mean, scale, beta)]
    t, d = fold_sign(*f32, integer=binary_input)
    return Block(np.ascontiguousarray(wb, np.float32), *f32, t, d)


def from_blocks(blocks: list, weights: str) -> MLP:
    """An MLP from stored blocks ({W, b, beta, gamma, mean, inv_std}, as ``reproduction.store``
    returns them), binarizing W; one-line :class:`ParamsError` if they do not form
    784 → … → 10 dense layers."""
    if not blocks:
        raise ParamsError(f"{weights}: no blocks")
    out, n_in = [], N_INPUTS
    for i, blk in enumerate(blocks):
        missing = {"W", "b", "beta", "gamma", "mean", "inv_std"} - set(blk)
        if missing:
            raise ParamsError(f"{weights}: block{i} lacks {', '.join(sorted(missing))}")
        w = np.asarray(blk["W"], np.float32)
        if w.ndim != 2 or w.shape[0] != n_in:
            raise ParamsError(f"{weights}: block{i}/W has shape {w.shape}, expected ({n_in}, n): "
                              f"not the MNIST MLP's dense layers")
        n_out = w.shape[1]
        vecs = {k: np.asarray(blk[k], np.float32).reshape(-1) for k in ("b", "mean", "gamma", "inv_std", "beta")}
        for k, v in vecs.items():
            if v.shape != (n_out,):
                raise ParamsError(f"{weights}: block{i}/{k} has {v.size} values, W has {n_out} outputs")
            if not np.isfinite(v).all():
                raise ParamsError(f"{weights}: block{i}/{k} holds non-finite values")
        out.append(make_block(sign(w), vecs["b"], vecs["mean"], vecs["gamma"] * vecs["inv_std"],
                              vecs["beta"], binary_input=i > 0))
        n_in = n_out
    if n_in != N_CLASSES:
        raise ParamsError(f"{weights}: the last block has {n_in} outputs, not {N_CLASSES} classes")
    return MLP(out, weights)


def load_mlp(path) -> MLP:
    """Weights from a ``params.h5`` (``reproduction.store``) or an ``.npz`` in the original's
    layout; one-line :class:`ParamsError` for a missing, unreadable or misshapen file."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: no such parameter file")
    try:
        from reproduction import store
    except ImportError as e:
        raise ParamsError(f"{path}: reading parameters needs reproduction.store ({e})") from None
    try:
        blocks = store.load_npz_blocks(path) if path.suffix == ".npz" else store.read_params(path)[1]
    except (OSError, ValueError, KeyError) as e:  # store.ParamsError is a ValueError
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ParamsError(msg if str(path) in msg else f"{path}: {msg}") from None
    return from_blocks(blocks, str(path))


def random_mlp(sizes: tuple | None = None, seed: int = 0, warn: bool = True) -> MLP:
    """Random ±1 weights with an identity-like batch norm (mean 0, γ·inv_std = 1/√n_in, β 0):
    for timing and kernel comparisons only; the test error is chance. ``sizes``: the recipe's."""
    if warn:
        warnings.warn("gpu_xnor: random ±1 weights, not trained ones: the test error means nothing",
                      stacklevel=2)
    sizes = sizes or recipe_sizes()
    rng = np.random.default_rng(seed)
    blocks = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        z = np.zeros(n_out, np.float32)
        blocks.append({"W": rng.standard_normal((n_in, n_out), dtype=np.float32), "b": z, "beta": z,
                       "gamma": np.ones(n_out, np.float32), "mean": z,
                       "inv_std": np.full(n_out, 1 / np.sqrt(n_in), np.float32)})
    return from_blocks(blocks, "random")


# ---------------------------------------------------------------- the driver -----------------

def flat_pixels(X) -> np.ndarray:
    """(N, 1, 28, 28) or (N, 784) uint8 pixels as a (N, 784) uint8 matrix."""
    X = np.asarray(X)
    if X.dtype != np.uint8:
        raise TypeError(f"gpu_xnor/mlp.py: inputs must be uint8 pixels, got {X.dtype}")
    return np.ascontiguousarray(X.reshape(len(X), -1))


def scores(s_last: np.ndarray, blk: Block) -> np.ndarray:
    """The last block's batch-normed outputs, on the host in float32 (the same on every device)."""
    return batchnorm(s_last, blk.b, blk.mean, blk.scale, blk.beta)


def forward(net: MLP, X, kernel: str, device, weights=None, x=None, layer1: str = "baseline"):
    """Scores (N, 10) of uint8 images X with ``kernel`` for layers 2..L on ``device`` (a
    ``gpu_xnor.cpu.Device`` or ``gpu_xnor.cuda.Device``: the timer and the kernels).

    ``weights``: ``device.prepare(net.blocks)``, made once (as the original loaded its shared
    variables once); ``x``: the scaled input 2p/255 − 1, made once on the host (as the original
    did before timing). What remains, and what the benchmark times, is the original's one call:
    the input's copy to the device, every layer, the scores back."""
    if layer1 not in LAYER1:
        raise ValueError(f"gpu_xnor/mlp.py: layer1 must be one of {LAYER1}, got {layer1!r}")
    if kernel not in device.mlp_kernels:
        raise ValueError(f"gpu_xnor/mlp.py: kernel must be one of {device.mlp_kernels}, got {kernel!r}")
    weights = weights if weights is not None else device.prepare(net.blocks)
    last = len(net.blocks) - 1
    for i, w in enumerate(weights):
        if i == 0 and layer1 == "alg4":
            s = device.layer1_alg4(flat_pixels(X), w)
        elif i == 0:
            s = device.layer1(device.upload(scale_pixels(flat_pixels(X)) if x is None else x), w)
        else:
            s = device.product(kernel, h, w)
        if i < last:
            h = device.sign(s, w)
    return scores(device.download(s), net.blocks[-1])


def predict(scores_: np.ndarray) -> np.ndarray:
    """argmax per row; ties go to the lowest class index (numpy.argmax)."""
    return np.argmax(scores_, axis=1)


def test_error(pred, y) -> float:
    """Fraction of wrong predictions (the original printed it times 100)."""
    return float(np.mean(np.asarray(pred) != np.asarray(y)))


# ---------------------------------------------------------------- PyTensor graph -------------

def pytensor_function(net: MLP, kernel: str = "xnor", device: str = "cpu", packed: bool = True,
                      mode: str | None = None):
    """The MLP as one compiled PyTensor function, as the original ``mnist.py`` built it, from
    float32 inputs in [−1, 1] (N, 784) to the last layer's products s_L (N, 10); ``scores(s_L,
    net.blocks[-1])`` and ``predict`` finish on the host. Layer 1 is a ``BaselineGemm`` Op;
    layers 2..L use ``BaselineGemm``, ``XnorGemmPaper``, ``XnorGemm`` (re-packs per call) or
    ``XnorGemmPacked`` (``packed``), or ``pt.dot`` for ``blas``. Sign is the folded threshold
    d·s ≥ t (exact, so the graph agrees with :func:`forward` bit for bit)."""
    import pytensor
    import pytensor.tensor as pt

    from . import ops

    x = pt.matrix("x", dtype="float32")
    h = x
    for i, blk in enumerate(net.blocks):
        wb = pt.constant(blk.wb)
        if i == 0 or kernel == "baseline":
            s = ops.BaselineGemm(device)(h, wb)
        elif kernel == "blas":
            s = pt.dot(h, wb)
        elif kernel == "xnor_paper":
            s = ops.XnorGemmPaper(device)(h, wb)
        elif kernel == "xnor":
            s = (ops.XnorGemmPacked(device)(h, pt.constant(ops.pack_weights(blk.wb, device)))
                 if packed else ops.XnorGemm(device)(h, wb))
        else:
            raise ValueError(f"gpu_xnor/mlp.py: kernel must be one of baseline, xnor_paper, xnor, "
                             f"blas; got {kernel!r}")
        if i < len(net.blocks) - 1:
            h = pt.switch(pt.ge(pt.constant(blk.d) * s, pt.constant(blk.t)), np.float32(1), np.float32(-1))
    return pytensor.function([x], s, mode=mode or _mode())


def _mode() -> str:
    """PyTensor's C back end (CVM) where a compiler exists: our Ops run their ``perform``;
    Numba would wrap them in object mode with a warning."""
    from reproduction.backend import default_mode

    return "FAST_COMPILE" if default_mode() == "NUMBA" else "CVM"


# ---------------------------------------------------------------- packed export --------------

def export_packed(net: MLP, path) -> dict:
    """Write the 1-bit weights (``gpu_xnor.cpu.pack_cols`` words, uint64) and the float
    biases/batch-norm vectors to an ``.npz``; returns and prints the packed size against float32
    weights."""
    from . import cpu

    arrays, packed = {}, 0
    for i, blk in enumerate(net.blocks):
        words = cpu.pack_cols(blk.wb)
        packed += words.nbytes
        arrays.update({f"block{i}_packed": words, f"block{i}_k": np.int64(blk.wb.shape[0]),
                       f"block{i}_b": blk.b, f"block{i}_mean": blk.mean,
                       f"block{i}_scale": blk.scale, f"block{i}_beta": blk.beta})
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    full = sum(blk.wb.size * 4 for blk in net.blocks)
    sizes = {"packed_bytes": packed, "float32_bytes": full, "ratio": full / packed,
             "file_bytes": Path(path).stat().st_size}
    print(f"packed weights: {packed / 2**20:.2f} MiB vs {full / 2**20:.2f} MiB as float32 "
          f"({sizes['ratio']:.1f}x smaller); file {path}: {sizes['file_bytes'] / 2**20:.2f} MiB")
    return sizes


def unpack_cols(packed: np.ndarray, k: int) -> np.ndarray:
    """The inverse of ``pack_cols`` on ±1 matrices: (W, N) words → (k, N) float32 ±1."""
    shifts = np.arange(64, dtype=np.uint64)
    bits = (packed[:, None, :] >> shifts[None, :, None]) & np.uint64(1)
    return np.where(bits.reshape(-1, packed.shape[1])[:k] == 1, np.float32(1), np.float32(-1))


def load_packed(path) -> MLP:
    """An MLP from ``export_packed``'s file."""
    with np.load(path) as z:
        n = len([k for k in z.files if k.endswith("_packed")])
        if n == 0:
            raise ParamsError(f"{path}: no block*_packed arrays; not a packed-weights file")
        blocks = [make_block(unpack_cols(z[f"block{i}_packed"], int(z[f"block{i}_k"])),
                             z[f"block{i}_b"], z[f"block{i}_mean"], z[f"block{i}_scale"],
                             z[f"block{i}_beta"], binary_input=i > 0) for i in range(n)]
    return MLP(blocks, str(path))


__all__ = ["Block", "MLP", "ParamsError", "LAYER1", "recipe_sizes", "batchnorm", "fold_sign",
           "make_block", "from_blocks", "load_mlp", "random_mlp", "flat_pixels", "scores",
           "forward", "predict", "test_error", "pytensor_function", "export_packed",
           "load_packed", "unpack_cols", "sign"]
