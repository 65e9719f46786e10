"""The local executor of the table: the runs' programs on this machine, ``jobs`` at a time.

Each program runs in the table folder in a process group of its own, its output appended to the
run's log (attempts.py). Stopping is the programs' own: on SIGINT, SIGTERM or SIGHUP the table
passes the signal to every program it runs, each one finishes its batch, writes a checkpoint and
exits as interrupted, and the table waits for all of them before it exits with 128 + the signal;
no new run starts after a stop. If the table is killed outright (SIGKILL), each program gets
SIGTERM from the kernel (PR_SET_PDEATHSIG) and stops the same way. Running the table again
resumes what was interrupted.
"""
import signal
import threading
import time
from dataclasses import dataclass

from . import attempts
from .run_states import read_record

#: Signals the table passes on to its programs (the terminal's Ctrl-C reaches only the table,
#: the programs having process groups of their own).
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
POLL_S = 0.2


@dataclass
class Outcome:
    """How one attempt ended: ``finished``, ``stopped`` or ``failed`` (attempts.outcome)."""

    name: str
    outcome: str
    exit_code: int
    reason: str


class _Stop:
    def __init__(self):
        self.signum = None

    def __call__(self, signum, frame):
        if self.signum is None:
            self.signum = signum


def run_local(table, todo: list, jobs: int, say=print) -> tuple[list[Outcome], int | None]:
    """Run ``todo`` ([(Planned, resume)]) with at most ``jobs`` programs at a time; ``say`` gets a
    line at each start and end. Returns the outcomes and the signal that stopped the table (None)."""
    from .table import python

    env = table.environment()
    stop = _Stop()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, stop) for s in FORWARDED}
    queue, running, outcomes = list(todo), {}, []
    forwarded = False
    try:
        while queue or running:
            while queue and len(running) < jobs and stop.signum is None:
                run, resume = queue.pop(0)
                process = attempts.start(python(), table.command(run, resume), table.folder, table.log_path(run),
                                         table.events_path(run), "local", env=env, own_group=True)
                running[process.pid] = (run, process)
                say(f"started   {run.name} ({'resume' if resume else 'new'}; pid {process.pid}; "
                    f"log {table.log_path(run)})")
            if stop.signum is not None and not forwarded:
                forwarded = True
                queue.clear()
                for _, process in running.values():
                    _signal(process, stop.signum)
                if running:
                    say(f"{signal.Signals(stop.signum).name}: stopping {len(running)} run(s) at their next "
                        "checkpoint...")
            for pid, (run, process) in list(running.items()):
                if process.poll() is not None:
                    del running[pid]
                    event = attempts.end(process, table.log_path(run), table.events_path(run))
                    outcomes.append(Outcome(run.name, event["outcome"], process.returncode, event["reason"]))
                    say(_ended(run.name, event, read_record(table.run_dir(run))))
            time.sleep(POLL_S if running else 0)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return outcomes, stop.signum


def _signal(process, signum) -> None:
    try:
        process.send_signal(signum)
    except ProcessLookupError:
        pass


def _ended(name: str, event: dict, record: dict | None) -> str:
    kind = event["outcome"]
    if kind == "finished":
        rec = record or {}
        result = f": test error {rec['test_err']:.2f} %" if isinstance(rec.get("test_err"), (int, float)) else ""
        # The epoch the test error was measured at: the best one (Theano) or the last (Torch7).
        epoch = rec.get("test_epoch") or rec.get("best_epoch")
        where = f" (epoch {epoch} of {len(rec.get('epochs') or [])})" if result and epoch else ""
        return f"finished  {name}{result}{where}"
    if kind == "stopped":
        return f"stopped   {name} ({event['reason']}); the next table run resumes it"
    return f"failed    {name}: {event['reason']}"
