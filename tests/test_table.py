"""The table of runs (python -m reproduction table): its plan, the states of its runs, and the local
executor, on synthetic folders and on a tiny two-seed MNIST table; killing the table command or a
run mid-way and running the table again loses no finished epoch and ends with the records of an
uninterrupted table."""
import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from results import attempts, recipes, run_states, table
from results.commands import main
from tests.conftest import ROOT
from tests.table_runs import (EPOCHS, SEEDS, TINY, assert_resumed_without_loss, epochs_done, events, kill_program,
                              numbers, program_pid, record, run_name, run_table, start_table, stop, wait_for)


def one_line_error(capsys, argv, code=2) -> str:
    """The one line ``python -m reproduction ARGV`` ends with (argparse's errors exit from main)."""
    try:
        assert main(argv) == code
    except SystemExit as e:
        assert e.code == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err[len("error: "):].strip()


# --- the plan -----------------------------------------------------------------------------------------

def test_seeds_are_a_count_or_a_list():
    assert table.parse_seeds("3") == 3
    assert table.parse_seeds("1234,1300") == [1234, 1300]
    assert table.parse_seeds("7,") == [7]
    for bad in ("0", "x", "1,1", ","):
        with pytest.raises(table.TableError, match="--seeds"):
            table.parse_seeds(bad)


def test_plan_runs_and_commands(tmp_path):
    # every recipe each program has, each from its own seed (the Torch7 code's is 432)
    t = table.plan(tmp_path / "t", ["mnist", "svhn"], None, 2, ["--epochs", "3", "--train-size", "5000"])
    assert [r.name for r in t.runs] == ["mnist-theano-seed1234", "mnist-theano-seed1235",
                                        "mnist-torch7-seed432", "mnist-torch7-seed433",
                                        "svhn-theano-seed1234", "svhn-theano-seed1235",
                                        "svhn-torch7-seed432", "svhn-torch7-seed433"]
    assert t.command(t.runs[2], resume=False)[-6:-4] == ["--recipe", "torch7"]
    run = t.runs[1]
    assert t.command(run, resume=False) == ["-m", "mnist", "--epochs", "3", "--train-size", "5000",
                                            "--seed", "1235", "--out", "mnist-theano-seed1235"]
    assert t.placement == []
    assert t.command(run, resume=True) == ["-m", "mnist", "--resume", "mnist-theano-seed1235"]
    assert t.run_dir(run) == tmp_path / "t" / "mnist-theano-seed1235"
    assert not (tmp_path / "t").exists()          # planning writes nothing
    listed = table.plan(tmp_path / "u", ["cifar10"], ["theano"], [7, 99], [])
    assert [r.seed for r in listed.runs] == [7, 99]


def test_the_programs_own_parsers_refuse_bad_options_in_one_line(tmp_path, capsys):
    out = str(tmp_path / "t")
    assert "--units 0: must be at least 1" in one_line_error(capsys, ["table", "--out", out, "--units", "0"])
    msg = one_line_error(capsys, ["table", "--out", out, "--datasets", "cifar10", "--architecture", "8C3-MP2"])
    assert msg.startswith("python -m cifar10: --architecture 8C3-MP2: must end with 10FC")
    assert "unrecognized arguments: --bogus" in one_line_error(capsys, ["table", "--out", out, "--bogus", "1"])
    for owned, why in (("--seed", "--seeds"), ("--out=x", "--out"), ("--resume", "resumes"), ("--recipe", "--recipes")):
        argv = ["table", "--out", out, "--datasets", "mnist", "--", owned] if owned == "--out=x" else \
            ["table", "--out", out, "--datasets", "mnist", owned, "x"]
        msg = one_line_error(capsys, argv)
        assert why in msg, msg
    assert "--data-dir names one dataset" in one_line_error(capsys, ["table", "--out", out, "--data-dir", "d"])
    assert "--partition: a Slurm option" in one_line_error(capsys, ["table", "--out", out, "--partition", "gpu"])
    assert "--jobs" in one_line_error(capsys, ["table", "--out", out, "--jobs", "0"])
    assert "no table there" in one_line_error(capsys, ["table", "--out", out, "--status"])
    assert "unrecognized arguments: --epochs" in one_line_error(capsys, ["diff", "--epochs", "3"])
    assert not (tmp_path / "t").exists()


