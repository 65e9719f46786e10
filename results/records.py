"""Run and benchmark records: finding them and reading them.

A run record is ``results/runs/<run>/record.json`` as a training program writes it (a ``dataset``
and its ``epochs``); a benchmark record is ``results/bench/<name>.json`` as ``python -m gpu_xnor``
writes it (its ``ratios``).
"""
import json
from pathlib import Path

from .paper import DATASETS


class RecordError(ValueError):
    """A run or benchmark record that cannot be read."""


def load_record(path: Path) -> tuple[str, dict]:
    """Read one record; returns ("run" | "bench", data)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RecordError(f"{path}: not found") from None
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path}: not a run or benchmark record (not a JSON object)")
    kind = "run" if "dataset" in data and "epochs" in data else "bench" if "ratios" in data else None
    if kind is None:
        raise RecordError(f"{path}: not a run record (dataset, epochs) nor a benchmark record (ratios)")
    if data.get("format") != 1:
        raise RecordError(f"{path}: unknown record format {data.get('format')!r} (expected 1)")
    if kind == "run" and data["dataset"] not in DATASETS:
        raise RecordError(f"{path}: unknown dataset {data['dataset']!r} (expected one of {', '.join(DATASETS)})")
    return kind, data


def find_records(paths: list[Path] | None = None) -> list[tuple[Path, str, dict]]:
    """The records named: files are read (and must be records); folders are searched for JSON
    files, skipping those that are not records. Default: results/runs and results/bench, which
    may not exist yet."""
    missing_ok = not paths
    paths = paths or default_paths()
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            for f in sorted(path.rglob("*.json")):
                try:
                    found.append((f, *load_record(f)))
                except RecordError:
                    continue  # other JSON in a run folder (e.g. a checkpoint's metadata)
        elif path.exists():
            found.append((path, *load_record(path)))
        elif not missing_ok:
            raise RecordError(f"{path}: not found")
    return found


def default_paths(root: Path | None = None) -> list[Path]:
    root = Path(root) if root else Path(__file__).resolve().parents[1]
    return [root / "results" / "runs", root / "results" / "bench"]
