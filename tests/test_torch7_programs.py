"""``--recipe torch7``: the Torch7 column's recipe as a preset of each program (SOURCES.md §4), its
record, and the data preparations of the Torch7 ``Data.lua`` (SOURCES.md §4(g))."""
import importlib
import json

import numpy as np
import pytest

from reproduction import options
from reproduction.dataset import Split, Splits, Standardized, standardized, unit_pixels, whole_set_moments
from tests.conftest import HAVE_MNIST, MNIST_DIR

needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason=f"the official MNIST files are not in {MNIST_DIR}")
PROGRAMS = ("mnist", "cifar10", "svhn")


@pytest.mark.parametrize("dataset", PROGRAMS)
def test_every_torch7_name_is_a_top_value_and_an_option(dataset):
    module = importlib.import_module(f"{dataset}.__main__")
    both = options.recipes(vars(module))              # raises on a torch7 name without a top value
    assert set(both["torch7"]) == set(both["theano"])
    differs = {k for k in both["theano"] if both["theano"][k] != both["torch7"][k]}
    assert differs == set(module.torch7) - {k for k, v in module.torch7.items() if both["theano"][k] == v}
    assert both["torch7"]["optimizer"] == "adamax_binary_clip_shift" and both["torch7"]["select_best"] is False
    assert both["theano"]["select_best"] is True and both["theano"]["LR_halve_every"] == 0


def test_the_torch7_values_are_the_torch7_codes():
    r = {d: options.recipes(vars(importlib.import_module(f"{d}.__main__")))["torch7"] for d in PROGRAMS}
    assert [(r[d]["LR_start"], r[d]["LR_halve_every"], r[d]["batch_size"]) for d in PROGRAMS] == \
        [(2 ** -6, 20, 100), (2 ** -6, 50, 200), (2 ** -7, 20, 200)]          # SOURCES.md §4(f)
    assert r["mnist"]["num_units"] == 2048 and r["mnist"]["dropout_in"] == r["mnist"]["dropout_hidden"] == 0
    assert [r[d]["preprocessing"] for d in PROGRAMS] == ["standardize", "zca", "gcn_lcn"]
    assert [r[d]["clip_all"] for d in PROGRAMS] == [False, True, False]
    assert [r[d]["W_LR_scale"] for d in PROGRAMS] == ["Glorot", "Glorot_pow2", "Glorot_pow2"]
    assert all((r[d]["alpha"], r[d]["epsilon"]) == (0.125, 1e-5) for d in PROGRAMS)


def test_the_preset_and_options_beside_it():
    from mnist.__main__ import parse_args

    c = parse_args(["--recipe", "torch7", "--epochs", "2", "--LR_halve_every", "5"])
    assert (c.recipe, c.num_epochs, c.LR_halve_every, c.num_units, c.optimizer) == \
        ("torch7", 2, 5, 2048, "adamax_binary_clip_shift")
    c = parse_args([])
    assert (c.recipe, c.num_units, c.optimizer, c.select_best) == ("theano", 4096, "adam", True)


@pytest.mark.parametrize("argv, words", [
    (["--recipe", "lua"], "argument --recipe: invalid choice"),
    (["--b_LR_scale", "W"], "--b_LR_scale W: only the adamax_binary_clip_shift optimizer reads it"),
    (["--stochastic_neurons"], "--stochastic_neurons: needs --activation binarized_neurons"),
    (["--preprocessing", "zca"], "--preprocessing zca: this program has pixels, standardize"),
    (["--recipe", "torch7", "--W_LR_scale", "x"], "must be Glorot, Glorot_pow2 or a number above 0"),
    (["--recipe", "torch7", "--LR_halve_every", "-1"], "--LR_halve_every -1: must be at least 0"),
])
def test_options_that_do_not_fit_are_refused_in_one_line(argv, words, capsys):
    from mnist.__main__ import parse_args

    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err


