"""The real MNIST program, run short on the official files."""
import json
import subprocess
import sys

import numpy as np
import pytest

from reproduction.store import load_blocks, load_npz_blocks
from tests.conftest import HAVE_MNIST, MNIST_DIR, ROOT

needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason=f"the official MNIST files are not in {MNIST_DIR}")


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


# --- bad input ends in one line, before the data is loaded where it can be (issue 10) ------------------

@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if the program gets as far as loading data."""
    import mnist.__main__ as program

    def load_data(c):
        raise AssertionError("the data was loaded before the bad input was found")

    monkeypatch.setattr(program, "load_data", load_data)
    return program


def one_line(capsys, e, code):
    err = capsys.readouterr().err
    assert e.value.code == code, err
    lines = [l for l in err.splitlines() if "Warning" not in l and not l.startswith("  ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_bad_options_and_out_end_before_loading(no_loading, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for argv, words in [(["--epochs", "0"], "--epochs 0"), (["--units", "0"], "--units 0"),
                        (["--out", __file__], "a file, not a folder")]:
        with pytest.raises(SystemExit) as e:
            no_loading.main(argv)
        assert words in one_line(capsys, e, 2)
    assert not (tmp_path / "results").exists()


def test_a_full_disk_is_found_before_loading(no_loading, capsys, tmp_path, monkeypatch):
    import errno
    import os

    monkeypatch.setattr(os, "write", lambda fd, data: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space")))
    with pytest.raises(SystemExit) as e:
        no_loading.main(["--out", str(tmp_path / "run"), "--units", "8"])
    assert one_line(capsys, e, 1) == f"error: {tmp_path / 'run'}: cannot write there (the disk is full)"
    assert not (tmp_path / "run").exists()


def test_ctrl_c_while_loading_ends_in_one_line_and_leaves_no_folder(capsys, tmp_path, monkeypatch):
    import mnist.__main__ as program

    def interrupted(c):
        raise KeyboardInterrupt

    monkeypatch.setattr(program, "load_data", interrupted)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        program.main(["--units", "8"])
    assert one_line(capsys, e, 130) == "error: interrupted before training started; nothing was trained"
    assert not (tmp_path / "results").exists()


def test_a_bad_data_file_ends_in_one_line_and_debug_shows_the_traceback(capsys, tmp_path):
    import mnist.__main__ as program
    from reproduction.dataset import DataError

    data = tmp_path / "data"
    data.mkdir()
    (data / "train-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 9]) + b"\x01" * 100)   # a wrong magic number
    argv = ["--data-dir", str(data), "--no-download", "--out", str(tmp_path / "run"), "--units", "8"]
    with pytest.raises(SystemExit) as e:
        program.main(argv)
    line = one_line(capsys, e, 1)
    assert "train-images-idx3-ubyte: not an MNIST images file: IDX magic 2057 (0x00000809), expected 2051" in line
    assert not (tmp_path / "run").exists()
    with pytest.raises(DataError):
        program.main(argv + ["--debug"])


@needs_mnist
def test_resume_with_more_epochs_continues_on_the_original_schedule(tmp_path, capsys):
    from mnist.__main__ import main

    out = tmp_path / "run"
    common = ["--data-dir", str(MNIST_DIR), "--progress", "lines"]
    main(common + ["--epochs", "1", "--train-size", "500", "--valid-size", "100", "--test-size", "100",
                   "--units", "16", "--out", str(out)])
    main(common + ["--resume", str(out), "--epochs", "2"])
    capsys.readouterr()
    record = json.loads((out / "record.json").read_text())
    lrs = [row["lr"] for row in record["epochs"]]
    # The one-epoch schedule decays by LR_fin / LR_start a step: epoch 2 trains at LR_fin.
    assert record["status"] == "finished" and len(lrs) == 2
    assert lrs[0] == pytest.approx(0.003) and lrs[1] == pytest.approx(0.0000003)
    assert record["hyperparameters"]["LR_decay"] == pytest.approx(1e-4)


@needs_mnist
def test_a_plain_run_prints_no_warning(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mnist", "--data-dir", str(MNIST_DIR), "--epochs", "1",
                          "--train-size", "500", "--valid-size", "100", "--test-size", "100", "--units", "32",
                          "--out", str(tmp_path / "r"), "--progress", "lines", "--mode", "JAX"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "Warning" not in out.stderr and "warn" not in out.stderr, out.stderr


def test_the_program_sets_float32_before_pytensor_loads():
    # `python -m mnist` imports its module first, before any test's conftest could set PyTensor up.
    out = subprocess.run([sys.executable, "-c", "import mnist.__main__, pytensor; print(pytensor.config.floatX)"],
                         cwd=ROOT, capture_output=True, text=True, check=True,
                         env={k: v for k, v in __import__("os").environ.items() if k != "PYTENSOR_FLAGS"}).stdout
    assert out.strip() == "float32"


def test_sigterm_while_loading_ends_in_one_line(capsys, tmp_path, monkeypatch):
    import os
    import signal

    import mnist.__main__ as program

    def terminated(c):
        os.kill(os.getpid(), signal.SIGTERM)     # what a scheduler sends
        raise AssertionError("SIGTERM did not stop the program")

    monkeypatch.setattr(program, "load_data", terminated)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as e:
        program.main(["--units", "8", "--out", str(tmp_path / "run")])
    assert one_line(capsys, e, 143) == "error: stopped by SIGTERM before training started; nothing was trained"
    assert not (tmp_path / "run").exists() and signal.getsignal(signal.SIGTERM) == before
