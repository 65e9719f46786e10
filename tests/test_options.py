"""A program's options are its recipe: the values at its top are the defaults, each option assigns
onto one of those names, and the record is built from them (reproduction/options.py; what the
record holds: reproduction/program.py)."""
import json
import re

import pytest

import mnist.__main__ as mnist_program
from reproduction import options, program


def test_the_recipe_is_the_plain_values_at_a_programs_top():
    recipe = options.recipe(vars(mnist_program))
    assert recipe["LR_start"] == 0.003 and recipe["num_units"] == 4096 and recipe["stochastic"] is False
    assert "np" not in recipe and "main" not in recipe and "build_mlp" not in recipe
    assert options.recipe({"a": 1, "_hidden": 2, "f": len, "s": "x", "flag": True}) == {"a": 1, "s": "x", "flag": True}


def test_without_options_the_run_uses_the_recipe():
    c = mnist_program.parse_args(["--out", "x"])
    for name, value in options.recipe(vars(mnist_program)).items():
        assert getattr(c, name) == value, name


def test_options_assign_onto_the_recipes_names():
    c = mnist_program.parse_args(["--out", "x", "--epochs", "7", "--units", "64", "--hidden-layers", "2",
                                  "--LR_start", "0.01", "--stochastic", "--shift-adamax", "--no-dropout"])
    assert (c.num_epochs, c.num_units, c.n_hidden_layers, c.LR_start) == (7, 64, 2, 0.01)
    assert c.stochastic is True and c.optimizer == "shift_adamax" and c.dropout_in == c.dropout_hidden == 0.0


def test_editing_a_value_at_the_top_changes_the_run(monkeypatch):
    # the original invites editing its script's top; a top value drives the run or is gone
    monkeypatch.setattr(mnist_program, "stochastic", True)
    monkeypatch.setattr(mnist_program, "batch_size", 64)
    c = mnist_program.parse_args(["--out", "x"])
    assert c.stochastic is True and c.batch_size == 64
    assert mnist_program.parse_args(["--out", "x", "--no-stochastic"]).stochastic is False


def test_a_bad_choice_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        mnist_program.parse_args(["--optimizer", "sgd"])
    assert e.value.code == 2 and "invalid choice: 'sgd'" in capsys.readouterr().err


def test_the_record_holds_every_recipe_value_and_what_is_derived_from_them(tmp_path):
    from reproduction.dataset import Split, Splits
    import numpy as np

    c = mnist_program.parse_args(["--out", str(tmp_path / "r"), "--epochs", "4"])
    s = Split(np.zeros((3, 1, 28, 28), np.uint8), np.zeros(3, np.int64))
    hp = program.hyperparameters(c, options.recipe(vars(mnist_program)), Splits(s, s, s), LR_decay=0.5)
    assert hp["num_epochs"] == 4 and hp["LR_decay"] == 0.5 and hp["train_size"] == 3 and hp["mode"] == c.mode
    assert set(options.recipe(vars(mnist_program))) <= set(hp)
    json.dumps(hp)  # a record is JSON


# --- every option is checked before any work (issue 10) --------------------------------------------

def refused(capsys, argv, *words, code=2, program=mnist_program):
    """``argv`` ends the program before any work with one line naming the problem, of a terminal's
    width but for the paths it names."""
    with pytest.raises(SystemExit) as e:
        program.parse_args(argv)
    err = capsys.readouterr().err
    assert e.value.code == code, err
    assert err.count("\n") == 1 and err.startswith("error: ") and len(re.sub(r"/\S+", "/P", err)) <= 100, err
    for word in words:
        assert word in err, err
    return err


@pytest.mark.parametrize("argv, words", [
    (["--epochs", "0"], ["--epochs 0", "at least 1"]),
    (["--epochs", "-1"], ["--epochs -1"]),
    (["--train-size", "0"], ["--train-size 0", "at least 1"]),
    (["--train-size", "-5"], ["--train-size -5"]),
    (["--train-size", "50"], ["--train-size 50", "one batch (100)"]),
    (["--valid-size", "10"], ["--valid-size 10", "one batch"]),
    (["--test-size", "99"], ["--test-size 99", "one batch"]),
    (["--units", "0"], ["--units 0"]),
    (["--hidden-layers", "-1"], ["--hidden-layers -1"]),
    (["--batch_size", "0"], ["--batch_size 0"]),
    (["--dropout_in", "-0.1"], ["--dropout_in -0.1", "[0, 1)"]),
    (["--dropout_hidden", "1.5"], ["--dropout_hidden 1.5"]),
    (["--dropout_hidden", "1"], ["--dropout_hidden 1.0"]),
    (["--alpha", "0"], ["--alpha 0.0", "(0, 1]"]),
    (["--alpha", "1.5"], ["--alpha 1.5"]),
    (["--epsilon", "0"], ["--epsilon 0.0", "above 0"]),
    (["--LR_start", "-0.1"], ["--LR_start -0.1"]),
    (["--LR_fin", "0"], ["--LR_fin 0.0"]),
    (["--LR_start", "nan"], ["--LR_start nan"]),
    (["--H", "0"], ["--H 0.0"]),
    (["--W_LR_scale", "glorot"], ["--W_LR_scale glorot", "Glorot, Glorot_pow2 or a number"]),
    (["--W_LR_scale", "-2"], ["--W_LR_scale -2"]),
    (["--seed", "-1"], ["--seed -1"]),
    (["--epochs", "x"], ["--epochs", "invalid int value"]),
    (["--optimizer", "sgd"], ["invalid choice: 'sgd'"]),
])
def test_a_bad_option_is_refused_in_one_line_before_any_work(capsys, argv, words):
    refused(capsys, ["--out", "x", *argv], *words)


