"""Resuming: from the start, mid-epoch, mid-evaluation, from the previous checkpoint when the last is
damaged, and after a kill between the record and params.h5, always to the numbers of a run never
interrupted (same process, same order of operations: exact equality is the right test)."""
import json
import signal

import h5py
import numpy as np
import pytest

from reproduction.files import folder_lock
from reproduction.store import load_blocks, read_checkpoint
from reproduction.train import ResumeError, RunInterrupted, TrainingError
from tests.tiny import (numbers, resettable, same_arrays, scramble, small_network, state_of, stub_network,
                        train_tiny)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted 4-epoch run: its record, final state and params.h5."""
    folder = tmp_path_factory.mktemp("straight")
    net = small_network()
    record = train_tiny(net, folder)
    return record, state_of(net[2]), load_blocks(folder / "run" / "params.h5")


@pytest.fixture(scope="module")
def network():
    """One compiled network for all resumes here: ``network()`` gives it with its state at
    construction; ``scramble`` replaces that state with other values before each resume."""
    return resettable(small_network())


class Script:
    """Wraps a network's compiled functions to act at the n-th call of a segment: raise a signal
    (then run the call) or raise KeyboardInterrupt instead of the call."""

    def __init__(self, net):
        self.functions = net[2]
        self.real = (self.functions.train, self.functions.evaluate)
        self.functions.train = lambda *a: self._call("train", 0, a)
        self.functions.evaluate = lambda *a: self._call("evaluate", 1, a)
        self.segment({})

    def segment(self, plan):
        self.plan, self.calls = plan, {"train": 0, "evaluate": 0}

    def _call(self, kind, i, args):
        self.calls[kind] += 1
        action = self.plan.get((kind, self.calls[kind]))
        if action == "raise":
            raise KeyboardInterrupt
        if action is not None:
            signal.raise_signal(action)
        return self.real[i](*args)

    def restore(self):
        self.functions.train, self.functions.evaluate = self.real


def _position(folder):
    record = json.loads((folder / "record.json").read_text())
    loop = read_checkpoint(folder / "checkpoint.h5").loop
    assert record["checkpoint"]["epoch"] == loop["epoch"] and record["checkpoint"]["batch"] == loop["batch"]
    return record["status"], (loop["epoch"], loop["batch"])


def test_interrupted_at_the_start_mid_epoch_mid_validation_and_after_timed_checkpoints_resumes_exactly(
        tmp_path, straight, network):
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    net = network()
    script = Script(net)
    folder = tmp_path / "run"
    segments = [   # (what happens, checkpoint_every, where the checkpoint must be, exit code)
        ({("train", 1): "raise"}, 0, (0, 0), 130),                      # killed before any batch
        ({("train", 7): signal.SIGINT}, 0, (0, 7), 130),                # Ctrl-C in epoch 1
        ({("evaluate", 1): signal.SIGUSR1}, 0, (0, 20), 128 + signal.SIGUSR1),  # during validation
        ({("train", 21): signal.SIGTERM}, 0, (2, 1), 143),              # epoch 3, batch 1
        ({("train", 31): "raise"}, 1e-9, (3, 11), 130),                 # checkpoints each batch, then a kill
    ]
    try:
        for k, (plan, every, where, code) in enumerate(segments):
            script.segment(plan)
            with pytest.raises(RunInterrupted) as stopped:
                train_tiny(net, tmp_path, resume=k > 0, checkpoint_every=every)
            assert stopped.value.exit_code == code and "python -m synthetic --resume" in str(stopped.value)
            assert _position(folder) == ("interrupted", where), k
            assert {s: signal.getsignal(s) for s in handlers} == handlers
            scramble(net, seed=k)
        script.segment({})
        resumed = train_tiny(net, tmp_path, resume=True)
    finally:
        script.restore()
    record, state, params = straight
    assert numbers(resumed) == numbers(record)
    assert same_arrays(state_of(net[2]), state)
    assert all(same_arrays(list(a.values()), list(b.values())) for a, b in zip(load_blocks(folder / "params.h5"), params))
    assert [(r["after_epoch"], r["batch"]) for r in resumed["resumed"]] == [(0, 0), (0, 7), (0, 20), (2, 1), (3, 11)]


def test_a_damaged_last_checkpoint_falls_back_to_the_one_before_with_a_warning(tmp_path, straight, network, capsys):
    net = network()
    script = Script(net)
    script.segment({("train", 45): signal.SIGTERM})                  # epoch 3, batch 5
    try:
        with pytest.raises(RunInterrupted):
            train_tiny(net, tmp_path)
    finally:
        script.restore()
    folder = tmp_path / "run"
    data = (folder / "checkpoint.h5").read_bytes()
    (folder / "checkpoint.h5").write_bytes(data[:len(data) // 3])
    capsys.readouterr()
    resumed = train_tiny(scramble(net), tmp_path, resume=True)
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("  epoch ")]  # progress
    assert len(err) == 1 and err[0].startswith("warning: ") and "checkpoint.h5: unreadable" in err[0]
    assert err[0].endswith("; resuming from checkpoint.prev.h5 instead")
    assert resumed["resumed"][0]["after_epoch"] == 2 and resumed["resumed"][0]["batch"] == 0
    assert numbers(resumed) == numbers(straight[0])


def test_without_a_usable_checkpoint_resume_is_one_line(tmp_path):
    net = stub_network()
    folder = tmp_path / "run"
    folder.mkdir()
    with pytest.raises(ResumeError, match=r"^cannot resume: \S+/run: no checkpoint$"):
        train_tiny(net, tmp_path, resume=True)
    (folder / "checkpoint.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    with pytest.raises(ResumeError, match=r"^cannot resume: \S+/checkpoint\.h5: unreadable \(.*\)$"):
        train_tiny(net, tmp_path, resume=True)
    (folder / "checkpoint.prev.h5").write_bytes(b"garbage")
    with pytest.raises(ResumeError, match=r"^cannot resume: \S+/checkpoint\.h5: unreadable"):
        train_tiny(net, tmp_path, resume=True)


def test_a_kill_between_the_record_and_params_h5_is_repaired_on_resume(tmp_path, monkeypatch):
    import reproduction.train as train_module

    real, calls = train_module.save_params, {"n": 0}

    def killed_at_epoch_2(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise SystemExit(1)                    # what submitit's handler raises, at the worst moment
        return real(*args, **kw)

    monkeypatch.setattr(train_module, "save_params", killed_at_epoch_2)
    with pytest.raises(SystemExit):
        train_tiny(stub_network(), tmp_path, epochs=2)   # constant errors: every epoch is the best
    folder = tmp_path / "run"
    record = json.loads((folder / "record.json").read_text())
    assert record["status"] == "interrupted" and record["best_epoch"] == 2
    with h5py.File(folder / "params.h5") as f:
        assert f.attrs["epoch"] == 1
    monkeypatch.setattr(train_module, "save_params", real)
    again = train_tiny(stub_network(), tmp_path, epochs=2, resume=True)
    assert again["status"] == "finished"
    with h5py.File(folder / "params.h5") as f:
        assert f.attrs["epoch"] == 2


def test_a_run_folder_in_use_is_refused_and_leftover_temporaries_are_cleared(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    with folder_lock(folder):
        with pytest.raises(TrainingError, match=r"run: another process is using this run folder \(is it still"):
            train_tiny(stub_network(), tmp_path, epochs=1)
    for name in (".checkpoint.h5.abcd_123.tmp", ".record.json.zzzzzzzz.tmp", ".other.abcdefgh.tmp"):
        (folder / name).write_bytes(b"x" * 1000)
    record = train_tiny(stub_network(), tmp_path, epochs=1)
    assert record["status"] == "finished"
    assert "Removed 2 temporary file(s) an interrupted write left in" in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp")) == [".other.abcdefgh.tmp"]
    assert np.isfinite(record["epochs"][0]["train_loss"])
