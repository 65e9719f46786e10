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
    # each cell of Table 1 without a run shows as "no record": both recipes of every dataset
    assert [r.subject for r in rows] == ["mnist", "mnist", "mnist (torch7)", "cifar10", "cifar10 (torch7)", "svhn",
                                         "svhn (torch7)"]


def test_subset_unfinished_variant_diverged_better(tmp_path):
    make_run(tmp_path, "subset", "mnist", 0.96, train_size=5000)
    make_run(tmp_path, "running", "svhn", 2.8, status="running")
    make_run(tmp_path, "shift", "cifar10", 11.4, shift_bn=True)
    make_run(tmp_path, "nan", "svhn", 90.0, status="diverged")
    make_run(tmp_path, "good", "cifar10", 10.0)
    make_run(tmp_path, "narrow", "mnist", 0.96, num_units=2048)
    make_run(tmp_path, "svhn-26000", "svhn", 2.8, test_size=26000)  # what the original evaluates
    got = {r.record.split("/")[-2]: r for r in compare.diff([tmp_path]) if r.record}
    assert got["subset"].status == "short run" and "train 5000/50000" in got["subset"].conditions
    assert got["running"].status == "short run" and "running" in got["running"].conditions
    assert got["shift"].status == "not comparable" and "shift_bn=True" in got["shift"].conditions
    assert got["nan"].status == "diverged"
    assert got["good"].status == "better"
    assert got["narrow"].status == "not comparable" and "num_units=2048 (paper 4096)" in got["narrow"].conditions
    assert got["svhn-26000"].status == "match"


def test_benchmark_ratios(tmp_path):
    # The paper's 23x / 3.4x / 7x are its own XNOR kernel's ratios: our records call it xnor_paper
    make_bench(tmp_path, "h200", xnor_paper_vs_baseline=25.0, xnor_paper_vs_blas=0.2, mlp_xnor_paper_vs_baseline=None,
               xnor_vs_baseline=400.0)
    make_bench(tmp_path, "cpu", device="cpu", xnor_paper_vs_baseline=23.0, xnor_paper_vs_blas=3.4,
               mlp_xnor_paper_vs_baseline=7.0)
    make_bench(tmp_path, "small", size=(1024, 1024, 1024), xnor_paper_vs_baseline=23.0)
    rows = [r for r in compare.diff([tmp_path / "bench"]) if r.kind == "bench"]
    got = {(r.record.split("/")[-1], r.subject): r for r in rows}
    assert got["h200.json", "xnor_paper_vs_baseline"].status == "match"  # 25 within 23 +- 20 %
    assert "our xnor 400.0x" in got["h200.json", "xnor_paper_vs_baseline"].conditions
    assert got["h200.json", "xnor_paper_vs_blas"].status == "worse"
    assert got["h200.json", "mlp_xnor_paper_vs_baseline"].status == "no result"
    blas = got["h200.json", "xnor_paper_vs_blas"]
    assert blas.paper == 3.4 and "NVIDIA H200" in blas.conditions
    keys = ("xnor_paper_vs_baseline", "xnor_paper_vs_blas", "mlp_xnor_paper_vs_baseline")
    assert {got["cpu.json", k].status for k in keys} == {"not comparable"}
    assert got["small.json", "xnor_paper_vs_baseline"].status == "not comparable"
    assert "identical" in got["cpu.json", "mlp_xnor_paper_vs_baseline"].conditions


def test_an_optimised_kernel_is_never_set_against_the_papers_claim(tmp_path):
    make_bench(tmp_path, "ours-only", xnor_vs_baseline=23.0, xnor_vs_blas=3.4, mlp_xnor_vs_baseline=7.0)
    rows = [r for r in compare.diff([tmp_path / "bench"]) if r.kind == "bench"]
    assert [r.status for r in rows] == ["no result"] * 3 and all(r.ours is None for r in rows)


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


# --- what diff reads, and what it skips (issue 10) ----------------------------------------------------

def test_quick_and_random_weight_benchmarks_are_set_apart(tmp_path):
    pair = dict(xnor_paper_vs_baseline=23.0, xnor_paper_vs_blas=3.4, mlp_xnor_paper_vs_baseline=7.0)
    make_bench(tmp_path, "real", **{**pair, "xnor_paper_vs_baseline": 22.0})
    quick = make_bench(tmp_path, "a-quick", **pair)
    rec = json.loads(quick.read_text())
    quick.write_text(json.dumps({**rec, "quick": True, "gemm": {"size": [256, 256, 256]}}))
    random = make_bench(tmp_path, "b-random", **pair)
    random.write_text(json.dumps({**json.loads(random.read_text()), "weights": "random"}))
    rows = [r for r in compare.diff([tmp_path / "bench"]) if r.kind == "bench"]
    assert [r.record.split("/")[-1] for r in rows] == ["real.json"] * 3 + ["a-quick.json"] * 3 + ["b-random.json"] * 3
    # random weights leave the products' timings as they are: only the MLP (its test error) is set apart
    assert [r.status for r in rows] == ["match"] * 3 + ["quick run"] * 3 + ["match", "match", "random weights"]
    assert all("set apart" in r.conditions for r in rows[3:6]) and "set apart" in rows[8].conditions
    text = compare.render(compare.diff([tmp_path / "bench"]))
    assert "listed last and not compared" in text


