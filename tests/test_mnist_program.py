"""The real MNIST program, run short on the official files."""
import json
import subprocess
import sys

import numpy as np
import pytest

from reproduction.store import load_blocks, load_npz_blocks
from tests.conftest import MNIST_DIR, ROOT

needs_mnist = pytest.mark.skipif(not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists(),
                                 reason=f"the official MNIST files are not in {MNIST_DIR}")


def test_help_explains_every_option():
    out = subprocess.run([sys.executable, "-m", "mnist", "--help"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    for option in ["--epochs", "--units", "--hidden-layers", "--train-size", "--stochastic", "--shift-bn",
                   "--shift-adamax", "--data-dir", "--out", "--resume", "--mode", "--seed", "--no-dropout"]:
        assert option in out


@needs_mnist
def test_a_short_run_of_the_real_program_learns_mnist(tmp_path, capsys):
    from mnist.__main__ import main

    out = tmp_path / "run"
    main(["--data-dir", str(MNIST_DIR), "--epochs", "2", "--train-size", "5000", "--valid-size", "1000",
          "--test-size", "1000", "--units", "512", "--out", str(out), "--progress", "lines"])
    printed = capsys.readouterr().out
    assert "batch_size = 100\n" in printed and "LR_start = 0.003\n" in printed
    assert "Epoch 2 of 2 took" in printed and "  test error rate:" in printed
    record = json.loads((out / "record.json").read_text())
    assert record["status"] == "finished" and len(record["epochs"]) == 2
    assert record["hyperparameters"]["train_size"] == 5000
    assert record["test_err"] < 25.0, record["epochs"]      # chance is 90 %; measured here: 16.5 %
    blocks = load_blocks(out / "params.h5")
    assert [b["W"].shape for b in blocks] == [(784, 512), (512, 512), (512, 512), (512, 10)]
    npz = load_npz_blocks(out / "mnist_parameters.npz")     # the original's arr_0 ... arr_23 layout
    assert len(npz) == 4 and all(np.array_equal(a["W"], b["W"]) for a, b in zip(npz, blocks))
