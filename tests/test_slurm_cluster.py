"""What the table's Slurm executor (issue 13) relies on, shown on a real local Slurm cluster.

The jobs are submitted with submitit. The training program is stood in for by `toy_program`
below (run as `python -m tests.test_slurm_cluster`), which behaves as the real programs do with
`--out`/`--resume`: a checkpoint after every epoch, written atomically, from which a resumed run
continues with the same numbers as a run never interrupted. It also logs every signal it receives,
which is how these tests measure what reaches a job's process when Slurm requeues it, preempts it
or reaches its time limit.

`ResumableRun` is the mechanism a table job uses: a submitit Checkpointable that runs the program
with `--resume` when its run folder holds a checkpoint, else with `--out`. Slurm requeues a job
after `scontrol requeue` or a preemption by itself; before a time limit, submitit's handler of the
`--signal` warning (SIGUSR2) requeues it. Either way the job runs again from the start and the
program resumes from its own files.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import submitit

from tests.slurm_cluster import REQUIRE_ENV, SlurmCluster, skip_unless_required, unavailable_reason

# Not tests.conftest.ROOT: importing conftest imports the package (PyTensor), which a job need not.
ROOT = Path(__file__).resolve().parents[1]
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


# --- the stand-in for a training program ------------------------------------------------------------

def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _log(run_dir: Path, **event) -> None:
    event.update(t=time.time(), pid=os.getpid())
    with open(run_dir / "events.jsonl", "a") as log:
        log.write(json.dumps(event) + "\n")


def toy_program(argv: list[str]) -> None:
    """`--epochs N --epoch-seconds S (--out DIR | --resume DIR)`: N "epochs" of S seconds, each
    drawing a number from a seeded generator; checkpoint.json (epoch, generator, record) and
    record.json after each. On SIGTERM or SIGUSR2 it stops at the end of the current sleep step,
    abandoning the unfinished epoch, marks the record interrupted and dies of that signal."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--epoch-seconds", type=float, required=True)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path)
    where.add_argument("--resume", type=Path)
    args = parser.parse_args(argv)
    run_dir = args.resume or args.out
    run_dir.mkdir(parents=True, exist_ok=True)
    stop = []

    def on_signal(signum, frame):
        _log(run_dir, signal=signal.Signals(signum).name)
        if signum != signal.SIGCONT:
            stop.append(signum)

    for sig in (signal.SIGTERM, signal.SIGUSR2, signal.SIGUSR1, signal.SIGCONT, signal.SIGINT):
        signal.signal(sig, on_signal)
    rng = random.Random(1234)
    record = {"status": "running", "epochs": []}
    if args.resume:
        checkpoint = json.loads((run_dir / "checkpoint.json").read_text())
        rng.setstate((checkpoint["rng"][0], tuple(checkpoint["rng"][1]), checkpoint["rng"][2]))
        record = checkpoint["record"]
    _log(run_dir, start=len(record["epochs"]), restarts=os.environ.get("SLURM_RESTART_COUNT"),
         job=os.environ.get("SLURM_JOB_ID"))
    for epoch in range(len(record["epochs"]) + 1, args.epochs + 1):
        end = time.monotonic() + args.epoch_seconds
        while time.monotonic() < end and not stop:
            time.sleep(0.01)
        if stop:
            record["status"] = "interrupted"
            _write_json(run_dir / "record.json", record)
            signal.signal(stop[0], signal.SIG_DFL)
            os.kill(os.getpid(), stop[0])
        record["epochs"].append({"epoch": epoch, "value": rng.random()})
        if epoch == args.epochs:
            record["status"] = "finished"
        _write_json(run_dir / "checkpoint.json", {"rng": rng.getstate(), "record": record})
        _write_json(run_dir / "record.json", record)
        _log(run_dir, epoch=epoch)


def toy_command(epochs: int, epoch_seconds: float) -> list[str]:
    return [sys.executable, "-m", "tests.test_slurm_cluster",
            "--epochs", str(epochs), "--epoch-seconds", str(epoch_seconds)]


def reference_record(run_dir: Path, epochs: int) -> dict:
    """The record of the same run never interrupted (no sleeping: the numbers do not depend on it)."""
    subprocess.run([*toy_command(epochs, 0), "--out", str(run_dir)], cwd=ROOT, check=True)
    return json.loads((run_dir / "record.json").read_text())


def events(run_dir: Path) -> list[dict]:
    path = run_dir / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout} s")


# --- what a table job runs ---------------------------------------------------------------------------

