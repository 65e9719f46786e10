"""`python -m gpu_xnor`: the record a quick run writes, the checks that make a run fail, and every
bad option ending in one line, before any work."""
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from gpu_xnor import bench, cpu
from gpu_xnor.__main__ import main
from tests.conftest import HAVE_MNIST, MNIST_DIR, ROOT


def test_quick_run_writes_the_record(tmp_path, capsys):
    data_dir = MNIST_DIR if HAVE_MNIST else tmp_path / "no-data"
    argv = ["--quick", "--size", "96", "--images", "100", "--out-dir", str(tmp_path), "--name", "quick"]
    assert main(argv + (["--data-dir", str(data_dir)] if HAVE_MNIST else [])) == 0
    record = json.loads((tmp_path / "quick.json").read_text())
    assert record["format"] == 1 and record["device"] == "cpu" and record["name"] == "quick"
    assert record["quick"] is True and record["weights"] == "random"
    from results.paper import headline_speed

    paper = {k: v.value for k, v in headline_speed().items()}
    assert record["paper"] == {"xnor_paper_vs_baseline": paper["xnor_vs_baseline"],
                               "xnor_paper_vs_blas": paper["xnor_vs_blas"],
                               "mlp_xnor_paper_vs_baseline": paper["mlp_xnor_vs_baseline"]}
    assert record["gemm"]["size"] == [96, 96, 96]
    assert set(record["gemm"]["seconds"]) == set(cpu.Device.gemm_kernels) == {
        "baseline", "xnor_paper", "xnor", "xnor_gemm_only", "blas"}
    assert all(record["gemm"]["exact"].values())
    for key in ("xnor_vs_baseline", "xnor_vs_blas", "xnor_paper_vs_baseline", "xnor_paper_vs_blas"):
        assert record["ratios"][key] > 0 and record["ratios_cpu_time"][key] > 0
    kern = record["machine"]["kernels"]
    assert kern["isa"] in cpu.ISAS and kern["isa"] == cpu.supported_isas()[0]
    assert {"library", "core"} <= set(record["machine"]["blas"])
    tp = record["throughput"]
    assert tp["isa"] == kern["isa"] and tp["clock_ghz"] > 0 and tp["xnor"]["per_core_cycle"] > 0
    assert {"zen4", "intel", "mix"} <= set(tp["xnor"]["model"])
    assert set(tp["paths"]) == set(cpu.supported_isas())  # every path's bits per cycle
    assert all(p["per_core_cycle_cpu_time"] > 0 and p["model"]["zen4"] > 0 for p in tp["paths"].values())
    assert set(record["ratios_min"]) == set(record["ratios"])
    cond = record["conditions"]
    assert {"warmup", "repeats", "threads", "env", "deviations", "load_average_before",
            "load_average_after"} <= set(cond)
    out = capsys.readouterr().out
    assert "paper 23x" in out and "xnor_vs_blas" in out and "QUICK RUN" in out
    if not HAVE_MNIST:
        assert record["mlp"] is None and "no MNIST test set" in record["mlp_skipped"]
        pytest.skip(f"MNIST not in {MNIST_DIR}: the MLP part was skipped, as it should be")
    m = record["mlp"]
    assert m["images"] == 100 and m["sizes"][0] == 784 and m["sizes"][-1] == 10
    assert set(m["seconds"]) == {"baseline", "xnor_paper", "xnor", "blas"}
    assert all(m["identical_scores"].values()) and len(set(m["test_err"].values())) == 1
    assert "xnor_alg4" in m["variants"]
    assert record["ratios"]["mlp_xnor_vs_baseline"] > 0 and record["ratios"]["mlp_xnor_paper_vs_baseline"] > 0


