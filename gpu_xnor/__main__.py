"""python -m gpu_xnor: the run-time benchmark, GEMM and MNIST MLP per kernel (PAPER.md §3.4, §3.5).

The matrix product per kernel, then the MNIST MLP per kernel, with ratios beside the paper's
(23x, 3.4x, 7x); the record goes to results/bench/<name>.json.

    python -m gpu_xnor                         # CPU, 4096^3, the 10,000 test images
    python -m gpu_xnor --params results/runs/<run>/params.h5 --data-dir DIR
    python -m gpu_xnor --device gpu            # 8192^3 on a CUDA GPU (gpu_xnor.bench_gpu)
    python -m gpu_xnor --quick                 # a small run to check that everything works
"""
import argparse
import sys

from .bench import main


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m gpu_xnor", description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--size", type=int, default=None, help="GEMM size n (n x n x n); default 8192 on a GPU, 4096 on a CPU")
    p.add_argument("--params", default=None, help="params.h5 or the original's .npz; default random ±1 weights")
    p.add_argument("--data-dir", default=None, help="folder with the MNIST files (default: the loader's)")
    p.add_argument("--download", action="store_true", help="download MNIST if it is missing")
    p.add_argument("--images", type=int, default=None, help="use only the first N test images")
    p.add_argument("--hidden", type=int, default=4096, help="hidden width for random weights")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--slow-repeats", type=int, default=1,
                   help="timed runs of the slow scalar kernels (baseline, paper-style XNOR GEMM)")
    p.add_argument("--threads", type=int, default=0, help="OpenMP threads for our kernels (0: all cores)")
    p.add_argument("--name", default=None, help="record name (default <device>-<hostname>)")
    p.add_argument("--out-dir", default="results/bench")
    p.add_argument("--quick", action="store_true", help="small sizes, 200 images, hidden 256, one run each")
    args = p.parse_args(argv)
    if args.size is None:
        args.size = 256 if args.quick else (8192 if args.device == "gpu" else 4096)
    if args.quick:
        args.images = args.images or 200
        args.hidden = 256 if args.hidden == 4096 else args.hidden
        args.warmup, args.repeats, args.slow_repeats = 0, 1, 1
    return args


if __name__ == "__main__":
    sys.exit(main(parse()))
