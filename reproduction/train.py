"""The epoch loop of the original ``binary_net.train`` (SOURCES.md §1.5), with run records,
checkpoints and resume.

Per epoch: one pass over the training set in its current order (partial batches dropped), then a
reshuffle, then validation; when the validation error is the best so far (``<=``: ties go to the
later epoch) the test set is evaluated and the parameters saved; then the learning rate decays.
The training set is shuffled once before the first epoch too. (The reshuffle is done after the
evaluations here: they draw nothing from the generator, so the numbers are the same.)

The Torch7 code's loop (SOURCES.md §4(f)) differs in three ways, each an argument of ``train``:
``select_best=False`` evaluates the test set after every epoch and reports the last epoch's test
error (nothing selects an epoch; params.h5 holds the last epoch's parameters); ``LR_halve_every=k``
halves the learning rate after every epoch whose number is a multiple of k; ``partial_batches=True``
trains and evaluates the last, shorter batch too (``-constBatchSize false``), every error counting
once (a confusion matrix) and the loss being the sum of batch losses over ceil(N / batch).

Checkpoints. A run writes ``checkpoint.h5`` before its first batch, every ``checkpoint_every``
seconds within an epoch (between batches), at every epoch's end, and when it is asked to stop.
Each holds the batch position and the partial loss sum as well as every array and generator state,
so ``--resume`` continues from any of them to the numbers of a run never interrupted. The one
before is kept as ``checkpoint.prev.h5``, the fallback when the newest cannot be read. Order of
writes: checkpoint, then ``record.json`` (a copy of the record the checkpoint holds), then
``params.h5`` (and the npz) at a best epoch, so the record is never ahead of a checkpoint and
params.h5 never ahead of the record; a resume re-writes a params.h5 the kill left behind.

Stopping. SIGINT (Ctrl-C), SIGTERM (what schedulers send), SIGUSR1 and SIGUSR2 (what Slurm's
``--signal`` sends before a time limit or preemption) are taken while ``train`` runs: the batch in
progress and any write in progress finish, a checkpoint of that moment is written, the record says
"interrupted", and ``RunInterrupted`` carries the one line to resume. A failed write (e.g. a full
disk) ends in ``RunFailed``, a crash re-raises after marking the record "failed" with its reason.
"""
import copy
import errno
import math
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .files import FolderBusy, folder_lock, megabytes, remove_leftovers, write_json
from .store import (CheckpointError, blocks, params_epoch, read_checkpoint, restore_checkpoint, save_checkpoint,
                    save_npz, save_params, state_bytes)

CHECKPOINT_EVERY = 600.0   # seconds between checkpoints within an epoch (0: at epoch ends only)
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2")
                     if hasattr(signal, name))


class TrainingError(Exception):
    """A run that stopped before its end. ``str(e)`` is one line for the user; programs print it
    and exit with ``e.exit_code``."""

    exit_code = 1


class TrainingDiverged(TrainingError, RuntimeError):
    """The training loss became NaN or infinite."""


class RunInterrupted(TrainingError):
    """A stop signal (or Ctrl-C): the run was checkpointed and can be resumed."""

    def __init__(self, message, signum=signal.SIGINT):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + int(signum)   # the shell's convention for a death by that signal


class RunFailed(TrainingError):
    """A file of the run could not be written (disk full, permissions, ...)."""


class ResumeError(TrainingError):
    """No checkpoint of the run can be resumed from."""