def test_missing_data_skips_the_mlp_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path / "empty"))
    assert main(["--quick", "--size", "8", "--out-dir", str(tmp_path), "--name", "r"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "MLP part skipped" in line]
    assert len(lines) == 1 and str(tmp_path / "empty") in lines[0] and "--data-dir" in lines[0]
    assert json.loads((tmp_path / "r.json").read_text())["mlp"] is None


def test_records_never_overwrite_each_other(tmp_path, capsys):
    assert main(["--quick", "--size", "8", "--out-dir", str(tmp_path)]) == 0
    (first,) = tmp_path.glob("cpu-*.json")  # the default name: device, host, UTC time
    assert json.loads(first.read_text())["name"] == first.stem
    capsys.readouterr()
    before = first.read_bytes()
    assert main(["--quick", "--size", "8", "--out-dir", str(tmp_path), "--name", first.stem]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--name" in err and "exists" in err
    assert first.read_bytes() == before


def test_disagreeing_kernels_fail_the_run():
    record = {"gemm": {"exact": {"xnor": True, "baseline": False}},
              "mlp": {"test_err": {"baseline": 0.01, "xnor": 0.02},
                      "identical_scores": {"baseline": True, "xnor": False}}}
    problems = bench.agreement_problems(record)
    assert any("baseline" in p and "exact" in p for p in problems)
    assert any("xnor: scores differ" in p for p in problems)
    assert any("test errors differ" in p for p in problems)
    record = {"gemm": {"exact": {"xnor": True}}, "mlp": {"test_err": {"a": 0.1, "b": 0.1},
                                                         "identical_scores": {"a": True, "b": True}}}
    assert bench.agreement_problems(record) == []


def _params(tmp_path, kind):
    path = tmp_path / f"{kind}.h5"
    if kind == "corrupt":
        path.write_bytes(b"\x89HDF garbage")
    elif kind == "shapes":
        with h5py.File(path, "w") as f:
            g = f.create_group("block0")
            g["W"] = np.ones((100, 10), np.float32)  # 100 inputs, not 784
            for k in ("b", "beta", "gamma", "mean", "inv_std"):
                g[k] = np.ones(10, np.float32)
    return str(path)


BAD = {  # argv (with {tmp} for the test's folder), the option the one line must name
    "size 0": (["--size", "0"], "--size"),
    "size -5": (["--size", "-5"], "--size"),
    "size not a number": (["--size", "big"], "--size"),
    "images 0": (["--images", "0"], "--images"),
    "threads -1": (["--threads", "-1"], "--threads"),
    "warmup -1": (["--warmup", "-1"], "--warmup"),
    "repeats 0": (["--repeats", "0"], "--repeats"),
    "slow-repeats 0": (["--slow-repeats", "0"], "--slow-repeats"),
    "device tpu": (["--device", "tpu"], "--device"),
    "isa unknown": (["--isa", "sse9"], "--isa"),
    "isa on gpu": (["--device", "gpu", "--isa", "avx2"], "--"),
    "out-dir is a file": (["--out-dir", "{tmp}/file"], "--out-dir"),
    "name with a slash": (["--name", "../x"], "--name"),
    "params missing": (["--params", "{tmp}/missing.h5"], "--params"),
    "params corrupt": (["--params", "corrupt"], "--params"),
    "params wrong shapes": (["--params", "shapes"], "--params"),
    "data-dir missing": (["--data-dir", "{tmp}/nowhere"], "--data-dir"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_option_is_one_line_before_any_work(case, tmp_path, capsys):
    argv, option = BAD[case]
    (tmp_path / "file").write_text("")
    argv = [_params(tmp_path, a) if a in ("corrupt", "shapes") else a.format(tmp=tmp_path) for a in argv]
    out_dir = tmp_path / "records"
    assert main(["--quick", "--out-dir", str(out_dir), *argv]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0 and err.startswith("python -m gpu_xnor: ") and option in err, err
    assert "Traceback" not in err and "[gemm" not in captured.out  # nothing was run
    assert not list(out_dir.glob("*.json"))


def test_bad_environment_isa_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cpu.ISA_ENV, "avx1024")
    assert main(["--quick", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "BNN_XNOR_ISA='avx1024': unknown" in err


@pytest.mark.skipif(not HAVE_MNIST, reason=f"MNIST not in {MNIST_DIR}: cannot check --images against it")
def test_more_images_than_the_test_set_is_one_line(tmp_path, capsys):
    assert main(["--quick", "--out-dir", str(tmp_path), "--data-dir", str(MNIST_DIR), "--images", "20000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--images: 20000 > the 10000 test images" in err


@pytest.mark.parametrize("argv", [["--size", "0"], ["--params", "{tmp}/missing.h5"]])
def test_command_line_exits_2_with_no_traceback(argv, tmp_path):
    argv = [a.format(tmp=tmp_path) for a in argv]
    done = subprocess.run([sys.executable, "-m", "gpu_xnor", "--out-dir", str(tmp_path), *argv],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_gpu_without_pycuda_is_a_clear_error(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("pycuda") is not None:
        pytest.skip("pycuda is installed here")
    assert main(["--device", "gpu", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--device gpu" in err and "PyCUDA" in err
