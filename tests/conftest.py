"""Test-wide settings: compile caches in the repository's .cache/ (visible, and kept by CI between
steps), set before any test imports PyTensor; and the session's fixtures that start something big
once: a real single-node Slurm cluster (tests/slurm_cluster.py) and the records of a tiny table
run without interruption (tests/table_runs.py)."""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("BNN_CACHE_DIR", str(ROOT / ".cache"))

import reproduction  # noqa: E402,F401  (applies the cache and floatX defaults before PyTensor loads)

# The official MNIST files, when the checkout sits beside the shared folder.
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"

from tests.slurm_cluster import slurm_cluster  # noqa: E402,F401  (the session's fixtures)
from tests.table_runs import tiny_reference  # noqa: E402,F401
