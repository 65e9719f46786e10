"""Model summaries: parameters, memory, multiply-accumulates and the paper's energy estimate, per layer.

The three networks of the paper come from their programs' recipes (SOURCES.md §2.2): every hidden
block is a binary layer (+ real bias) → [max-pool 2x2] → BN → sign; conv layers are 3x3, pad 1, stride 1, so
a conv layer's output map has the side of its input.

Counts, per layer, for one image:

- binary parameters: the weights, ``n_in * n_out`` (dense) or ``n_in * n_out * k^2`` (conv);
- float parameters: the bias and BN's beta, gamma, mean and inv_std, ``5 * n_out`` (what params.h5
  stores; SOURCES.md §1.5);
- memory: float32 (4 bytes per parameter) and packed (1 bit per binary weight, float parameters
  stay float32);
- MACs: ``n_in * n_out`` (dense), ``side^2 * n_in * n_out * k^2`` (conv). The first layer's input
  is the real-valued image, so its MACs are **float MACs**: we count them as float32 MUL + ADD, as
  the original run-time code runs layer 1 with the float baseline kernel (SOURCES.md §3.4; the
  paper's Algorithm 4 would use 8 bit planes instead). All other MACs are **binary MACs**.

Energy, with the paper's Tables 2 and 3 (Horowitz, 45 nm; SOURCES.md §5.2). Assumptions:

- a float32 MAC costs MUL + ADD = 3.7 + 0.9 = 4.6 pJ;
- a binary MAC is 1/32 of the SWAR triple XNOR, popcount, accumulate on 32-bit words (paper §4,
  SOURCES.md §5.4), each of the three costed as a 32-bit integer ADD (0.1 pJ): 0.3/32 ≈ 0.0094 pJ.
  Table 2 has no XNOR or popcount entry; this is our assumption, not the paper's;
- every parameter is read once per image in 64-bit accesses, ``ceil(bits / 64)``, from the smallest
  memory of Table 3 that holds the whole model as stored (8 KB, 32 KB, 1 MB, else DRAM at its lower
  end, 1.3 nJ). Activations, BN, pooling and the sign are not counted.

The float32 column is the same network with every parameter and MAC in float32.
"""
import math
from dataclasses import dataclass, replace
from pathlib import Path

from reproduction.convnet import parse

from . import recipes
from .paper import Energy
from .tables import text_table


class SummaryError(ValueError):
    """A params.h5 whose layers cannot be summarized."""


@dataclass(frozen=True)
class Layer:
    """One binary layer. ``n_in``/``n_out``: units (dense) or channels (conv); ``side``: the side
    of a conv layer's square input map (= its output's, pad 1); ``pool``: max-pool side after it."""

    name: str
    kind: str  # "dense" | "conv"
    n_in: int
    n_out: int
    side: int = 1
    pool: int = 1
    k: int = 3


def layers_of(spec: str, input_shape: tuple) -> tuple:
    """The binary layers of a network in the usual notation (``reproduction.convnet.parse``) on
    inputs of ``input_shape`` (channels, side, side): conv layers ``conv1, conv2, ...`` with their
    map sides and pooling, dense layers ``fc1, fc2, ...`` (the first flattens its input)."""
    channels, side = input_shape[0], input_shape[1]
    flat = None
    layers, n_conv, n_dense = [], 0, 0
    for kind, units, pooled in parse(spec):
        if kind == "conv":
            n_conv += 1
            layers.append(Layer(f"conv{n_conv}", "conv", channels, units, side, 2 if pooled else 1))
            side //= 2 if pooled else 1
            channels = units
        else:
            n_dense += 1
            n_in = flat if flat is not None else channels * side * side
            layers.append(Layer(f"fc{n_dense}", "dense", n_in, units))
            flat = units
    return tuple(layers)


def network(dataset: str) -> tuple:
    """The layers of the paper's network for ``dataset``, from its program's recipe."""
    return layers_of(recipes.architecture(dataset), recipes.INPUT_SHAPES[dataset])


