"""Writing files so that nothing half-written is ever seen: a temporary file in the same folder,
renamed over the target only when complete (``os.replace`` is atomic on POSIX and Windows).

A process killed while writing leaves its temporary file, ``.<name>.<random>.tmp``, beside the
target; :func:`remove_leftovers` clears them at the next start. :func:`folder_lock` keeps two
processes out of one run folder, which is what makes that cleanup safe.
"""
import errno
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


def _temporary_beside(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the result should look like any other file
    return Path(tmp)


def _keep_as(path: Path, previous: Path) -> None:
    """Make ``previous`` hold what ``path`` holds now, without a moment where ``path`` is missing:
    a hard link under a temporary name renamed onto ``previous``; a rename where links are not
    supported (then a reader may briefly find only ``previous``)."""
    link = previous.parent / f".{previous.name}.link.tmp"
    link.unlink(missing_ok=True)
    try:
        os.link(path, link)
    except OSError:
        os.replace(path, previous)
        return
    os.replace(link, previous)


@contextmanager
def atomic_output(path, *, previous=None):
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on any
    exception remove it. With ``previous``, the file ``path`` held until then is kept there
    (e.g. checkpoint.h5 -> checkpoint.prev.h5), so a reader always finds the newest complete file
    at ``path`` and the one before at ``previous``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_beside(path)
    try:
        yield tmp
        if previous is not None and path.exists():
            _keep_as(path, Path(previous))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _leftover_pattern(names) -> re.Pattern:
    name = "|".join(re.escape(n) for n in names) if names else ".+"
    return re.compile(rf"^\.(?:{name})\.(?:[a-z0-9_]{{8}}|link)\.tmp$")   # mkstemp's 8 random characters


def remove_leftovers(folder, names=None) -> list:
    """Delete the temporary files that :func:`atomic_output` left in ``folder`` when its process
    was killed mid-write: ``.<name>.<random>.tmp`` for each target ``name`` in ``names`` (any
    name when None). Returns the paths removed. Call it only while no other process writes in
    ``folder`` (hold :func:`folder_lock`)."""
    folder = Path(folder)
    pattern = _leftover_pattern(names)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if pattern.match(entry.name) and entry.is_file(follow_symlinks=False):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


class FolderBusy(RuntimeError):
    """Another process holds the folder's lock; ``str(e)`` is one line naming the folder."""


@contextmanager
def folder_lock(folder):
    """Hold an exclusive advisory lock on ``folder`` (the file ``.lock`` in it) for the block;
    raise :class:`FolderBusy` when another process holds it. The kernel releases the lock when
    the process dies, however it dies. Where locks are unsupported (no ``fcntl``, a file system
    without locks) the block runs unlocked."""
    folder = Path(folder)
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        busy = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            busy = e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
        if busy:
            raise FolderBusy(f"{folder}: another process is using this run folder")
        yield   # the lock (if taken) goes with the descriptor
    finally:
        os.close(fd)


class OutputError(OSError):
    """A folder that cannot take the files; ``str(e)`` is one line naming it and the problem."""


def check_writable(folder, need_bytes: int = 0) -> None:
    """Make sure ``folder`` exists (creating it), takes a new file, and has ``need_bytes`` free;
    raise :class:`OutputError` with one line otherwise. Cheap: programs call it before loading
    data and compiling."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        test = _temporary_beside(folder / "write-test")
        try:   # a few blocks, flushed: an empty file can still be created on a full disk
            fd = os.open(test, os.O_WRONLY)
            try:
                os.write(fd, b"\0" * 4096)
                os.fsync(fd)
            finally:
                os.close(fd)
        finally:
            test.unlink()
    except OSError as e:
        reason = "the disk is full" if e.errno == errno.ENOSPC else e.strerror or str(e)
        raise OutputError(f"{folder}: cannot write there ({reason})") from None
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise OutputError(f"{folder}: {megabytes(free)} free, the run needs about {megabytes(need_bytes)} "
                          "for its checkpoints and parameters")


def megabytes(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e6:.2f} MB"


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