@dataclass
class Run:
    """Where a run writes, and what its record says about it."""

    out_dir: Path
    dataset: str
    hyperparameters: dict
    environment: dict
    options: dict = field(default_factory=dict)   # the program's options, to resume with
    save_npz: bool = False                        # the original mnist.py saved an npz at each best epoch
    program: str = ""                             # ``python -m <program>`` resumes it (default: the dataset)

    @property
    def record_path(self):
        return self.out_dir / "record.json"

    @property
    def checkpoint_path(self):
        return self.out_dir / "checkpoint.h5"

    @property
    def previous_checkpoint_path(self):
        return self.out_dir / "checkpoint.prev.h5"

    @property
    def params_path(self):
        return self.out_dir / "params.h5"

    @property
    def npz_path(self):
        return self.out_dir / f"{self.dataset}_parameters.npz"

    @property
    def resume_command(self):
        return f"python -m {self.program or self.dataset} --resume {self.out_dir}"

    def file_names(self):
        return [p.name for p in (self.record_path, self.checkpoint_path, self.previous_checkpoint_path,
                                 self.params_path, self.npz_path)]


def _now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_record(run: Run) -> dict:
    return {
        "format": 1,
        "run": run.out_dir.name,
        "dataset": run.dataset,
        "status": "running",
        "command": run.environment.get("command", ""),
        "started": _now(),
        "updated": _now(),
        "hyperparameters": run.hyperparameters,
        "options": run.options,
        "environment": run.environment,
        "epochs": [],
        "best_epoch": None,
        "best_val_err": None,
        "test_err": None,
        "test_loss": None,
    }


def print_hyperparameters(hyperparameters: dict, out=None) -> None:
    """One ``name = value`` line each, as the original scripts print them before training."""
    out = out or sys.stdout
    for name, value in hyperparameters.items():
        print(f"{name} = {value}", file=out)
    out.flush()


def print_epoch(row: dict, num_epochs: int, loop: dict, out=None, select_best=True) -> None:
    """The original's nine-line epoch block; the test values are those of the best epoch (without
    ``select_best``, those of this epoch, and no best-epoch lines, as the Torch7 code prints)."""
    out = out or sys.stdout
    print(f"Epoch {row['epoch']} of {num_epochs} took {row['seconds']:.3f}s", file=out)
    print(f"  LR:                            {row['lr']:.10g}", file=out)
    print(f"  training loss:                 {row['train_loss']:.6f}", file=out)
    print(f"  validation loss:               {row['val_loss']:.6f}", file=out)
    print(f"  validation error rate:         {row['val_err']:.4f}%", file=out)
    if select_best:
        print(f"  best epoch:                    {loop['best_epoch']}", file=out)
        print(f"  best validation error rate:    {loop['best_val_err']:.4f}%", file=out)
    print(f"  test loss:                     {loop['test_loss']:.6f}", file=out)
    print(f"  test error rate:               {loop['test_err']:.4f}%", file=out)
    out.flush()


