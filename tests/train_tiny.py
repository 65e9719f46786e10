"""Train the tiny network of tests/tiny.py in a real process, for the tests that kill it.

    python -m tests.train_tiny run FOLDER [--resume] [--epochs N] [--checkpoint-every S]
        one run; a TrainingError ends it with its one line on stderr and its exit code
    python -m tests.train_tiny serve
        compile once, then fork one child per command read from stdin, so that a test can kill
        many runs without paying for a Python start and a compile each time:
          run FOLDER RESUME(0|1) EPOCHS CHECKPOINT_EVERY  ->  "pid N", later "exit CODE"
          (CODE is -SIGNAL for a child killed by a signal)
          quit

The back end is the C one (CVM) where a C compiler exists, else Numba: both are safe to fork,
JAX (threads) is not.
"""
import argparse
import os
import shutil
import sys
import traceback
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # no BLAS thread pool to inherit half-locked
os.environ.setdefault("OMP_NUM_THREADS", "1")

import reproduction  # noqa: E402,F401  (compile cache, floatX)
from reproduction.train import TrainingError  # noqa: E402
from tests.tiny import scramble, small_network, synthetic_splits, train_tiny  # noqa: E402

MODE = "CVM" if shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc") else "NUMBA"
EXAMPLES = 300   # training examples: 6 batches of 50 an epoch


def run(net, folder: Path, resume: bool, epochs: int, checkpoint_every: float) -> int:
    """Train in ``folder``/run; the exit code of a program calling train()."""
    if resume:
        scramble(net, seed=os.getpid())          # what a new process would have before the checkpoint loads
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with open(folder / "log.txt", "a") as log:
            train_tiny(net, folder, epochs=epochs, splits=synthetic_splits(n_train=EXAMPLES, n_eval=100),
                       resume=resume, checkpoint_every=checkpoint_every, out=log)
    except TrainingError as e:
        print(e, file=sys.stderr, flush=True)
        return e.exit_code
    return 0


def serve():
    net = small_network(mode=MODE)
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        folder, resume, epochs, every = Path(words[1]), words[2] == "1", int(words[3]), float(words[4])
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = run(net, folder, resume, epochs, every)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(f"exit {code}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.train_tiny")
    parser.add_argument("command", choices=("run", "serve"))
    parser.add_argument("folder", nargs="?", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--checkpoint-every", type=float, default=600.0)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve()
        return 0
    return run(small_network(mode=MODE), args.folder, args.resume, args.epochs, args.checkpoint_every)


if __name__ == "__main__":
    sys.exit(main())
