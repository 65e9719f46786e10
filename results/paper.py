"""The paper's numbers as data: loaders for ``results/paper/*.json``.

Every number carries where it comes from (``source``) and how sure it is (``certainty``), using
SOURCES.md's tags: ``code`` (read in the original repository), ``README``, ``issue`` (quoted from
there), ``2nd`` (seen only in a third-party copy of the paper), ``mem`` (from memory, unchecked).
The files are:

- ``table1_test_error.json``: Table 1 (test error in %, SOURCES.md §5.1). The conditions under which
  the Theano column was obtained are the programs' recipes and the loaders' splits, read through
  ``results.recipes``, not repeated here;
- ``energy.json``: the energy tables (pJ per operation and per 64-bit memory access, §5.2);
- ``speed.json``: the run-time speed-ups the paper claims on a GTX 750 and the other timings (§3.7);
- ``filters.json``: the 42 % unique-filters claim (§5.3).

The two BNN rows are compared with our runs, each with the runs of its own recipe (Theano, the
programs' default; Torch7, ``--recipe torch7``): they are different recipes (SOURCES.md §7 item 12).
"""
import json
from dataclasses import dataclass, field
from pathlib import Path

CERTAINTIES = ("code", "README", "issue", "2nd", "mem")
DATASETS = ("mnist", "svhn", "cifar10")


class PaperDataError(ValueError):
    """A file under results/paper/ is missing or malformed."""


@dataclass(frozen=True)
class Value:
    """One number of the paper: ``value`` (the lower end when ``upper`` is set: a range), the
    paper's ``plus_minus`` where it gives one, and where it comes from."""

    value: float | bool | None
    source: str
    certainty: str
    note: str | None = None
    plus_minus: float | None = None
    upper: float | None = None
    unit: str | None = None


@dataclass(frozen=True)
class Table1Row:
    key: str
    method: str
    group: str
    comparable: bool
    values: dict  # dataset -> Value | None (None: the paper gives no number)
    note: str | None = None


@dataclass(frozen=True)
class Table1:
    rows: tuple
    compare_row: str

    def row(self, key: str) -> Table1Row:
        for r in self.rows:
            if r.key == key:
                return r
        raise KeyError(f"Table 1 has no row {key!r}")

    def target(self, dataset: str) -> Value:
        """The number our runs are compared with: the BNN (Theano) test error for ``dataset``."""
        return self.row(self.compare_row).values[dataset]


@dataclass(frozen=True)
class Energy:
    operations: dict  # "int8"|"int32"|"float16"|"float32" -> {"mul": Value, "add": Value}
    memory: dict  # "8K"|"32K"|"1M"|"DRAM" -> (capacity in bytes or None, Value per 64-bit access)
    claims: dict = field(default_factory=dict)

    def mac_pj(self, kind: str) -> float:
        """Energy of one multiply-accumulate of ``kind``: MUL + ADD (pJ)."""
        ops = self.operations[kind]
        return ops["mul"].value + ops["add"].value


@dataclass(frozen=True)
class SpeedClaim:
    key: str
    headline: bool
    value: Value
    what: str
    gpu: str
    size: tuple | None = None
    seconds: dict | None = None


def paper_dir() -> Path:
    """``results/paper``, beside this module."""
    return Path(__file__).resolve().parent / "paper"


def _read(name: str, folder: Path | None) -> dict:
    path = Path(folder or paper_dir()) / name
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PaperDataError(f"{path}: not found (the paper's tables live in a checkout's results/paper/)") from None
    except json.JSONDecodeError as e:
        raise PaperDataError(f"{path}: not valid JSON ({e})") from None
    if data.get("format") != 1:
        raise PaperDataError(f"{path}: unknown format {data.get('format')!r} (expected 1)")
    return data


def _value(d: dict | None, where: str) -> Value | None:
    if d is None:
        return None
    missing = [k for k in ("value", "source", "certainty") if k not in d]
    if missing:
        raise PaperDataError(f"{where}: missing {', '.join(missing)}")
    if d["certainty"] not in CERTAINTIES:
        raise PaperDataError(f"{where}: certainty {d['certainty']!r} is not one of {CERTAINTIES}")
    return Value(d["value"], d["source"], d["certainty"], d.get("note"), d.get("plus_minus"),
                 d.get("upper"), d.get("unit"))


def load_table1(folder: Path | None = None) -> Table1:
    """Table 1 (test error, %)."""
    name = "table1_test_error.json"
    data = _read(name, folder)
    rows = tuple(
        Table1Row(r["key"], r["method"], r["group"], r["comparable"],
                  {ds: _value(r["values"].get(ds), f"{name}: {r['key']}.{ds}") for ds in DATASETS},
                  r.get("note"))
        for r in data["rows"])
    return Table1(rows, data["compare_row"])


def load_energy(folder: Path | None = None) -> Energy:
    """pJ per operation (MUL and ADD for 8/32-bit integers, 16/32-bit floats) and per 64-bit access."""
    name = "energy.json"
    data = _read(name, folder)
    ops = {k: {op: _value(v[op], f"{name}: operations.{k}.{op}") for op in ("mul", "add")}
           for k, v in data["operations"].items()}
    mem = {k: (v["capacity_bytes"], _value(v["access_64bit"], f"{name}: memory.{k}"))
           for k, v in data["memory"].items()}
    claims = {k: _value(v, f"{name}: claims.{k}") for k, v in data.get("claims", {}).items()}
    return Energy(ops, mem, claims)


def load_speed(folder: Path | None = None) -> list[SpeedClaim]:
    """Every speed claim: the three headline ones first (GTX 750), then context."""
    name = "speed.json"
    data = _read(name, folder)
    claims = [SpeedClaim(c["key"], c["headline"], _value(c, f"{name}: {c['key']} ({c['gpu']})"), c["what"],
                         c["gpu"], tuple(c["size"]) if c.get("size") else None, c.get("seconds"))
              for c in data["claims"]]
    return sorted(claims, key=lambda c: not c.headline)


def headline_speed(folder: Path | None = None) -> dict[str, Value]:
    """The paper's ratios by benchmark-record key: xnor_vs_baseline, xnor_vs_blas, mlp_xnor_vs_baseline."""
    return {c.key: c.value for c in load_speed(folder) if c.headline}


def load_filters(folder: Path | None = None) -> dict[str, Value]:
    """The unique-filters claim (``unique_fraction``, %) and its context values."""
    name = "filters.json"
    data = _read(name, folder)
    return {k: _value(v, f"{name}: {k}") for k, v in data.items() if isinstance(v, dict)}