class ResumableRun(submitit.helpers.Checkpointable):
    """One table job: the program with `--resume DIR` when DIR holds a checkpoint, else `--out DIR`.

    Its return value, submitit's result, is the finished run's record. When the program was stopped
    by a signal, Slurm is ending this job (requeue, preemption, cancellation): the process leaves
    without a result, so that submitit's result file only ever holds the run's real end. Being
    Checkpointable, the job is requeued by submitit's SIGUSR2 handler before its time limit; the
    default `checkpoint()` resubmits this same object, which resumes from the run folder."""

    def __init__(self, command: list[str], run_dir: Path):
        self.command = command
        self.run_dir = run_dir

    def __call__(self) -> dict:
        resume = (self.run_dir / "checkpoint.json").exists()
        done = subprocess.run([*self.command, "--resume" if resume else "--out", str(self.run_dir)], cwd=ROOT)
        record = json.loads((self.run_dir / "record.json").read_text())
        if record["status"] == "finished":
            return record
        if done.returncode < 0 or record["status"] == "interrupted":
            os._exit(1)
        raise RuntimeError(f"{self.run_dir}: the program failed with exit status {done.returncode}")


def job_facts() -> dict:
    return {"job_id": os.environ["SLURM_JOB_ID"], "partition": os.environ["SLURM_JOB_PARTITION"],
            "cwd": os.getcwd()}


def executor(cluster: SlurmCluster, folder: Path, **parameters) -> submitit.AutoExecutor:
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    # chdir: the job unpickles classes of this module, so `tests` must be importable there.
    ex.update_parameters(slurm_partition=cluster.partition, timeout_min=5,
                         slurm_additional_parameters={"chdir": str(ROOT)}, **parameters)
    return ex


# --- the tests ----------------------------------------------------------------------------------------

def test_without_slurm_the_tests_skip_saying_why_unless_ci_requires_them(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    reason = unavailable_reason()
    assert reason is not None and "apt-get install slurm-wlm munge" in reason
    if os.geteuid() == 0:
        assert reason.startswith("Slurm is not installed here (no munged, slurmctld, slurmd, sbatch")
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="Slurm|root"):
        skip_unless_required(reason)
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=f"{REQUIRE_ENV}=1 but no Slurm cluster can run here"):
        skip_unless_required(reason)


def test_function_job_returns_its_result(slurm_cluster: SlurmCluster):
    job = executor(slurm_cluster, slurm_cluster.scratch / "function").submit(job_facts)
    assert slurm_cluster.wait_for_state(job.job_id, ENDED, 30) == "COMPLETED"
    assert job.result() == {"job_id": job.job_id, "partition": slurm_cluster.partition, "cwd": str(ROOT)}
    # Without an accounting database sacct fails, so submitit cannot tell a job's state; slurmctld
    # can (above), for MinJobAge after the job ends.
    assert job.state == "UNKNOWN"


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_process_ignoring_sigterm_is_killed_kill_wait_later(slurm_cluster: SlurmCluster):
    """A program run as submitit runs it (a job step started by srun in the batch script) has
    KillWait seconds between Slurm's SIGTERM and its SIGKILL, even when its launcher died first.
    (A process started by the batch script itself is killed as soon as the script ends.)"""
    pid_file = slurm_cluster.scratch / "ignoring.pid"
    program = ("import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
               f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)")
    job_id = slurm_cluster.command("sbatch", "--parsable", "--output=/dev/null",
                                   f"--wrap=srun {sys.executable} -c {shlex.quote(program)}").strip()
    wait_for(lambda: pid_file.exists() and pid_file.read_text(), 30, "the job did not start")
    pid = int(pid_file.read_text())
    cancelled = time.time()
    slurm_cluster.command("scancel", job_id)
    wait_for(lambda: not _alive(pid), slurm_cluster.kill_wait_s + 15, f"process {pid} still alive")
    waited = time.time() - cancelled
    assert slurm_cluster.kill_wait_s - 1 < waited < slurm_cluster.kill_wait_s + 5
    assert slurm_cluster.wait_for_state(job_id, ENDED, 30) == "CANCELLED"
    print(f"\nSIGKILL {waited:.1f} s after scancel (KillWait={slurm_cluster.kill_wait_s})")


