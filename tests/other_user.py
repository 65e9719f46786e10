"""Unreadable files and unwritable folders, for the tests of the one-line errors they cause.

A file with mode 000 stops an ordinary user but not root, and these tests often run as root
(containers, CI). Then the code under test runs in a subprocess as root *without* the capabilities
that let root ignore file permissions (``setpriv`` drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH),
which meets exactly what a user who may not read the file meets: EACCES. (``runuser -u nobody``
would do too, but cannot start a Python that lives in root's private home.) Not root: the
subprocess runs as the current user, for whom chmod is enough.
"""
import os
import shutil
import subprocess
import sys

from tests.conftest import ROOT

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
_DROP = "-dac_override,-dac_read_search"
#: Why a test of unreadable files cannot run here, or None.
SKIP_REASON = (None if not IS_ROOT or shutil.which("setpriv") else
               "running as root without setpriv to drop CAP_DAC_OVERRIDE: root reads any file")


def run_python(code: str, cwd=None, drop=True) -> subprocess.CompletedProcess:
    """Run ``code`` in another process with this checkout's packages; with ``drop``, unable to
    override file permissions."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", code]
    if IS_ROOT and drop:
        cmd = ["setpriv", f"--inh-caps={_DROP}", f"--bounding-set={_DROP}", *cmd]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def data_error(code: str) -> str:
    """The message of the ``DataError`` that ``code`` raises, as a user without permission meets it."""
    body = "".join(f"    {line}\n" for line in code.strip().splitlines())
    result = run_python(f"from reproduction.dataset import DataError\ntry:\n{body}"
                        "except DataError as e:\n    print(e)\nelse:\n    print('NO ERROR')")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()
