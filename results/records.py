"""Run and benchmark records: finding them and reading them.

A run record is ``results/runs/<run>/record.json`` as a training program writes it (a ``dataset``
and its ``epochs``), or ``results/tables/<table>/<run>/record.json`` for the runs of a table
(``python -m reproduction table``); a benchmark record is ``results/bench/<name>.json`` as
``python -m gpu_xnor`` writes it (its ``ratios``). The default folders are those under the current
folder, where the programs and the table write (``results/runs``, ``results/tables`` and
``results/bench`` relative to where they are run); from a checkout's root that is the checkout's
``results/``.

When folders are searched, a file that looks like a record but cannot be read (a ``record.json``,
or JSON with a record's keys, that is corrupt, truncated or of an unknown format) is skipped with a
one-line warning on stderr; JSON that is plainly something else (valid JSON without a record's keys,
such as the step benchmarks' results) is skipped silently.
"""
import json
import sys
from numbers import Real
from pathlib import Path

from reproduction.options import json_problem

from .paper import DATASETS


class RecordError(ValueError):
    """A run or benchmark record that cannot be read."""


class NotARecord(RecordError):
    """Valid JSON that is plainly not a record (no record's keys, and not named record.json)."""


def load_record(path: Path) -> tuple[str, dict]:
    """Read one record; returns ("run" | "bench", data)."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise RecordError(f"{path}: not found") from None
    except OSError as e:
        raise RecordError(f"{path}: cannot read ({e.strerror or e})") from None
    except ValueError as e:   # invalid JSON, or bytes that are not UTF-8 text
        raise RecordError(f"{path}: not valid JSON ({json_problem(e)})") from None
    likely = path.name == "record.json"
    if not isinstance(data, dict):
        raise (RecordError if likely else NotARecord)(f"{path}: not a run or benchmark record (not a JSON object)")
    kind = "run" if "dataset" in data and "epochs" in data else "bench" if "ratios" in data else None
    if kind is None:
        raise (RecordError if likely else NotARecord)(
            f"{path}: not a run record (dataset, epochs) nor a benchmark record (ratios)")
    if data.get("format") != 1:
        raise RecordError(f"{path}: unknown record format {data.get('format')!r} (expected 1)")
    if kind == "run" and data["dataset"] not in DATASETS:
        raise RecordError(f"{path}: unknown dataset {data['dataset']!r} (expected one of {', '.join(DATASETS)})")
    problem = _run_problem(data) if kind == "run" else _bench_problem(data)
    if problem:
        raise RecordError(f"{path}: {problem}")
    return kind, data


def _number(x) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool)


def _run_problem(data: dict):
    """What in a run record the diff and the plots cannot use, or None."""
    epochs = data["epochs"]
    if not isinstance(epochs, list) or not all(isinstance(r, dict) and isinstance(r.get("epoch"), int)
                                               for r in epochs):
        return "epochs is not a list of rows with an epoch number"
    for key in ("train_loss", "val_loss", "val_err", "test_err", "test_loss"):
        if any(key in r and r[key] is not None and not _number(r[key]) for r in epochs):
            return f"an epoch's {key} is not a number"
    for key in ("test_err", "best_val_err", "best_epoch"):
        if data.get(key) is not None and not _number(data[key]):
            return f"{key} is not a number"
    for key in ("hyperparameters", "environment"):
        if not isinstance(data.get(key, {}), dict):
            return f"{key} is not an object"
    return None


def _bench_problem(data: dict):
    ratios = data["ratios"]
    if not isinstance(ratios, dict) or any(v is not None and not _number(v) for v in ratios.values()):
        return "ratios is not an object of numbers"
    for key in ("machine", "gemm", "mlp"):
        if not isinstance(data.get(key) or {}, dict):
            return f"{key} is not an object"
    return None


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def find_records(paths: list[Path] | None = None, on_skip=warn) -> list[tuple[Path, str, dict]]:
    """The records named: files are read (and must be records); folders are searched for JSON
    files, skipping those that are not records, with ``on_skip(message)`` for each one that looks
    like a record (module docstring). Default: ``default_paths()``, which may not exist yet."""
    missing_ok = not paths
    paths = paths or default_paths()
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            for f in sorted(path.rglob("*.json")):
                try:
                    found.append((f, *load_record(f)))
                except NotARecord:
                    continue
                except RecordError as e:
                    on_skip(f"skipped {e}")
        elif path.exists():
            found.append((path, *load_record(path)))
        elif not missing_ok:
            raise RecordError(f"{path}: not found")
    return found


def default_paths(root: Path | None = None) -> list[Path]:
    """``results/runs``, ``results/tables`` and ``results/bench`` under ``root``, by default the
    current folder: where the training programs, the table and the benchmark write when run from there."""
    root = Path(root) if root else Path()
    return [root / "results" / "runs", root / "results" / "tables", root / "results" / "bench"]