@dataclass(frozen=True)
class LayerCount:
    layer: Layer
    binary_params: int
    float_params: int
    float32_bytes: int
    packed_bytes: float
    binary_macs: int
    float_macs: int
    energy_bnn_pj: float = 0.0
    energy_float32_pj: float = 0.0


@dataclass(frozen=True)
class Summary:
    network: str
    layers: tuple  # LayerCount per layer
    totals: LayerCount
    memory_bnn: str  # Table 3 memory holding the BNN / the float32 net
    memory_float32: str
    binary_mac_pj: float
    float_mac_pj: float

    @property
    def compression(self) -> float:
        """float32 bytes / packed bytes of the whole model."""
        return self.totals.float32_bytes / self.totals.packed_bytes


def count_layer(layer: Layer, first: bool, float_params: int | None = None) -> LayerCount:
    """Parameters, memory and MACs of one layer for one image (formulas in the module docstring)."""
    taps = layer.k * layer.k if layer.kind == "conv" else 1
    binary = layer.n_in * layer.n_out * taps
    floats = 5 * layer.n_out if float_params is None else float_params
    macs = binary * (layer.side * layer.side if layer.kind == "conv" else 1)
    return LayerCount(layer, binary, floats, 4 * (binary + floats), binary / 8 + 4 * floats,
                      0 if first else macs, macs if first else 0)


def binary_mac_pj(energy: Energy) -> float:
    """XNOR + popcount + accumulate on 32-bit words, each as a 32-bit integer ADD, per connection."""
    return 3 * energy.operations["int32"]["add"].value / 32


def memory_for(nbytes: float, energy: Energy) -> tuple[str, float]:
    """The smallest Table 3 memory that holds ``nbytes`` and its pJ per 64-bit access (DRAM: lower end)."""
    sized = sorted(((cap, name, v) for name, (cap, v) in energy.memory.items() if cap), key=lambda t: t[0])
    for cap, name, v in sized:
        if nbytes <= cap:
            return name, v.value
    name, (_, v) = next((n, m) for n, m in energy.memory.items() if m[0] is None)
    return name, v.value


def summarize(network: str, layers, energy: Energy, float_params: list | None = None) -> Summary:
    """Per-layer counts and energies, and the totals (one image)."""
    counts = [count_layer(l, i == 0, float_params[i] if float_params else None) for i, l in enumerate(layers)]
    bnn_bytes = sum(c.packed_bytes for c in counts)
    f32_bytes = sum(c.float32_bytes for c in counts)
    mem_bnn, pj_bnn = memory_for(bnn_bytes, energy)
    mem_f32, pj_f32 = memory_for(f32_bytes, energy)
    e_bin, e_f32 = binary_mac_pj(energy), energy.mac_pj("float32")
    out = []
    for c in counts:
        bnn_access = math.ceil(c.binary_params / 64) + math.ceil(32 * c.float_params / 64)
        f32_access = math.ceil(32 * (c.binary_params + c.float_params) / 64)
        e_bnn = c.binary_macs * e_bin + c.float_macs * e_f32 + bnn_access * pj_bnn
        e_float = (c.binary_macs + c.float_macs) * e_f32 + f32_access * pj_f32
        out.append(replace(c, energy_bnn_pj=e_bnn, energy_float32_pj=e_float))
    totals = LayerCount(Layer("total", "-", 0, 0), *(sum(getattr(c, f) for c in out) for f in (
        "binary_params", "float_params", "float32_bytes", "packed_bytes", "binary_macs", "float_macs",
        "energy_bnn_pj", "energy_float32_pj")))
    return Summary(network, tuple(out), totals, mem_bnn, mem_f32, e_bin, e_f32)


