"""A program's options are its recipe: the values at its top are the defaults, each option assigns
onto one of those names, and the record is built from them (reproduction/program.py)."""
import json

import pytest

import mnist.__main__ as mnist_program
from reproduction import program


def test_the_recipe_is_the_plain_values_at_a_programs_top():
    recipe = program.recipe(vars(mnist_program))
    assert recipe["LR_start"] == 0.003 and recipe["num_units"] == 4096 and recipe["stochastic"] is False
    assert "np" not in recipe and "main" not in recipe and "build_mlp" not in recipe
    assert program.recipe({"a": 1, "_hidden": 2, "f": len, "s": "x", "flag": True}) == {"a": 1, "s": "x", "flag": True}


def test_without_options_the_run_uses_the_recipe():
    c = mnist_program.parse_args(["--out", "x"])
    for name, value in program.recipe(vars(mnist_program)).items():
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
    hp = program.hyperparameters(c, program.recipe(vars(mnist_program)), Splits(s, s, s), LR_decay=0.5)
    assert hp["num_epochs"] == 4 and hp["LR_decay"] == 0.5 and hp["train_size"] == 3 and hp["mode"] == c.mode
    assert set(program.recipe(vars(mnist_program))) <= set(hp)
    json.dumps(hp)  # a record is JSON