def test_data_dir_is_made_absolute_and_a_table_keeps_its_options(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "moved").mkdir()
    t = table.plan(Path("t"), ["mnist"], ["theano"], 1, ["--data-dir", "data", "--epochs", "2", "--no-download"])
    assert (t.options, t.placement) == (["--epochs", "2"], ["--data-dir", str(tmp_path / "data"), "--no-download"])
    table.save(t)
    saved = json.loads((tmp_path / "t" / "table.json").read_text())
    assert saved == {"format": 1, "datasets": ["mnist"], "recipes": ["theano"], "seeds": 1, "options": ["--epochs", "2"],
                     "placement": t.placement}
    # Given dimensions replace the table's, the others are kept; options are the table's.
    again = table.plan(Path("t"), None, None, 3, ["--data-dir=data", "--epochs", "2"])
    assert [r.name for r in again.runs] == [f"mnist-theano-seed{s}" for s in (1234, 1235, 1236)]
    kept = table.plan(Path("t"), None, None, None, [])
    assert (kept.options, kept.placement) == (t.options, t.placement)
    with pytest.raises(table.TableError, match="a table is one set of options"):
        table.plan(Path("t"), None, None, None, ["--epochs", "3"])
    # Where the data is, is no setting: it may change, and a resumed run is told.
    moved = table.plan(Path("t"), None, None, None, ["--data-dir", "moved", "--progress", "lines"])
    assert moved.options == ["--epochs", "2"]
    assert moved.command(moved.runs[0], resume=True) == ["-m", "mnist", "--resume", "mnist-theano-seed1234",
                                                         "--data-dir", str(tmp_path / "moved"), "--no-download",
                                                         "--progress", "lines"]
    (tmp_path / "t" / "table.json").write_text("{")
    assert "table.json: cannot be read" in one_line_error(capsys, ["table", "--out", "t", "--dry-run"])


def test_torch7_runs_use_the_programs_torch7_dict(tmp_path, monkeypatch):
    """The Torch7 recipe (issue 12): the dict ``torch7`` beside a program's top values, and
    ``--recipe torch7`` in its command, checked by the program's own parser."""
    assert recipes.available("mnist") == ["theano", "torch7"]
    assert recipes.recipe("mnist", "torch7")["num_units"] == 2048 and recipes.recipe("mnist")["num_units"] == 4096
    t = table.plan(tmp_path / "t", ["mnist"], None, 2, ["--epochs", "2"])
    assert [r.name for r in t.runs] == ["mnist-theano-seed1234", "mnist-theano-seed1235",
                                        "mnist-torch7-seed432", "mnist-torch7-seed433"]
    assert t.command(t.runs[2], False) == ["-m", "mnist", "--epochs", "2", "--recipe", "torch7", "--seed", "432",
                                           "--out", "mnist-torch7-seed432"]
    monkeypatch.delattr(recipes.PROGRAMS["svhn"], "torch7")
    with pytest.raises(table.TableError, match="python -m svhn has no torch7 recipe"):
        table.plan(tmp_path / "t", ["mnist", "svhn"], ["torch7"], 1, [])


# --- the states of runs -------------------------------------------------------------------------------

def write_record(folder: Path, status: str, epochs: int = 2, **extra) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"epoch": e, "val_err": 5.0, "test_err": 4.0} for e in range(1, epochs + 1)]
    rec = {"status": status, "epochs": rows, "hyperparameters": {"num_epochs": 10}, "test_err": 4.0,
           "checkpoint": {"epoch": epochs, "batch": 3, "batches": 50}, **extra}
    (folder / "record.json").write_text(json.dumps(rec))


def test_states_from_folders_and_events(tmp_path):
    ev = tmp_path / "events.jsonl"
    state = lambda name, jobs=None: run_states.run_state(tmp_path / name, ev, jobs)  # noqa: E731
    assert state("none").state == "new"
    write_record(tmp_path / "done", "finished", 10)
    s = state("done")
    assert (s.state, s.epoch, s.epochs, s.test_err) == ("finished", 10, 10, 4.0)
    write_record(tmp_path / "nan", "diverged")
    assert state("nan").state == "diverged"
    write_record(tmp_path / "cut", "running", 3)       # a killed program leaves "running"
    s = state("cut")
    assert (s.state, s.epoch, s.batch) == ("interrupted", 3, "3/50")
    write_record(tmp_path / "bad", "failed", error="cannot write checkpoint.h5: no space left on the device")
    assert state("bad").state == "failed" and "no space left" in state("bad").reason

    # The last attempt failed before the program wrote anything: failed, with the program's line.
    attempts.append_event(ev, event="start", pid=1)
    attempts.append_event(ev, event="end", pid=1, exit_code=1, outcome="failed", reason="data: not found")
    assert (state("none").state, state("none").reason) == ("failed", "data: not found")
    # A Slurm job for it: waiting, running, or gone without ever starting the program.
    attempts.append_event(ev, event="submitted", executor="slurm", job="17")
    assert state("none", {"17": "PENDING"}).state == "queued"
    assert state("cut", {"17": "RUNNING"}).state == "running"
    assert state("none", {}).state == "failed" and "Slurm job 17 ended without starting" in state("none", {}).reason
    assert state("done", {"17": "RUNNING"}).state == "finished"
    attempts.append_event(ev, event="start", pid=2, job="17")
    attempts.append_event(ev, event="end", pid=2, job="17", exit_code=-9, outcome="stopped", reason="killed by SIGKILL")
    assert state("cut", {}).state == "interrupted"
    with open(ev, "a") as f:
        f.write('{"event": "end", "pi')                  # a line cut short by a crash is skipped
    assert state("cut", {}).state == "interrupted"


