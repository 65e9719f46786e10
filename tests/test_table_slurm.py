"""The table on a real Slurm cluster (tests/slurm_cluster.py): a tiny two-seed MNIST table through
``--executor slurm``, with one job requeued (``scontrol requeue``: Slurm's SIGTERM, as for a
preemption), the other warned of its time limit (SIGUSR2, which Slurm sends ``--signal-delay``
seconds before a job's end: submitit then waits for the checkpoint and requeues) and then killed
outright, the table command killed and the cluster's daemons stopped mid-way; running the table
again ends with the records of the same table run without interruption, no finished epoch lost."""
from tests.slurm_cluster import SlurmCluster
from tests.table_runs import (EPOCHS, SEEDS, TINY, assert_resumed_without_loss, epochs_done, events, numbers, record,
                              run_name, run_table, start_table, stop, wait_for)


def job_of(folder, run) -> str:
    return [e["job"] for e in events(folder, run) if e["event"] == "submitted"][-1]


def starts(folder, run) -> list[dict]:
    return [e for e in events(folder, run) if e["event"] == "start"]


def test_a_two_seed_table_on_slurm_resumes_through_every_interruption(slurm_cluster: SlurmCluster, tiny_reference,
                                                                      tmp_path):
    cluster, folder = slurm_cluster, tmp_path / "t"
    first, second = run_name(SEEDS[0]), run_name(SEEDS[1])
    args = ("--out", str(folder), "--datasets", "mnist", "--seeds", "2", "--executor", "slurm", "--time", "10",
            "--cpus-per-job", "1", *TINY)
    waiting = start_table(*args, "--wait", "--poll", "0.5", log=tmp_path / "wait.log")
    try:
        # First run: requeued by Slurm after its first epoch.
        wait_for(lambda: epochs_done(folder, first) >= 1, 120, f"{first} finished no epoch")
        cluster.command("scontrol", "requeue", job_of(folder, first))
        requeued_after = epochs_done(folder, first)
        assert requeued_after < EPOCHS, f"{first} ended before its requeue: no test"
        # Second run: the time limit's warning, then (once it runs again) killed outright.
        wait_for(lambda: epochs_done(folder, second) >= 1, 120, f"{second} finished no epoch")
        cluster.command("scancel", "--signal=USR2", job_of(folder, second))
        warned_after = epochs_done(folder, second)
        wait_for(lambda: len(starts(folder, second)) == 2, 60, f"{second} was not requeued after SIGUSR2")
        wait_for(lambda: (record(folder, second) or {}).get("resumed"), 60, f"{second} did not resume")
        cluster.command("scancel", "--signal=KILL", "--full", job_of(folder, second))
        killed_after = epochs_done(folder, second)
        # The table command killed, then the cluster's daemons stopped.
        waiting.kill()
        waiting.wait(30)
    finally:
        stop(waiting)
    cluster.stop_daemons()
    try:
        refused = run_table(*args)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stdout + refused.stderr
        assert "nothing is started until Slurm answers" in refused.stderr
        status = run_table("--out", str(folder), "--status")
        assert status.returncode == 0 and status.stdout.startswith("warning: squeue failed")
    finally:
        cluster.start_daemons()

    done = run_table(*args, "--wait", "--poll", "0.5")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"submitted {second} (resume;" in done.stdout and f"submitted {first}" not in done.stdout
    assert [e["event"] for e in events(folder, first)].count("submitted") == 1
    assert [e["event"] for e in events(folder, second)].count("submitted") == 2

    assert [s["restart"] for s in starts(folder, first)] == [0, 1]
    assert_resumed_without_loss(folder, first, [requeued_after])
    assert numbers(record(folder, first)) == numbers(tiny_reference[first])
    assert [s["restart"] for s in starts(folder, second)] == [0, 1, 0]
    assert_resumed_without_loss(folder, second, [warned_after, killed_after])
    assert numbers(record(folder, second)) == numbers(tiny_reference[second])
    log = (tmp_path / "wait.log").read_text()
    assert f"{first}: queued" in log and f"{first}: running" in log


def test_slurm_refusals_and_failed_programs_are_one_line(slurm_cluster: SlurmCluster, tmp_path):
    folder = tmp_path / "t"
    bad = run_table("--out", str(folder), "--datasets", "mnist", "--executor", "slurm", "--partition", "nowhere",
                    "--units", "32")
    assert bad.returncode == 2 and bad.stderr.startswith("error: sbatch refused the job of mnist-theano-seed1234: ")
    assert "partition" in bad.stderr and bad.stderr.count("\n") == 1
    empty = tmp_path / "no-data"
    empty.mkdir()
    failing = run_table("--out", str(tmp_path / "u"), "--datasets", "mnist", "--executor", "slurm", "--wait",
                        "--poll", "0.5", "--units", "32", "--data-dir", str(empty), "--no-download")
    assert failing.returncode == 1
    line = next(line for line in failing.stdout.splitlines() if line.startswith("mnist-theano-seed1234  failed"))
    assert str(empty) in line
