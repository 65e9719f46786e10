"""The pooling-tie measurement (results/pool_ties.py): its statistics on hand-computed windows, and a
short run of the script on a small network writing its record."""
import json

import numpy as np
import pytest

from results.pool_ties import main, weight_gradient_stats, window_stats


def test_window_statistics_by_hand():
    """Four windows: all equal (k = 4), a two-way tie, a unique maximum and a three-way tie at a
    negative maximum; the odd last row and column hold larger values, dropped by the pooling."""
    x = np.array([[[[1, 1, 5, 2, 9],
                    [1, 1, 5, 0, 9],
                    [0, 3, -1, -1, 9],
                    [2, 1, -4, -1, 9],
                    [9, 9, 9, 9, 9]]]], np.float32)
    gz = np.array([[[[1, -2], [3, 4]]]], np.float32)
    s = window_stats(x, gz)
    assert s["windows"] == 4 and s["shape"] == [1, 1, 5, 5]
    assert s["tied_fraction"] == 0.75
    assert s["maxima_count_fractions"] == {"1": 0.25, "2": 0.25, "3": 0.25, "4": 0.25}
    # |gz| = 1, 2, 3, 4 on windows with k = 4, 2, 1, 3 maxima: "all" adds (k - 1)|gz| each
    assert s["gradient_mass_on_tied"] == pytest.approx(7 / 10)
    assert s["gradient_l1_difference"] == pytest.approx((3 * 1 + 1 * 2 + 0 * 3 + 2 * 4) / 10)


def test_window_statistics_without_ties_or_gradient():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    s = window_stats(x, np.zeros((1, 1, 2, 2), np.float32))
    assert s["tied_fraction"] == 0.0 and s["maxima_count_fractions"]["1"] == 1.0
    assert s["gradient_mass_on_tied"] is None and s["gradient_l1_difference"] is None


def test_weight_gradient_statistics():
    a = np.array([3.0, -4.0, 0.0, 1.0])
    b = np.array([3.0, -4.0, 0.0, -1.0])
    s = weight_gradient_stats("conv0.W", a, b)
    assert s == {"layer": "conv0.W", "relative_l2_difference": pytest.approx(2 / np.sqrt(26)),
                 "sign_disagreement": 0.25}


def test_a_short_run_writes_its_record(tmp_path):
    out = tmp_path / "pool_ties.json"
    main(["--networks", "cifar10", "--architecture", "8C3-8C3-MP2-16C3-MP2-32FC-10FC", "--steps", "2",
          "--probe-every", "1", "--out", str(out)])
    record = json.loads(out.read_text())
    r = record["results"]["cifar10"]
    assert record["conditions"]["train_ties"] == "first" and len(r["train_losses"]) == 2
    assert [m["step"] for m in r["probes"]] == [0, 1, 2]
    for m in r["probes"]:
        pools = m["pooling_layers"]
        assert [p["windows"] for p in pools] == [50 * 8 * 16 * 16, 50 * 16 * 8 * 8]
        for p in pools:
            assert 0 < p["tied_fraction"] < 1
            assert sum(p["maxima_count_fractions"].values()) == pytest.approx(1)
            # every tied window adds at least its own |gz| once more under "all"
            assert p["gradient_l1_difference"] >= p["gradient_mass_on_tied"] > 0
        grads = {w["layer"]: w for w in m["weight_gradients"]}
        assert all(grads[f"conv{k}.W"]["relative_l2_difference"] > 0 for k in range(3))
        # the dense layers come after the last pooling: the rule cannot reach their gradient
        assert all(grads[name]["relative_l2_difference"] < 1e-6 for name in ("dense3.W", "dense4.W"))


def test_bad_options_are_refused(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--steps", "-1"])
    assert e.value.code == 2 and "--steps must be >= 0" in capsys.readouterr().err