@pytest.mark.parametrize("interruption", ["requeue", "preemption"])
def test_interrupted_job_resumes_to_the_uninterrupted_record(slurm_cluster: SlurmCluster, interruption):
    cluster, epochs = slurm_cluster, 15
    folder = cluster.scratch / f"resume-{interruption}"
    run_dir = folder / "run"
    expected = reference_record(folder / "reference", epochs)
    # exclusive: the whole node, so that the urgent job must preempt this one.
    job = executor(cluster, folder / "submitit", slurm_exclusive=True).submit(
        ResumableRun(toy_command(epochs, 0.3), run_dir))
    wait_for(lambda: any(e.get("epoch") == 3 for e in events(run_dir)), 60, "epoch 3 not reached")
    interrupted = time.time()
    if interruption == "requeue":
        cluster.command("scontrol", "requeue", job.job_id)
    else:
        urgent = cluster.command("sbatch", "--parsable", f"--partition={cluster.urgent_partition}",
                                 "--exclusive", "--output=/dev/null", "--wrap=sleep 1").strip()
    assert cluster.wait_for_state(job.job_id, ENDED, 90) == "COMPLETED"
    record = job.result()

    assert record == expected
    log = events(run_dir)
    starts = [e for e in log if "start" in e]
    assert [s["restarts"] for s in starts] == [None, "1"]
    first, second = starts
    # Slurm sends SIGTERM (and SIGCONT) to every process of the job, the program included; no
    # SIGUSR2: the --signal warning is for time limits (preemption sends it only under
    # SlurmctldParameters=preempt_send_user_signal).
    heard = [e["signal"] for e in log if "signal" in e and first["t"] < e["t"] < second["t"]]
    assert "SIGTERM" in heard and set(heard) <= {"SIGTERM", "SIGCONT"}
    assert second["start"] >= 3
    # Every epoch was finished exactly once: none lost, none redone.
    assert [e["epoch"] for e in log if "epoch" in e] == list(range(1, epochs + 1))
    if interruption == "preemption":
        assert cluster.job_state(urgent) == "COMPLETED"
    print(f"\n{interruption}: the job ran again {second['t'] - interrupted:.1f} s later")


def test_time_limit_warning_requeues_a_checkpointable_job(slurm_cluster: SlurmCluster):
    """submitit asks for `--signal=USR2@<signal_delay_s>`; Slurm sends SIGUSR2 that long before the
    job's end time (checked every 30 s), to every process of the job; submitit's handler then
    requeues the job itself. The end time is moved close with `scontrol update EndTime` rather
    than waited for."""
    cluster, epochs = slurm_cluster, 400
    folder = cluster.scratch / "timeout"
    run_dir = folder / "run"
    expected = reference_record(folder / "reference", epochs)
    job = executor(cluster, folder / "submitit", slurm_signal_delay_s=60).submit(
        ResumableRun(toy_command(epochs, 0.1), run_dir))
    wait_for(lambda: any(e.get("epoch") == 2 for e in events(run_dir)), 60, "epoch 2 not reached")
    # Inside the warning window at once, and not at the end before the next 30 s check.
    end = datetime.datetime.now() + datetime.timedelta(seconds=45)
    cluster.command("scontrol", "update", f"JobId={job.job_id}", f"EndTime={end:%Y-%m-%dT%H:%M:%S}")
    moved = time.time()
    wait_for(lambda: any(e.get("start", 0) > 0 and e.get("restarts") == "1" for e in events(run_dir)),
             80, "the job did not run again")
    log = events(run_dir)
    second = next(e for e in log if e.get("restarts") == "1")
    wait_for(lambda: any(e.get("epoch", 0) >= second["start"] + 2 for e in events(run_dir)), 30,
             "the requeued job did not go on")
    cluster.command("scancel", job.job_id)
    assert cluster.wait_for_state(job.job_id, ENDED, 30) == "CANCELLED"

    log = events(run_dir)
    signals = [e for e in log if "signal" in e and e["t"] < second["t"]]
    # The program hears SIGUSR2 first (submitit then requeues, which sends SIGTERM).
    assert [e["signal"] for e in signals if e["signal"] != "SIGCONT"][0] == "SIGUSR2"
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "interrupted"
    assert record["epochs"] == expected["epochs"][:len(record["epochs"])]
    assert len(record["epochs"]) >= second["start"] + 2
    usr2 = signals[0]["t"]
    print(f"\nSIGUSR2 {usr2 - moved:.1f} s after the end time was moved; ran again {second['t'] - usr2:.1f} s later")


def test_running_job_survives_restarted_daemons(slurm_cluster: SlurmCluster):
    """slurmctld and slurmd stopped mid-job and started again: the job goes on, once, to its end."""
    cluster, epochs = slurm_cluster, 20
    folder = cluster.scratch / "daemons"
    run_dir = folder / "run"
    expected = reference_record(folder / "reference", epochs)
    job = executor(cluster, folder / "submitit").submit(ResumableRun(toy_command(epochs, 0.2), run_dir))
    wait_for(lambda: any(e.get("epoch") == 2 for e in events(run_dir)), 60, "epoch 2 not reached")
    cluster.stop_daemons()
    time.sleep(1)
    cluster.start_daemons()
    assert cluster.wait_for_state(job.job_id, ENDED, 60) == "COMPLETED"
    assert job.result() == expected
    assert len([e for e in events(run_dir) if "start" in e]) == 1


if __name__ == "__main__":
    toy_program(sys.argv[1:])
