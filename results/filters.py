"""Filter repetition: how many of a conv model's binarized 3x3 filters are unique (paper §3;
SOURCES.md §5.3: "On our CIFAR-10 ConvNet, only 42% of the filters are unique").

A conv layer's latent weights W (n_out, n_in, k, k) binarize to ``Wb = sign(W)`` with sign(0) = +1
(SOURCES.md §7 item 1). Each k x k slice ``Wb[o, i]`` is a 2-D filter; a filter and its negation
count as one (applying -f is applying f and negating), so each slice is put in canonical form:
negated when its first tap is -1. Two counts per layer:

- **per feature map** (what the paper's argument uses: "apply only the unique 2D filters on each
  feature map and sum the results"): for every input map i, the number of distinct canonical
  filters among ``Wb[:, i]``; summed over i and divided by ``n_out * n_in``;
- **per layer** (SOURCES.md §5.3's wording): distinct canonical filters among all ``n_out * n_in``
  slices, divided by ``n_out * n_in``. There are only ``2^(k^2 - 1)`` = 256 canonical 3x3 filters,
  so this fraction is at most 256 / (n_out * n_in): under 2 % for every CIFAR-10 layer but the
  first. The paper's 42 % can therefore only be the per-feature-map count.

The model's figure is the unweighted average of the per-layer fractions over the conv layers.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .tables import text_table


class FiltersError(ValueError):
    """A params.h5 that holds no conv layers, or cannot be read."""


@dataclass(frozen=True)
class LayerFilters:
    name: str
    n_out: int
    n_in: int
    total: int  # n_out * n_in 2-D filters
    unique_per_map: int  # sum over input maps of the distinct canonical filters on that map
    unique_in_layer: int  # distinct canonical filters in the whole layer

    @property
    def fraction_per_map(self) -> float:
        return self.unique_per_map / self.total

    @property
    def fraction_in_layer(self) -> float:
        return self.unique_in_layer / self.total


def canonical_codes(W: np.ndarray) -> np.ndarray:
    """(n_out, n_in) integer codes of the canonical binarized k x k filters of ``W`` (n_out, n_in, k, k):
    bit j is tap j of ``sign(W) >= 0`` (sign(0) = +1), the filter first negated when its tap 0 is -1,
    so that f and -f get the same code."""
    W = np.asarray(W)
    if W.ndim != 4:
        raise ValueError(f"conv weights must be (n_out, n_in, k, k), got shape {W.shape}")
    bits = (W >= 0).reshape(W.shape[0], W.shape[1], -1)
    bits = np.where(bits[..., :1], bits, ~bits)  # canonical: tap 0 is +1
    weights = np.left_shift(np.int64(1), np.arange(bits.shape[-1], dtype=np.int64))
    return (bits.astype(np.int64) * weights).sum(axis=-1)


def analyze_layer(name: str, W: np.ndarray) -> LayerFilters:
    codes = canonical_codes(W)
    n_out, n_in = codes.shape
    per_map = sum(len(np.unique(codes[:, i])) for i in range(n_in))
    return LayerFilters(name, n_out, n_in, n_out * n_in, per_map, len(np.unique(codes)))


def analyze(weights: dict[str, np.ndarray]) -> list[LayerFilters]:
    """Every 4-D weight array of ``weights`` (name -> W), in order; dense layers are skipped."""
    layers = [analyze_layer(n, W) for n, W in weights.items() if np.ndim(W) == 4]
    if not layers:
        raise FiltersError("no conv layers (4-D W) to analyze")
    return layers


def average(layers: list[LayerFilters], per_map: bool = True) -> float:
    """Unweighted mean over layers of the unique fraction (per feature map, or per layer)."""
    return float(np.mean([l.fraction_per_map if per_map else l.fraction_in_layer for l in layers]))


def load_conv_weights(path: Path) -> dict[str, np.ndarray]:
    """The W of every block of a params.h5 (blocks in network order), by block name."""
    from reproduction.store import ParamsError, load_blocks

    try:
        blocks = load_blocks(path)
    except ParamsError as e:
        raise FiltersError(str(e)) from None
    weights = {f"block{i}": b["W"] for i, b in enumerate(blocks) if "W" in b}
    if not any(W.ndim == 4 for W in weights.values()):
        raise FiltersError(f"{path}: no conv layers (4-D block*/W) to analyze")
    return weights


def render(layers: list[LayerFilters], paper_percent: float | None = None, markdown: bool = False) -> str:
    rows = [[l.name, f"{l.n_out}x{l.n_in}", f"{l.total:,}", f"{l.unique_per_map:,}",
             f"{100 * l.fraction_per_map:.1f}", f"{l.unique_in_layer:,}", f"{100 * l.fraction_in_layer:.2f}"]
            for l in layers]
    rows.append(["average", "", "", "", f"{100 * average(layers):.1f}", "", f"{100 * average(layers, False):.2f}"])
    headers = ["layer", "out x in", "2-D filters", "unique per map", "% per map", "unique in layer", "% in layer"]
    paper = "" if paper_percent is None else f"; paper: {paper_percent:g} % on its CIFAR-10 ConvNet"
    return (text_table(headers, rows, markdown) +
            f"\n\nunique binarized 2-D filters (f and -f counted once, sign(0) = +1); averages are over the "
            f"{len(layers)} conv layers{paper}")
