"""The diff against the paper on synthetic run and benchmark records."""
import json

import pytest

from results import compare
from results.records import RecordError
from results.commands import diff_main, main

PAPER_EPOCHS = {"mnist": 1000, "cifar10": 500, "svhn": 200}
SIZES = {"mnist": (50000, 10000, 10000), "cifar10": (45000, 5000, 10000), "svhn": (598388, 6000, 26032)}
BATCH = {"mnist": 100, "cifar10": 50, "svhn": 50}


def make_run(folder, name, dataset, test_err, epochs=None, status="finished", **hp):
    """A run record in the lead's format (results/runs/<run>/record.json)."""
    n = PAPER_EPOCHS[dataset] if epochs is None else epochs
    train, valid, test = SIZES[dataset]
    rows = [{"epoch": e, "lr": 0.001, "seconds": 1.0, "train_loss": 1.0 / e, "val_loss": 0.5 / e,
             "val_err": test_err + 1.0 / e} for e in range(1, n + 1)]
    rows[-1].update(test_loss=0.05, test_err=test_err)
    rec = {"format": 1, "run": name, "dataset": dataset, "status": status, "command": f"python -m {dataset}",
           "hyperparameters": {"batch_size": BATCH[dataset], "num_epochs": n, "paper_epochs": PAPER_EPOCHS[dataset],
                               "train_size": train, "valid_size": valid, "test_size": test, "H": 1.0,
                               "W_LR_scale": "Glorot", "stochastic": False, "shift_bn": False,
                               "optimizer": "adam", "seed": 1234, **hp},
           "environment": {"python": "3.11.7", "mode": "JAX", "machine": "x86_64", "cpu": "TestCPU", "cores": 2,
                           "gpu": None},
           "epochs": rows, "best_epoch": n, "best_val_err": rows[-1]["val_err"], "test_err": test_err,
           "test_loss": 0.05}
    path = folder / "runs" / name / "record.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))
    return path


def make_bench(folder, name, device="gpu", size=(8192, 8192, 8192), **ratios):
    machine = {"gpu": "NVIDIA H200"} if device == "gpu" else {"cpu": "TestCPU"}
    rec = {"format": 1, "device": device, "machine": machine,
           "gemm": {"size": list(size), "seconds": {"baseline": 1.0, "xnor": 0.1, "blas": 0.05}},
           "mlp": {"seconds": {"baseline": 1.0, "xnor": 0.2}, "test_err": {"baseline": 0.96, "xnor": 0.96}},
           "ratios": ratios}
    path = folder / "bench" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))
    return path


def test_tolerance_is_two_binomial_standard_errors():
    assert compare.error_tolerance(0.96, 10000) == pytest.approx(0.195, abs=5e-4)
    assert compare.error_tolerance(2.80, 26000) == pytest.approx(0.205, abs=5e-4)
    assert compare.error_tolerance(11.40, 10000) == pytest.approx(0.636, abs=5e-4)


def test_match_short_worse_and_missing_dataset(tmp_path):
    make_run(tmp_path, "mnist-full", "mnist", 1.10)  # +0.14 pp: within 0.195
    make_run(tmp_path, "mnist-bad", "mnist", 1.20)  # +0.24 pp: worse
    make_run(tmp_path, "cifar10-short", "cifar10", 11.3, epochs=20)
    rows = compare.diff([tmp_path / "runs"])
    got = {(r.subject, r.record.split("/")[-2] if r.record else ""): r for r in rows}
    full, bad = got["mnist", "mnist-full"], got["mnist", "mnist-bad"]
    assert (full.status, full.paper, full.ours) == ("match", 0.96, 1.10)  # Theano column, not Torch7's 1.40
    assert full.diff == pytest.approx(0.14)
    assert bad.status == "worse"
    short = got["cifar10", "cifar10-short"]
    assert short.status == "short run" and "20/500 epochs" in short.conditions
    assert "mode JAX" in short.conditions and "TestCPU" in short.conditions
    assert got["svhn", ""].status == "no record" and got["svhn", ""].ours is None
    assert [r.subject for r in rows] == ["mnist", "mnist", "cifar10", "svhn"]


