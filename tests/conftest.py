"""Test-wide settings: compile caches in the repository's .cache/ (visible, and kept by CI between
steps), set before any test imports PyTensor."""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("BNN_CACHE_DIR", str(ROOT / ".cache"))

import reproduction  # noqa: E402,F401  (applies the cache and floatX defaults before PyTensor loads)

# The official MNIST files, when the checkout sits beside the shared folder.
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"