def layers_from_params(path: Path) -> tuple[str, tuple, list]:
    """The layers stored in a params.h5 (groups block0, block1, ... with W, b, beta, gamma, mean,
    inv_std; W (n_in, n_out) dense or (n_out, n_in, k, k) conv). A conv model takes its map sides
    and pooling from the paper architecture of the file's ``dataset`` attribute, layer by layer.
    Returns (name, layers, float parameter count per layer)."""
    from reproduction.store import ParamsError, read_params

    path = Path(path)
    try:
        attrs, blocks = read_params(path)
    except ParamsError as e:
        raise SummaryError(str(e)) from None
    dataset = attrs.get("dataset")
    names = [f"block{i}" for i in range(len(blocks))]
    shapes = [b["W"].shape for b in blocks]
    floats = [sum(v.size for k, v in b.items() if k != "W") for b in blocks]
    paper = [l for l in (network(dataset) if dataset in recipes.PROGRAMS else ()) if l.kind == "conv"]
    layers, n_conv, n_dense = [], 0, 0
    for name, shape in zip(names, shapes):
        if len(shape) == 2:
            n_dense += 1
            layers.append(Layer(f"fc{n_dense}", "dense", shape[0], shape[1]))
        elif len(shape) == 4 and shape[2] == shape[3]:
            if n_conv >= len(paper):
                raise SummaryError(f"{path}: {name} is conv layer {n_conv + 1} but the paper's {dataset!r} "
                                   f"network has {len(paper)} (the dataset attribute sets map sides and pooling)")
            ref = paper[n_conv]
            n_conv += 1
            layers.append(Layer(f"conv{n_conv}", "conv", shape[1], shape[0], ref.side, ref.pool, shape[2]))
        else:
            raise SummaryError(f"{path}: {name}/W has shape {shape}, "
                               "neither dense (n_in, n_out) nor conv (n_out, n_in, k, k)")
    _check_chain(path, layers)
    return f"{dataset or 'model'} ({path.name})", tuple(layers), floats


def _check_chain(path, layers) -> None:
    """Each layer's input must be the previous layer's output (flattened after the last conv)."""
    for prev, cur in zip(layers, layers[1:]):
        flatten = prev.kind == "conv" and cur.kind == "dense"
        width = prev.n_out * (prev.side // prev.pool) ** 2 if flatten else prev.n_out
        if cur.n_in != width:
            raise SummaryError(f"{path}: {cur.name} takes {cur.n_in} inputs but {prev.name} gives {width}")


def render(s: Summary, markdown: bool = False) -> str:
    def row(c: LayerCount):
        l = c.layer
        shape = (f"{l.n_in}->{l.n_out} {l.k}x{l.k} @{l.side}" + (f" MP{l.pool}" if l.pool > 1 else "")
                 if l.kind == "conv" else f"{l.n_in}->{l.n_out}" if l.kind == "dense" else "")
        return [l.name, shape, f"{c.binary_params:,}", f"{c.float_params:,}", f"{c.float32_bytes / 1e6:.3f}",
                f"{c.packed_bytes / 1e6:.3f}", f"{c.binary_macs:,}", f"{c.float_macs:,}",
                f"{c.energy_bnn_pj / 1e6:.3f}", f"{c.energy_float32_pj / 1e6:.3f}"]

    headers = ["layer", "shape", "binary params", "float params", "float32 MB", "packed MB",
               "binary MACs", "float MACs", "BNN uJ", "float32 uJ"]
    table = text_table(headers, [row(c) for c in s.layers] + [row(s.totals)], markdown)
    t = s.totals
    return "\n".join([
        f"{s.network}: one image",
        table, "",
        f"compression (float32 / packed): {s.compression:.1f}x; energy float32 / BNN: "
        f"{t.energy_float32_pj / t.energy_bnn_pj:.1f}x",
        f"assumptions: binary MAC = (XNOR + popcount + accumulate)/32 as 32-bit int ADDs = {s.binary_mac_pj:.4f} pJ; "
        f"float MAC = float32 MUL + ADD = {s.float_mac_pj:.1f} pJ; layer 1 MACs are float (real-valued input); "
        f"parameters read once per image in 64-bit accesses from {s.memory_bnn} (BNN) and {s.memory_float32} "
        f"(float32), the smallest memory of Table 3 that holds the model; activations not counted.",
    ])