@needs_mnist
def test_the_torch7_mnist_program_runs_and_reports_the_last_epoch(tmp_path, capsys):
    from mnist.__main__ import main

    out = tmp_path / "run"
    main(["--recipe", "torch7", "--data-dir", str(MNIST_DIR), "--epochs", "2", "--train-size", "2000",
          "--valid-size", "500", "--test-size", "500", "--units", "256", "--out", str(out), "--progress", "lines"])
    printed = capsys.readouterr().out
    assert "optimizer = adamax_binary_clip_shift\n" in printed and "LR_start = 0.015625\n" in printed
    assert "best epoch" not in printed
    record = json.loads((out / "record.json").read_text())
    h = record["hyperparameters"]
    assert (h["recipe"], h["batch_norm"], h["preprocessing"], h["LR_decay"]) == ("torch7", "torch7", "standardize", 1.0)
    assert record["status"] == "finished" and record["test_epoch"] == 2
    assert record["test_err"] == record["epochs"][1]["test_err"] and "test_err" in record["epochs"][0]
    assert record["test_err"] < 30.0, record["epochs"]       # chance is 90 %


def _write_cifar10_folder(folder):
    from tests.test_conv_programs import _write_cifar10_folder as write

    write(folder)


def test_a_short_torch7_cifar10_run(tmp_path, capsys):
    from cifar10.__main__ import main

    _write_cifar10_folder(tmp_path / "data")
    out = tmp_path / "run"
    # the ZCA fit of 3072 dimensions takes minutes: checked on small images below instead
    main(["--recipe", "torch7", "--data-dir", str(tmp_path / "data"), "--no-download", "--epochs", "1",
          "--train-size", "250", "--valid-size", "50", "--test-size", "100", "--batch_size", "50",
          "--architecture", "8C3-MP2-16C3-MP2-32FC-10FC", "--preprocessing", "pixels", "--out", str(out),
          "--progress", "lines"])
    record = json.loads((out / "record.json").read_text())
    assert record["status"] == "finished" and record["hyperparameters"]["clip_all"] is True
    assert record["hyperparameters"]["recipe"] == "torch7" and record["test_epoch"] == 1
    capsys.readouterr()


def test_a_short_torch7_svhn_run_with_gcn_and_lcn_and_a_partial_batch(tmp_path, capsys):
    from svhn.__main__ import main
    from svhn.synthetic import write_svhn

    write_svhn(tmp_path / "data", per_class=400)      # enough for the 400 + 200 per class validation draw
    out = tmp_path / "run"
    main(["--recipe", "torch7", "--data-dir", str(tmp_path / "data"), "--no-download", "--epochs", "1",
          "--train-size", "230", "--valid-size", "100", "--test-size", "130", "--batch_size", "100",
          "--architecture", "8C3-MP2-16C3-MP2-32FC-10FC", "--out", str(out), "--progress", "lines"])
    record = json.loads((out / "record.json").read_text())
    assert record["status"] == "finished" and record["hyperparameters"]["preprocessing"] == "gcn_lcn"
    assert 0 <= record["test_err"] <= 100 and record["test_err"] * 130 / 100 == pytest.approx(
        round(record["test_err"] * 130 / 100))                     # a count over all 130 test images
    capsys.readouterr()


# --- the data preparations -------------------------------------------------------------------------

def test_mnist_standardization_by_the_training_sets_mean_and_std():
    X = np.array([[0, 255], [51, 102]], dtype=np.uint8).reshape(2, 1, 1, 2)
    splits = Splits(Split(X, np.zeros(2, int)), Split(X[:1], np.zeros(1, int)), Split(X[1:], np.zeros(1, int)))
    out = standardized(splits)
    v = np.array([0, 1, 0.2, 0.4])                                # x / 255
    mean, std = v.mean(), v.std(ddof=1)                # 0.4 and sqrt(0.56 / 3) (Torch's std divides by N - 1)
    assert mean == pytest.approx(0.4) and std == pytest.approx(np.sqrt(0.56 / 3))
    s = np.sqrt(0.56 / 3)
    assert np.allclose(out.valid.inputs(np.arange(1)).ravel(), [(0 - 0.4) / s, (1 - 0.4) / s])
    assert out.test.inputs(np.arange(1)).dtype == np.float32
    m, s, top = whole_set_moments(np.repeat(X, 7, axis=0), rows=3)   # in blocks, as over 50,000 images
    assert (m, top) == (pytest.approx(0.4), 1.0) and s == pytest.approx(np.sqrt(0.56 * 7 / 27))
    assert Standardized(0.5, 2.0)(np.uint8([[255]]))[0, 0] == np.float32(0.25)
    assert unit_pixels(np.uint8([51]))[0] == np.float32(0.2)


