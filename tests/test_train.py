"""The training loop: learning, records, checkpoints, resume and divergence (SOURCES.md §1.5)."""
import json

import h5py
import numpy as np
import pytest

from reproduction.dataset import Split, Splits
from reproduction.functions import Functions
from reproduction.store import load_blocks
from reproduction.train import RunInterrupted, TrainingDiverged, TrainingError, train
from tests.tiny import numbers, run_in, small_network, stub_network, synthetic_splits, train_tiny


def test_a_small_binary_network_learns_and_writes_its_record(tmp_path, capsys):
    record = train_tiny(small_network(), tmp_path)
    assert record["status"] == "finished"
    assert record["test_err"] < 20.0, record["epochs"]          # chance is 90 %
    out = capsys.readouterr().out
    assert out.startswith("batch_size = 50\n")
    assert "Epoch 4 of 4 took" in out and "  best validation error rate:" in out
    on_disk = json.loads((tmp_path / "run" / "record.json").read_text())
    assert on_disk["epochs"][-1]["epoch"] == 4 and on_disk["best_epoch"] == record["best_epoch"]
    best = on_disk["epochs"][on_disk["best_epoch"] - 1]
    assert best["test_err"] == on_disk["test_err"] and best["val_err"] == on_disk["best_val_err"]
    assert [row["lr"] for row in on_disk["epochs"]] == pytest.approx([0.01, 0.008, 0.0064, 0.00512])
    blocks = load_blocks(tmp_path / "run" / "params.h5")
    assert [b["W"].shape for b in blocks] == [(32, 64), (64, 10)]
    assert np.abs(blocks[0]["W"]).max() <= 1.0                     # clipped to [-H, H]
    with h5py.File(tmp_path / "run" / "params.h5") as f:
        assert f.attrs["epoch"] == on_disk["best_epoch"]


def test_a_run_killed_by_an_exception_resumes_in_a_new_network_to_the_same_numbers(tmp_path):
    straight = train_tiny(small_network(), tmp_path, name="straight")

    rng, layers, functions = small_network()
    calls = {"n": 0}
    real_train = functions.train

    def dies_in_epoch_3(*args):
        calls["n"] += 1
        if calls["n"] == 2 * 20 + 7:                               # 20 batches an epoch
            raise KeyboardInterrupt                                # as where no handler is installed
        return real_train(*args)

    functions.train = dies_in_epoch_3
    with pytest.raises(RunInterrupted, match="python -m synthetic --resume .*killed"):
        train_tiny((rng, layers, functions), tmp_path, name="killed")
    assert json.loads((tmp_path / "killed" / "record.json").read_text())["status"] == "interrupted"

    resumed = train_tiny(small_network(seed=99), tmp_path, name="killed", resume=True)  # state comes from the checkpoint
    assert numbers(resumed) == numbers(straight)
    assert resumed["resumed"][0]["after_epoch"] == 2 and resumed["resumed"][0]["batch"] == 0

    before = (tmp_path / "killed" / "checkpoint.h5").stat().st_mtime_ns
    again = train_tiny(small_network(seed=99), tmp_path, name="killed", resume=True)   # nothing left to do
    assert numbers(again) == numbers(straight) and len(again["resumed"]) == 1
    assert (tmp_path / "killed" / "checkpoint.h5").stat().st_mtime_ns == before


def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    rng, layers, functions = small_network()
    real_train, calls = functions.train, {"n": 0}

    def nan_in_epoch_2(*args):
        calls["n"] += 1
        return np.float32("nan") if calls["n"] == 25 else real_train(*args)

    functions.train = nan_in_epoch_2
    with pytest.raises(TrainingDiverged, match=r"nan at epoch 2, batch 5.*checkpoint.*end of epoch 1\)$"):
        train_tiny((rng, layers, functions), tmp_path)
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["status"] == "diverged" and len(record["epochs"]) == 1 and "nan" in record["error"]
    with h5py.File(tmp_path / "run" / "checkpoint.h5") as f:
        assert json.loads(f.attrs["loop"])["epoch"] == 1


def test_a_crash_marks_the_record_failed_with_its_reason_and_propagates(tmp_path):
    rng, layers, functions = small_network()
    real_train, calls = functions.train, {"n": 0}

    def crashes(*args):
        calls["n"] += 1
        if calls["n"] == 30:
            raise ValueError("a bug in batch 30")
        return real_train(*args)

    functions.train = crashes
    with pytest.raises(ValueError, match="a bug in batch 30"):
        train_tiny((rng, layers, functions), tmp_path)
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["status"] == "failed" and record["error"] == "ValueError: a bug in batch 30"
    assert len(record["epochs"]) == 1                  # the record of the last checkpoint, not ahead of it


def test_a_new_run_never_overwrites_a_run_folder(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "record.json").write_text("{}")
    with pytest.raises(TrainingError, match=r"already holds a run; continue it with: python -m synthetic --resume"):
        train_tiny(stub_network(), tmp_path, epochs=1)
    assert (tmp_path / "run" / "record.json").read_text() == "{}"


