"""Runs of one experiment across seeds: grouping run records, and the statistics of a group.

Records belong to the same group when they ran the same experiment with another seed: the same
dataset, the same recipe (``hyperparameters["recipe"]``, theano when absent) and the same
settings, i.e. every hyperparameter the record carries except the ``seed`` and the back end
(``mode``: JAX, CVM and Numba differ only in float rounding). Epoch counts and split sizes are
settings, so a short run is never averaged with a long one. Two records of the same seed are the
same run twice (another machine, a re-run), not another seed: a record whose seed its group has
already starts a group of its own.

The statistics of n values x_1..x_n (``Spread``): the mean m = sum(x_i) / n; the sample standard
deviation s = sqrt(sum((x_i - m)^2) / (n - 1)) (n >= 2); the standard error of the mean s / sqrt(n);
and the range [min x_i, max x_i].
"""
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .recipes import record_recipe

#: Hyperparameters that do not make another experiment: the seed, and the back end.
NOT_SETTINGS = ("seed", "mode")


@dataclass(frozen=True)
class Spread:
    """n values: their mean, sample standard deviation (None for n = 1), the standard error of
    the mean (None for n = 1), and their range."""

    n: int
    mean: float
    std: float | None
    sem: float | None
    low: float
    high: float


def spread(values) -> Spread:
    """The ``Spread`` of a non-empty sequence of numbers (module docstring)."""
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("no values")
    n, mean = len(xs), math.fsum(xs) / len(xs)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else None
    return Spread(n, mean, std, None if std is None else std / math.sqrt(n), min(xs), max(xs))


@dataclass
class Group:
    """The run records of one experiment: (path, record) pairs, sorted by seed then path."""

    dataset: str
    recipe: str
    members: list = field(default_factory=list)

    @property
    def records(self) -> list[dict]:
        return [rec for _, rec in self.members]

    @property
    def seeds(self) -> list:
        return [(rec.get("hyperparameters") or {}).get("seed") for rec in self.records]


def settings(record: dict) -> str:
    """The group key of a run record: dataset, recipe and settings, as canonical JSON."""
    hp = {k: v for k, v in (record.get("hyperparameters") or {}).items() if k not in NOT_SETTINGS}
    hp["recipe"] = record_recipe(record)
    return json.dumps([record["dataset"], hp], sort_keys=True, default=str)


def group_runs(runs) -> list[Group]:
    """Groups of (path, record) pairs, in the order their first member comes in."""
    groups: list[tuple[str, Group]] = []
    for path, rec in runs:
        key, seed = settings(rec), (rec.get("hyperparameters") or {}).get("seed")
        group = next((g for k, g in groups if k == key and seed not in g.seeds), None)
        if group is None:
            group = Group(rec["dataset"], record_recipe(rec))
            groups.append((key, group))
        group.members.append((Path(path), rec))
    for _, g in groups:
        g.members.sort(key=lambda m: (_seed_order(m[1]), str(m[0])))
    return [g for _, g in groups]


def _seed_order(rec: dict):
    seed = (rec.get("hyperparameters") or {}).get("seed")
    return (0, seed) if isinstance(seed, (int, float)) else (1, 0)


def seeds_text(seeds) -> str:
    """``1234-1236`` for consecutive seeds, else ``1, 7, 42``."""
    known = [s for s in seeds if isinstance(s, int)]
    if len(known) == len(seeds) and len(known) > 2 and known == list(range(known[0], known[0] + len(known))):
        return f"{known[0]}-{known[-1]}"
    return ", ".join(map(str, seeds))


def per_epoch(records: list[dict], key: str) -> list[tuple[int, Spread]]:
    """For each epoch number, the spread of ``key`` over the records that have it at that epoch."""
    values: dict[int, list] = {}
    for rec in records:
        for row in rec["epochs"]:
            if row.get(key) is not None:
                values.setdefault(row["epoch"], []).append(row[key])
    return [(epoch, spread(v)) for epoch, v in sorted(values.items())]
