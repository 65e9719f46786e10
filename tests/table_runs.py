"""What the tests of the table (python -m reproduction table) share: a tiny two-seed MNIST table,
the table command as a subprocess, and the records of that table run once without interruption,
which every interrupted and resumed table must reproduce number for number.

The tiny table trains a 784-32-10 binary MLP on 20,000 training images (200 validation and test
images) for 16 epochs: after the first epoch (a few seconds, with the compile) each epoch takes
about 0.2 s here, which leaves a window of a few seconds in which a test can interrupt a run
between two epochs.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import HAVE_MNIST, MNIST_DIR, ROOT
from tests.slurm_cluster import REQUIRE_ENV

EPOCHS = 16
TINY = ["--recipes", "theano", "--units", "32", "--hidden-layers", "1", "--train-size", "20000", "--valid-size", "200",
        "--test-size", "200", "--epochs", str(EPOCHS), "--data-dir", str(MNIST_DIR)]
SEEDS = (1234, 1235)
#: Record keys that describe when and where a run ran, not what it computed.
CIRCUMSTANCES = ("started", "updated", "environment", "resumed", "checkpoint", "command", "options")


def table_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "reproduction", "table", *args]


def run_table(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The table command, run from the checkout's root (so that it imports this checkout)."""
    return subprocess.run(table_command(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def start_table(*args: str, log: Path) -> subprocess.Popen:
    out = open(log, "wb")
    try:
        return subprocess.Popen(table_command(*args), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    finally:
        out.close()


def record(folder: Path, run: str) -> dict | None:
    try:
        return json.loads((folder / run / "record.json").read_bytes())
    except (OSError, ValueError):
        return None


def epochs_done(folder: Path, run: str) -> int:
    rec = record(folder, run)
    return len(rec["epochs"]) if rec else 0


def numbers(rec: dict) -> dict:
    """A record without its circumstances, and without the seconds each epoch took."""
    out = {k: v for k, v in rec.items() if k not in CIRCUMSTANCES}
    out["epochs"] = [{k: v for k, v in row.items() if k != "seconds"} for row in rec["epochs"]]
    return out


def events(folder: Path, run: str) -> list[dict]:
    path = folder / "logs" / f"{run}.events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def program_pid(folder: Path, run: str) -> int:
    return [e["pid"] for e in events(folder, run) if e["event"] == "start"][-1]


def wait_for(condition, timeout: float, what: str, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"{what} within {timeout} s")


def kill_program(pid: int) -> None:
    """SIGKILL to a training program the table started (checked by its command line, so that a
    PID the system has given to another process since is left alone)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return
    if b"-m" in command and b"mnist" in command:
        os.kill(pid, signal.SIGKILL)


def stop(process: subprocess.Popen) -> None:
    """Kill a process this test started, if it still runs, and reap it."""
    if process.poll() is None:
        process.kill()
        process.wait()


def run_name(seed: int) -> str:
    return f"mnist-theano-seed{seed}"


def resume_points(folder: Path, run: str) -> list[int]:
    """The finished epochs each resume of the run started from, as its program printed them
    ("Resuming <run> at the end of epoch N" or "at epoch N + 1, batch b of B"). (The record's own
    ``resumed`` list comes from the checkpoint, so it lacks an attempt killed before its first.)"""
    points = []
    for line in (folder / "logs" / f"{run}.log").read_text().splitlines():
        m = re.match(r"Resuming \S+ at (?:the end of epoch (\d+)|epoch (\d+), batch)", line)
        if m:
            points.append(int(m.group(1)) if m.group(1) else int(m.group(2)) - 1)
    return points


def assert_resumed_without_loss(folder: Path, run: str, epochs_before: list[int]) -> None:
    """Each resume of the run started at or after the epochs it had finished when interrupted
    (``epochs_before``, one per interruption), and the run trained every epoch once."""
    points = resume_points(folder, run)
    assert len(points) == len(epochs_before), points
    assert all(p >= n for p, n in zip(points, epochs_before)), (points, epochs_before)
    assert [r["epoch"] for r in record(folder, run)["epochs"]] == list(range(1, EPOCHS + 1))


class Reference(dict):
    """{run name: record} of a table, and its ``folder``."""

    folder: Path


@pytest.fixture(scope="session")
def tiny_reference(tmp_path_factory) -> Reference:
    """{run name: record} of the tiny table, both seeds, run locally with no interruption; its
    ``folder`` is the table folder (tests must leave it as it is)."""
    if not HAVE_MNIST:
        reason = f"the official MNIST files are not in {MNIST_DIR}"
        if os.environ.get(REQUIRE_ENV) == "1":   # CI must run the Slurm table: no silent skip there
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("reference") / "table"
    done = run_table("--out", str(folder), "--datasets", "mnist", "--seeds", str(len(SEEDS)), "--jobs", "2", *TINY)
    assert done.returncode == 0, done.stdout + done.stderr
    reference = Reference({run_name(s): record(folder, run_name(s)) for s in SEEDS})
    reference.folder = folder
    return reference
