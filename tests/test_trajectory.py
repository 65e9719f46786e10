"""results/trajectory.py on a tiny network: the record it writes, and bad input (SOURCES.md §2.1)."""
import json

import pytest

from results import trajectory
from tests.conftest import MNIST_DIR


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"the MNIST files are not in {MNIST_DIR}")
def test_a_short_trajectory_record(tmp_path, capsys):
    out = tmp_path / "t.json"
    assert trajectory.main(["--data-dir", str(MNIST_DIR), "--units", "16", "--hidden-layers", "1",
                            "--batches", "2", "--modes", "CVM", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["conditions"]["network"] == "784-16x1-10" and len(record["rows"]) == 2
    row = record["rows"][0]
    assert len(row["modes"]["CVM"]["binarized_weights_differing"]) == 2
    assert abs(row["modes"]["CVM"]["loss"] - row["loss_reference"]) < 1e-5 * row["loss_reference"]
    assert set(record["summary"]) == {"first_batch_with_a_differing_binarized_weight",
                                      "first_batch_where_rounding_decides_a_weights_sign"}
    assert "batch 2:" in capsys.readouterr().out


def test_a_missing_data_folder_is_one_line_and_exit_status_2(tmp_path, capsys):
    assert trajectory.main(["--data-dir", str(tmp_path / "none"), "--batches", "1", "--modes", "CVM",
                            "--out", str(tmp_path / "t.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # one line naming the file; what to fetch follows on indented detail lines, never a traceback
    assert err[0].startswith("error: ") and "none" in err[0] and all(line.startswith("  ") for line in err[1:])
    assert not (tmp_path / "t.json").exists()
