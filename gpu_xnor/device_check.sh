#!/usr/bin/env bash
# gpu_xnor/device_check.sh -- the GPU checks of gpu_xnor on a machine with an NVIDIA GPU and no
# network, in one call: build and install PyCUDA from files carried with the repository, run
# tests/test_cuda_gpu.py (and a compute-sanitizer memcheck of the kernels), then the benchmark
# `python -m gpu_xnor --device gpu` (the same driver, kernel names and record schema as on the
# CPU), and leave results/bench/gpu-<name>.json (and the logs) under results/bench/ and in $OUT.
# The GPU machine's python3 has no PyTensor: everything run here imports without it, reading
# parameters too (reproduction.store imports its PyTensor parts only where a network is built).
#
# PyPI has no binary wheel of PyCUDA for Linux (checked for 2026.1 with `pip download
# --only-binary=:all:` for cp312 manylinux: "no matching distribution"), only the sdist, so it is
# built there with that machine's own compiler, CUDA headers and libcuda. pycuda 2026.1 compiles
# against CUDA 13's headers (checked here, where only the final link fails for want of libcuda).
#
# 1. Once, on a machine with PyPI access, from the repository root:
#        bash gpu_xnor/device_check.sh --prepare
#    which fills .cache/gpu_carry/ (ignored by git through .gitignore's .cache/) with
#      - wheels/: the pycuda sdist, its pure/binary wheels for CPython 3.12 manylinux x86-64
#        (pytools, platformdirs, mako, siphash24; numpy, setuptools, wheel, typing-extensions
#        and MarkupSafe are already on the GPU machine's image: /work/.library/device/KINDS.md),
#      - mnist/: the four official MNIST files, copied from $MNIST_DATA_DIR or ../shared/data/mnist.
# 2. On the GPU machine (the device tool's `run`), carrying .cache/gpu_carry and, for trained
#    weights, the params.h5 of a run (ignored by git, so it must be carried too):
#        run(command="bash gpu_xnor/device_check.sh [--name NAME] [--params FILE] [--quick]",
#            carry=[".cache/gpu_carry", FILE], timeout_s=600)
#    NAME defaults to the GPU's name and the UTC time, e.g. nvidia-h200-20261130T0912Z.
#    Budget: about 1-2 min to build PyCUDA on 16 cores, under 1 min of tests, 1-3 min of
#    benchmark at 8192^3 plus the MLP. --quick makes the benchmark small. The PyCUDA wheel it
#    builds is left in $OUT: copy it into .cache/gpu_carry/wheels/ to skip the build next time.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CARRY="$ROOT/.cache/gpu_carry"
PY="${PYTHON:-python3}"
OUT_DIR="${OUT:-$ROOT/results/bench}"
T0=$(date +%s)

step() { echo; echo "=== [$(date -u +%H:%M:%S) +$(( $(date +%s) - T0 ))s] $*"; }