def test_a_corrupt_record_is_skipped_with_a_warning_and_other_json_silently(tmp_path, capsys):
    good = make_run(tmp_path, "good", "mnist", 1.0)
    (tmp_path / "runs" / "cut").mkdir()
    (tmp_path / "runs" / "cut" / "record.json").write_text('{"format": 1, "dataset": "mnist", "epo')
    (tmp_path / "runs" / "odd").mkdir()
    (tmp_path / "runs" / "odd" / "record.json").write_text('{"format": 1}')
    bad_bench = make_bench(tmp_path, "bad", xnor_vs_baseline="fast")
    future = make_bench(tmp_path, "future", xnor_vs_baseline=2.0)
    future.write_text(json.dumps({**json.loads(future.read_text()), "format": 2}))
    (tmp_path / "bench" / "steps.json").write_text('{"format": 1, "rows": []}')      # plainly not a record
    (tmp_path / "bench" / "list.json").write_text("[1, 2]")
    rows = compare.diff([tmp_path])
    assert {r.record for r in rows if r.record} == {str(good)}
    err = capsys.readouterr().err.splitlines()
    assert sorted(err) == sorted([
        f"warning: skipped {tmp_path}/bench/bad.json: ratios is not an object of numbers",
        f"warning: skipped {tmp_path}/bench/future.json: unknown record format 2 (expected 1)",
        f"warning: skipped {tmp_path}/runs/cut/record.json: not valid JSON (Unterminated string starting at: line 1 "
        "column 35)",
        f"warning: skipped {tmp_path}/runs/odd/record.json: not a run record (dataset, epochs) nor a benchmark "
        "record (ratios)"])


