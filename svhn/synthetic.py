"""Synthetic SVHN files in the official cropped-digit format, to exercise the pipeline without the
real 2.3 GB download.

The official ``{train,test,extra}_32x32.mat`` files hold ``X``: uint8 (32, 32, 3, N) (row, column,
RGB channel, image) and ``y``: (N, 1) labels 1..10, where 10 means the digit 0 (SOURCES.md §2.3). We
write the same two variables with ``scipy.io.savemat`` (MATLAB v5, uncompressed; the official
files are v5 with zlib compression, and the loader reads both).

Each synthetic image carries its own identity so that tests can follow it through the splits:
pixel (0, 0) holds ``(i % 256, i // 256 % 256, file_tag)`` in its R, G, B channels, where ``i`` is
the image's index in its file; pixel (0, 1) holds the label (1..10) in all three channels. The rest
is noise.

    python -m svhn.synthetic OUT_DIR --full-size      # 73,257 / 26,032 / 531,131 images (~2 GB)
    python -m svhn.synthetic OUT_DIR --per-class 50   # 500 images per file
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import scipy.io

FULL_SIZES = {"train": 73257, "test": 26032, "extra": 531131}
FILE_TAGS = {"train": 1, "test": 2, "extra": 3}


def synthetic_images(labels: np.ndarray, file_tag: int, seed: int = 0) -> np.ndarray:
    """Images for ``labels`` (values 1..10), in the official layout uint8 (32, 32, 3, N)."""
    labels = np.asarray(labels).reshape(-1)
    n = len(labels)
    rng = np.random.default_rng(seed)
    # Built image-major (N, 3, 32, 32) then viewed as (32, 32, 3, N) with no copy: (row, col,
    # channel, image) in Fortran order is the same memory as C order (image, channel, col, row).
    X = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    index = np.arange(n)
    X[:, 0, 0, 0] = index % 256
    X[:, 1, 0, 0] = index // 256 % 256
    X[:, 2, 0, 0] = file_tag
    X[:, :, 1, 0] = labels[:, None]
    return X.transpose(3, 2, 1, 0)


def write_mat(path, X: np.ndarray, y: np.ndarray) -> Path:
    """Write ``X`` (32, 32, 3, N) uint8 and ``y`` (N, 1) uint8 as an official-format .mat file
    (atomically: a killed write leaves no partial file at ``path``)."""
    from reproduction.files import atomic_output

    path = Path(path)
    with atomic_output(path) as tmp:
        scipy.io.savemat(tmp, {"X": X, "y": np.asarray(y, dtype=np.uint8).reshape(-1, 1)},
                         format="5", do_compression=False)
    return path


def balanced_labels(per_class: int, seed: int = 0) -> np.ndarray:
    """``per_class`` labels of each class 1..10, in a random order."""
    labels = np.repeat(np.arange(1, 11, dtype=np.uint8), per_class)
    return np.random.default_rng(seed).permutation(labels)


def random_labels(n: int, seed: int = 0) -> np.ndarray:
    """``n`` labels drawn uniformly from 1..10."""
    return np.random.default_rng(seed).integers(1, 11, size=n, dtype=np.uint8)


def write_svhn(out_dir, sizes: dict[str, int] | None = None, per_class: int | None = None,
               seed: int = 0) -> dict[str, Path]:
    """Write ``train``, ``test`` and ``extra`` files into ``out_dir``: ``per_class`` images of each
    class per file, or ``sizes[name]`` images with uniform random labels. Returns the paths."""
    out_dir = Path(out_dir)
    paths = {}
    for k, name in enumerate(("train", "test", "extra")):
        if per_class is not None:
            y = balanced_labels(per_class, seed + k)
        else:
            y = random_labels(sizes[name], seed + k)
        X = synthetic_images(y, FILE_TAGS[name], seed + 10 + k)
        paths[name] = write_mat(out_dir / f"{name}_32x32.mat", X, y)
        del X
    return paths


def _count(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n}: must be at least 1")
    return n


def main(argv=None) -> None:
    from reproduction.options import Parser
    from reproduction.program import one_line_errors

    parser = Parser(prog="python -m svhn.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--full-size", action="store_true", help="the official sizes (~2 GB on disk)")
    group.add_argument("--per-class", type=_count, default=50, help="images per class per file (default 50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--debug", action="store_true", help="show the traceback when it stops on an error")
    args = parser.parse_args(argv)
    if args.out_dir.exists() and not args.out_dir.is_dir():
        parser.error(f"{args.out_dir}: not a folder")
    with one_line_errors(args, interrupted="interrupted (no partial file is left: each is written whole)"):
        if args.full_size:
            paths = write_svhn(args.out_dir, sizes=FULL_SIZES, seed=args.seed)
        else:
            paths = write_svhn(args.out_dir, per_class=args.per_class, seed=args.seed)
    for path in paths.values():
        print(path)


if __name__ == "__main__":
    main()