def test_a_process_holding_the_folder_lock_is_running(tmp_path):
    write_record(tmp_path / "run", "running")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], "
                               "os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); print(1, flush=True); "
                               "time.sleep(60)", str(tmp_path / "run" / ".lock")], stdout=subprocess.PIPE)
    try:
        holder.stdout.readline()
        s = run_states.run_state(tmp_path / "run", tmp_path / "ev")
        assert (s.state, s.where) == ("running", f"pid {holder.pid}")
        fd = os.open(tmp_path / "run" / ".lock", os.O_RDWR)   # the probe took no lock: it is still free to try
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
    finally:
        holder.kill()
        holder.wait()
    assert run_states.run_state(tmp_path / "run", tmp_path / "ev").state == "interrupted"


def test_a_local_program_still_starting_is_running(tmp_path):
    """Before it trains, a program holds no lock: its start event, on this machine, alive, says it runs."""
    import socket

    ev = tmp_path / "events.jsonl"
    attempts.append_event(ev, event="start", executor="local", host=socket.gethostname(), pid=os.getpid())
    s = run_states.run_state(tmp_path / "run", ev)
    assert (s.state, s.where) == ("running", f"pid {os.getpid()} (starting)")
    attempts.append_event(ev, event="end", pid=os.getpid(), exit_code=-15, outcome="stopped", reason="")
    assert run_states.run_state(tmp_path / "run", ev).state == "new"


@pytest.mark.parametrize("code, kind", [(0, "finished"), (143, "stopped"), (130, "stopped"), (140, "stopped"),
                                        (-9, "stopped"), (-15, "stopped"), (1, "failed"), (2, "failed"),
                                        (-11, "failed")])
def test_outcome_of_an_exit_code(code, kind):
    assert attempts.outcome(code) == kind


def test_reason_is_the_programs_last_error_line(tmp_path):
    log = tmp_path / "log"
    log.write_text("Epoch 1\nerror: first\n  detail\nerror: --data-dir x: not a folder\n  more detail\n")
    assert attempts.reason(log, 2) == "--data-dir x: not a folder"
    assert attempts.reason(tmp_path / "none", -9) == "killed by SIGKILL"
    assert attempts.reason(tmp_path / "none", 3) == "exit code 3"



def test_a_finished_run_is_reported_with_the_epoch_its_test_error_comes_from():
    from results.executor_local import _ended

    epochs = [{"epoch": e} for e in range(1, 21)]
    theano = {"test_err": 4.08, "best_epoch": 19, "test_epoch": 19, "epochs": epochs}
    torch7 = {"test_err": 4.83, "best_epoch": 13, "test_epoch": 20, "epochs": epochs}   # the last epoch's
    assert _ended("a", {"outcome": "finished"}, theano) == "finished  a: test error 4.08 % (epoch 19 of 20)"
    assert _ended("b", {"outcome": "finished"}, torch7) == "finished  b: test error 4.83 % (epoch 20 of 20)"

# --- the local executor on a tiny MNIST table ---------------------------------------------------------

def test_a_finished_table_is_left_alone(tiny_reference):
    """Re-running a finished table starts nothing and changes no file; --status and --dry-run say so."""
    folder = tiny_reference.folder
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    again = run_table("--out", str(folder))
    assert again.returncode == 0 and "2 finished; 0 to run" in again.stdout, again.stdout + again.stderr
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == before
    status = run_table("--out", str(folder), "--status")
    assert status.returncode == 0
    for seed in SEEDS:
        assert f"{run_name(seed)}  finished  {EPOCHS}/{EPOCHS}" in status.stdout
    dry = run_table("--out", str(folder), "--dry-run")
    assert f"{run_name(SEEDS[0])}: finished; left alone" in dry.stdout
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == before


