"""The paper's tables under results/paper/ load and hold the numbers SOURCES.md §5 gives."""
import json
import shutil

import pytest

from results import paper


def _all_values(node, where=""):
    """Every JSON object with a "value" key, with its location."""
    if isinstance(node, dict):
        if "value" in node:
            yield where, node
        for k, v in node.items():
            yield from _all_values(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _all_values(v, f"{where}[{i}]")


@pytest.mark.parametrize("name", ["table1_test_error.json", "energy.json", "speed.json", "filters.json"])
def test_every_value_has_a_source_and_a_paper_md_certainty(name):
    data = json.loads((paper.paper_dir() / name).read_text())
    values = list(_all_values(data))
    assert values
    for where, v in values:
        assert v.get("source"), f"{name}{where} has no source"
        assert v.get("certainty") in paper.CERTAINTIES, f"{name}{where}: certainty {v.get('certainty')!r}"


def test_table1_bnn_rows():
    t = paper.load_table1()
    theano, torch = t.row("bnn_theano"), t.row("bnn_torch7")
    assert {ds: theano.values[ds].value for ds in paper.DATASETS} == {"mnist": 0.96, "svhn": 2.80, "cifar10": 11.40}
    assert {ds: torch.values[ds].value for ds in paper.DATASETS} == {"mnist": 1.40, "svhn": 2.53, "cifar10": 10.15}
    # Both BNN columns are targets, each for the runs of its own recipe; a record that names no recipe
    # is a Theano-recipe run (SOURCES.md §7 item 12).
    assert t.compare_row == "bnn_theano" and theano.comparable and torch.comparable
    assert t.target("mnist").value == 0.96 and t.target("mnist").certainty == "README"


def test_table1_other_rows():
    t = paper.load_table1()
    assert len(t.rows) == 11
    bc = t.row("binaryconnect").values
    assert (bc["mnist"].value, bc["mnist"].plus_minus) == (1.29, 0.08)
    assert (bc["svhn"].value, bc["cifar10"].value) == (2.30, 9.90)
    assert t.row("ebp").values["mnist"].value == 2.2 and t.row("ebp").values["svhn"] is None
    assert t.row("committee_machines").values["mnist"].value == 1.35
    assert t.row("bitwise_dnn").values["mnist"].value == 1.33
    assert t.row("hwang_sung").values["mnist"].value == 1.45
    assert [t.row("maxout").values[d].value for d in ("mnist", "svhn", "cifar10")] == [0.94, 2.47, 11.68]
    assert t.row("network_in_network").values["cifar10"].value == 10.41
    assert t.row("gated_pooling").values["svhn"].value == 1.69
    nr = t.row("no_regularization").values["cifar10"]
    assert nr.value == 10.94 and nr.certainty == "mem" and "10.96" in nr.note


def test_energy_tables():
    e = paper.load_energy()
    ops = {k: (v["mul"].value, v["add"].value) for k, v in e.operations.items()}
    assert ops == {"int8": (0.2, 0.03), "int32": (3.1, 0.1), "float16": (1.1, 0.4), "float32": (3.7, 0.9)}
    assert e.mac_pj("float32") == pytest.approx(4.6)
    mem = {k: (cap, v.value, v.upper) for k, (cap, v) in e.memory.items()}
    assert mem == {"8K": (8192, 10, None), "32K": (32768, 20, None), "1M": (1048576, 100, None),
                   "DRAM": (None, 1300, 2600)}
    assert e.operations["int8"]["mul"].certainty == "mem"
    assert e.claims["memory_reduction"].value == 32


def test_speed_claims():
    head = paper.headline_speed()
    assert {k: v.value for k, v in head.items()} == {"xnor_vs_baseline": 23, "xnor_vs_blas": 3.4,
                                                      "mlp_xnor_vs_baseline": 7}
    claims = paper.load_speed()
    assert all(c.gpu == "GTX 750" for c in claims if c.headline)
    assert [c.size for c in claims if c.headline][:2] == [(8192,) * 3] * 2
    assert not any(c.headline for c in claims[3:]) and len(claims) > 3  # context rows follow
    titan = [c for c in claims if c.gpu.startswith("Titan Z") and c.key == "xnor_vs_blas"][0]
    assert titan.value.value == pytest.approx(titan.seconds["blas"] / titan.seconds["xnor"], abs=0.01)


def test_filters_claim():
    f = paper.load_filters()
    assert f["unique_fraction"].value == 42 and f["unique_fraction"].certainty == "2nd"
    assert f["distinct_binary_3x3"].value == 512


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(paper.PaperDataError, match="table1_test_error.json: not found"):
        paper.load_table1(tmp_path)
    shutil.copy(paper.paper_dir() / "filters.json", tmp_path)
    data = json.loads((tmp_path / "filters.json").read_text())
    data["unique_fraction"]["certainty"] = "rumour"
    (tmp_path / "filters.json").write_text(json.dumps(data))
    with pytest.raises(paper.PaperDataError, match="filters.json: unique_fraction: certainty 'rumour'"):
        paper.load_filters(tmp_path)
    (tmp_path / "energy.json").write_text('{"format": 2}')
    with pytest.raises(paper.PaperDataError, match="energy.json: unknown format 2"):
        paper.load_energy(tmp_path)
