"""Model summaries against hand counts of the paper's three networks (SOURCES.md §2.2)."""
import math

import h5py
import numpy as np
import pytest

from results import paper, summary
from results.commands import main


@pytest.fixture(scope="module")
def energy():
    return paper.load_energy()


def _sum(net, energy, kind=None):
    s = summary.summarize(net, summary.network(net), energy)
    return s, sum(c.binary_params for c in s.layers if kind is None or c.layer.kind == kind)


def test_binary_weights_match_the_hand_counts(energy):
    s, n = _sum("mnist", energy)
    assert n == s.totals.binary_params == 784 * 4096 + 2 * 4096 * 4096 + 4096 * 10 == 36_806_656
    assert _sum("svhn", energy)[1] == 6_397_632
    assert _sum("cifar10", energy, "conv")[1] == 4_574_592
    assert _sum("cifar10", energy, "dense")[1] == 9_447_424


def test_float_params_memory_and_macs(energy):
    s, _ = _sum("mnist", energy)
    assert s.totals.float_params == 5 * (3 * 4096 + 10)  # b, beta, gamma, mean, inv_std per unit
    assert s.totals.float32_bytes == 4 * (36_806_656 + 61_490)
    assert s.totals.packed_bytes == 36_806_656 / 8 + 4 * 61_490
    assert s.compression == pytest.approx(s.totals.float32_bytes / s.totals.packed_bytes)
    # Layer 1 sees the real-valued image: its MACs are float, all others binary.
    assert [(c.float_macs, c.binary_macs) for c in s.layers] == [
        (784 * 4096, 0), (0, 4096 * 4096), (0, 4096 * 4096), (0, 4096 * 10)]
    c, _ = _sum("cifar10", energy)
    conv2 = c.layers[1]
    assert conv2.binary_macs == 32 * 32 * 128 * 128 * 9  # pad 1: output 32x32 before the pool
    assert c.layers[4].binary_macs == 8 * 8 * 256 * 512 * 9
    assert c.layers[0].float_macs == 32 * 32 * 3 * 128 * 9 and c.layers[0].binary_macs == 0


def test_energy_hand_count_mnist(energy):
    s, _ = _sum("mnist", energy)
    e_bin = 3 * 0.1 / 32  # XNOR + popcount + accumulate, each a 32-bit integer ADD, per 32 connections
    assert s.binary_mac_pj == pytest.approx(e_bin) and s.float_mac_pj == pytest.approx(4.6)
    assert (s.memory_bnn, s.memory_float32) == ("DRAM", "DRAM")  # 4.8 MB packed, 147 MB float32
    fc2 = s.layers[1]
    accesses = math.ceil(4096 * 4096 / 64) + math.ceil(32 * 5 * 4096 / 64)
    assert fc2.energy_bnn_pj == pytest.approx(4096 * 4096 * e_bin + accesses * 1300)
    assert fc2.energy_float32_pj == pytest.approx(4096 * 4096 * 4.6 + (4096 * 4096 + 5 * 4096) / 2 * 1300)
    assert s.totals.energy_bnn_pj == pytest.approx(sum(c.energy_bnn_pj for c in s.layers))


def test_memory_level(energy):
    assert summary.memory_for(8000, energy) == ("8K", 10)
    assert summary.memory_for(9000, energy) == ("32K", 20)
    assert summary.memory_for(1e6, energy) == ("1M", 100)
    assert summary.memory_for(1e9, energy) == ("DRAM", 1300)
    s, _ = _sum("svhn", energy)
    assert (s.memory_bnn, s.memory_float32) == ("1M", "DRAM")  # 0.86 MB packed fits in 1 MB


def _write_params(path, shapes, dataset, lazy=False):
    with h5py.File(path, "w") as f:
        f.attrs["dataset"] = dataset
        for i, shape in enumerate(shapes):
            g = f.create_group(f"block{i}")
            n_out = shape[0] if len(shape) == 4 else shape[1]
            # Lazy datasets are never written: only their shapes are read.
            if lazy:
                g.create_dataset("W", shape=shape, dtype="f4")
            else:
                g.create_dataset("W", data=np.ones(shape, "f4"))
            for name in ("b", "beta", "gamma", "mean", "inv_std"):
                g.create_dataset(name, data=np.zeros(n_out, "f4"))


