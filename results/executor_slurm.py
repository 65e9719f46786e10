"""The Slurm executor of the table: one Slurm job per run, submitted with submitit.

Each job runs ``TableJob``: the run's program (attempts.py), with ``--resume`` when the run folder
holds a run, else as a new run. What ends a job early, and how the run goes on:

- **Requeue, preemption** (``scontrol requeue``, a job of a higher partition): Slurm sends SIGTERM to
  every process of the job, KillWait seconds before SIGKILL. The program checkpoints at its next
  batch and exits (reproduction/train.py); submitit's own process ignores SIGTERM; ``TableJob``
  leaves without a result. Slurm runs the job again, which resumes the run.
- **Time limit**: submitit asks Slurm for SIGUSR2 ``signal_delay_s`` seconds before the limit
  (``--signal``). The program checkpoints on it and exits; in submitit's process
  ``TableJob.checkpoint`` waits for that (passing SIGUSR2 on, in case it was not delivered to the
  program), then submitit requeues the job, up to ``max_requeues`` times.
- **Cancellation** (``scancel``): as a requeue, but Slurm does not run the job again; the next
  ``table`` resumes the run with a new job.
- **Node failure, SIGKILL**: the run keeps its last checkpoint (at the start, every epoch's end, and
  every ten minutes within an epoch); the next ``table`` (or Slurm's own requeue) resumes it.
- **Restarted Slurm daemons**: running jobs go on; ``table`` asks Slurm again later.

Never blocking on submitit's ``job.result()`` or ``job.wait()`` (without Slurm accounting a job
with no result file never reports an end), the table asks Slurm itself: ``live_states`` reads
``squeue -t all``, which lists a job for MinJobAge (300 s by default) after it ends; a job it no
longer lists has ended, and the run folder and its events tell how.

This module is imported by the jobs themselves (to unpickle ``TableJob``); it imports nothing of
the training programs.
"""
import contextlib
import getpass
import io
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import attempts
from .run_states import holds_run

#: The exit code of a job whose program was stopped (requeue, preemption, cancellation): no
#: result file is written, so submitit never reports an end that is not the run's.
STOPPED_EXIT = 1
SUBMIT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
SQUEUE_TIMEOUT_S = 60


class SlurmError(RuntimeError):
    """Slurm refused a job or did not answer; ``str(e)`` is one line."""

    exit_code = 1


@dataclass
class SlurmOptions:
    """What each job asks Slurm for (``table --partition ... --time ...``)."""

    partition: str | None = None
    time_min: int = 24 * 60
    gpus: int | None = None
    cpus: int | None = None
    mem_gb: float | None = None
    extra: dict = field(default_factory=dict)    # more sbatch options: {"account": "x", "qos": "y"}
    signal_delay_s: int = 120
    max_requeues: int = 1000


class RunFailedError(RuntimeError):
    """The program of a job failed (not stopped): the job fails, with this reason."""


