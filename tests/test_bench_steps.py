"""`python -m results.bench_steps` on a tiny network: the record it writes."""
import json

from results import bench_steps


def test_tiny_network_writes_the_record(tmp_path):
    out = tmp_path / "steps.json"
    bench_steps.main(["--networks", "cifar10", "--modes", "JAX", "--repeats", "1",
                      "--architecture", "8C3-MP2-16FC-10FC", "--out", str(out)])
    record = json.loads(out.read_text())
    assert record["format"] == 1 and {"cpu", "cores", "pytensor"} <= set(record["machine"])
    assert {"load_average_before", "load_average_after"} <= set(record["conditions"])
    r = record["results"]["cifar10"]["JAX"]
    assert r["architecture"] == "8C3-MP2-16FC-10FC"
    assert {"compile_s", "first_call_s", "step_s", "eval_step_s", "paper_run"} <= set(r)
    assert r["paper_run"]["steps_per_epoch"] == 900 and r["paper_run"]["epochs"] == 500
    assert r["paper_run"]["hours"] > 0