def test_subset_unfinished_variant_diverged_better(tmp_path):
    make_run(tmp_path, "subset", "mnist", 0.96, train_size=5000)
    make_run(tmp_path, "running", "svhn", 2.8, status="running")
    make_run(tmp_path, "shift", "cifar10", 11.4, shift_bn=True)
    make_run(tmp_path, "nan", "svhn", 90.0, status="diverged")
    make_run(tmp_path, "good", "cifar10", 10.0)
    make_run(tmp_path, "narrow", "mnist", 0.96, num_units=2048)
    make_run(tmp_path, "svhn-26000", "svhn", 2.8, test_size=26000)  # what the original evaluates
    got = {r.record.split("/")[-2]: r for r in compare.diff([tmp_path])}
    assert got["subset"].status == "short run" and "train 5000/50000" in got["subset"].conditions
    assert got["running"].status == "short run" and "running" in got["running"].conditions
    assert got["shift"].status == "not comparable" and "shift_bn=True" in got["shift"].conditions
    assert got["nan"].status == "diverged"
    assert got["good"].status == "better"
    assert got["narrow"].status == "not comparable" and "num_units=2048 (paper 4096)" in got["narrow"].conditions
    assert got["svhn-26000"].status == "match"


def test_benchmark_ratios(tmp_path):
    make_bench(tmp_path, "h200", xnor_vs_baseline=25.0, xnor_vs_blas=0.2, mlp_xnor_vs_baseline=None)
    make_bench(tmp_path, "cpu", device="cpu", xnor_vs_baseline=23.0, xnor_vs_blas=3.4, mlp_xnor_vs_baseline=7.0)
    make_bench(tmp_path, "small", size=(1024, 1024, 1024), xnor_vs_baseline=23.0)
    rows = [r for r in compare.diff([tmp_path / "bench"]) if r.kind == "bench"]
    got = {(r.record.split("/")[-1], r.subject): r for r in rows}
    assert got["h200.json", "xnor_vs_baseline"].status == "match"  # 25 within 23 +- 20 %
    assert got["h200.json", "xnor_vs_blas"].status == "worse"
    assert got["h200.json", "mlp_xnor_vs_baseline"].status == "no result"
    blas = got["h200.json", "xnor_vs_blas"]
    assert blas.paper == 3.4 and "NVIDIA H200" in blas.conditions
    keys = ("xnor_vs_baseline", "xnor_vs_blas", "mlp_xnor_vs_baseline")
    assert {got["cpu.json", k].status for k in keys} == {"not comparable"}
    assert got["small.json", "xnor_vs_baseline"].status == "not comparable"
    assert "identical" in got["cpu.json", "mlp_xnor_vs_baseline"].conditions


def test_outputs_and_cli(tmp_path, capsys):
    make_run(tmp_path, "m", "mnist", 1.0)
    make_bench(tmp_path, "g", xnor_vs_baseline=20.0)
    text = compare.render(compare.diff([tmp_path]))
    assert "subject" in text.splitlines()[0] and "match" in text and "no record" in text
    assert main(["diff", "--markdown", str(tmp_path)]) == 0
    md = capsys.readouterr().out
    assert md.startswith("| subject | quantity |") and "| mnist | test error (%) | 0.96 | 1.00 | +0.04 |" in md
    assert diff_main(["--json", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == 1 and "sqrt" in data["tolerance"]["test_error"]
    assert {r["status"] for r in data["rows"]} >= {"match", "no record"}
    assert all(r["status"] in compare.STATUSES for r in data["rows"])


def test_bad_records_name_the_file(tmp_path, capsys):
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(RecordError, match="broken.json: not valid JSON"):
        compare.diff([bad])
    other = tmp_path / "other.json"
    other.write_text('{"format": 1, "hello": 1}')
    with pytest.raises(RecordError, match="other.json: not a run record"):
        compare.diff([other])
    path = make_run(tmp_path, "x", "mnist", 1.0)
    rec = json.loads(path.read_text())
    rec["dataset"] = "imagenet"
    path.write_text(json.dumps(rec))
    with pytest.raises(RecordError, match="record.json: unknown dataset 'imagenet'"):
        compare.diff([path])
    assert main(["diff", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: not found" in capsys.readouterr().err