def _progress(total, desc, enabled, initial=0):
    """A tqdm bar on a terminal; plain lines every tenth of the epoch otherwise."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if enabled:
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit="batch", leave=False, dynamic_ncols=True)
    return _PlainProgress(total, desc, initial)


class _PlainProgress:
    def __init__(self, total, desc, initial=0):
        self.total, self.desc, self.n, self.t0 = total, desc, initial, time.time()
        self.every = max(1, total // 10)

    def update(self, k=1):
        self.n += k
        if self.n % self.every == 0 and self.n < self.total:
            print(f"  {self.desc}: {self.n}/{self.total} batches, {time.time() - self.t0:.0f}s",
                  file=sys.stderr, flush=True)

    def set_postfix(self, **kw):
        pass

    def close(self):
        pass


class _Stopped(Exception):
    """Raised between evaluation batches when a stop was requested."""


def batch_count(n: int, batch_size: int, partial: bool = False) -> int:
    """The batches of an epoch over ``n`` examples: whole ones only, or with the last partial one."""
    return -(-n // batch_size) if partial else n // batch_size


def evaluate(functions, split, batch_size, stop=None, partial=False):
    """Mean loss and error (%) over the whole batches of ``split`` (the original's ``val_epoch``).

    The sums are the original's: its per-batch values are float32 (floatX) and its accumulators
    start as the Python int 0, which NumPy 1.x's promotion turns into float64 at the first
    addition (an int and a float32 scalar promote to float64), so it sums float32 values in
    float64, in batch order, and divides by the batch count before multiplying by 100. The best
    epoch is chosen by ``<=`` on exactly these values (SOURCES.md §1.5). ``stop``: a callable
    asked between batches; when it returns True, ``_Stopped`` is raised.

    With ``partial`` (the Torch7 loop, SOURCES.md §4(f)) the last, shorter batch is evaluated too,
    the error is the count of wrong examples over all of them and the loss the sum of the batch
    losses over the number of batches.
    """
    batches = batch_count(len(split), batch_size, partial)
    if batches == 0:
        raise ValueError(f"{len(split)} examples make no batch of {batch_size}")
    loss = err = 0.0
    wrong = 0
    for i in range(batches):
        if stop is not None and stop():
            raise _Stopped
        index = np.arange(i * batch_size, min((i + 1) * batch_size, len(split)))
        l, e = functions.evaluate(split.inputs(index), split.targets(index))
        loss += float(np.float32(l))
        err += float(np.float32(e))
        wrong += int(round(float(np.float32(e)) * len(index)))
    if partial:
        return loss / batches, wrong / len(split) * 100.0
    return loss / batches, err / batches * 100.0


def shuffle(order, rng):
    """Compose ``order`` with a fresh random permutation: the draws the original's ``shuffle``
    made with ``np.random.shuffle`` on a list of indices."""
    perm = np.arange(len(order))
    rng.shuffle(perm)
    return order[perm]


class _StopRequest:
    """What the signal handlers set; the loop reads it between batches. The handlers only record
    the signal (no I/O, no exception), so no write is ever cut short by them."""

    def __init__(self):
        self.signum = None
        self.previous = {}

    def handler(self, signum, frame):
        if self.signum is None:
            self.signum = signum

    def __call__(self):
        return self.signum is not None

    def chain(self):
        """Pass a SIGUSR1/SIGUSR2 on to the Python handler that was there before ours (e.g.
        submitit's, which requeues a Slurm job), now that the checkpoint is written."""
        previous = self.previous.get(self.signum)
        if self.signum in (getattr(signal, "SIGUSR1", None), getattr(signal, "SIGUSR2", None)) and callable(previous):
            previous(self.signum, None)


@contextmanager
def _stop_signals():
    """Install the stop handlers for the block, restoring the previous ones after it. Python
    runs handlers only in the main thread; elsewhere nothing is installed."""
    request = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    for signum in STOP_SIGNALS:
        request.previous[signum] = signal.signal(signum, request.handler)
    stopped = False
    try:
        yield request
    except RunInterrupted:
        stopped = True
        raise
    finally:
        for signum, previous in request.previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        if stopped:
            request.chain()


class _WriteFailed(Exception):
    def __init__(self, path, error):
        super().__init__(path, error)
        self.path, self.error = Path(path), error


@contextmanager
def _writing(path):
    """Turn an OSError while writing ``path`` (a full disk, a lost permission) into ``_WriteFailed``."""
    try:
        yield
    except OSError as e:
        raise _WriteFailed(path, e) from e


def _reason(error) -> str:
    """An exception as a short phrase; a full disk as such, however HDF5 words it."""
    text = str(error)
    if getattr(error, "errno", None) == errno.ENOSPC or "No space left" in text or "errno = 28" in text:
        return "no space left on the device"
    text = getattr(error, "strerror", None) or (text.splitlines()[0] if text else type(error).__name__)
    return text if len(text) <= 100 else text[:97] + "..."


def _signal_name(signum) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _where(position, batches) -> str:
    """A checkpoint's place: ``position`` has the completed ``epoch`` and the ``batch`` within the next."""
    if position["batch"] == 0:
        return f"the end of epoch {position['epoch']}" if position["epoch"] else "the start"
    return f"epoch {position['epoch'] + 1}, batch {position['batch']} of {batches}"


class _Loop:
    """The state of one ``train`` call: the loop's scalars, the order, the record and the last
    record that went into a checkpoint (what a failure may mark: never a record ahead of it)."""

    def __init__(self, functions, layers, splits, run, rng, batch_size, batches, out, loop_options=None):
        self.functions, self.layers, self.splits, self.run, self.rng = functions, layers, splits, run, rng
        self.batch_size, self.batches, self.out = batch_size, batches, out
        options = loop_options or {}
        self.select_best = options.get("select_best", True)
        self.halve_every = options.get("LR_halve_every", 0)
        self.partial = options.get("partial_batches", False)
        self.order = self.loop = self.record = self.saved = None
        self.clock = time.monotonic()       # start of the part of the epoch not yet in loop["seconds"]
        self.last_save = self.clock

    # -- writing --------------------------------------------------------------------------------
    def save(self, status=None):
        """Checkpoint, then the record that describes it."""
        now = time.monotonic()
        self.loop["seconds"] += now - self.clock
        self.clock = self.last_save = now
        if status:
            self.record["status"] = status
        self.record["checkpoint"] = {"epoch": self.loop["epoch"], "batch": self.loop["batch"],
                                     "batches": self.batches}
        self.record["updated"] = _now()
        with _writing(self.run.checkpoint_path):
            save_checkpoint(self.run.checkpoint_path, self.functions, self.rng, self.order, self.loop,
                            self.record, previous=self.run.previous_checkpoint_path)
        self.saved = copy.deepcopy(self.record)
        self.write_record(self.record)

    def write_record(self, record):
        with _writing(self.run.record_path):
            write_json(self.run.record_path, record)

    def save_best_params(self):
        """params.h5 (and the npz) of the reported epoch (the best one, or with ``select_best=False``
        the last); params.h5 last, its ``epoch`` attribute marks both as complete."""
        if self.run.save_npz:
            with _writing(self.run.npz_path):
                save_npz(self.run.npz_path, self.layers)
        with _writing(self.run.params_path):
            spec = {k: v for k, v in self.run.hyperparameters.items() if k == "architecture"}  # for summary
            save_params(self.run.params_path, self.layers, dataset=self.run.dataset,
                        epoch=self.loop.get("test_epoch") or self.loop["best_epoch"], **spec)

    def mark(self, status, error=None) -> str:
        """Write the last checkpointed record with ``status``; '' or the reason it could not be."""
        record = dict(self.saved, status=status, updated=_now())
        if error:
            record["error"] = error
        try:
            write_json(self.run.record_path, record)
        except Exception as e:   # the run is ending anyway: say why the record could not follow
            return f"; the record could not be marked {status} either ({_reason(e)})"
        return ""

    # -- the loop -------------------------------------------------------------------------------
    def train_batches(self, lr, epoch, progress, stop, checkpoint_every):
        loop, functions, split, bs = self.loop, self.functions, self.splits.train, self.batch_size
        bar = _progress(self.batches, f"epoch {epoch}", progress, initial=loop["batch"])
        try:
            while loop["batch"] < self.batches:
                if stop():
                    raise _Stopped
                i = loop["batch"]
                index = self.order[i * bs:(i + 1) * bs]
                loss = float(np.float32(functions.train(split.inputs(index), split.targets(index), np.float32(lr))))
                if not math.isfinite(loss):
                    raise TrainingDiverged(f"training loss became {loss} at epoch {epoch}, batch {i + 1}")
                loop["loss_sum"] += loss       # float64 sum of float32 losses, as the original's
                loop["batch"] = i + 1
                bar.update(1)
                if i % 20 == 0:
                    bar.set_postfix(loss=f"{loop['loss_sum'] / (i + 1):.4f}")
                if (checkpoint_every and loop["batch"] < self.batches
                        and time.monotonic() - self.last_save >= checkpoint_every):
                    self.save()
        finally:
            bar.close()

    def epoch_end(self, num_epochs, LR_decay, stop):
        """Validation (and test at a best epoch, or at every epoch without ``select_best``), the
        reshuffle, the learning-rate decay, then the writes. The original reshuffles before
        validating; evaluation draws nothing from ``rng``, so reshuffling after it gives the same
        numbers and lets a stop during evaluation resume from the end of the training pass."""
        loop, splits, bs = self.loop, self.splits, self.batch_size
        epoch = loop["epoch"] + 1
        val_loss, val_err = evaluate(self.functions, splits.valid, bs, stop, self.partial)
        row = {"epoch": epoch, "lr": loop["LR"], "train_loss": loop["loss_sum"] / self.batches,
               "val_loss": val_loss, "val_err": val_err}
        best = val_err <= loop["best_val_err"]
        reported = best or not self.select_best
        if reported:
            test_loss, test_err = evaluate(self.functions, splits.test, bs, stop, self.partial)
            loop.update(test_loss=test_loss, test_err=test_err, test_epoch=epoch)
            row.update(test_loss=test_loss, test_err=test_err)
        if best:
            loop.update(best_val_err=val_err, best_epoch=epoch)
        self.order = shuffle(self.order, self.rng)
        row["seconds"] = loop["seconds"] + time.monotonic() - self.clock
        LR = loop["LR"] * LR_decay
        if self.halve_every and epoch % self.halve_every == 0:
            LR *= 0.5
        loop.update(epoch=epoch, batch=0, loss_sum=0.0, LR=LR)
        self.record["epochs"].append(row)
        # test_epoch: the epoch whose test error the record reports (the best, or the last)
        self.record.update(best_epoch=loop["best_epoch"], best_val_err=loop["best_val_err"],
                           test_err=loop["test_err"], test_loss=loop["test_loss"], test_epoch=loop.get("test_epoch"))
        if epoch == num_epochs:
            self.record["status"] = "finished"  # in the checkpoint too, so resuming a finished run changes nothing
        self.save()
        loop["seconds"] = 0.0
        self.clock = time.monotonic()
        if reported:
            self.save_best_params()
        print_epoch(row, num_epochs, loop, self.out, self.select_best)

    def run_epochs(self, num_epochs, LR_decay, progress, stop, checkpoint_every):
        while self.loop["epoch"] < num_epochs:
            epoch = self.loop["epoch"] + 1
            self.train_batches(self.loop["LR"], epoch, progress, stop, checkpoint_every)
            self.epoch_end(num_epochs, LR_decay, stop)


def _resume_state(run: Run, functions, rng, out):
    """The newest checkpoint that can be read and fits the network, applied; warns (one line)
    when that is the previous one."""
    problems = []
    for path in (run.checkpoint_path, run.previous_checkpoint_path):
        try:
            ckpt = read_checkpoint(path)
            restore_checkpoint(ckpt, functions, rng)
        except CheckpointError as e:
            problems.append(str(e))
            continue
        if problems:
            print(f"warning: {problems[0]}; resuming from {path.name} instead", file=sys.stderr, flush=True)
        loop = ckpt.loop
        for key, value in (("batch", 0), ("loss_sum", 0.0), ("seconds", 0.0)):   # checkpoint format 1
            loop.setdefault(key, value)
        return ckpt.order, loop, ckpt.record
    found = [p for p in problems if not p.endswith(": not found")]
    detail = found[0] if found else f"{run.out_dir}: no checkpoint"
    raise ResumeError(f"cannot resume: {detail}")


def folder_bytes(checkpoint: int, params: int, npz: bool = False) -> int:
    """The most a run folder holds at once: three checkpoints at the moment of rotation (previous,
    current, the one being written) and params.h5 (and the npz) beside its temporary copy."""
    return 3 * checkpoint + 2 * params * (1 + npz)


def _disk_needed(run: Run, functions, layers) -> int:
    """Bytes a run may still need in its folder (:func:`folder_bytes` of its compiled state, less
    what its files already take)."""
    ckpt = state_bytes(functions) + len(functions.state) * 4096
    params = sum(np.asarray(v.get_value()).nbytes for b in blocks(layers) for v in b.values()) + 65536
    have = sum(p.stat().st_size for p in (run.checkpoint_path, run.previous_checkpoint_path, run.params_path,
                                          run.npz_path) if p.is_file())
    return max(0, folder_bytes(ckpt, params, run.save_npz) - have)


def _check_space(run: Run, functions, layers) -> None:
    import shutil

    need, free = _disk_needed(run, functions, layers), shutil.disk_usage(run.out_dir).free
    if free < need:
        raise RunFailed(f"{run.out_dir}: {megabytes(free)} free, the run needs about {megabytes(need)} "
                        "for its checkpoints and parameters")


def train(functions, layers, splits, run: Run, *, rng, num_epochs, batch_size, LR_start, LR_decay,
          resume=False, progress=None, out=None, checkpoint_every=CHECKPOINT_EVERY, select_best=True,
          LR_halve_every=0, partial_batches=False) -> dict:
    """Train, validate and test as the original did; returns the final run record. ``select_best``,
    ``LR_halve_every`` and ``partial_batches``: the Torch7 loop's differences (module docstring).

    ``rng`` is the numpy RandomState the network was initialised from (the original used the
    global one, seeded once): the shuffles continue its sequence. ``checkpoint_every``: seconds
    between checkpoints within an epoch (0: only at epoch ends, at the start and on a stop).

    Raises ``TrainingError`` subclasses whose ``str`` is one line for the user and whose
    ``exit_code`` is the program's: ``RunInterrupted`` (a stop signal; checkpointed),
    ``TrainingDiverged``, ``RunFailed`` (a write failed: disk full, permissions, a busy or full
    folder), ``ResumeError`` (nothing to resume from). Anything else is a crash: the record is
    marked "failed" with the reason and the exception propagates.
    """
    out = out or sys.stdout
    batches = batch_count(len(splits.train), batch_size, partial_batches)
    loop_options = {"select_best": select_best, "LR_halve_every": LR_halve_every, "partial_batches": partial_batches}
    for name, split in (("training", splits.train), ("validation", splits.valid), ("test", splits.test)):
        if len(split) < batch_size:
            raise TrainingError(f"the {name} set has {len(split)} examples, fewer than one batch of {batch_size}")
    try:
        run.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunFailed(f"{run.out_dir}: cannot create the run folder ({_reason(e)})") from None
    try:
        with folder_lock(run.out_dir):
            record = _train_locked(functions, layers, splits, run, rng, num_epochs, batch_size, LR_start, LR_decay,
                                   resume, progress, out, checkpoint_every, batches, loop_options)
    except FolderBusy as e:
        raise TrainingError(f"{e} (is it still running?)") from None
    return record


def _train_locked(functions, layers, splits, run, rng, num_epochs, batch_size, LR_start, LR_decay, resume,
                  progress, out, checkpoint_every, batches, loop_options):
    # The handlers go in before the first write, so a stop during it waits for its end.
    with _stop_signals() as stop:
        state = _start(functions, layers, splits, run, rng, num_epochs, batch_size, LR_start, resume, out, batches,
                       loop_options)
        if state.record["status"] == "finished":
            return state.record
        try:
            try:
                state.run_epochs(num_epochs, LR_decay, progress, stop, checkpoint_every)
            except _Stopped:
                state.save(status="interrupted")
                raise RunInterrupted(f"{_signal_name(stop.signum)}: stopped at {_where(state.loop, batches)} and "
                                     f"saved; resume with: {run.resume_command}", stop.signum) from None
        except RunInterrupted:
            raise
        except TrainingDiverged as e:
            note = state.mark("diverged", str(e))
            raise TrainingDiverged(f"{e}; stopped. The last good checkpoint is {run.checkpoint_path}"
                                   f" ({_where(state.saved['checkpoint'], batches)}){note}") from None
        except _WriteFailed as e:
            note = state.mark("failed", f"cannot write {e.path.name}: {_reason(e.error)}")
            raise RunFailed(f"{e.path}: cannot write ({_reason(e.error)}); stopped. The last good checkpoint "
                            f"is kept; resume with: {run.resume_command}{note}") from None
        except KeyboardInterrupt:              # where no handler could be installed (not the main thread)
            note = state.mark("interrupted")
            raise RunInterrupted(f"interrupted; resume from the last checkpoint with: {run.resume_command}{note}"
                                 ) from None
        except SystemExit:                     # e.g. a scheduler integration exiting from its own handler
            state.mark("interrupted")
            raise
        except Exception as e:
            state.mark("failed", f"{type(e).__name__}: {_reason(e)}")
            raise
    return state.record


def _start(functions, layers, splits, run, rng, num_epochs, batch_size, LR_start, resume, out, batches,
           loop_options) -> _Loop:
    """Remove leftovers, restore or create the state, and write what a resume needs before the
    first batch: the first checkpoint of a new run, the record of a resumed one."""
    if not resume and any(p.exists() for p in (run.record_path, run.checkpoint_path, run.previous_checkpoint_path)):
        raise TrainingError(f"{run.out_dir} already holds a run; continue it with: {run.resume_command}")
    removed = remove_leftovers(run.out_dir, run.file_names())
    if removed:
        print(f"Removed {len(removed)} temporary file(s) an interrupted write left in {run.out_dir}", file=out)
    state = _Loop(functions, layers, splits, run, rng, batch_size, batches, out, loop_options)
    if resume:
        state.order, state.loop, state.record = _resume_state(run, functions, rng, out)
        # the options a resume may change (more epochs) are the run's from now on
        state.record.update(options=run.options, hyperparameters=run.hyperparameters)
        state.record.setdefault("checkpoint", {"epoch": state.loop["epoch"], "batch": state.loop["batch"],
                                               "batches": batches})
        state.saved = copy.deepcopy(state.record)
    else:
        state.order = shuffle(np.arange(len(splits.train)), rng)
        state.loop = {"epoch": 0, "batch": 0, "loss_sum": 0.0, "seconds": 0.0, "LR": float(LR_start),
                      "best_epoch": 1, "best_val_err": 100.0, "test_err": 0.0, "test_loss": 0.0}
        state.record = new_record(run)
    loop, record = state.loop, state.record
    try:
        _check_space(run, functions, layers)
        print_hyperparameters(run.hyperparameters, out)
        if loop["epoch"] >= num_epochs and loop["batch"] == 0:
            record["status"] = "finished"
            state.write_record(record)
            print(f"{run.out_dir} has finished its {loop['epoch']} epochs; nothing to do", file=out)
        elif resume:
            record["status"] = "running"
            record.setdefault("resumed", []).append({"after_epoch": loop["epoch"], "batch": loop["batch"],
                                                     "at": _now(), "environment": run.environment})
            print(f"Resuming {run.out_dir} at {_where(loop, batches)} ({num_epochs} epochs)", file=out)
            state.write_record(record)
        else:
            state.save()                       # a run can be resumed from its first minute
        reported = loop.get("test_epoch") or loop["best_epoch"]
        if resume and loop["epoch"] and loop["batch"] == 0 and reported == loop["epoch"] \
                and params_epoch(run.params_path) != reported:
            state.save_best_params()           # killed between the record and params.h5: the state is that epoch's
    except _WriteFailed as e:
        raise RunFailed(f"{e.path}: cannot write ({_reason(e.error)}); nothing was trained") from None
    return state