def _exited(pid: int) -> bool:
    """Whether the child ``pid`` has exited, without reaping it (its Popen still owes the exit code)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


try:
    import submitit
    _Checkpointable = submitit.helpers.Checkpointable
except ImportError:           # the table can plan, show and run locally without submitit
    submitit = None
    _Checkpointable = object


class TableJob(_Checkpointable):
    """One run of the table as a Slurm job (module docstring). ``python``: the interpreter of
    the table command; ``folder``: the table folder (absolute), where the commands run."""

    def __init__(self, python: str, folder: Path, name: str, new: list, resume: list, env: dict,
                 wait_s: float = 100.0):
        self.python, self.folder, self.name = python, Path(folder), name
        self.new, self.resume, self.env, self.wait_s = new, resume, env, wait_s

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_process"}

    @property
    def log(self) -> Path:
        return self.folder / "logs" / f"{self.name}.log"

    @property
    def events(self) -> Path:
        return self.folder / "logs" / f"{self.name}.events.jsonl"

    def __call__(self) -> dict:
        job = os.environ.get("SLURM_JOB_ID")
        where = {"job": job, "restart": int(os.environ.get("SLURM_RESTART_COUNT") or 0)}
        command = self.resume if holds_run(self.folder / self.name) else self.new
        self._process = process = attempts.start(self.python, command, self.folder, self.log, self.events,
                                                 "slurm", env=self.env, **where)
        event = None
        try:
            process.wait()
        finally:
            if process.poll() is not None:      # also when submitit's SIGUSR2 handler exits this process
                event = attempts.end(process, self.log, self.events, job=job)
        if event["outcome"] == "finished":
            return {"run": self.name, "job": job}
        if event["outcome"] == "stopped":
            sys.stdout.flush()
            os._exit(STOPPED_EXIT)
        raise RunFailedError(f"{self.name}: {event['reason']}")

    def checkpoint(self, *args, **kwargs):
        """submitit's handler of the time-limit warning calls this before it requeues the job:
        the program has heard SIGUSR2 too and is writing its checkpoint; wait for it to exit, so
        that the requeue's SIGTERM and SIGKILL find it done."""
        process = getattr(self, "_process", None)
        if process is not None and not _exited(process.pid):
            try:
                os.kill(process.pid, signal.SIGUSR2)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + self.wait_s
            while not _exited(process.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
        return super().checkpoint(*args, **kwargs)


def package_root() -> Path:
    """The folder holding this package: a job starts there, so that it imports the same code."""
    return Path(__file__).resolve().parents[1]


def executor(folder: Path, options: SlurmOptions):
    if submitit is None:
        raise SlurmError('--executor slurm needs submitit: pip install ".[slurm]" (or pip install submitit)')
    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=options.max_requeues)
    params = {"time": options.time_min, "partition": options.partition, "gpus_per_node": options.gpus,
              "cpus_per_task": options.cpus, "mem": None if options.mem_gb is None else f"{options.mem_gb:g}GB",
              "signal_delay_s": options.signal_delay_s,
              "additional_parameters": {"chdir": str(package_root()), **options.extra}}
    try:
        ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    except ValueError as e:
        raise SlurmError(f"Slurm options: {str(e).splitlines()[0]}") from None
    return ex


def submit(table, todo: list, options: SlurmOptions, say=print) -> list[tuple]:
    """One job per run of ``todo`` ([(Planned, resume)]); each submission is recorded in the run's
    events before the next (stop signals wait until both are done, so that no job goes unrecorded).
    Returns [(Planned, job id)]."""
    from .table import python

    ex = executor(table.folder.resolve() / "slurm", options)
    env = table.environment()
    folder = table.folder.resolve()
    submitted = []
    for run, resume in todo:
        job_fn = TableJob(python(), folder, run.name, table.command(run, False), table.command(run, True), env,
                          wait_s=max(10.0, options.signal_delay_s - 20.0))
        ex.update_parameters(job_name=f"bnn-{run.name}")
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, SUBMIT_SIGNALS)
        try:
            said = io.StringIO()
            try:
                with contextlib.redirect_stderr(said):    # submitit prints sbatch's complaint, then raises it
                    job = ex.submit(job_fn)
            except Exception as e:
                lines = [line.strip() for line in f"{said.getvalue()}\n{e}".splitlines() if line.strip()]
                detail = next((line for line in lines if "error" in line.lower()), lines[0] if lines else repr(e))
                raise SlurmError(f"sbatch refused the job of {run.name}: {detail.removeprefix('sbatch: ')}") from None
            attempts.append_event(table.events_path(run), event="submitted", executor="slurm", job=str(job.job_id),
                                  resume=resume)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        submitted.append((run, str(job.job_id)))
        say(f"submitted {run.name} ({'resume' if resume else 'new'}; Slurm job {job.job_id})")
    return submitted


def live_states(job_ids) -> dict:
    """{job id: state} of the jobs Slurm still lists (``squeue -t all``: waiting, running, and
    ended within MinJobAge); a ``SlurmError`` when Slurm does not answer."""
    ids = sorted({str(j) for j in job_ids if j})
    if not ids:
        return {}
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    try:
        done = subprocess.run(["squeue", "-h", "-t", "all", "-u", user, "-o", "%i %T"], capture_output=True,
                              text=True, timeout=SQUEUE_TIMEOUT_S)
    except FileNotFoundError:
        raise SlurmError("squeue is not installed here: Slurm cannot be asked about the table's jobs") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"squeue did not answer within {SQUEUE_TIMEOUT_S} s") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise SlurmError(f"squeue failed: {lines[-1] if lines else f'exit code {done.returncode}'}")
    listed = dict(line.split(None, 1) for line in done.stdout.splitlines() if len(line.split()) == 2)
    return {j: listed[j] for j in ids if j in listed}