@pytest.mark.parametrize("change, problem", [
    (lambda r: r.update(epochs={"1": 2}), "epochs is not a list of rows"),
    (lambda r: r["epochs"][0].update(epoch="one"), "epochs is not a list of rows"),
    (lambda r: r["epochs"][0].update(val_err="high"), "an epoch's val_err is not a number"),
    (lambda r: r.update(test_err=[1]), "test_err is not a number"),
    (lambda r: r.update(hyperparameters=[]), "hyperparameters is not an object"),
])
def test_a_malformed_run_record_is_named_not_a_traceback(tmp_path, capsys, change, problem):
    path = make_run(tmp_path, "x", "mnist", 1.0, epochs=2)
    rec = json.loads(path.read_text())
    change(rec)
    path.write_text(json.dumps(rec))
    assert main(["diff", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: {problem}") and err.count("\n") == 1


def test_binary_garbage_is_not_valid_json(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    assert main(["diff", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {path}: not valid JSON (")


def test_the_default_folders_are_the_current_folders_results(tmp_path, monkeypatch, capsys):
    make_run(tmp_path / "results", "here", "svhn", 2.9, epochs=3)
    monkeypatch.chdir(tmp_path)
    rows = compare.diff()
    assert [r.record for r in rows if r.record] == ["results/runs/here/record.json"]
    with pytest.raises(SystemExit):
        main(["diff", "--help"])
    assert "results/runs, results/tables and results/bench under the current folder" in \
        " ".join(capsys.readouterr().out.split())


def test_paper_must_be_a_folder_and_debug_shows_the_traceback(tmp_path, capsys):
    (tmp_path / "f.json").write_text("{}")
    for argv in (["--paper", str(tmp_path / "f.json"), "diff"], ["diff", "--paper", str(tmp_path / "nothing")]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and "--paper" in err and "folder" in err, err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["diff", "--paper", str(empty)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {empty}/table1_test_error.json: not found")
    with pytest.raises(RecordError):
        main(["diff", "--debug", str(tmp_path / "missing.json")])


# --- several seeds: error bars (issue 13) ---------------------------------------------------------------

def test_runs_differing_only_in_the_seed_are_one_row_with_error_bars(tmp_path):
    for seed, err in ((1234, 1.00), (1235, 1.10), (1236, 1.30)):
        make_run(tmp_path, f"seed{seed}", "mnist", err, seed=seed, mode="JAX" if seed % 2 else "CVM")
    make_run(tmp_path, "zagain", "mnist", 1.05, seed=1234)   # the same seed twice (read last): not another seed
    make_run(tmp_path, "narrow", "mnist", 1.50, seed=1235, num_units=2048)
    rows = [r for r in compare.diff([tmp_path]) if r.subject == "mnist"]
    assert [(r.n, r.record.split("/")[-2]) for r in rows] == [(1, "narrow"), (3, "seed1234"), (1, "zagain")]
    g = rows[1]
    assert g.ours == pytest.approx(1.1333333) and g.diff == pytest.approx(1.1333333 - 0.96)
    assert g.std == pytest.approx(0.1527525) and g.sem == pytest.approx(0.1527525 / 3 ** 0.5)
    assert (g.low, g.high, g.seeds) == (1.0, 1.3, [1234, 1235, 1236])
    assert g.status == "reproduced"                                 # |1.133 - 0.96| = 0.17 <= 0.195
    assert g.records == [str(tmp_path / "runs" / f"seed{s}" / "record.json") for s in (1234, 1235, 1236)]
    assert g.conditions.startswith("3 seeds (1234-1236), runs seed1234, seed1235, seed1236; range 1.00-1.30, "
                                   "s.e. of the mean 0.09; 1000/1000 epochs; mode JAX; TestCPU (2 cores)")
    text = compare.render(rows)
    assert "1.13 ± 0.15" in text and "+0.17" in text and "reproduced when the mean is within the tolerance" in text
    data = json.loads(compare.to_json(rows))
    assert data["rows"][1]["n"] == 3 and data["rows"][1]["std"] == g.std and "mean" in data["tolerance"]["seeds"]


def test_a_group_is_worse_short_or_diverged_as_its_members_are(tmp_path):
    for seed, err in ((1, 1.2), (2, 1.3)):
        make_run(tmp_path / "worse", f"s{seed}", "mnist", err, seed=seed)
    for seed, status in ((1, "finished"), (2, "running")):
        make_run(tmp_path / "short", f"s{seed}", "svhn", 2.8, epochs=200, seed=seed, status=status)
    for seed, status in ((1, "finished"), (2, "diverged")):
        make_run(tmp_path / "nan", f"s{seed}", "cifar10", 11.4, seed=seed, status=status)
    got = {r.subject: r for r in compare.diff([tmp_path]) if r.n > 1}
    assert got["mnist"].status == "worse" and got["mnist"].ours == pytest.approx(1.25)
    assert got["svhn"].status == "short run" and "1 running" in got["svhn"].conditions
    assert got["cifar10"].status == "diverged" and "1 diverged" in got["cifar10"].conditions
    assert got["cifar10"].ours == 11.4 and "mean of the 1 with a result" in got["cifar10"].conditions


def test_the_table_folders_runs_are_named_after_the_table(tmp_path):
    t = tmp_path / "tables" / "mnist-short"
    for seed in (1234, 1235):
        make_run(t, f"mnist-theano-seed{seed}", "mnist", 2.0, epochs=20, seed=seed, train_size=5000)
    (t / "runs" / "table.json").write_text("{}")
    row = next(r for r in compare.diff([tmp_path]) if r.n == 2)
    assert row.conditions.startswith("2 seeds (1234, 1235), table runs;")
    assert row.status == "short run" and "train 5000/50000" in row.conditions


def test_torch7_records_are_compared_with_the_torch7_column(tmp_path, monkeypatch):
    """A record of the Torch7 recipe (issue 12) against BNN (Torch7), never BNN (Theano); its test
    error is the record's (the last epoch's); a program's ``torch7`` dict is its recipe."""
    from results import recipes

    monkeypatch.setattr(recipes.PROGRAMS["mnist"], "torch7",
                        {"num_units": 2048, "seed": 432, "dropout_in": 0.0, "dropout_hidden": 0.0}, raising=False)
    make_run(tmp_path, "t7", "mnist", 1.45, recipe="torch7", num_units=2048, seed=432, dropout_in=0.0,
             dropout_hidden=0.0)
    make_run(tmp_path, "t7-wide", "mnist", 1.45, recipe="torch7", num_units=4096, seed=432, dropout_in=0.0,
             dropout_hidden=0.0)
    make_run(tmp_path, "theano", "mnist", 1.0, num_units=4096)
    monkeypatch.setattr(recipes.PROGRAMS["svhn"], "torch7", {"batch_size": 200}, raising=False)
    if hasattr(recipes.PROGRAMS["cifar10"], "torch7"):
        monkeypatch.delattr(recipes.PROGRAMS["cifar10"], "torch7")
    rows = compare.diff([tmp_path])
    got = {r.record.split("/")[-2] if r.record else r.subject: r for r in rows}
    t7 = got["t7"]
    assert (t7.subject, t7.recipe, t7.paper, t7.status) == ("mnist (torch7)", "torch7", 1.40, "match")
    assert t7.tolerance == pytest.approx(compare.error_tolerance(1.40, 10000))
    assert "test error of the last epoch" in t7.conditions
    assert got["t7-wide"].status == "not comparable" and "num_units=4096 (paper 2048)" in got["t7-wide"].conditions
    assert (got["theano"].paper, got["theano"].status) == (0.96, "match")
    assert got["svhn (torch7)"].status == "no record" and got["svhn (torch7)"].paper == 2.53
    assert "cifar10 (torch7)" not in got                  # no Torch7 recipe in this program: no cell
    assert [r.subject for r in rows if r.kind == "run"][:4] == ["mnist", "mnist (torch7)", "mnist (torch7)", "cifar10"]
    assert "BNN (Torch7) columns of Table 1" in compare.render(rows)
    # SVHN: the Torch7 code evaluates every test image (partial batches), the Theano code 26,000.
    assert (recipes.test_evaluated("svhn", "torch7"), recipes.test_evaluated("svhn")) == (26032, 26000)