def test_killing_a_run_and_the_table_loses_no_finished_epoch(tiny_reference, tmp_path):
    """Two runs at a time; one program is killed outright (SIGKILL) mid-run, then the table command
    is stopped (SIGTERM), which stops the other at its next batch; the table run again resumes both
    to the records of the uninterrupted table."""
    folder = tmp_path / "t"
    first, second = run_name(SEEDS[0]), run_name(SEEDS[1])
    table_process = start_table("--out", str(folder), "--datasets", "mnist", "--seeds", "2", "--jobs", "2", *TINY,
                                log=tmp_path / "table.log")
    try:
        wait_for(lambda: epochs_done(folder, second) >= 1 and epochs_done(folder, first) >= 1, 120,
                 "both runs finished no epoch")
        busy = run_table("--out", str(folder))
        assert busy.returncode == 2 and "another table command is running this table" in busy.stderr
        kill_program(program_pid(folder, second))
        killed_after = epochs_done(folder, second)
        wait_for(lambda: [e for e in events(folder, second) if e["event"] == "end"], 30, "the kill was not seen")
        table_process.send_signal(signal.SIGTERM)
        stopped_after = epochs_done(folder, first)
        assert table_process.wait(60) == 128 + signal.SIGTERM
    finally:
        stop(table_process)
    output = (tmp_path / "table.log").read_text()
    assert f"stopped   {second} (killed by SIGKILL)" in output
    assert f"stopped   {first} (SIGTERM: stopped at" in output, output
    assert record(folder, first)["status"] == "interrupted"
    assert epochs_done(folder, first) < EPOCHS, "the run ended before the table was stopped: no test"

    status = run_table("--out", str(folder), "--status")
    assert f"{first}  interrupted" in status.stdout and f"{second}  interrupted" in status.stdout
    dry = run_table("--out", str(folder), "--dry-run")
    assert f"command  python -m mnist --resume {first}" in dry.stdout

    again = run_table("--out", str(folder), "--jobs", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 interrupted; 2 to run" in again.stdout
    for name, before in ((first, stopped_after), (second, killed_after)):
        rec = record(folder, name)
        assert rec["status"] == "finished"
        assert_resumed_without_loss(folder, name, [before])
        assert numbers(rec) == numbers(tiny_reference[name])


def test_a_killed_table_command_stops_its_programs(tmp_path):
    """SIGKILL leaves the table no time to pass anything on: the kernel sends each program SIGTERM
    (PR_SET_PDEATHSIG), on which a program checkpoints and stops as when the table passes it on
    (the test above). Shown with a stand-in program that notes the signal."""
    heard = tmp_path / "heard"
    program = ("import signal, sys, time; signal.signal(signal.SIGTERM, lambda s, f: (open(sys.argv[1], 'w')"
               ".write(signal.Signals(s).name), sys.exit(143))); print('up', flush=True); time.sleep(60)")
    parent = ("import sys; from pathlib import Path; from results import attempts; "
              "p = attempts.start(sys.executable, ['-c', sys.argv[1], sys.argv[2]], Path(sys.argv[3]), "
              "Path(sys.argv[3]) / 'log', Path(sys.argv[3]) / 'events', 'local', own_group=True); "
              "print(p.pid, flush=True); p.wait()")
    table_like = subprocess.Popen([sys.executable, "-c", parent, program, str(heard), str(tmp_path)], cwd=ROOT,
                                  stdout=subprocess.PIPE, text=True)
    child = int(table_like.stdout.readline())
    wait_for(lambda: "up" in (tmp_path / "log").read_text().splitlines(), 30, "the child did not start")
    table_like.kill()
    table_like.wait()
    # The handler creates the file, then writes it: wait for the words, not the file.
    wait_for(lambda: heard.exists() and heard.read_text(), 10, "the child did not hear of its parent's death")
    assert heard.read_text() == "SIGTERM"
    wait_for(lambda: _stopped(child), 10, "the child did not stop")


def _stopped(pid: int) -> bool:
    """The process is gone or a zombie (its status may vanish between two reads when it is reaped)."""
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def test_a_failed_run_is_reported_and_retried_only_when_asked(tmp_path):
    empty = tmp_path / "no-data"
    empty.mkdir()
    folder = tmp_path / "t"
    args = ("--out", str(folder), "--datasets", "mnist", "--recipes", "theano", "--units", "32", "--hidden-layers", "1",
            "--data-dir", str(empty), "--no-download")
    first = run_table(*args)
    assert first.returncode == 1
    name = run_name(1234)
    assert f"failed    {name}: " in first.stdout and str(empty) in first.stdout
    assert not (folder / name).exists()               # the program removed the folder it had made
    again = run_table(*args)
    assert again.returncode == 1 and "1 failed; 0 to run" in again.stdout
    assert "(not retried: --retry-failed runs it again)" in again.stdout
    starts = lambda: sum(e["event"] == "start" for e in events(folder, name))  # noqa: E731
    assert starts() == 1
    retried = run_table(*args, "--retry-failed")
    assert retried.returncode == 1 and starts() == 2