def test_params_file_gives_the_paper_counts(tmp_path, energy):
    shapes = [(l.n_out, l.n_in, 3, 3) if l.kind == "conv" else (l.n_in, l.n_out)
              for l in summary.network("svhn")]
    _write_params(tmp_path / "p.h5", shapes, "svhn", lazy=True)
    name, layers, floats = summary.layers_from_params(tmp_path / "p.h5")
    assert layers == summary.network("svhn") and "svhn" in name
    s = summary.summarize(name, layers, energy, floats)
    assert s.totals.binary_params == 6_397_632 and s.totals.float_params == 5 * sum(l.n_out for l in layers)


def test_params_file_small_conv_model(tmp_path, energy):
    shapes = [(4, 3, 3, 3), (4, 4, 3, 3), (8, 4, 3, 3), (8, 8, 3, 3), (16, 8, 3, 3), (16, 16, 3, 3),
              (16 * 4 * 4, 32), (32, 10)]
    _write_params(tmp_path / "p.h5", shapes, "cifar10")
    _, layers, floats = summary.layers_from_params(tmp_path / "p.h5")
    s = summary.summarize("small", layers, energy, floats)
    assert [c.binary_params for c in s.layers] == [108, 144, 288, 576, 1152, 2304, 8192, 320]
    assert s.layers[3].binary_macs == 16 * 16 * 8 * 8 * 9 and s.layers[0].float_macs == 32 * 32 * 3 * 4 * 9


def test_params_file_errors(tmp_path):
    _write_params(tmp_path / "chain.h5", [(784, 16), (17, 10)], "mnist")
    with pytest.raises(summary.SummaryError, match="chain.h5: fc2 takes 17 inputs but fc1 gives 16"):
        summary.layers_from_params(tmp_path / "chain.h5")
    _write_params(tmp_path / "odd.h5", [(4, 3, 3)], "mnist")
    with pytest.raises(summary.SummaryError, match=r"odd.h5: block0/W has shape \(4, 3, 3\)"):
        summary.layers_from_params(tmp_path / "odd.h5")
    with pytest.raises(summary.SummaryError, match="nothing.h5: not found"):
        summary.layers_from_params(tmp_path / "nothing.h5")


def test_cli(tmp_path, capsys):
    assert main(["summary", "--network", "cifar10"]) == 0
    out = capsys.readouterr().out
    assert "14,022,016" in out and "compression" in out and "assumptions" in out
    _write_params(tmp_path / "m.h5", [(784, 8), (8, 10)], "mnist")
    assert main(["summary", "--params", str(tmp_path / "m.h5"), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| fc1 | 784->8 | 6,272 |" in out


# --- a params.h5 of a custom architecture (issue 10) -----------------------------------------------------

SMALL = "8C3-MP2-16C3-MP2-32FC-10FC"
SMALL_SHAPES = [(8, 3, 3, 3), (16, 8, 3, 3), (16 * 8 * 8, 32), (32, 10)]


def test_a_custom_conv_model_takes_its_architecture_from_the_run_record(tmp_path, capsys):
    import json

    run = tmp_path / "run"
    run.mkdir()
    _write_params(run / "params.h5", SMALL_SHAPES, "cifar10")
    # Without the architecture, the paper's map sides do not fit the file: say what is missing.
    assert main(["summary", "--params", str(run / "params.h5")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the file does not say its architecture: pass --architecture SPEC" in err
    (run / "record.json").write_text(json.dumps({"hyperparameters": {"architecture": SMALL}}))
    assert main(["summary", "--params", str(run / "params.h5")]) == 0
    out = capsys.readouterr().out
    assert SMALL in out and "8->16 3x3 @16" in out
    # conv2 runs on 16x16 maps after the first pooling: 16*16 * 8*16*9 MACs.
    assert f"{16 * 16 * 8 * 16 * 9:,}" in out


def test_architecture_option_and_a_mismatch(tmp_path, capsys):
    _write_params(tmp_path / "p.h5", SMALL_SHAPES, "svhn")
    assert main(["summary", "--params", str(tmp_path / "p.h5"), "--architecture", SMALL]) == 0
    assert f"{16 * 16 * 8 * 16 * 9:,}" in capsys.readouterr().out
    assert main(["summary", "--params", str(tmp_path / "p.h5"), "--architecture", "8C3-MP2-16C3-32FC-10FC"]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'p.h5'}: not the architecture 8C3-MP2-16C3-32FC-10FC: "
                                       "block2/W is (1024, 32), 8C3-MP2-16C3-32FC-10FC wants (4096, 32)\n")
    assert main(["summary", "--architecture", SMALL]) == 2
    assert "--architecture goes with --params" in capsys.readouterr().err
