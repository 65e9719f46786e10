"""The run-time MNIST MLP of the original ``Run-time/mnist.py`` (PAPER.md §3.4), on the CPU kernels.

784 → 4096 → 4096 → 4096 → 10: each block is a dense layer with sign(W) (sign(0) = +1), its bias,
and batch norm with the stored statistics, y = (x + b − mean)·(γ·inv_std) + β; blocks 1-3 end in
sign (x ≥ 0 → +1), block 4 in argmax. Layer 1 uses the baseline float kernel whatever the chosen
kernel, because its input x = 2p/255 − 1 is not binary; layers 2-4 use ``baseline``, ``xnor`` or
``blas``. Every kernel gives the same integers on ±1 inputs, so the predictions are identical.

Beyond the original, Algorithm 4 (PAPER.md §5.5) for layer 1: with pixels p ∈ 0..255 written as
bit planes p = Σ_{n=0..7} 2ⁿ·pₙ, pₙ ∈ {0,1}, and sₙ = 2pₙ − 1 ∈ {±1}, each plane's product with
±1 weights is an XNOR product: pₙ·w = (sₙ·w + Σw)/2, where sₙ·w = K − 2·popcount(Sₙ ^ W). Hence

    p·w = (Σₙ 2ⁿ·(sₙ·w) + 255·Σw) / 2            (an exact integer)
    x·w = (2/255)·p·w − Σw = (1/255)·Σₙ 2ⁿ·(sₙ·w)

so layer 1 costs 8 XNOR products and one division, and its integer part is exact.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reproduction.dataset import scale_pixels
from reproduction.files import atomic_output

from . import cpu

KERNELS = ("baseline", "xnor", "blas")
LAYER1 = ("baseline", "bitplanes")
SIZES = (784, 4096, 4096, 4096, 10)


@dataclass
class Block:
    """One dense layer and its batch norm, ready for inference: ``wb`` = sign(W) as float32 ±1,
    ``scale`` = γ·inv_std, ``packed`` = ``cpu.pack_cols(wb)``."""

    wb: np.ndarray
    b: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    beta: np.ndarray
    packed: np.ndarray


@dataclass
class MLP:
    blocks: list
    weights: str  # where the weights came from, for the record


def sign(x: np.ndarray) -> np.ndarray:
    """The original's SignNumpy: +1 where x ≥ 0, else −1, as float32."""
    return np.where(np.asarray(x) >= 0, np.float32(1), np.float32(-1))


def from_blocks(blocks: list, weights: str) -> MLP:
    """An MLP from stored blocks ({W, b, beta, gamma, mean, inv_std}, as ``reproduction.store``
    returns them), binarizing W."""
    out = []
    for i, blk in enumerate(blocks):
        missing = {"W", "b", "beta", "gamma", "mean", "inv_std"} - set(blk)
        if missing:
            raise ValueError(f"{weights}: block{i} lacks {sorted(missing)}")
        w = np.asarray(blk["W"], np.float32)
        if w.ndim != 2:
            raise ValueError(f"{weights}: block{i}/W has shape {w.shape}, not a dense layer")
        wb = sign(w)
        f32 = [np.asarray(blk[k], np.float32).reshape(-1) for k in ("b", "mean", "gamma", "inv_std", "beta")]
        b, mean, gamma, inv_std, beta = f32
        out.append(Block(wb, b, mean, gamma * inv_std, beta, cpu.pack_cols(wb)))
    return MLP(out, weights)


def load_mlp(path) -> MLP:
    """Weights from a ``params.h5`` (the lead's store) or an ``.npz`` in the original's layout."""
    from reproduction import store

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such parameter file")
    blocks = store.load_npz_blocks(path) if path.suffix == ".npz" else store.load_blocks(path)
    return from_blocks(blocks, str(path))


def random_mlp(sizes=SIZES, seed: int = 0, warn: bool = True) -> MLP:
    """Random ±1 weights with an identity-like batch norm (mean 0, γ·inv_std = 1/√n_in, β 0):
    for timing and kernel comparisons only; the test error is chance."""
    if warn:
        warnings.warn("gpu_xnor: random ±1 weights, not trained ones: the test error means nothing",
                      stacklevel=2)
    rng = np.random.default_rng(seed)
    blocks = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        z = np.zeros(n_out, np.float32)
        blocks.append({"W": rng.standard_normal((n_in, n_out), dtype=np.float32), "b": z, "beta": z,
                       "gamma": np.ones(n_out, np.float32), "mean": z,
                       "inv_std": np.full(n_out, 1 / np.sqrt(n_in), np.float32)})
    return from_blocks(blocks, f"random ±1 (seed {seed})")


def flat_pixels(X) -> np.ndarray:
    """(N, 1, 28, 28) or (N, 784) uint8 pixels as a (N, 784) uint8 matrix."""
    X = np.asarray(X)
    if X.dtype != np.uint8:
        raise TypeError(f"gpu_xnor/mlp.py: inputs must be uint8 pixels, got {X.dtype}")
    return np.ascontiguousarray(X.reshape(len(X), -1))


def layer1_integer(P: np.ndarray, blk: Block, threads: int = 0) -> np.ndarray:
    """p·w for uint8 pixels P (N, K), exactly, through 8 bit-plane XNOR products (float32 holds
    it exactly: |p·w| ≤ 255·K < 2²⁴)."""
    acc = _planes_sum(P, blk, threads)
    return (acc + np.float32(255) * blk.wb.sum(axis=0, dtype=np.float32)) / np.float32(2)


def _planes_sum(P, blk, threads) -> np.ndarray:
    """Σₙ 2ⁿ·(sₙ·w), summed in int64 in the kernel (exact in float32: |·| ≤ 255·K < 2²⁴)."""
    P = flat_pixels(P)
    return cpu.xnor_gemm_planes(cpu.pack_bitplanes(P, threads), blk.packed, P.shape[1], threads)


