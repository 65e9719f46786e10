"""Stop signals: taken only while train() runs, each ending in a checkpoint and an "interrupted"
record; SIGUSR1/SIGUSR2 passed on afterwards to a handler that was there before (submitit's)."""
import json
import signal
import threading

import numpy as np
import pytest

from reproduction.store import read_checkpoint
from reproduction.train import RunInterrupted
from tests.tiny import stub_network, train_tiny


def _signalling(net, at_call, signum, seen=None):
    """The stub network, raising ``signum`` during its ``at_call``-th training batch; ``seen``
    collects the SIGTERM handler in force at each batch."""
    rng, layers, functions = net
    real, calls = functions.train, {"n": 0}

    def train_step(*args):
        calls["n"] += 1
        if seen is not None:
            seen.append(signal.getsignal(signal.SIGTERM))
        if calls["n"] == at_call:
            signal.raise_signal(signum)
        return real(*args)

    functions.train = train_step
    return net


def test_handlers_are_installed_only_while_training(tmp_path):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)}
    seen = []
    train_tiny(_signalling(stub_network(), 0, None, seen), tmp_path, epochs=1)
    assert seen and all(h not in before.values() and callable(h) for h in seen)
    assert {s: signal.getsignal(s) for s in before} == before


@pytest.mark.parametrize("exits", [False, True], ids=["handler-returns", "handler-exits"])
def test_sigusr2_checkpoints_then_reaches_the_handler_that_was_there_before(tmp_path, exits):
    folder = tmp_path / "run"
    calls = []

    def scheduler_handler(signum, frame):                  # as submitit's: checkpoint, requeue, exit
        calls.append((signum, json.loads((folder / "record.json").read_text())["status"]))
        if exits:
            raise SystemExit(-1)

    previous = signal.signal(signal.SIGUSR2, scheduler_handler)
    try:
        with pytest.raises(SystemExit if exits else RunInterrupted) as stopped:
            train_tiny(_signalling(stub_network(), 25, signal.SIGUSR2), tmp_path, epochs=3)
        assert signal.getsignal(signal.SIGUSR2) is scheduler_handler
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert calls == [(signal.SIGUSR2, "interrupted")]
    assert read_checkpoint(folder / "checkpoint.h5").loop["batch"] == 5        # epoch 2, batch 5
    if not exits:
        assert stopped.value.exit_code == 128 + signal.SIGUSR2
        assert str(stopped.value).startswith("SIGUSR2: stopped at epoch 2, batch 5 of 20 and saved; resume with: ")


def test_in_another_thread_no_handler_is_installed_and_training_works(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    seen, result = [], {}
    thread = threading.Thread(target=lambda: result.update(
        record=train_tiny(_signalling(stub_network(), 0, None, seen), tmp_path, epochs=1)))
    thread.start()
    thread.join()
    assert result["record"]["status"] == "finished" and set(seen) == {before}
    assert np.isfinite(result["record"]["epochs"][0]["val_err"])
