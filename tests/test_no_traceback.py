"""The one-line guarantee, end to end, as a user meets it: every program and subcommand run as a
process, a bad input ends in one line on stderr and a non-zero exit, never a traceback; a closed
pipe ends quietly. (The in-process tests of each case are beside the code: test_options.py,
test_run_folder.py, test_mnist_program.py, test_conv_programs.py, test_compare.py, ...)"""
import os
import subprocess
import sys

import pytest

from reproduction.options import OptionError
from reproduction.program import ONE_LINE, one_line_errors
from reproduction.dataset import DataError
from tests.conftest import ROOT

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}


def run(*argv, cwd=ROOT):
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("argv, code, words", [
    (["-m", "mnist", "--epochs", "0"], 2, "--epochs 0"),
    (["-m", "cifar10", "--architecture", "16C3-MP2"], 2, "must end with 10FC"),
    (["-m", "svhn", "--resume", "nowhere"], 2, "--resume nowhere: no such folder"),
    (["-m", "mnist", "--data-dir", "no-such-dir", "--no-download", "--units", "8", "--out", "{tmp}/run"], 1,
     "MNIST file missing; downloading is off"),
    (["-m", "reproduction", "diff", "no-such-record.json"], 2, "no-such-record.json: not found"),
    (["-m", "reproduction", "--paper", "README.md", "summary"], 2, "--paper"),
    (["-m", "reproduction", "summary", "--params", "README.md"], 2, "cannot open as HDF5"),
    (["-m", "reproduction", "filters", "nothing.h5"], 2, "nothing.h5: not found"),
])
def test_bad_input_ends_in_one_line_without_a_traceback(tmp_path, argv, code, words):
    result = run(*[a.format(tmp=tmp_path) for a in argv])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == code and len(errors) == 1 and words in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert all(line.startswith(("error: ", "  ")) for line in result.stderr.splitlines()), result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", [["diff"], ["summary"]])
def test_a_closed_pipe_ends_quietly(command):
    # `python -m reproduction diff | head -1`: the reader has gone before the table is written.
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([sys.executable, "-m", "reproduction", *command], cwd=ROOT, env=ENV, stdout=write,
                                stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write)
    assert result.stderr == "" and result.returncode == 141


def test_diff_from_a_folder_holding_results_runs(tmp_path):
    # The programs write results/runs under the current folder; that folder (not a package) must
    # not hide the results package from python -m reproduction.
    (tmp_path / "results" / "runs").mkdir(parents=True)
    result = run("-m", "reproduction", "diff", cwd=tmp_path)
    assert result.returncode == 0 and "no record" in result.stdout, result.stderr


def test_the_current_folder_leaves_the_path_only_when_its_results_is_not_the_package(tmp_path, monkeypatch):
    import reproduction as entry

    (tmp_path / "results").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), "", "/elsewhere"])
    entry.look_past_the_current_folder()
    assert sys.path == ["/elsewhere"]
    (tmp_path / "results" / "__init__.py").write_text("")    # a checkout: its results/ is the package
    monkeypatch.setattr(sys, "path", [str(tmp_path), "/elsewhere"])
    entry.look_past_the_current_folder()
    assert sys.path == [str(tmp_path), "/elsewhere"]


def test_the_one_place_that_maps_exceptions_to_one_line(capsys):
    class Args:
        debug = False
        out = None
        dataset = "mnist"

    for error, code in [(DataError("f: bad"), 1), (OptionError("--x 1: bad"), 2),
                        (PermissionError(13, "Permission denied", "/p"), 1), (MemoryError(), 1)]:
        with pytest.raises(SystemExit) as e:
            with one_line_errors(Args()):
                raise error
        assert e.value.code == code
    assert capsys.readouterr().err.splitlines() == ["error: f: bad", "error: --x 1: bad",
                                                    "error: /p: Permission denied", "error: out of memory"]
    with pytest.raises(SystemExit) as e:
        with one_line_errors(Args()):
            raise KeyboardInterrupt
    assert e.value.code == 130 and "nothing was trained" in capsys.readouterr().err
    Args.debug = True
    with pytest.raises(DataError):
        with one_line_errors(Args()):
            raise DataError("f: bad")
    with pytest.raises(ZeroDivisionError):       # a bug is not a known reason: its traceback shows
        with one_line_errors():
            1 / 0
    assert set(ONE_LINE) >= {DataError, OptionError, OSError}