def test_good_numbers_pass(tmp_path):
    c = mnist_program.parse_args(["--out", str(tmp_path / "r"), "--W_LR_scale", "2.5", "--dropout_in", "0",
                                  "--alpha", "1", "--hidden-layers", "0", "--train-size", "100"])
    assert c.W_LR_scale == "2.5" and c.n_hidden_layers == 0 and c.schedule_epochs == c.num_epochs


def test_a_back_end_that_is_not_installed_is_refused(capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("jax", "numba") else real(name, *a))
    refused(capsys, ["--out", "x", "--mode", "JAX"], "--mode JAX", "jax is not installed")
    refused(capsys, ["--out", "x", "--mode", "NUMBA"], "--mode NUMBA", "numba is not installed")


def test_out_on_a_file_or_a_run_and_data_dir_on_a_file(capsys, tmp_path):
    (tmp_path / "f").write_text("x")
    refused(capsys, ["--out", str(tmp_path / "f")], "a file, not a folder")
    refused(capsys, ["--data-dir", str(tmp_path / "f")], "--data-dir", "not a folder")
    run = tmp_path / "run"
    run.mkdir()
    assert mnist_program.parse_args(["--out", str(run)]).out == str(run)      # an empty folder may take a run
    (run / "checkpoint.h5").write_bytes(b"")
    refused(capsys, ["--out", str(run)], f"--resume {run}")
    (run / "checkpoint.h5").unlink()
    (run / "record.json").write_text("{}")
    refused(capsys, ["--out", str(run)], f"--resume {run}")


def write_record(folder, dataset="mnist", epochs=2, **options):
    """A run folder's record.json as a program writes it (the options it was started with)."""
    c = vars(mnist_program.parse_args(["--out", str(folder), "--epochs", "5", "--units", "64"]))
    saved = {k: v for k, v in c.items() if k not in ("resume", "debug", "dataset")}
    saved.update(options)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "record.json").write_text(json.dumps({
        "format": 1, "dataset": dataset, "status": "interrupted", "options": saved,
        "epochs": [{"epoch": e} for e in range(1, epochs + 1)]}))
    return folder


def test_resume_takes_the_runs_options(tmp_path):
    run = write_record(tmp_path / "run")
    c = mnist_program.parse_args(["--resume", str(run)])
    assert (c.num_epochs, c.num_units, c.out, c.resume) == (5, 64, str(run), str(run))
    assert c.schedule_epochs == 5


def test_options_given_with_resume_apply_or_are_refused(capsys, tmp_path):
    run = write_record(tmp_path / "run", epochs=3)
    # What changes neither the numbers nor the files applies.
    c = mnist_program.parse_args(["--resume", str(run), "--progress", "lines", "--data-dir", str(tmp_path),
                                  "--no-download", "--debug", "--units", "64", "--out", str(run)])
    assert (c.progress, c.data_dir, c.no_download, c.debug) == ("lines", str(tmp_path), True, True)
    # More epochs: the run goes on to the new count, on the schedule it started with.
    c = mnist_program.parse_args(["--resume", str(run), "--epochs", "8"])
    assert (c.num_epochs, c.schedule_epochs) == (8, 5)
    assert mnist_program.parse_args(["--resume", str(run), "--epochs", "3"]).num_epochs == 3
    refused(capsys, ["--resume", str(run), "--epochs", "2"], "--epochs 2", "this run has trained 3 epochs already")
    # Anything else that differs from the run's is refused, naming the option.
    refused(capsys, ["--resume", str(run), "--units", "128"], "--units 128", "started with 64")
    refused(capsys, ["--resume", str(run), "--no-dropout"], "--dropout", "started with")
    refused(capsys, ["--resume", str(run), "--train-size", "500"], "--train-size 500")
    other = "CVM" if c.mode != "CVM" else "NUMBA"
    refused(capsys, ["--resume", str(run), "--mode", other], f"--mode {other}", "back end")
    refused(capsys, ["--resume", str(run), "--out", str(tmp_path / "elsewhere")], "--out")


def test_resume_extended_twice_keeps_the_first_schedule(tmp_path):
    run = write_record(tmp_path / "run", epochs=8, num_epochs=8, schedule_epochs=5)
    c = mnist_program.parse_args(["--resume", str(run)])
    assert (c.num_epochs, c.schedule_epochs) == (8, 5)


def test_resume_on_what_is_not_a_run(capsys, tmp_path):
    refused(capsys, ["--resume", str(tmp_path / "nothing")], "no such folder")
    (tmp_path / "file").write_text("x")
    refused(capsys, ["--resume", str(tmp_path / "file")], "not a folder")
    refused(capsys, ["--resume", str(tmp_path)], "not a run folder (no record.json)")
    (tmp_path / "record.json").write_text('{"format": 1, "dataset": "mn')
    refused(capsys, ["--resume", str(tmp_path)], "record.json: not valid JSON")
    run = write_record(tmp_path / "svhn-run", dataset="svhn")
    refused(capsys, ["--resume", str(run)], "a svhn run", f"python -m svhn --resume {run}")
