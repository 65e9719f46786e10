"""One attempt at a run of the table: its program started with the output appended to the run's
log, and what happened written to the run's events file, one JSON object a line:

    {"event": "submitted", "executor": "slurm", "job": "123", "at": ...}     a Slurm job for the run
    {"event": "start", "executor": "local" | "slurm", "job": ..., "restart": ..., "host": ...,
     "pid": ..., "command": [...], "at": ...}                                 the program started
    {"event": "end", "pid": ..., "job": ..., "exit_code": ..., "reason": ..., "at": ...}

Each event is one ``write`` of one line to a file opened for appending, which POSIX does not
interleave with another process's; a line cut short by a crash is skipped when read. The run
folder itself is the program's alone.

An attempt ends in one of three ways (``outcome``): ``finished`` (exit code 0), ``stopped`` (a stop
signal: the program checkpointed and exited with 128 + the signal, or it was killed by one, and
``--resume`` continues from its last checkpoint), ``failed`` (any other exit code: a bad option,
missing data, a full disk, ...; its reason is the program's one-line ``error:``).
"""
import ctypes
import json
import os
import signal
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path

#: Signals after which a program's run is resumable: the programs checkpoint on the first four
#: (reproduction/train.py); the others end it without one, the last checkpoint stays.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGKILL)
TAIL_BYTES = 65536
PR_SET_PDEATHSIG = 1


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def append_event(path: Path, **event) -> dict:
    event.setdefault("at", now())
    line = (json.dumps(event) + "\n").encode()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return event


def read_events(path: Path) -> list[dict]:
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return []
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def outcome(exit_code: int) -> str:
    """``finished``, ``stopped`` or ``failed`` (module docstring); ``exit_code`` as Popen gives it
    (negative: killed by that signal)."""
    if exit_code == 0:
        return "finished"
    stops = {int(s) for s in STOP_SIGNALS}
    if exit_code < 0 and -exit_code in stops or exit_code - 128 in stops:
        return "stopped"
    return "failed"


def reason(log: Path, exit_code: int) -> str:
    """Why an attempt ended: the last ``error:`` line the program wrote, else its exit code."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - TAIL_BYTES))
            tail = f.read().decode(errors="replace").splitlines()
    except OSError:
        tail = []
    errors = [line.strip() for line in tail if line.startswith("error: ")]
    if errors:
        return errors[-1].removeprefix("error: ")
    if exit_code < 0:
        return f"killed by {signal.Signals(-exit_code).name}" if -exit_code in signal.valid_signals() \
            else f"killed by signal {-exit_code}"
    return f"exit code {exit_code}"


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started it dies, however it dies,
    so that the program checkpoints and stops instead of running on unattended (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    except (OSError, AttributeError):
        pass


def start(python: str, command: list[str], cwd: Path, log: Path, events: Path, executor: str,
          env: dict | None = None, own_group: bool = False, **where) -> subprocess.Popen:
    """Start ``python COMMAND`` in ``cwd``, its output appended to ``log``; record the start.
    ``own_group``: in a process group of its own (the local executor forwards signals itself; a
    Slurm job's program stays in the job's group, where Slurm's signals reach it)."""
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        header = f"=== {now()} {executor}{' job ' + str(where['job']) if where.get('job') else ''}: " \
                 f"python {' '.join(command)}\n"
        out.write(header.encode())
        out.flush()
        process = subprocess.Popen([python, *command], cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                   start_new_session=own_group, preexec_fn=_die_with_parent)
    append_event(events, event="start", executor=executor, host=socket.gethostname(), pid=process.pid,
                 command=command, **where)
    return process


def end(process: subprocess.Popen, log: Path, events: Path, **where) -> dict:
    """Record how the attempt ended (the process has exited)."""
    code = process.returncode
    kind = outcome(code)
    return append_event(events, event="end", pid=process.pid, exit_code=code, outcome=kind,
                        reason="" if kind == "finished" else reason(log, code), **where)
