"""Short runs of the real CIFAR-10 and SVHN programs on files in the official formats that the
tests write themselves (the real datasets are not on the test machines)."""
import json
import pickle

import numpy as np

from cifar10 import data as cifar10_data
from svhn.synthetic import write_svhn


def _write_cifar10_folder(folder, per_batch=9010, n_test=100):
    """cifar-10-batches-py/ with 5 x 9010 training images: the original's train[0:45000] split leaves
    50 for validation."""
    rng = np.random.default_rng(0)
    out = folder / cifar10_data.FOLDER
    out.mkdir(parents=True)
    for name in (*cifar10_data.TRAIN_BATCHES, cifar10_data.TEST_BATCH):
        n = n_test if name == cifar10_data.TEST_BATCH else per_batch
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, n).tolist()}
        (out / name).write_bytes(pickle.dumps(batch, protocol=2))


def _check_record(out, dataset, train_size):
    record = json.loads((out / "record.json").read_text())
    assert record["status"] == "finished" and record["dataset"] == dataset
    assert record["hyperparameters"]["train_size"] == train_size
    row = record["epochs"][0]
    assert 0 <= row["val_err"] <= 100 and np.isfinite(row["train_loss"]) and "test_err" in row
    assert (out / "params.h5").exists() and (out / "checkpoint.h5").exists()
    return record


def test_a_short_cifar10_run_completes_and_writes_its_record(tmp_path, capsys):
    from cifar10.__main__ import architecture, main

    _write_cifar10_folder(tmp_path / "data")
    out = tmp_path / "run"
    main(["--data-dir", str(tmp_path / "data"), "--no-download", "--epochs", "1", "--train-size", "100",
          "--valid-size", "50", "--test-size", "50", "--architecture", "16C3-16C3-MP2-32C3-MP2-64FC-10FC",
          "--out", str(out), "--progress", "lines"])
    printed = capsys.readouterr().out
    assert "batch_size = 50\n" in printed and "LR_start = 0.001\n" in printed and "Epoch 1 of 1 took" in printed
    assert architecture == "128C3-128C3-MP2-256C3-256C3-MP2-512C3-512C3-MP2-1024FC-1024FC-10FC"
    _check_record(out, "cifar10", 100)


def test_a_short_svhn_run_completes_and_writes_its_record(tmp_path, capsys):
    from svhn.__main__ import architecture, main

    write_svhn(tmp_path / "data", per_class=400)      # enough for the 400 + 200 per class validation draw
    out = tmp_path / "run"
    main(["--data-dir", str(tmp_path / "data"), "--no-download", "--epochs", "1", "--train-size", "100",
          "--valid-size", "50", "--test-size", "50", "--architecture", "8C3-MP2-16C3-MP2-32FC-10FC",
          "--out", str(out), "--progress", "lines"])
    printed = capsys.readouterr().out
    assert "architecture = 8C3-MP2-16C3-MP2-32FC-10FC\n" in printed and "LR_fin = 1e-06\n" in printed
    assert architecture == "64C3-64C3-MP2-128C3-128C3-MP2-256C3-256C3-MP2-1024FC-1024FC-10FC"
    record = _check_record(out, "svhn", 100)
    assert record["hyperparameters"]["LR_fin"] == 1e-6 and record["hyperparameters"]["batch_size"] == 50


# --- bad input ends in one line before the slow part (issue 10) -------------------------------------

def _fail(capsys, main, argv, code):
    import pytest

    with pytest.raises(SystemExit) as e:
        main(argv)
    captured = capsys.readouterr()
    err = [l for l in captured.err.splitlines() if l.startswith("error")]
    assert e.value.code == code and len(err) == 1 and "Traceback" not in captured.err, captured.err
    assert "Compiling" not in captured.out    # found before anything was compiled
    return err[0]


def test_cifar10_with_fewer_than_45000_training_images_is_refused_before_compiling(tmp_path, capsys):
    from cifar10.__main__ import main

    _write_cifar10_folder(tmp_path / "data", per_batch=8000)   # 40,000: nothing left for validation
    line = _fail(capsys, main, ["--data-dir", str(tmp_path / "data"), "--no-download", "--out", str(tmp_path / "run"),
                                "--architecture", "8C3-MP2-10FC"], 1)
    assert "40,000 training images" in line and "45,000" in line and "validation" in line
    assert not (tmp_path / "run").exists()


def test_a_malformed_architecture_is_refused_before_loading(tmp_path, capsys, monkeypatch):
    import cifar10.__main__ as program

    monkeypatch.setattr(program, "load_data", lambda c: (_ for _ in ()).throw(AssertionError("loaded")))
    for spec, words in [("16C3-XX-10FC", "unknown layer 'XX'"), ("MP2-16C3-10FC", "MP2 must follow a convolution"),
                        ("16C3-MP2-MP2-10FC", "MP2 must follow a convolution"), ("0C3-10FC", "0C3 has no units"),
                        ("16C3-32FC", "must end with 10FC"), ("16FC-16C3-10FC", "a convolution after a dense"),
                        ("-".join(["8C3-MP2"] * 6) + "-10FC", "6 poolings"), ("", "unknown layer ''"),
                        ("16c3-10FC", "unknown layer '16c3'")]:
        line = _fail(capsys, program.main, ["--out", str(tmp_path / "run"), "--architecture", spec], 2)
        assert line.startswith(f"error: --architecture {spec}") and words in line, line
    assert not (tmp_path / "run").exists()


def test_a_split_smaller_than_a_batch_is_refused_before_compiling(tmp_path, capsys):
    from svhn.__main__ import main

    write_svhn(tmp_path / "data", per_class=400)
    line = _fail(capsys, main, ["--data-dir", str(tmp_path / "data"), "--no-download", "--out", str(tmp_path / "run"),
                                "--batch_size", "5000", "--architecture", "8C3-MP2-10FC"], 1)
    assert "the svhn training split has 2000 images, fewer than one batch of 5000" in line
