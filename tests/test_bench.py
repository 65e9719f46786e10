"""`python -m gpu_xnor --quick`: the record it writes and the checks that make it fail."""
import json
import subprocess
import sys

import pytest

from gpu_xnor import bench
from gpu_xnor.__main__ import parse
from tests.conftest import MNIST_DIR, ROOT


def test_quick_run_writes_the_record(tmp_path, capsys):
    have_data = (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists()
    data_dir = MNIST_DIR if have_data else tmp_path / "no-data"
    args = parse(["--quick", "--size", "96", "--images", "100", "--out-dir", str(tmp_path),
                  "--name", "quick", "--data-dir", str(data_dir)])
    assert bench.main(args) == 0
    record = json.loads((tmp_path / "quick.json").read_text())
    assert record["format"] == 1 and record["device"] == "cpu"
    assert set(bench.PAPER) <= set(record["ratios"])
    assert record["paper"] == {"xnor_vs_baseline": 23, "xnor_vs_blas": 3.4, "mlp_xnor_vs_baseline": 7}
    assert record["gemm"]["size"] == [96, 96, 96]
    assert set(record["gemm"]["seconds"]) == set(bench.GEMM_KERNELS)
    assert all(record["gemm"]["equal_to_blas"].values())
    assert record["ratios"]["xnor_vs_baseline"] > 0 and record["ratios"]["xnor_vs_blas"] > 0
    assert {"cpu", "cores", "numpy", "blas"} <= set(record["machine"])
    assert {"warmup", "repeats", "threads"} <= set(record["conditions"])
    out = capsys.readouterr().out
    assert "paper 23x" in out and "xnor_vs_blas" in out
    if not have_data:
        assert record["mlp"] is None and record["ratios"]["mlp_xnor_vs_baseline"] is None
        assert "skipped" in out
        pytest.skip(f"MNIST not in {MNIST_DIR}: the MLP part was skipped, as it should be")
    mlp_part = record["mlp"]
    assert mlp_part["images"] == 100 and "random" in mlp_part["weights"]
    errs = [mlp_part["test_err"][k] for k in bench.MUST_AGREE]
    assert len(set(errs)) == 1
    assert all(mlp_part["same_predictions_as_baseline"].values())
    assert record["ratios"]["mlp_xnor_vs_baseline"] > 0


def test_disagreeing_kernels_fail_the_run():
    record = {"gemm": {"equal_to_blas": {"xnor": True, "baseline": False}},
              "mlp": {"test_err": {"baseline": 0.01, "xnor": 0.01, "xnor_repack": 0.01, "blas": 0.02}}}
    problems = bench.agreement_problems(record)
    assert any("baseline differs" in p for p in problems)
    assert any("test errors differ" in p for p in problems)
    record["gemm"]["equal_to_blas"]["baseline"] = True
    record["mlp"]["test_err"]["blas"] = 0.01
    assert bench.agreement_problems(record) == []


def test_gpu_without_pycuda_is_a_clear_error(tmp_path):
    import importlib.util

    if importlib.util.find_spec("pycuda") is not None:
        pytest.skip("pycuda is installed here")
    done = subprocess.run([sys.executable, "-m", "gpu_xnor", "--device", "gpu", "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and "PyCUDA" in done.stderr
