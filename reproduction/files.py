"""Writing files so that nothing half-written is ever seen: a temporary file in the same folder,
renamed over the target only when complete (``os.replace`` is atomic on POSIX and Windows)."""
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_output(path):
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on any
    exception remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the result should look like any other file
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _plain(value):
    """numpy scalars and arrays, and paths, as JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def to_json(obj, indent=None) -> str:
    return json.dumps(obj, indent=indent, default=_plain)


def write_json(path, obj) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(to_json(obj, indent=1) + "\n")
