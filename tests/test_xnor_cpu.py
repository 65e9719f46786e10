"""The CPU kernels of gpu_xnor/xnor_cpu.c: packing order, exact XNOR products at awkward sizes on
EVERY instruction-set path this CPU has (avx512, avx2, portable), the path chosen by
$BNN_XNOR_ISA, the baseline's fixed rounding order, and the threshold form of batch norm + sign."""
import re
import shutil
import subprocess

import numpy as np
import pytest

from gpu_xnor import cpu

# (M, K, N): 1x1x1; K below, at and above one word, two words, a flush of the AVX2 byte counters
# (31 words) and more; M and N not multiples of any path's block (6x32, 3x16, 4x4); M above the
# AVX2 path's row block at K = 4096 (256 rows).
AWKWARD = [(1, 1, 1), (1, 64, 1), (2, 63, 3), (7, 65, 5), (17, 33, 65), (6, 64, 32), (13, 127, 31),
           (5, 129, 70), (3, 1984, 17), (4, 2047, 33), (9, 4000, 19), (100, 784, 300),
           (300, 4096, 40), (37, 3, 129)]


def pm1(rng, shape):
    return np.where(rng.random(shape) < 0.5, np.float32(-1), np.float32(1))


def exact(a, b):
    """The naive reference: integer products and sums."""
    return (a.astype(np.int64) @ b.astype(np.int64)).astype(np.float32)


def _isa(name):
    if name not in cpu.supported_isas():
        pytest.skip(f"this CPU lacks {cpu.ISAS[name][1]}: the {name} path cannot run here")
    return name


@pytest.fixture(params=list(cpu.ISAS))
def isa(request):
    return _isa(request.param)


def test_pack_rows_bit_order_and_zero(isa):
    # element 0 -> least significant bit; x >= 0 (0.0 and -0.0 included) -> 1; tail bits 0.
    a = np.full((1, 70), -1, np.float32)
    a[0, [0, 2, 63, 64, 69]] = [1, 0.0, 5, -0.0, 0.5]
    p = cpu.pack_rows(a, isa=isa)
    assert p.dtype == np.uint64 and p.shape == (1, 2)
    assert int(p[0, 0]) == (1 << 0) | (1 << 2) | (1 << 63)
    assert int(p[0, 1]) == (1 << 0) | (1 << 5)


def test_pack_cols_is_pack_rows_of_the_transpose(isa):
    rng = np.random.default_rng(1)
    b = rng.standard_normal((130, 133)).astype(np.float32)
    b[3, 4] = 0.0
    assert np.array_equal(cpu.pack_cols(b, isa=isa), cpu.pack_rows(b.T.copy(), isa="portable").T)


@pytest.mark.parametrize("m,k,n", AWKWARD)
def test_xnor_exact_on_every_path(isa, m, k, n):
    rng = np.random.default_rng(m * 1000 + k + n)
    a, b = pm1(rng, (m, k)), pm1(rng, (k, n))
    want = exact(a, b)
    assert np.array_equal(cpu.xnor_matmul(a, b, isa=isa), want)
    assert np.array_equal(cpu.xnor_gemm(cpu.pack_rows(a), cpu.pack_cols(b), k, isa=isa), want)


@pytest.mark.parametrize("m,k,n", AWKWARD[:10])
def test_paper_and_baseline_kernels_exact(m, k, n):
    rng = np.random.default_rng(m * 7 + k + n)
    a, b = pm1(rng, (m, k)), pm1(rng, (k, n))
    want = exact(a, b)
    assert np.array_equal(cpu.xnor_matmul_paper(a, b), want)
    assert np.array_equal(cpu.baseline_gemm(a, b), want)


def test_environment_variable_chooses_the_path(monkeypatch):
    rng = np.random.default_rng(3)
    a, b = pm1(rng, (11, 200)), pm1(rng, (200, 37))
    for name in cpu.supported_isas():
        monkeypatch.setenv(cpu.ISA_ENV, name)
        assert cpu.resolve_isa() == name and cpu.Device().isa == name
        assert np.array_equal(cpu.xnor_matmul(a, b), exact(a, b))
    monkeypatch.delenv(cpu.ISA_ENV)
    assert cpu.resolve_isa() == cpu.supported_isas()[0]  # the best this CPU has


def test_unknown_or_missing_path_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv(cpu.ISA_ENV, "sse9")
    with pytest.raises(cpu.IsaError, match=r"^BNN_XNOR_ISA='sse9': unknown .*avx512, avx2, portable$"):
        cpu.resolve_isa()
    monkeypatch.delenv(cpu.ISA_ENV)

    class AVX2Only:  # what the library answers on a CPU without AVX-512 (AMD Zen 3, most Intel)
        def xnor_isa_supported(self, code):
            return int(code != cpu.ISAS["avx512"][0])

    assert cpu.supported_isas(AVX2Only()) == ["avx2", "portable"]
    with pytest.raises(cpu.IsaError, match=r"^--isa=avx512: this CPU lacks AVX-512 .*\(it runs: avx2, portable\)$"):
        cpu.resolve_isa("avx512", AVX2Only(), source="--isa")
    missing = [name for name in cpu.ISAS if name not in cpu.supported_isas()]
    for name in missing:  # and the real library refuses what this CPU lacks
        with pytest.raises(cpu.IsaError, match=f"^--isa={name}: this CPU lacks"):
            cpu.resolve_isa(name, source="--isa")


