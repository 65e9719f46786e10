"""The programs' recipes as the analysis reads them: the original scripts' values, each written once
(at the top of its program; the splits in their loaders)."""
import pytest

from results import recipes


@pytest.mark.parametrize("dataset, epochs, batch, lr, sizes", [
    ("mnist", 1000, 100, (0.003, 3e-7), (50000, 10000, 10000)),       # mnist.py l.32, 48, 77-79, 93-95
    ("cifar10", 500, 50, (0.001, 3e-7), (45000, 5000, 10000)),        # cifar10.py l.33, 61, 65-67, 73-82
    ("svhn", 200, 50, (0.001, 1e-6), (598388, 6000, 26032)),          # svhn.py l.35, 63, 67-69; pylearn2
])
def test_the_recipes_are_the_theano_scripts(dataset, epochs, batch, lr, sizes):
    r = recipes.recipe(dataset)
    assert (r["num_epochs"], r["batch_size"], (r["LR_start"], r["LR_fin"])) == (epochs, batch, lr)
    assert (r["alpha"], r["epsilon"], r["H"], r["W_LR_scale"], r["binary"], r["stochastic"]) == \
        (0.1, 1e-4, 1.0, "Glorot", True, False)
    assert (r["seed"], r["activation"], r["optimizer"], r["shift_bn"]) == (1234, "binary_tanh_unit", "adam", False)
    s = recipes.split_sizes(dataset)
    assert (s["train"], s["valid"], s["test"]) == sizes


def test_only_whole_batches_of_the_test_set_are_evaluated():
    # the original drops the last partial batch (SOURCES.md §1.5): 520 x 50 of SVHN's 26,032 images
    assert [recipes.test_evaluated(d) for d in ("mnist", "cifar10", "svhn")] == [10000, 10000, 26000]


def test_architectures_in_the_usual_notation():
    assert recipes.architecture("mnist") == "4096FC-4096FC-4096FC-10FC"
    assert recipes.architecture("cifar10") == "128C3-128C3-MP2-256C3-256C3-MP2-512C3-512C3-MP2-1024FC-1024FC-10FC"
    assert recipes.architecture("svhn").startswith("64C3-64C3-MP2-128C3")


def test_a_recipe_is_the_plain_values_at_the_top_of_its_program():
    r = recipes.recipe("mnist")
    assert set(r) >= {"batch_size", "alpha", "epsilon", "num_units", "n_hidden_layers", "num_epochs", "dropout_in",
                      "dropout_hidden", "activation", "binary", "stochastic", "H", "W_LR_scale", "LR_start", "LR_fin"}
    assert not any(k.startswith("_") or callable(v) for k, v in r.items())
