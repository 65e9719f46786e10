"""The shared core of the BinaryNet reproduction: the counterpart of the original `binary_net.py`.

Importing this package points PyTensor's compile cache (and Numba's) at a folder the user can see,
``$BNN_CACHE_DIR`` (default ``~/.cache/binarynet``), makes float32 the default float type, as the
original ran with ``floatX=float32``, and turns off Numba's fast math, whose ``x * (1 / y)`` is not
the original's float32 division. All three happen only where the user has not set them, and must
happen before PyTensor is first imported, which is why they live here.
"""
import os
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


_configure_pytensor_defaults()
