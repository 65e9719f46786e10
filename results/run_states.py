"""The state of each run of a table, from what its folder, its events and Slurm say, and the
progress view (``table --status``).

States:

- ``new``: nothing of the run exists yet (or its start failed before the program wrote anything);
- ``queued``: its Slurm job waits (pending, or requeued and waiting);
- ``running``: its Slurm job runs, or a process on this machine holds the run folder's lock (or,
  started by the local executor, is still starting: alive, with no lock yet);
- ``interrupted``: it holds a checkpoint and nothing runs it (stopped by a signal, killed, its job
  cancelled or its machine lost): the next ``table`` resumes it;
- ``finished``, ``diverged``: its record says so; a diverged run is a result, never re-run;
- ``failed``: its last attempt failed (a bad option, missing data, a full disk, a crash), or its
  Slurm job ended without starting the program; re-run only with ``--retry-failed``.

Which folder holds a run is the programs' own test (reproduction/options.py ``holds_run``): a
record.json or a checkpoint.
"""
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from reproduction.options import holds_run

from .attempts import read_events

STATES = ("new", "queued", "running", "interrupted", "finished", "diverged", "failed")
#: Slurm job states (squeue %T) of a job that waits to run.
WAITING = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "SUSPENDED",
                     "STOPPED", "RESIZING"})
#: ... and of one that runs or is being ended (its processes may still write).
RUNNING = frozenset({"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT"})


@dataclass
class RunState:
    """A run's state, with its progress: the last finished epoch of ``epochs``, the batch reached
    in the next (a checkpoint within an epoch), the test error so far, and where it runs or why it
    failed."""

    state: str
    epoch: int = 0
    epochs: int | None = None
    batch: str = ""
    test_err: float | None = None
    where: str = ""
    reason: str = ""


def read_record(folder: Path) -> dict | None:
    """The run's record.json (written atomically by the program), or None."""
    try:
        record = json.loads((Path(folder) / "record.json").read_bytes())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def lock_holder(folder: Path) -> int | None:
    """The PID holding the run folder's lock (reproduction/files.py ``folder_lock``: flock on
    ``.lock``), read from /proc/locks without touching the lock, or None. Linux only; a lock
    taken on another machine of a network file system does not show (Slurm's job states do)."""
    try:
        st = os.stat(Path(folder) / ".lock")
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 00:2a:56789 0 EOF" (blocked waiters are marked "->")
        if len(parts) >= 6 and parts[1] == "FLOCK":
            device_inode = parts[5].split(":")
            if len(device_inode) == 3 and device_inode[2] == str(st.st_ino):
                major, minor = int(device_inode[0], 16), int(device_inode[1], 16)
                if os.makedev(major, minor) == st.st_dev:
                    return int(parts[4])
    return None


def _alive_here(event: dict) -> bool:
    """Whether the process an event names runs on this machine now (and is not a zombie)."""
    if event.get("host") != socket.gethostname() or not isinstance(event.get("pid"), int):
        return False
    try:
        return Path(f"/proc/{event['pid']}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _progress(record: dict | None, state: RunState) -> RunState:
    if not record:
        return state
    rows = [r for r in record.get("epochs") or [] if isinstance(r, dict)]
    state.epoch = max((r.get("epoch", 0) for r in rows), default=0)
    state.epochs = (record.get("hyperparameters") or {}).get("num_epochs")
    checkpoint = record.get("checkpoint") or {}
    if checkpoint.get("batch") and checkpoint.get("epoch") == state.epoch:
        state.batch = f"{checkpoint['batch']}/{checkpoint.get('batches', '?')}"
    state.test_err = record.get("test_err")
    return state


def run_state(folder: Path, events_path: Path, jobs: dict | None = None) -> RunState:
    """The state of the run in ``folder`` (module docstring). ``jobs``: live Slurm states
    {job id: state} of the table's jobs (``executor_slurm.live_states``), None when Slurm was not
    asked; a job Slurm no longer lists has ended."""
    record = read_record(folder)
    events = read_events(events_path)
    status = (record or {}).get("status")
    state = _progress(record, RunState("new"))
    if status in ("finished", "diverged"):
        state.state = status
        return state
    last = {kind: max((i for i, e in enumerate(events) if e.get("event") == kind), default=-1)
            for kind in ("submitted", "start", "end")}
    submitted = events[last["submitted"]] if last["submitted"] >= 0 else None
    if submitted and jobs is not None:
        job_state = jobs.get(str(submitted.get("job")))
        if job_state in WAITING or job_state in RUNNING:
            state.state = "queued" if job_state in WAITING else "running"
            state.where = f"Slurm job {submitted['job']} {job_state}"
            return state
    pid = lock_holder(folder)
    if pid is not None:
        state.state, state.where = "running", f"pid {pid}"
        return state
    started = events[last["start"]] if last["start"] > last["end"] else None
    if started is not None and started.get("executor") == "local" and _alive_here(started):
        state.state, state.where = "running", f"pid {started['pid']} (starting)"   # not training yet: no lock
        return state
    if submitted and jobs is not None and last["start"] < last["submitted"]:
        state.state = "failed"
        state.reason = (f"Slurm job {submitted['job']} ended without starting the program (cancelled while "
                        f"waiting, or it failed: see slurm/{submitted['job']}_0_log.err)")
        return state
    ended = events[last["end"]] if last["end"] > last["start"] else None
    if ended is not None and ended.get("outcome") == "failed":
        state.state, state.reason = "failed", ended.get("reason") or f"exit code {ended.get('exit_code')}"
        return state
    if status == "failed":
        state.state, state.reason = "failed", record.get("error") or "the record says failed"
        return state
    if holds_run(folder):
        state.state = "interrupted"
        if ended is not None:
            state.reason = ended.get("reason", "")
    return state


def render(table, states: dict, markdown: bool = False) -> str:
    """The progress view: one line per run of ``table`` (a ``table.Table``): state, epochs,
    test error so far, where it runs or why it stopped."""
    from .tables import text_table

    rows = []
    for run in table.runs:
        s = states[run.name]
        epochs = f"{s.epoch}/{s.epochs}" if s.epochs else (str(s.epoch) if s.epoch else "-")
        if s.batch:
            epochs += f" (+{s.batch} batches)"
        test = "-" if s.test_err is None else f"{s.test_err:.2f}"
        rows.append([run.name, s.state, epochs, test, s.where or s.reason])
    counts = {k: sum(s.state == k for s in states.values()) for k in STATES}
    summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    return (text_table(["run", "state", "epochs", "test err (%)", "where / why"], rows, markdown)
            + f"\n\n{table.folder}: {len(table.runs)} runs: {summary or 'none'}")