def test_avx2_path_holds_no_avx512_instruction():
    """An AVX2 measurement on an AVX-512 machine is honest only if the path has no 512-bit or
    EVEX-only register in it."""
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump is not installed: cannot disassemble the library")
    text = subprocess.run([objdump, "-d", "--no-show-raw-insn", cpu.load()._name],
                          capture_output=True, text=True).stdout
    bodies = {m.group(1): m.group(2) for m in re.finditer(r"<(\w+)>:\n(.*?)\n\n", text, re.S)}
    avx2 = {k: v for k, v in bodies.items() if k.endswith("avx2") or k.startswith("avx2_")}
    if not avx2:
        pytest.skip("no AVX2 functions in this build (not an x86-64 compiler)")
    for name, body in avx2.items():
        assert not re.search(r"zmm|[xy]mm(1[6-9]|2\d|3[01])|%k[0-7]", body), name
    assert any("vpshufb" in body for body in avx2.values())
    avx512 = "".join(v for k, v in bodies.items() if k.endswith("avx512"))
    assert "vpopcntq" in avx512


def test_xnor_signs_any_float_input(isa):
    # Non-±1 inputs are binarized by the packing (x >= 0 -> +1), as the README of the original says.
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((9, 100)).astype(np.float32), rng.standard_normal((100, 11)).astype(np.float32)
    a[0, :5] = 0.0
    sign = lambda x: np.where(x >= 0, np.float32(1), np.float32(-1))  # noqa: E731
    assert np.array_equal(cpu.xnor_matmul(a, b, isa=isa), exact(sign(a), sign(b)))


def test_baseline_rounds_in_k_order_without_fused_multiply_add():
    """The baseline sums each output's rounded products in k order, rounding each sum: numpy's
    float32 ufuncs reproduce it bit for bit, so it gives the same floats on every machine."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((37, 101)).astype(np.float32), rng.standard_normal((101, 45)).astype(np.float32)
    want = np.zeros((37, 45), np.float32)
    for k in range(101):
        want = want + a[:, k:k + 1] * b[k:k + 1, :]
    assert np.array_equal(cpu.baseline_gemm(a, b), want)


def test_thread_counts_agree(isa):
    rng = np.random.default_rng(4)
    a, b = pm1(rng, (300, 1000)), pm1(rng, (1000, 500))  # large enough to use both threads
    assert np.array_equal(cpu.xnor_matmul(a, b, threads=1, isa=isa), cpu.xnor_matmul(a, b, threads=2, isa=isa))
    assert np.array_equal(cpu.xnor_matmul(a, b, threads=2, isa=isa), exact(a, b))
    assert np.array_equal(cpu.baseline_gemm(a[:40], b, threads=2), exact(a[:40], b))


def test_bad_shapes_raise_one_line_errors():
    with pytest.raises(ValueError, match="inner dimensions"):
        cpu.xnor_matmul(np.ones((2, 3), np.float32), np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match="k_bits=65 needs 2 words"):
        cpu.xnor_gemm(np.zeros((2, 1), np.uint64), np.zeros((1, 3), np.uint64), 65)
    with pytest.raises(ValueError, match="2-D"):
        cpu.baseline_gemm(np.ones(3, np.float32), np.ones((3, 1), np.float32))


def test_built_once_per_key(tmp_path):
    flags = (("-O3",),)
    path, used = cpu.build(flags, cache=tmp_path)
    assert used == ("-O3",) and path.exists()
    mtime = path.stat().st_mtime_ns
    assert cpu.build(flags, cache=tmp_path)[0] == path and path.stat().st_mtime_ns == mtime
    assert cpu.library_path(("-O2",), tmp_path) != path
    assert not list(tmp_path.glob("*.tmp"))


def test_bitplanes_pack_and_weighted_sum(isa):
    rng = np.random.default_rng(7)
    p = rng.integers(0, 256, (11, 70), dtype=np.uint8)
    planes = cpu.pack_bitplanes(p)
    assert planes.shape == (8, 11, 2)
    for n in range(8):  # plane n is bit n of each pixel, packed like a ±1 row
        assert np.array_equal(planes[n], cpu.pack_rows(np.where((p >> n) & 1, 1, -1).astype(np.float32)))
    b = pm1(rng, (70, 13))
    pb = cpu.pack_cols(b)
    signs = [np.where((p >> n) & 1, 1, -1) for n in range(8)]
    want = sum(2 ** n * exact(signs[n], b).astype(np.int64) for n in range(8)).astype(np.float32)
    assert np.array_equal(cpu.xnor_gemm_planes(planes, pb, 70, isa=isa), want)


def test_threshold_sign_is_the_exact_comparison():
    rng = np.random.default_rng(8)
    s = rng.standard_normal((300, 257)).astype(np.float32)
    t = rng.standard_normal(257).astype(np.float32)
    d = np.where(rng.random(257) < 0.5, np.float32(-1), np.float32(1))
    s[0] = d * t  # on the threshold: +1
    t[:2] = [-np.inf, np.inf]  # always +1, never +1
    want = np.where(d * s >= t, np.float32(1), np.float32(-1))
    assert np.array_equal(cpu.threshold_sign(s, t, d), want)
    assert (want[0, 2:] == 1).all() and (want[:, 0] == 1).all() and (want[:, 1] == -1).all()


def test_clock_and_instruction_mix_ceilings_are_measured(isa):
    ghz = cpu.clock_ghz(1, seconds=0.01, tries=2)
    assert 0.3 < ghz < 8
    bits = cpu.mix_bits_per_second(isa, 1, seconds=0.01, tries=2)
    if bits is None:
        pytest.skip("no popcnt instruction here: the mix cannot run")
    assert 1 < bits / (ghz * 1e9) < 2000  # bits per cycle of one core