def test_gcn_on_a_tiny_image():
    from svhn.preprocess import global_contrast_normalize

    x = np.array([[1.0, 3.0], [5.0, 7.0]]).reshape(1, 1, 2, 2)        # mean 4, centred -3 -1 1 3, mean square 5
    assert np.allclose(global_contrast_normalize(x).ravel(), np.array([-3, -1, 1, 3]) / np.sqrt(5 + 10))
    assert np.allclose(global_contrast_normalize(np.full((1, 1, 2, 2), 0.7)), 0)   # a flat image stays 0


def _lcn_by_loops(img, size, std, threshold=1e-4):
    """dp's LeCunLCN(divide_by_std) literally: the 2-D Gaussian, a full convolution cropped to the
    image, the centred channel over its unbiased std plus the threshold."""
    mid = size // 2
    g = np.array([[np.exp(-((i - mid) ** 2 + (j - mid) ** 2) / (2 * std ** 2)) for j in range(size)]
                  for i in range(size)])
    g /= g.sum()
    H, W = img.shape
    full = np.zeros((H + size - 1, W + size - 1))
    for i in range(H):
        for j in range(W):
            full[i:i + size, j:j + size] += img[i, j] * g          # convolution (G is symmetric)
    centred = img - full[mid:mid + H, mid:mid + W]
    return centred / (centred.std(ddof=1) + threshold)


def test_lecun_lcn_on_a_tiny_image_against_the_loops_of_dp():
    from svhn.preprocess import gaussian_kernel_1d, lecun_lcn

    rng = np.random.RandomState(0)
    x = rng.rand(2, 3, 5, 6)
    got = lecun_lcn(x, size=3, std=1.0)
    for n in range(2):
        for c in range(3):
            assert np.allclose(got[n, c], _lcn_by_loops(x[n, c], 3, 1.0))
    assert np.allclose(lecun_lcn(x)[1, 2], _lcn_by_loops(x[1, 2], 9, 2.0))        # the recipe's kernel 9, std 2
    g = gaussian_kernel_1d()
    assert len(g) == 9 and g.sum() == pytest.approx(1) and g[4] == g.max()


def test_svhn_sets_are_divided_by_their_own_maximum_then_standardized_by_the_training_set():
    from svhn.preprocess import gcn_lcn, torch7_gcn_lcn

    rng = np.random.RandomState(1)
    X = [rng.randint(0, 256, (n, 3, 8, 8)).astype(np.uint8) for n in (6, 4, 5)]
    out = torch7_gcn_lcn(Splits(*(Split(x, np.zeros(len(x), int)) for x in X)))
    y = [gcn_lcn(x) for x in X]
    train = y[0] / y[0].max()
    for k, split in enumerate((out.train, out.valid, out.test)):
        expected = (y[k] / y[k].max() - train.mean()) / train.std(ddof=1)
        assert np.allclose(split.inputs(np.arange(len(X[k]))), expected, rtol=1e-5, atol=1e-5)


def test_torch7_zca_on_small_images_by_hand():
    from cifar10.preprocess import torch7_zca

    rng = np.random.RandomState(2)
    X = rng.randint(0, 256, (40, 2, 2, 2)).astype(np.uint8)       # D = 8
    out = torch7_zca(Splits(Split(X, np.zeros(40, int)), Split(X[:3], np.zeros(3, int)), Split(X[3:5], np.zeros(2, int))))
    x = X.reshape(40, 8) / 255.0
    mean = x.mean(axis=0)
    cov = (x - mean).T @ (x - mean) / 39                            # unsup.pcacov: N - 1
    lam, V = np.linalg.eigh(cov)
    P = V @ np.diag(1 / np.sqrt(lam + 1e-5)) @ V.T                 # eigenvalues + 1e-5
    assert np.allclose(out.valid.inputs(np.arange(3)).reshape(3, 8), (x[:3] - mean) @ P, rtol=1e-4, atol=1e-4)
    white = out.train.inputs(np.arange(40)).reshape(40, 8)
    assert np.allclose(np.cov(white, rowvar=False), np.eye(8), atol=1e-2)
