"""The epoch loop of the original ``binary_net.train`` (PAPER.md §1.5), with run records,
checkpoints and resume.

Per epoch: one pass over the training set in its current order (partial batches dropped), then a
reshuffle, then validation; when the validation error is the best so far (ties go to the later
epoch) the test set is evaluated and the parameters saved; then the learning rate decays. The
training set is shuffled once before the first epoch too. After every epoch the run record and a
checkpoint are written, each atomically, so a killed run loses at most the epoch in progress and
``--resume`` continues it with the same numbers as a run never interrupted.
"""
import math
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .files import write_json
from .store import export_npz, load_checkpoint, save_checkpoint, save_params


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class Run:
    """Where a run writes, and what its record says about it."""

    out_dir: Path
    dataset: str
    hyperparameters: dict
    environment: dict
    options: dict = field(default_factory=dict)   # the program's options, to resume with
    save_npz: bool = False                        # the original mnist.py saved an npz at each best epoch

    @property
    def record_path(self):
        return self.out_dir / "record.json"

    @property
    def checkpoint_path(self):
        return self.out_dir / "checkpoint.h5"

    @property
    def params_path(self):
        return self.out_dir / "params.h5"


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


def print_epoch(row: dict, num_epochs: int, loop: dict, out=None) -> None:
    """The original's nine-line epoch block; the test values are those of the best epoch."""
    out = out or sys.stdout
    print(f"Epoch {row['epoch']} of {num_epochs} took {row['seconds']:.3f}s", file=out)
    print(f"  LR:                            {row['lr']:.10g}", file=out)
    print(f"  training loss:                 {row['train_loss']:.6f}", file=out)
    print(f"  validation loss:               {row['val_loss']:.6f}", file=out)
    print(f"  validation error rate:         {row['val_err']:.4f}%", file=out)
    print(f"  best epoch:                    {loop['best_epoch']}", file=out)
    print(f"  best validation error rate:    {loop['best_val_err']:.4f}%", file=out)
    print(f"  test loss:                     {loop['test_loss']:.6f}", file=out)
    print(f"  test error rate:               {loop['test_err']:.4f}%", file=out)
    out.flush()


def _progress(total, desc, enabled):
    """A tqdm bar on a terminal; plain lines every tenth of the epoch otherwise."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if enabled:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True)
    return _PlainProgress(total, desc)


class _PlainProgress:
    def __init__(self, total, desc):
        self.total, self.desc, self.n, self.t0 = total, desc, 0, time.time()
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


def evaluate(functions, split, batch_size):
    """Mean loss and error (%) over the whole batches of ``split`` (the original's ``val_epoch``)."""
    batches = len(split) // batch_size
    if batches == 0:
        raise ValueError(f"{len(split)} examples make no batch of {batch_size}")
    loss = err = 0.0
    for i in range(batches):
        index = np.arange(i * batch_size, (i + 1) * batch_size)
        l, e = functions.evaluate(split.inputs(index), split.targets(index))
        loss += float(l)
        err += float(e)
    return loss / batches, err / batches * 100.0


def train_epoch(functions, split, order, batch_size, lr, epoch, progress=None):
    """One pass over ``split`` in ``order``; returns the mean batch loss. Stops at the first
    non-finite loss."""
    batches = len(order) // batch_size
    bar = _progress(batches, f"epoch {epoch}", progress)
    total = 0.0
    try:
        for i in range(batches):
            index = order[i * batch_size:(i + 1) * batch_size]
            loss = float(functions.train(split.inputs(index), split.targets(index), np.float32(lr)))
            if not math.isfinite(loss):
                raise TrainingDiverged(f"training loss became {loss} at epoch {epoch}, batch {i + 1}")
            total += loss
            bar.update(1)
            if i % 20 == 0:
                bar.set_postfix(loss=f"{total / (i + 1):.4f}")
    finally:
        bar.close()
    return total / batches


def shuffle(order, rng):
    """Compose ``order`` with a fresh random permutation: the draws the original's ``shuffle``
    made with ``np.random.shuffle`` on a list of indices."""
    perm = np.arange(len(order))
    rng.shuffle(perm)
    return order[perm]


def train(functions, layers, splits, run: Run, *, rng, num_epochs, batch_size, LR_start, LR_decay,
          resume=False, progress=None, out=None) -> dict:
    """Train, validate and test as the original did; returns the final run record.

    ``rng`` is the numpy RandomState the network was initialised from (the original used the
    global one, seeded once): the shuffles continue its sequence.
    """
    out = out or sys.stdout
    run.out_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        order, loop, record = load_checkpoint(run.checkpoint_path, functions, rng)
        record["status"] = "running"
        record.setdefault("resumed", []).append({"after_epoch": loop["epoch"], "at": _now(),
                                                 "environment": run.environment})
        print(f"Resuming {run.out_dir} after epoch {loop['epoch']} of {num_epochs}", file=out)
    else:
        order = shuffle(np.arange(len(splits.train)), rng)
        loop = {"epoch": 0, "LR": float(LR_start), "best_epoch": 1, "best_val_err": 100.0,
                "test_err": 0.0, "test_loss": 0.0}
        record = new_record(run)
    if loop["epoch"] >= num_epochs:
        record["status"] = "finished"
    print_hyperparameters(run.hyperparameters, out)
    write_json(run.record_path, record)

    try:
        while loop["epoch"] < num_epochs:
            epoch = loop["epoch"] + 1
            start = time.time()
            train_loss = train_epoch(functions, splits.train, order, batch_size, loop["LR"], epoch, progress)
            order = shuffle(order, rng)
            val_loss, val_err = evaluate(functions, splits.valid, batch_size)
            row = {"epoch": epoch, "lr": loop["LR"], "train_loss": train_loss,
                   "val_loss": val_loss, "val_err": val_err}
            if val_err <= loop["best_val_err"]:
                loop["best_val_err"], loop["best_epoch"] = val_err, epoch
                loop["test_loss"], loop["test_err"] = evaluate(functions, splits.test, batch_size)
                row.update(test_loss=loop["test_loss"], test_err=loop["test_err"])
                save_params(run.params_path, layers, dataset=run.dataset, epoch=epoch)
                if run.save_npz:
                    export_npz(run.params_path, run.out_dir / f"{run.dataset}_parameters.npz")
            row["seconds"] = time.time() - start
            print_epoch(row, num_epochs, loop, out)
            loop["LR"] *= LR_decay
            loop["epoch"] = epoch
            record["epochs"].append(row)
            record.update(best_epoch=loop["best_epoch"], best_val_err=loop["best_val_err"],
                          test_err=loop["test_err"], test_loss=loop["test_loss"], updated=_now())
            if epoch == num_epochs:
                record["status"] = "finished"  # in the checkpoint too, so resuming a finished run changes nothing
            save_checkpoint(run.checkpoint_path, functions, rng, order, loop, record)
            write_json(run.record_path, record)
    except TrainingDiverged as e:
        record.update(status="diverged", error=str(e), updated=_now())
        write_json(run.record_path, record)
        raise TrainingDiverged(f"{e}; stopped. The last good checkpoint is {run.checkpoint_path}"
                               f" (after epoch {loop['epoch']})") from None
    except KeyboardInterrupt:
        record.update(status="interrupted", updated=_now())
        write_json(run.record_path, record)
        raise
    return record
