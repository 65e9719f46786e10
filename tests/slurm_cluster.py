"""A real single-node Slurm cluster on localhost, for the tests of the Slurm executor (issue 13).

`start_cluster(folder)` writes a private munge key and a slurm.conf into `folder`, starts munged,
slurmctld and slurmd there as root (no systemd, no cgroups, no accounting database), waits until the
node answers, yields a `SlurmCluster` and stops everything afterwards: every job is cancelled and
reaped, then each daemon is stopped by its PID. Nothing is shared with a system Slurm or munge: the
munge socket lives in `folder` and both Slurm ports are picked free, so a machine's own cluster, or a
second test session, does not collide with it.

`slurm_cluster` is the same as a session-scoped pytest fixture, which also points `SLURM_CONF` at the
cluster for the session, so that submitit and every Slurm command the tests start find it. It skips,
saying why, where no cluster can run (not root, Slurm or munge not installed), unless
`BNN_REQUIRE_SLURM=1` (which `.ci/run` sets after installing them): then it fails instead.

Settings chosen for fast tests (`slurm_conf`): the scheduler runs at once on submission
(`batch_sched_delay=0`, `sched_interval=1`); a requeued job may start again `cred_expire` + 1 s
after the requeue (5 s here, 120 s by default); `KillWait`, the grace between SIGTERM and SIGKILL
when Slurm ends a job, is 5 s (30 s by default). Jobs of the default partition are requeued when a
job of the `urgent` partition needs their CPUs (preemption). Slurm checks time limits, and sends
`--signal` warnings, every 30 s whatever the settings.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, NoReturn

import pytest

REQUIRE_ENV = "BNN_REQUIRE_SLURM"
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "scontrol", "scancel", "sinfo")
INSTALL_HINT = "install Debian's slurm-wlm and munge (apt-get install slurm-wlm munge) and run the tests as root"
KILL_WAIT_S = 5
CRED_EXPIRE_S = 5
START_TIMEOUT_S = 30.0
# Unix socket paths (munge's, slurmstepd's in the spool folder) must stay under 108 bytes.
MAX_FOLDER_CHARS = 64
# Job states in which a job still holds, or will hold, processes or a place in the queue.
ACTIVE_STATES = frozenset({"PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "REQUEUED",
                           "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT",
                           "SUSPENDED", "STOPPED"})
# Node states (sinfo %t) of a node that answers slurmctld; a trailing '*' means it does not.
ANSWERING_NODE_STATES = frozenset({"idle", "alloc", "mix", "comp"})


@dataclass(frozen=True)
class SlurmCluster:
    """A running cluster: its configuration, its partitions, and a folder its jobs can see.

    `partition` is the default partition; its jobs are requeued (preempted) when a job submitted to
    `urgent_partition` needs their CPUs. `env` is os.environ plus `SLURM_CONF`, for client processes.
    """

    folder: Path
    conf: Path
    node: str
    cpus: int
    partition: str
    urgent_partition: str
    scratch: Path
    kill_wait_s: int
    cred_expire_s: int
    daemons: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False, compare=False)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def command(self, *args: str, check: bool = True) -> str:
        """Runs one Slurm client command (`sbatch`, `scontrol`, ...) on this cluster; its stdout."""
        done = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def job_state(self, job_id: str) -> str:
        """The job's state as slurmctld knows it (`scontrol show job`); '' once it is forgotten.

        Without an accounting database this is the only source of job states, and slurmctld
        forgets a job MinJobAge (300 s) after it ends."""
        out = self.command("scontrol", "-o", "show", "job", str(job_id), check=False)
        for item in out.split():
            if item.startswith("JobState="):
                return item.split("=", 1)[1]
        return ""

    def wait_for_state(self, job_id: str, states: set[str], timeout: float) -> str:
        """Polls `job_state` until it is one of `states`; returns it, or AssertionError at `timeout`."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state in states:
                return state
            time.sleep(0.1)
        raise AssertionError(f"Slurm job {job_id} still {state or 'unknown'} after {timeout} s, "
                             f"expected {sorted(states)}")

    def jobs(self) -> dict[str, str]:
        """Every job slurmctld still holds, finished ones included: id -> state."""
        out = self.command("squeue", "-h", "-t", "all", "-o", "%i %T")
        return dict(line.split() for line in out.splitlines() if line.strip())

    def start_daemons(self) -> None:
        """Starts whichever of munged, slurmctld and slurmd is not running; waits until the node
        answers. slurmctld recovers its jobs from its state folder, so this also restarts a
        cluster after `stop_daemons`."""
        if _running(self.daemons.get("munged")) is None:
            socket_path = self.folder / "munge.socket"
            socket_path.unlink(missing_ok=True)
            self._spawn("munged", "--foreground", "--force", f"--socket={socket_path}",
                        f"--key-file={self.folder / 'munge.key'}", f"--pid-file={self.folder / 'munged.pid'}",
                        f"--log-file={self.folder / 'munged.log'}", f"--seed-file={self.folder / 'munged.seed'}")
            self._wait(socket_path.exists, "munged did not open its socket")
        if _running(self.daemons.get("slurmctld")) is None:
            self._spawn("slurmctld", "-D", "-i", "-f", str(self.conf))
        if _running(self.daemons.get("slurmd")) is None:
            self._spawn("slurmd", "-D", "-f", str(self.conf))

        def answering() -> bool:
            states = self.command("sinfo", "-h", "-o", "%t", check=False).split()
            return bool(states) and ANSWERING_NODE_STATES.issuperset(states)

        self._wait(answering, "the node did not answer slurmctld")

    def stop_daemons(self, sig: int = signal.SIGTERM) -> None:
        """Stops slurmctld and slurmd by PID, leaving munged and the jobs' processes running;
        `start_daemons` brings the cluster back, the running jobs going on. SIGTERM is an orderly
        stop (slurmctld saves its state). SIGKILL is a crash, and slurmctld saves a job's start
        lazily: killed 1 s or 7 s after a job started, it came back with the job PENDING, found
        the job's processes still running, and drained the node ("Duplicate jobid") and held the
        job ("launch failed requeued held"), which only an administrator clears."""
        for name in ("slurmd", "slurmctld"):
            _stop(self.daemons.pop(name, None), sig)

    def _spawn(self, *args: str) -> None:
        with open(self.folder / f"{args[0]}.out", "ab") as out:
            self.daemons[args[0]] = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=self.env,
                start_new_session=True, preexec_fn=_die_with_parent)

    def _wait(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            for name, process in self.daemons.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log_tails()}")
            if condition():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{what} within {START_TIMEOUT_S} s:\n{self.log_tails()}")

    def log_tails(self, lines: int = 15) -> str:
        """The last lines of each daemon's log, for error messages."""
        tails = []
        for log in sorted(self.folder.glob("*.log")) + sorted(self.folder.glob("*.out")):
            tails.append(f"--- {log}:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(tails)


def unavailable_reason() -> str | None:
    """Why no cluster can be started here, or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return f"a local Slurm cluster needs root to start munged, slurmctld and slurmd; {INSTALL_HINT}"
    missing = [name for name in DAEMONS + CLIENTS if shutil.which(name) is None]
    if missing:
        return f"Slurm is not installed here (no {', '.join(missing)} on PATH); {INSTALL_HINT}"
    return None


def skip_unless_required(reason: str) -> NoReturn:
    """Skips the test saying why; fails it instead where BNN_REQUIRE_SLURM=1 (CI installs Slurm)."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but no Slurm cluster can run here: {reason}", pytrace=False)
    pytest.skip(reason)


