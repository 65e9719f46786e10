"""The training loop: learning, records, checkpoints, resume and divergence (PAPER.md §1.5)."""
import json

import h5py
import numpy as np
import pytest

from reproduction.backend import default_mode
from reproduction.binarize import binary_tanh_unit
from reproduction.dataset import Split, Splits
from reproduction.functions import compile_functions
from reproduction.layers import BatchNorm, DenseLayer, Dropout, Nonlinearity
from reproduction.store import load_blocks
from reproduction.train import Run, TrainingDiverged, train

MODE = default_mode()


def synthetic_splits(seed=0, n_train=1000, dim=32):
    """Ten noisy ±1 prototypes: a problem a small binary network solves in a few epochs."""
    rng = np.random.RandomState(seed)
    prototypes = np.where(rng.rand(10, dim) < 0.5, -1.0, 1.0)

    def split(n):
        y = rng.randint(0, 10, n)
        X = prototypes[y] + rng.randn(n, dim) * 0.8
        return Split(X.reshape(n, 1, 4, dim // 4).astype(np.float32), y)

    return Splits(split(n_train), split(200), split(200))


def small_network(seed=1234, dropout=0.1):
    rng = np.random.RandomState(seed)
    layers = [DenseLayer(32, 64, rng=rng, name="d0"), BatchNorm(64, name="bn0"), Nonlinearity(binary_tanh_unit),
              Dropout(dropout, rng=rng), DenseLayer(64, 10, rng=rng, name="d1"), BatchNorm(10, name="bn1")]
    return rng, layers, compile_functions(layers, (1, 4, 8), mode=MODE)


def run_in(tmp_path, name="run"):
    return Run(tmp_path / name, "synthetic", {"batch_size": 50}, {"mode": MODE}, {"epochs": 4})


def _train(tmp_path, net, name="run", epochs=4, **kw):
    rng, layers, functions = net
    return train(functions, layers, synthetic_splits(), run_in(tmp_path, name), rng=rng, num_epochs=epochs,
                 batch_size=50, LR_start=0.01, LR_decay=0.8, progress=False, **kw)


def _numbers(record):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in record["epochs"]]


def test_a_small_binary_network_learns_and_writes_its_record(tmp_path, capsys):
    record = _train(tmp_path, small_network())
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


def test_a_killed_run_resumes_to_the_same_numbers(tmp_path):
    straight = _train(tmp_path, small_network(), name="straight")

    rng, layers, functions = small_network()
    calls = {"n": 0}
    real_train = functions.train

    def dies_in_epoch_3(*args):
        calls["n"] += 1
        if calls["n"] == 2 * 20 + 7:                               # 20 batches an epoch
            raise KeyboardInterrupt
        return real_train(*args)

    functions.train = dies_in_epoch_3
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, (rng, layers, functions), name="killed")
    assert json.loads((tmp_path / "killed" / "record.json").read_text())["status"] == "interrupted"

    resumed = _train(tmp_path, small_network(seed=99), name="killed", resume=True)  # state comes from the checkpoint
    assert _numbers(resumed) == _numbers(straight)
    assert resumed["status"] == "finished" and resumed["resumed"][0]["after_epoch"] == 2

    again = _train(tmp_path, small_network(seed=99), name="killed", resume=True)   # nothing left to do
    assert again["status"] == "finished" and _numbers(again) == _numbers(straight)


def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    rng, layers, functions = small_network()
    real_train, calls = functions.train, {"n": 0}

    def nan_in_epoch_2(*args):
        calls["n"] += 1
        return np.float32("nan") if calls["n"] == 25 else real_train(*args)

    functions.train = nan_in_epoch_2
    with pytest.raises(TrainingDiverged, match="nan at epoch 2, batch 5.*checkpoint"):
        _train(tmp_path, (rng, layers, functions))
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["status"] == "diverged" and len(record["epochs"]) == 1
    with h5py.File(tmp_path / "run" / "checkpoint.h5") as f:
        assert json.loads(f.attrs["loop"])["epoch"] == 1


def test_ties_in_validation_error_go_to_the_later_epoch_and_partial_batches_are_dropped(tmp_path):
    rng, layers, functions = small_network()
    seen = []
    real_eval = functions.evaluate
    functions.evaluate = lambda x, t: (seen.append(len(x)), (np.float32(0.5), np.float32(0.25)))[1]
    splits = synthetic_splits()
    splits = Splits(splits.train.subset(1010), splits.valid.subset(120), splits.test.subset(200))
    record = train(functions, layers, splits, run_in(tmp_path), rng=rng, num_epochs=3, batch_size=50,
                   LR_start=0.01, LR_decay=0.8, progress=False)
    functions.evaluate = real_eval
    assert record["best_epoch"] == 3 and record["best_val_err"] == 25.0
    assert set(seen) == {50}
    assert len(seen) == 3 * (2 + 4)                 # 2 validation batches (120 // 50) + 4 test batches per epoch