def test_a_split_smaller_than_a_batch_is_one_line_before_any_work(tmp_path):
    splits = synthetic_splits()
    splits = Splits(splits.train, splits.valid.subset(49), splits.test)
    with pytest.raises(TrainingError, match="^the validation set has 49 examples, fewer than one batch of 50$"):
        train_tiny(stub_network(), tmp_path, splits=splits)
    assert not (tmp_path / "run").exists()


def test_ties_in_validation_error_go_to_the_later_epoch_and_partial_batches_are_dropped(tmp_path):
    rng, layers, functions = small_network()
    seen = []
    functions.evaluate = lambda x, t: (seen.append(len(x)), (np.float32(0.5), np.float32(0.25)))[1]
    splits = synthetic_splits()
    splits = Splits(splits.train.subset(1010), splits.valid.subset(120), splits.test.subset(200))
    record = train(functions, layers, splits, run_in(tmp_path), rng=rng, num_epochs=3, batch_size=50,
                   LR_start=0.01, LR_decay=0.8, progress=False)
    assert record["best_epoch"] == 3 and record["best_val_err"] == 25.0
    assert set(seen) == {50}
    assert len(seen) == 3 * (2 + 4)                 # 2 validation batches (120 // 50) + 4 test batches per epoch


# The error sums (SOURCES.md §1.5). The original's per-batch errors are float32 and its sums start
# as the int 0, which NumPy 1.x promotes to float64 at the first float32 added (checked with NumPy
# 1.26.4: `e = np.array(0.02, np.float32); err = 0; err += e` gives numpy.float64). So epochs with
# equal error counts compare by float64 sums of float32(count / batch_size): equal counts spread
# differently over the batches can compare unequal, and a float32 accumulator (NumPy 2's
# promotion of the same code) would decide some ties the other way.

def _scripted_run(tmp_path, valid_counts, batch_size=50):
    """Train two epochs of a stand-in network whose validation batches have the given error counts
    per epoch; the test batches of epoch e have e errors each, naming the epoch they come from."""
    n_valid = len(valid_counts[0]) * batch_size
    marks = lambda kind, n: np.stack([np.full(n, kind), np.arange(n) // batch_size], 1)  # noqa: E731
    splits = Splits(Split(np.zeros((100, 1, 1, 2), np.float32), np.zeros(100, int)),
                    Split(marks(1.0, n_valid).reshape(-1, 1, 1, 2).astype(np.float32), np.zeros(n_valid, int)),
                    Split(marks(2.0, 100).reshape(-1, 1, 1, 2).astype(np.float32), np.zeros(100, int)))
    epoch = {"valid": 0}

    def evaluate(x, t):
        kind, batch = x[0, 0, 0]
        if kind == 1.0:
            epoch["valid"] += batch == 0
            count = valid_counts[epoch["valid"] - 1][int(batch)]
        else:
            count = epoch["valid"]
        return np.float32(0.5), np.float32(count) / np.float32(batch_size)   # floatX, as Theano's mean

    functions = Functions(lambda x, t, lr: np.float32(0.1), evaluate, [], [])
    return train(functions, [], splits, run_in(tmp_path), rng=np.random.RandomState(0), num_epochs=2,
                 batch_size=batch_size, LR_start=0.01, LR_decay=0.5, progress=False)


def test_equal_error_counts_whose_float64_sums_differ_keep_the_earlier_epoch(tmp_path):
    # 7 errors in each epoch; float32(1/50) + float32(1/50) + float32(5/50) exceeds
    # float32(1/50) + float32(2/50) + float32(4/50) in float64 by 2**-23 (as float32 sums they are equal)
    record = _scripted_run(tmp_path, [(1, 2, 4), (1, 1, 5)])
    assert record["epochs"][1]["val_err"] > record["epochs"][0]["val_err"]
    assert record["best_epoch"] == 1 and record["test_err"] == pytest.approx(2.0)   # epoch 1's test: 1/50


def test_equal_error_counts_whose_float64_sums_are_equal_go_to_the_later_epoch(tmp_path):
    # 6 errors in each epoch, spread (2, 3, 1) then (1, 1, 4): equal float64 sums of the float32 rates
    # (a float32 accumulator would find the second larger and keep the first)
    counts = [(2, 3, 1), (1, 1, 4)]
    record = _scripted_run(tmp_path, counts)
    rates32 = [[np.float32(c) / np.float32(50) for c in epoch] for epoch in counts]
    sums32 = [np.float32(np.float32(np.float32(r[0]) + r[1]) + r[2]) for r in rates32]
    assert sums32[1] > sums32[0]
    assert record["epochs"][1]["val_err"] == record["epochs"][0]["val_err"]
    assert record["best_epoch"] == 2 and record["test_err"] == pytest.approx(4.0)   # epoch 2's test: 2/50
