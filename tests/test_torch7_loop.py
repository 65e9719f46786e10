"""The Torch7 code's training loop (SOURCES.md §4(f)): the test error of every epoch, the last one
reported; the learning rate halved every k epochs; partial batches trained and evaluated; and a
Torch7 network killed mid-run resumes to the numbers of a run never interrupted."""
import json

import numpy as np
import pytest

from reproduction.dataset import Split, Splits
from reproduction.functions import Functions, compile_functions
from reproduction.layers import BatchNormTorch7, BinarizedNeurons, DenseLayer, ShiftBatchNormTorch7
from reproduction.train import RunInterrupted, train
from tests.tiny import MODE, numbers, run_in, synthetic_splits

TORCH7_LOOP = {"select_best": False, "LR_halve_every": 2, "partial_batches": True}


def test_every_epochs_test_error_is_recorded_and_the_last_one_reported(tmp_path, capsys):
    # validation improves only in epoch 1: a Theano loop would report epoch 1's test error
    val_errs, test_errs = iter([0.1, 0.3, 0.3, 0.3, 0.5]), iter([0.2, 0.4, 0.6, 0.6, 0.8])
    state = {"valid": True}

    def evaluate(x, t):
        return np.float32(0.5), np.float32(next(val_errs) if state["valid"] else next(test_errs))

    def marked(x, t):
        out = evaluate(x, t)
        state["valid"] = not state["valid"]
        return out

    splits = Splits(*(Split(np.zeros((50, 1, 1, 2), np.float32), np.zeros(50, int)) for _ in range(3)))
    functions = Functions(lambda x, t, lr: np.float32(0.1), marked, [], [])
    record = train(functions, [], splits, run_in(tmp_path), rng=np.random.RandomState(0), num_epochs=5,
                   batch_size=50, LR_start=1.0, LR_decay=1.0, progress=False, **TORCH7_LOOP)
    assert [row["test_err"] for row in record["epochs"]] == pytest.approx([20.0, 40.0, 60.0, 60.0, 80.0])
    assert record["test_err"] == pytest.approx(80.0) and record["test_epoch"] == 5
    assert record["best_epoch"] == 1 and record["best_val_err"] == pytest.approx(10.0)   # kept, but not used
    assert [row["lr"] for row in record["epochs"]] == [1.0, 1.0, 0.5, 0.5, 0.25]        # halved after 2 and 4
    out = capsys.readouterr().out
    assert "best epoch" not in out and out.count("  test error rate:") == 5


def test_partial_batches_are_trained_and_every_example_counts_once(tmp_path):
    seen = {"train": [], "eval": []}

    def train_step(x, t, lr):
        seen["train"].append(len(x))
        return np.float32(0.25)

    def evaluate(x, t):
        seen["eval"].append(len(x))
        return np.float32(1.0), np.float32(1.0 if len(x) < 50 else 0.0)   # only the partial batch is wrong

    splits = Splits(Split(np.zeros((120, 1, 1, 2), np.float32), np.zeros(120, int)),
                    Split(np.zeros((70, 1, 1, 2), np.float32), np.zeros(70, int)),
                    Split(np.zeros((60, 1, 1, 2), np.float32), np.zeros(60, int)))
    record = train(Functions(train_step, evaluate, [], []), [], splits, run_in(tmp_path),
                   rng=np.random.RandomState(0), num_epochs=1, batch_size=50, LR_start=1.0, LR_decay=1.0,
                   progress=False, **TORCH7_LOOP)
    assert seen["train"] == [50, 50, 20] and seen["eval"] == [50, 20, 50, 10]
    row = record["epochs"][0]
    assert row["val_err"] == pytest.approx(20 / 70 * 100) and row["test_err"] == pytest.approx(10 / 60 * 100)
    assert row["train_loss"] == pytest.approx(0.25) and row["val_loss"] == pytest.approx(1.0)   # sum / ceil(N/b)


def torch7_network(seed=432, mode=None):
    """A tiny Torch7-recipe network: the state a checkpoint must carry is the AdaMax moments and
    counter, both batch norms' statistics (Torch's running variance too) and the neurons' generators."""
    rng = np.random.RandomState(seed)
    layers = [DenseLayer(32, 64, rng=rng, init="torch7", name="d0"), ShiftBatchNormTorch7(64, name="bn0"),
              BinarizedNeurons(True, rng=rng), DenseLayer(64, 10, rng=rng, init="torch7", name="d1"),
              BatchNormTorch7(10, name="bn1")]
    functions = compile_functions(layers, (1, 4, 8), optimizer="adamax_binary_clip_shift", mode=mode or MODE,
                                  b_LR_scale="W", gamma_LR_scale="Glorot", clip_all=False)
    return rng, layers, functions


def _train(net, folder, name, **kw):
    rng, layers, functions = net
    return train(functions, layers, synthetic_splits(), run_in(folder, name), rng=rng, num_epochs=4,
                 batch_size=50, LR_start=2.0 ** -6, LR_decay=1.0, progress=False, **TORCH7_LOOP, **kw)


def test_a_torch7_network_learns_and_a_killed_run_resumes_to_the_same_numbers(tmp_path):
    straight = _train(torch7_network(), tmp_path, "straight")
    assert straight["test_err"] < 20.0, straight["epochs"]           # chance is 90 %
    assert straight["test_err"] == straight["epochs"][-1]["test_err"]

    rng, layers, functions = torch7_network()
    calls = {"n": 0}
    real_train = functions.train

    def dies_in_epoch_3(*args):
        calls["n"] += 1
        if calls["n"] == 2 * 20 + 7:
            raise KeyboardInterrupt
        return real_train(*args)

    functions.train = dies_in_epoch_3
    with pytest.raises(RunInterrupted):
        _train((rng, layers, functions), tmp_path, "killed")
    resumed = _train(torch7_network(seed=99), tmp_path, "killed", resume=True)   # the state from the checkpoint
    assert numbers(resumed) == numbers(straight)
    assert json.loads((tmp_path / "killed" / "record.json").read_text())["test_epoch"] == 4