prepare() {
    step "prepare: downloading PyCUDA's sdist and its dependencies' wheels into $CARRY/wheels"
    mkdir -p "$CARRY/wheels" "$CARRY/mnist"
    local pip=("$PY" -m pip download --no-deps -d "$CARRY/wheels")
    # The sdist: --no-binary for pycuda alone, so that pip may use wheels for its build tools.
    "${pip[@]}" --no-binary=pycuda "pycuda==2026.1"
    "${pip[@]}" --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 \
        "pytools==2026.1.1" "platformdirs==4.14.8" "mako==1.4.3" "siphash24==1.9"
    step "prepare: copying the MNIST files into $CARRY/mnist"
    local src="${MNIST_DATA_DIR:-$ROOT/../shared/data/mnist}"
    for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz \
             t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
        if [ -f "$src/$f" ]; then cp "$src/$f" "$CARRY/mnist/"; else echo "missing $src/$f"; fi
    done
    du -sh "$CARRY"
    ls -l "$CARRY"/*
}

find_libcuda_dir() {
    # -lcuda needs an unversioned libcuda.so: the toolkit's stub, else a link to the driver's.
    local d
    for d in "$CUDA_ROOT/lib64/stubs" "$CUDA_ROOT/targets/x86_64-linux/lib/stubs" \
             /usr/local/nvidia/lib64 /usr/lib/x86_64-linux-gnu /usr/lib64; do
        if [ -e "$d/libcuda.so" ]; then echo "$d"; return; fi
    done
    for d in /usr/local/nvidia/lib64 /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/local/nvidia/lib; do
        if [ -e "$d/libcuda.so.1" ]; then
            mkdir -p /tmp/libcuda-link && ln -sf "$d/libcuda.so.1" /tmp/libcuda-link/libcuda.so
            echo /tmp/libcuda-link; return
        fi
    done
    echo "device_check.sh: no libcuda.so found" >&2
    return 1
}

install_pycuda() {
    if "$PY" -c "import pycuda.driver" 2>/dev/null; then
        echo "pycuda already importable"; return
    fi
    local site=/tmp/gpu_xnor_site
    mkdir -p "$site"
    step "installing PyCUDA's dependencies from $CARRY/wheels"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" \
        "$CARRY"/wheels/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    # A pycuda wheel built by an earlier run (it is left in $OUT) and carried in wheels/.
    if "$PY" -c "import pycuda.driver" 2>/dev/null; then
        echo "pycuda installed from a carried wheel"; return
    fi
    step "building PyCUDA from the sdist (CUDA root $CUDA_ROOT)"
    local src=/tmp/pycuda-src libdir
    rm -rf "$src" && mkdir -p "$src"
    tar xzf "$CARRY"/wheels/pycuda-*.tar.gz -C "$src" --strip-components=1
    libdir="$(find_libcuda_dir)"
    echo "libcuda for linking: $libdir"
    (
        cd "$src"
        # curand is not needed by gpu_xnor: leave it out rather than depend on its library.
        "$PY" configure.py --cuda-root="$CUDA_ROOT" --no-cuda-enable-curand \
            --cudadrv-lib-dir="$libdir,\${CUDA_ROOT}/lib64,\${CUDA_ROOT}/lib64/stubs"
        # build_ext -j uses all cores; bdist_wheel then reuses the objects. Fall back to pip.
        if ! timeout 420 "$PY" setup.py -q build_ext -j "$(nproc)" \
                bdist_wheel -d /tmp/pycuda-wheel \
                > /tmp/pycuda-build.log 2>&1; then
            tail -30 /tmp/pycuda-build.log
            echo "setup.py build failed; trying pip wheel --no-build-isolation"
            timeout 300 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w /tmp/pycuda-wheel .
        fi
    )
    ls -l /tmp/pycuda-wheel
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" \
        /tmp/pycuda-wheel/pycuda-*.whl
    if [ -n "${OUT:-}" ]; then cp /tmp/pycuda-wheel/pycuda-*.whl "$OUT/"; fi  # reusable next time
    "$PY" -c "import pycuda, pycuda.driver as d; d.init();
print('pycuda', pycuda.VERSION_TEXT, 'sees', d.Device(0).name())"
}

if [ "${1:-}" = "--prepare" ]; then
    prepare
    exit 0
fi

PARAMS=()
QUICK=()
NAME=""
while [ $# -gt 0 ]; do
    case "$1" in
        --params) PARAMS=(--params "$2"); shift 2 ;;
        --name) NAME="$2"; shift 2 ;;
        --quick) QUICK=(--quick); shift ;;
        *) echo "device_check.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

cd "$ROOT"
mkdir -p "$OUT_DIR" results/bench
export PYTHONUNBUFFERED=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export MNIST_DATA_DIR="$CARRY/mnist"  # where the loader (and so the tests and the benchmark) look

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
NVCC="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
export PATH="$(dirname "$NVCC"):$PATH"
CUDA_ROOT="${CUDA_HOME:-$(cd "$(dirname "$NVCC")/.." && pwd)}"
"$NVCC" --version | tail -2
"$PY" --version
"$PY" -c "import numpy; print('numpy', numpy.__version__)"

install_pycuda

step "GPU tests: tests/test_cuda_gpu.py"
STATUS=0
# A failing test should not stop the benchmark: the script's exit status reports it at the end.
timeout 300 "$PY" -m pytest tests/test_cuda_gpu.py -q -ra -p no:cacheprovider 2>&1 \
    | tee "$OUT_DIR/test_cuda_gpu.log" || { STATUS=$?; echo "GPU tests failed: exit $STATUS"; }

step "compute-sanitizer memcheck of the kernels at awkward sizes (non-fatal if the tool fails)"
if command -v compute-sanitizer >/dev/null; then
    timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 "$PY" -m pytest \
        tests/test_cuda_gpu.py -q -p no:cacheprovider -k "exact_product and not 1000 and not 4096" \
        > "$OUT_DIR/memcheck.log" 2>&1 && echo "memcheck: clean" \
        || { echo "memcheck: exit $? (see memcheck.log)"; tail -20 "$OUT_DIR/memcheck.log"; }
else
    echo "compute-sanitizer not on PATH"
fi

step "benchmark: python -m gpu_xnor --device gpu"
if [ -z "$NAME" ]; then
    GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
    NAME="$(echo "${GPU_NAME:-gpu}" | tr 'A-Z ' 'a-z-' | tr -cd 'a-z0-9._-')-$(date -u +%Y%m%dT%H%MZ)"
fi
RECORD="results/bench/gpu-$NAME.json"
REPS=(--warmup 2 --repeats 10)
EXTRA=(${PARAMS[@]+"${PARAMS[@]}"} --data-dir "$CARRY/mnist" ${QUICK[@]+"${QUICK[@]}"})
timeout 330 "$PY" -m gpu_xnor --device gpu --name "gpu-$NAME" "${REPS[@]}" "${EXTRA[@]}" 2>&1 \
    | tee "$OUT_DIR/bench.log" || true
if [ ! -f "$RECORD" ]; then
    STATUS=1
    echo "no record written: see bench.log"
elif grep -q "FAILED" "$OUT_DIR/bench.log"; then
    STATUS=1  # it ran, and its record shows kernels that disagree: see bench.log
fi
if [ -f "$RECORD" ] && [ "$OUT_DIR" != "$ROOT/results/bench" ]; then
    cp "$RECORD" "$OUT_DIR/"
fi
step "done: $RECORD, exit status $STATUS"
exit "$STATUS"