def product(h: np.ndarray, blk: Block, kernel: str, repack: bool = False, threads: int = 0) -> np.ndarray:
    """h·sign(W) with one of the kernels; ``repack`` re-packs the weights (as the original did)."""
    if kernel == "baseline":
        return cpu.baseline_gemm(h, blk.wb, threads)
    if kernel == "blas":
        return cpu.blas_gemm(h, blk.wb)
    if kernel == "xnor":
        packed = cpu.pack_cols(blk.wb, threads) if repack else blk.packed
        return cpu.xnor_gemm(cpu.pack_rows(h, threads), packed, h.shape[1], threads)
    raise ValueError(f"gpu_xnor/mlp.py: kernel must be one of {KERNELS}, got {kernel!r}")


def forward(mlp: MLP, X, kernel: str = "xnor", layer1: str = "baseline", repack: bool = False,
            threads: int = 0) -> np.ndarray:
    """The last block's batch-normed outputs (N, 10) for uint8 images X."""
    if layer1 not in LAYER1:
        raise ValueError(f"gpu_xnor/mlp.py: layer1 must be one of {LAYER1}, got {layer1!r}")
    P = flat_pixels(X)
    last = len(mlp.blocks) - 1
    for i, blk in enumerate(mlp.blocks):
        if i == 0 and layer1 == "baseline":
            s = cpu.baseline_gemm(scale_pixels(P), blk.wb, threads)
        elif i == 0:
            s = _planes_sum(P, blk, threads) / np.float32(255)
        else:
            s = product(h, blk, kernel, repack, threads)
        if i == last:
            return (s + blk.b - blk.mean) * blk.scale + blk.beta
        h = cpu.bn_sign(s, blk.b, blk.mean, blk.scale, blk.beta, threads)


def predict(mlp: MLP, X, **kw) -> np.ndarray:
    return np.argmax(forward(mlp, X, **kw), axis=1)


def test_error(pred, y) -> float:
    """Fraction of wrong predictions (the original printed it times 100)."""
    return float(np.mean(np.asarray(pred) != np.asarray(y)))


# ---------------------------------------------------------------- PyTensor graph -------------

def pytensor_function(mlp: MLP, kernel: str = "xnor", device: str = "cpu", packed: bool = True,
                      mode: str | None = None):
    """The MLP as one compiled PyTensor function, as the original ``mnist.py`` built it: float32
    inputs in [−1, 1] (N, 784) → predicted classes. Layer 1 is a ``BaselineGemm`` Op; layers 2-4
    use ``BaselineGemm``, ``XnorGemm`` (re-packs per call) or ``XnorGemmPacked`` (``packed``),
    or ``pt.dot`` for ``blas``. Batch norm and sign are PyTensor element-wise ops."""
    import pytensor
    import pytensor.tensor as pt

    from . import ops

    x = pt.matrix("x", dtype="float32")
    h = x
    for i, blk in enumerate(mlp.blocks):
        wb = pt.constant(blk.wb)
        if i == 0 or kernel == "baseline":
            s = ops.BaselineGemm(device)(h, wb)
        elif kernel == "blas":
            s = pt.dot(h, wb)
        elif kernel == "xnor":
            s = (ops.XnorGemmPacked(device)(h, pt.constant(ops.pack_weights(blk.wb, device)))
                 if packed else ops.XnorGemm(device)(h, wb))
        else:
            raise ValueError(f"gpu_xnor/mlp.py: kernel must be one of {KERNELS}, got {kernel!r}")
        y = (s + blk.b - blk.mean) * blk.scale + blk.beta
        h = pt.switch(pt.ge(y, 0), np.float32(1), np.float32(-1)) if i < len(mlp.blocks) - 1 else y
    return pytensor.function([x], pt.argmax(h, axis=1), mode=mode or _mode())


def _mode() -> str:
    """PyTensor's C back end (CVM) where a compiler exists: our Ops run their ``perform``;
    Numba would wrap them in object mode with a warning."""
    from reproduction.backend import default_mode

    return "FAST_COMPILE" if default_mode() == "NUMBA" else "CVM"


# ---------------------------------------------------------------- packed export --------------

def export_packed(mlp: MLP, path) -> dict:
    """Write the 1-bit weights (``pack_cols`` words, uint64) and the float biases/batch-norm
    vectors to an ``.npz``; returns and prints the packed size against float32 weights."""
    arrays = {}
    for i, blk in enumerate(mlp.blocks):
        arrays.update({f"block{i}_packed": blk.packed, f"block{i}_k": np.int64(blk.wb.shape[0]),
                       f"block{i}_b": blk.b, f"block{i}_mean": blk.mean,
                       f"block{i}_scale": blk.scale, f"block{i}_beta": blk.beta})
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    packed = sum(blk.packed.nbytes for blk in mlp.blocks)
    full = sum(blk.wb.size * 4 for blk in mlp.blocks)
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
            raise ValueError(f"{path}: no block*_packed arrays; not a packed-weights file")
        blocks = []
        for i in range(n):
            packed, k = z[f"block{i}_packed"], int(z[f"block{i}_k"])
            blocks.append(Block(unpack_cols(packed, k), z[f"block{i}_b"], z[f"block{i}_mean"],
                                z[f"block{i}_scale"], z[f"block{i}_beta"], packed))
    return MLP(blocks, str(path))


__all__ = ["Block", "MLP", "KERNELS", "LAYER1", "from_blocks", "load_mlp", "random_mlp", "forward",
           "predict", "test_error", "layer1_integer", "product", "pytensor_function",
           "export_packed", "load_packed", "unpack_cols", "sign", "flat_pixels"]
