"""The shared core of the BinaryNet reproduction: the counterpart of the original `binary_net.py`.

Importing this package points PyTensor's compile cache (and Numba's) at a folder the user can see,
``$BNN_CACHE_DIR`` (default ``~/.cache/binarynet``), makes float32 the default float type, as the
original ran with ``floatX=float32``, and turns off Numba's fast math, whose ``x * (1 / y)`` is not
the original's float32 division. All three happen only where the user has not set them, and must
happen before PyTensor is first imported, which is why they live here.
"""
import os
import sys
from pathlib import Path


def cache_dir() -> Path:
    """The folder for compile caches and downloaded data: ``$BNN_CACHE_DIR`` or ``~/.cache/binarynet``."""
    return Path(os.environ.get("BNN_CACHE_DIR") or Path.home() / ".cache" / "binarynet")


def _configure_pytensor_defaults() -> None:
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    extra = []
    if "base_compiledir" not in flags:
        extra.append(f"base_compiledir={cache_dir() / 'pytensor'}")
    if "floatX" not in flags:
        extra.append("floatX=float32")
    if "numba__fastmath" not in flags:   # fast math divides by multiplying with the reciprocal
        extra.append("numba__fastmath=False")
    if extra:
        os.environ["PYTENSOR_FLAGS"] = ",".join([f for f in [flags, *extra] if f])
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir() / "numba"))


def look_past_the_current_folder() -> None:
    """For the entry points that import the ``results`` package (``python -m reproduction``,
    ``python -m gpu_xnor``): ``python -m`` puts the current folder first on ``sys.path``. Where that
    folder holds a ``results/`` that is not the package (what the programs write: ``results/runs``),
    Python would import it as an empty namespace package ahead of an editable install's ``results``;
    so the current folder leaves the path, unless it is a checkout (its ``results/`` is the package)."""
    here = Path.cwd()
    if (here / "results").is_dir() and not (here / "results" / "__init__.py").exists():
        sys.path[:] = [p for p in sys.path if p not in ("", ".") and os.path.abspath(p) != str(here)]


_configure_pytensor_defaults()
