"""python -m gpu_xnor: the run-time benchmark, the matrix product and the MNIST MLP per kernel
(SOURCES.md §3.4, §3.5), on the CPU or a GPU, with the ratios beside the paper's; the record goes
to results/bench/<name>.json (schema: gpu_xnor/bench.py).

    python -m gpu_xnor --data-dir ../shared/data/mnist        # CPU, 4096^3, the 10,000 test images
    python -m gpu_xnor --params results/runs/<run>/params.h5   # trained weights (default: random)
    BNN_XNOR_ISA=avx2 OPENBLAS_CORETYPE=Haswell python -m gpu_xnor   # AVX2 against AVX2 OpenBLAS
    python -m gpu_xnor --device gpu                            # 8192^3 on a CUDA GPU (PyCUDA)
    python -m gpu_xnor --quick                                 # a small run: does it all work?

Every option is checked before any work; a bad one ends in one line naming it, exit status 2.
"""
import argparse
import os
import re
import socket
import sys
import time
from pathlib import Path

PROG = "python -m gpu_xnor"


class UsageError(Exception):
    """A bad option: ``str(e)`` is the one line to print."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--size", type=int, default=None,
                   help="GEMM size n (n x n x n); default 8192 on a GPU, 4096 on a CPU")
    p.add_argument("--params", default=None,
                   help="params.h5 or the original's .npz; default random +-1 weights")
    p.add_argument("--data-dir", default=None,
                   help="folder with the MNIST files (default: $MNIST_DATA_DIR, else the cache)")
    p.add_argument("--download", action="store_true", help="download MNIST if it is missing")
    p.add_argument("--images", type=int, default=None, help="use only the first N test images")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--slow-repeats", type=int, default=1,
                   help="timed calls of the slow kernel (CPU: baseline), with no warm-up")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for our kernels (0: all cores); set OPENBLAS_NUM_THREADS "
                        "too for BLAS")
    p.add_argument("--isa", default=None,
                   help="CPU path of our XNOR kernel: avx512, avx2 or portable (default: "
                        "$BNN_XNOR_ISA, else the best this CPU has)")
    p.add_argument("--name", default=None,
                   help="record name (default <device>-<host>-<UTC time>); an existing one is refused")
    p.add_argument("--out-dir", default="results/bench")
    p.add_argument("--quick", action="store_true",
                   help="a small run (256^3, 200 images, 256 units, one call each); the record says so")
    return p


def _positive(name: str, value, minimum: int) -> None:
    if value is not None and value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise UsageError(f"argument {name}: must be {what}, got {value}")


def _default_name(device: str) -> str:
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname() or "host")
    return f"{device}-{host}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"


def _out_path(args) -> Path:
    out = Path(args.out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"argument --out-dir: {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"argument --out-dir: cannot create {out} ({e.strerror or e})")
    if not os.access(out, os.W_OK):
        raise UsageError(f"argument --out-dir: {out} is not writable")
    if args.name is None:
        args.name = _default_name(args.device)
    elif not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", args.name):
        raise UsageError(f"argument --name: {args.name!r} must be letters, digits, '.', '_' or '-'")
    path = out / f"{args.name}.json"
    if path.exists():
        raise UsageError(f"argument --name: {path} exists; records are never overwritten")
    return path


def _device(args):
    from . import bench

    if args.device == "gpu":
        import importlib.util

        if args.isa is not None:
            raise UsageError("argument --isa: applies to --device cpu only")
        if importlib.util.find_spec("pycuda") is None:
            raise UsageError('argument --device gpu: needs PyCUDA and a CUDA GPU (pip install ".[gpu]")')
        from . import cuda

        try:
            return bench.make_device("gpu")
        except cuda.CudaUnavailable as e:
            raise UsageError(f"argument --device gpu: {str(e).splitlines()[0]}")
    from . import cpu

    try:
        isa = cpu.resolve_isa(args.isa, source="--isa")
        return bench.make_device("cpu", args.threads, isa)
    except cpu.IsaError as e:
        raise UsageError(str(e))
    except cpu.BuildError as e:
        raise UsageError(f"argument --device cpu: {str(e).splitlines()[0]}")


def _network(args):
    from . import mlp

    if args.params is None:
        units = 256 if args.quick else None
        return mlp.random_mlp(mlp.recipe_sizes(units), seed=0, warn=False)
    try:
        return mlp.load_mlp(args.params)
    except mlp.ParamsError as e:
        raise UsageError(f"argument --params: {e}")


def _data(args):
    """(X, y, where) or None, with args.mlp_skipped saying why in one line."""
    from mnist.data import ENV_VAR, load_mnist
    from reproduction.dataset import DataError
    from reproduction.download import find_data_dir

    explicit = args.data_dir is not None or args.download
    folder = find_data_dir("mnist", args.data_dir, ENV_VAR)
    try:
        test = load_mnist(args.data_dir, download=args.download).test
    except (DataError, OSError) as e:
        reason = str(e).split(";")[0]
        if explicit:
            raise UsageError(f"argument --data-dir: {reason}")
        args.mlp_skipped = (f"no MNIST test set in {folder} (pass --data-dir DIR or set "
                            f"${ENV_VAR}): {reason}")
        return None
    n = len(test.y)
    if args.images is not None and args.images > n:
        raise UsageError(f"argument --images: {args.images} > the {n} test images")
    n = args.images or n
    return test.X[:n], test.y[:n], str(folder)


def parse(argv=None) -> argparse.Namespace:
    """The options, checked; builds the device, the network and the data (raises UsageError)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    args.argv = argv
    _positive("--size", args.size, 1)
    _positive("--images", args.images, 1)
    _positive("--warmup", args.warmup, 0)
    _positive("--repeats", args.repeats, 1)
    _positive("--slow-repeats", args.slow_repeats, 1)
    _positive("--threads", args.threads, 0)
    if args.size is None:
        args.size = 256 if args.quick else (8192 if args.device == "gpu" else 4096)
    if args.quick:
        args.images = args.images or 200
        args.warmup, args.repeats, args.slow_repeats = 0, 1, 1
    args.mlp_skipped = None
    args.out = _out_path(args)
    args.net = _network(args)
    args.data = _data(args)
    args.device_obj = _device(args)
    return args


def main(argv=None) -> int:
    try:
        args = parse(argv)
    except UsageError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    if args.mlp_skipped:
        print(f"{PROG}: MLP part skipped: {args.mlp_skipped}", file=sys.stderr)
    if args.params is None:
        print(f"{PROG}: no --params: random +-1 weights (the test error is chance; timings are "
              "unaffected)", file=sys.stderr)
    from .bench import main as run

    return run(args)


if __name__ == "__main__":
    from reproduction import look_past_the_current_folder

    look_past_the_current_folder()   # results.paper, not a results/ folder this command wrote
    sys.exit(main())
