"""Real processes killed at random moments, during writes too (a checkpoint after every batch makes
writes most of the run), by SIGKILL and SIGTERM, then resumed, again and again: at every kill the
files on disk are complete and in order (record never ahead of the checkpoint, params.h5 never
ahead of the record), and the run ends with the numbers of a run never interrupted.

``BNN_KILL_LOOPS`` sets how many kills (default 12: about a second of runs here). The children are
forked from one process that compiled the network once (tests/train_tiny.py), so every run is the
same code in the same kind of process and exact equality is the right test.
"""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from reproduction.store import load_blocks, params_epoch, read_checkpoint
from tests.conftest import ROOT
from tests.tiny import numbers

KILLS = int(os.environ.get("BNN_KILL_LOOPS", "12"))
EPOCHS = 3


class Server:
    """tests/train_tiny.py serve: forks one training run per ``start``."""

    def __init__(self, log):
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.train_tiny", "serve"], cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
        assert self._read() == "ready"

    def _read(self):
        return self.proc.stdout.readline().strip()

    def start(self, folder, resume, every=1e-9):
        self.proc.stdin.write(f"run {folder} {int(resume)} {EPOCHS} {every}\n")
        self.proc.stdin.flush()
        word, pid = self._read().split()
        assert word == "pid"
        return int(pid)

    def wait(self):
        word, code = self._read().split()
        assert word == "exit"
        return int(code)

    def close(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = open(tmp_path_factory.mktemp("server") / "stderr.txt", "w+")
    s = Server(log)
    s.log = log
    yield s
    s.close()
    log.close()


def _position(p):
    return p["epoch"], p["batch"]


def _check_files(run):
    """What must hold whenever a run was killed: every final file complete and the order kept."""
    if not (run / "record.json").exists():
        assert not (run / "checkpoint.h5").exists()   # the start checkpoint comes first, then the record
        return None
    record = json.loads((run / "record.json").read_text())
    checkpoint = read_checkpoint(run / "checkpoint.h5").loop           # complete, readable
    assert _position(record["checkpoint"]) <= _position(checkpoint), (record["checkpoint"], checkpoint)
    if (run / "params.h5").exists():
        assert params_epoch(run / "params.h5") <= record["best_epoch"]
    return record


def _final(folder):
    """A finished run's numbers, parameters and final state."""
    run = folder / "run"
    record = json.loads((run / "record.json").read_text())
    assert record["status"] == "finished"
    state = [value for _, value in read_checkpoint(run / "checkpoint.h5").state]
    return numbers(record), [b[k] for b in load_blocks(run / "params.h5") for k in sorted(b)], state


def _same(a, b):
    import numpy as np

    return a[0] == b[0] and all(len(x) == len(y) and all(np.array_equal(u, v) for u, v in zip(x, y))
                                for x, y in zip(a[1:], b[1:]))


def test_runs_killed_at_random_moments_resume_to_the_numbers_of_an_unbroken_run(tmp_path, server):
    server.start(tmp_path / "straight", resume=False)
    start = time.monotonic()
    assert server.wait() == 0
    duration = time.monotonic() - start
    straight = _final(tmp_path / "straight")

    seed = random.randrange(1 << 30)
    draw = random.Random(seed)
    kills = sigterms = runs = folders = mid_write = 0
    while kills < KILLS:                               # one folder after another, each killed until it finishes
        folders += 1
        folder = tmp_path / f"killed{folders}"
        while True:
            pid = server.start(folder, resume=(folder / "run" / "checkpoint.h5").exists())
            runs += 1
            time.sleep(draw.uniform(0, duration))
            try:
                os.kill(pid, draw.choice([signal.SIGKILL, signal.SIGTERM]))
            except ProcessLookupError:                 # finished and reaped before the kill
                pass
            code = server.wait()
            if code == 0:
                break
            kills += 1
            mid_write += any(p.name.endswith(".tmp") for p in (folder / "run").glob(".*"))
            assert code in (-signal.SIGKILL, -signal.SIGTERM, 128 + signal.SIGTERM), (code, seed)
            record = _check_files(folder / "run")
            if code == 128 + signal.SIGTERM:           # caught: checkpointed where it stopped
                sigterms += 1
                loop = read_checkpoint(folder / "run" / "checkpoint.h5").loop
                assert record["status"] == "interrupted" and _position(record["checkpoint"]) == _position(loop)
            assert runs < 20 * KILLS + 20, seed
        assert _same(_final(folder), straight), (folder, seed)
        assert not [p.name for p in (folder / "run").iterdir() if p.name.endswith(".tmp")]
    print(f"{kills} kills ({sigterms} SIGTERMs caught, {mid_write} left a temporary file) in {runs} runs over "
          f"{folders} run folders; "
          f"seed {seed}; an unbroken run takes {duration:.2f}s")


def test_sigterm_to_a_real_program_ends_in_one_line_and_its_exit_code_and_resumes(tmp_path, server):
    server.start(tmp_path / "straight", resume=False, every=600)
    assert server.wait() == 0
    folder = tmp_path / "run"
    command = [sys.executable, "-m", "tests.train_tiny", "run", str(tmp_path), "--epochs", str(EPOCHS)]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (folder / "record.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("SIGTERM: stopped at ") and last.endswith(f"; resume with: python -m synthetic --resume {folder}")
    assert json.loads((folder / "record.json").read_text())["status"] == "interrupted"

    done = subprocess.run(command + ["--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert _same(_final(tmp_path), _final(tmp_path / "straight"))