def slurm_conf(folder: Path, node: str, cpus: int, ports: tuple[int, int]) -> str:
    """slurm.conf of a one-node cluster that needs no cgroups, no systemd and no database."""
    memory = max(_memory_mb() - 1024, 512)
    lines = [
        "ClusterName=bnntest",
        f"SlurmctldHost={node}(127.0.0.1)",
        f"SlurmctldPort={ports[0]}",
        f"SlurmdPort={ports[1]}",
        "SlurmUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=cred_expire={CRED_EXPIRE_S},socket={folder / 'munge.socket'}",
        f"StateSaveLocation={folder / 'state'}",
        f"SlurmdSpoolDir={folder / 'spool'}",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
        f"SlurmdPidFile={folder / 'slurmd.pid'}",
        f"SlurmctldLogFile={folder / 'slurmctld.log'}",
        f"SlurmdLogFile={folder / 'slurmd.log'}",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        # No cgroups: a job's processes are tracked by process group, tasks are not confined.
        # (proctrack/linuxproc, which follows parent links, loses a process whose parent died: a
        # program that outlives its launcher would escape the SIGKILL after KillWait.)
        "ProctrackType=proctrack/pgid",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "SwitchType=switch/none",
        "MpiDefault=none",
        "MailProg=/bin/true",
        "ReturnToService=2",
        "JobRequeue=1",
        f"KillWait={KILL_WAIT_S}",
        "SchedulerType=sched/backfill",
        "SchedulerParameters=batch_sched_delay=0,sched_interval=1,bf_interval=1",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "PreemptType=preempt/partition_prio",
        "PreemptMode=REQUEUE",
        # The node is what this file says, whatever slurmd detects (containers, CPU affinity).
        "SlurmdParameters=config_overrides",
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN",
        f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP PriorityTier=1",
        f"PartitionName=urgent Nodes={node} MaxTime=INFINITE State=UP PriorityTier=2 PreemptMode=OFF",
    ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def start_cluster(folder: Path) -> Iterator[SlurmCluster]:
    """Starts munged, slurmctld and slurmd with everything in `folder`; on exit cancels every job,
    waits until their processes are gone, and stops the daemons by PID."""
    if len(str(folder)) > MAX_FOLDER_CHARS:
        raise ValueError(f"{folder}: a Slurm cluster folder must be at most {MAX_FOLDER_CHARS} "
                         "characters long (its Unix sockets live there)")
    for name in ("state", "spool", "scratch"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    node = socket.gethostname().split(".")[0]
    cpus = len(os.sched_getaffinity(0))
    cluster = SlurmCluster(folder=folder, conf=folder / "slurm.conf", node=node, cpus=cpus,
                           partition="debug", urgent_partition="urgent", scratch=folder / "scratch",
                           kill_wait_s=KILL_WAIT_S, cred_expire_s=CRED_EXPIRE_S)
    cluster.conf.write_text(slurm_conf(folder, node, cpus, _free_ports(2)))
    key = folder / "munge.key"
    key.touch(mode=0o600)
    key.write_bytes(os.urandom(1024))
    try:
        cluster.start_daemons()
        yield cluster
    finally:
        try:
            if _running(cluster.daemons.get("slurmd")) and _running(cluster.daemons.get("slurmctld")):
                _end_jobs(cluster)
        finally:
            for name in ("slurmd", "slurmctld", "munged"):
                _stop(cluster.daemons.pop(name, None), signal.SIGTERM)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """The session's Slurm cluster, with `SLURM_CONF` pointing at it; skips where none can run,
    or fails there under BNN_REQUIRE_SLURM=1."""
    reason = unavailable_reason()
    if reason:
        skip_unless_required(reason)
    with start_cluster(tmp_path_factory.mktemp("slurm")) as cluster, pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", str(cluster.conf))
        yield cluster


def _running(process: subprocess.Popen | None) -> subprocess.Popen | None:
    return process if process is not None and process.poll() is None else None


def _stop(process: subprocess.Popen | None, sig: int, timeout: float = 15.0) -> None:
    if _running(process):
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _end_jobs(cluster: SlurmCluster) -> None:
    """Cancels every job and waits until slurmd has reaped their processes (SIGKILL after KillWait);
    kills by PID whatever slurmd still tracks after that."""
    active = [job for job, state in cluster.jobs().items() if state in ACTIVE_STATES]
    if active:
        cluster.command("scancel", *active, check=False)
    deadline = time.monotonic() + cluster.kill_wait_s + 20
    while time.monotonic() < deadline:
        if not ACTIVE_STATES.intersection(cluster.jobs().values()):
            return
        time.sleep(0.2)
    for line in cluster.command("scontrol", "listpids", check=False).splitlines()[1:]:
        pid = line.split()[0] if line.split() else ""
        if pid.isdigit():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def _free_ports(count: int) -> tuple[int, ...]:
    """Ports no one listens on now, distinct: each socket stays bound until all are picked."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return tuple(sock.getsockname()[1] for sock in socks)


def _memory_mb() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise RuntimeError("/proc/meminfo has no MemTotal line")


def _die_with_parent() -> None:
    """In a daemon's child process before exec: SIGTERM it when the test process dies, so a killed
    test session leaves no daemons behind (PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
