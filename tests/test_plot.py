"""Plots are written as valid PNG files from synthetic records; a clear error without matplotlib."""
import sys

import pytest

from results import plot
from results.commands import main
from tests.test_compare import make_bench, make_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path):
    image = pytest.importorskip("matplotlib.image")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.std() > 0  # something was drawn


def test_learning_curves_and_ratios(tmp_path):
    pytest.importorskip("matplotlib", reason='matplotlib is optional (pip install ".[plot]")')
    make_run(tmp_path, "mnist-a", "mnist", 1.1, epochs=30)
    make_run(tmp_path, "mnist-b", "mnist", 1.3, epochs=12)
    make_run(tmp_path, "svhn-a", "svhn", 3.0, epochs=5)
    make_bench(tmp_path, "h200", xnor_paper_vs_baseline=12.0, xnor_paper_vs_blas=0.3, mlp_xnor_paper_vs_baseline=None)
    make_bench(tmp_path, "cpu", device="cpu", xnor_paper_vs_baseline=5.0, mlp_xnor_paper_vs_baseline=2.0)
    out = tmp_path / "figures"
    written = plot.plot_all([tmp_path / "runs", tmp_path / "bench"], out)
    names = sorted(p.name for p in written)
    assert names == ["benchmark_ratios.png", "learning_curves_mnist.png", "learning_curves_svhn.png"]
    for p in written:
        _check_png(p)
    assert sorted(p.name for p in out.iterdir()) == names  # no temporary files left behind


def test_cli_writes_into_out(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason='matplotlib is optional (pip install ".[plot]")')
    make_run(tmp_path, "c", "cifar10", 12.0, epochs=3)
    assert main(["plot", str(tmp_path / "runs"), "--out", str(tmp_path / "fig")]) == 0
    assert capsys.readouterr().out.strip().endswith("learning_curves_cifar10.png")
    _check_png(tmp_path / "fig" / "learning_curves_cifar10.png")
    (tmp_path / "empty").mkdir()
    assert main(["plot", str(tmp_path / "empty"), "--out", str(tmp_path / "fig2")]) == 0
    assert "nothing to plot" in capsys.readouterr().out


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch, capsys):
    # A None entry in sys.modules makes the import fail as if matplotlib were not installed.
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(plot.PlotDependencyError, match=r'pip install "\.\[plot\]"'):
        plot.plot_all([tmp_path], tmp_path / "fig")
    assert main(["plot", str(tmp_path)]) == 2
    assert 'pip install ".[plot]"' in capsys.readouterr().err


def test_out_on_a_file_and_a_corrupt_record_are_one_line_each(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'file'}: plot --out: not a folder\n"
    run = make_run(tmp_path, "c", "cifar10", 12.0, epochs=2)
    run.write_text(run.read_text()[:50])
    assert main(["plot", str(run), "--out", str(tmp_path / "fig")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {run}: not valid JSON (")


def test_runs_of_several_seeds_are_one_mean_curve_in_a_band(tmp_path):
    pytest.importorskip("matplotlib", reason='matplotlib is optional (pip install ".[plot]")')
    from matplotlib.collections import PolyCollection

    from results import seeds
    from results.records import find_records

    for seed, err in ((1234, 1.0), (1235, 1.4), (1236, 1.2)):
        make_run(tmp_path, f"s{seed}", "mnist", err, epochs=5, seed=seed)
    make_run(tmp_path, "other", "mnist", 2.0, epochs=5, num_units=512)
    groups = seeds.group_runs([(p, rec) for p, _, rec in find_records([tmp_path])])
    assert [len(g.members) for g in groups] == [1, 3]
    fig = plot.curves_figure(groups, "mnist", {"theano": 0.96})
    loss_ax, err_ax = fig.axes
    bands = [c for c in err_ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 1                            # the validation error's band; the single run has none
    ys = bands[0].get_paths()[0].vertices[:, 1]
    # make_run's val_err at epoch e is test_err + 1/e: the band spans the lowest to the highest seed
    assert min(ys) == pytest.approx(1.0 + 1 / 5) and max(ys) == pytest.approx(1.4 + 1)
    mean = next(line for line in err_ax.get_lines() if "3 seeds valid (mean)" in line.get_label())
    assert list(mean.get_ydata()) == pytest.approx([1.2 + 1 / e for e in range(1, 6)])
    assert any("paper, BNN (Theano): 0.96 %" in line.get_label() for line in err_ax.get_lines())
    assert len([c for c in loss_ax.collections if isinstance(c, PolyCollection)]) == 2
    plot.plot_all([tmp_path], tmp_path / "fig")
    _check_png(tmp_path / "fig" / "learning_curves_mnist.png")
