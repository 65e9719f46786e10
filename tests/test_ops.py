"""The PyTensor Ops of gpu_xnor/ops.py inside compiled functions."""
import importlib.util

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from gpu_xnor import ops


def pm1(rng, shape):
    return np.where(rng.random(shape) < 0.5, np.float32(-1), np.float32(1))


def test_ops_in_a_compiled_function_equal_the_float_product():
    rng = np.random.default_rng(0)
    w = pm1(rng, (129, 40))
    a, b = pt.matrix("a", dtype="float32"), pt.matrix("b", dtype="float32")
    packed = pytensor.shared(ops.pack_weights(w), name="w_packed")
    f = pytensor.function([a, b], [ops.BaselineGemm()(a, b), ops.XnorGemmPaper()(a, b), ops.XnorGemm()(a, b),
                                   ops.XnorGemmPacked()(a, packed), ops.XnorGemm()(a, b).shape],
                          mode="CVM")
    x = pm1(rng, (23, 129))
    *outs, shape = f(x, w)
    want = (x.astype(np.int64) @ w.astype(np.int64)).astype(np.float32)
    for out in outs:
        assert out.dtype == np.float32 and np.array_equal(out, want)
    assert tuple(shape) == (23, 40)


def test_baseline_op_on_real_inputs_and_in_a_larger_graph():
    rng = np.random.default_rng(1)
    a = pt.matrix("a", dtype="float32")
    w = rng.standard_normal((30, 7)).astype(np.float32)
    f = pytensor.function([a], pt.tanh(ops.BaselineGemm()(a * 2, pt.constant(w))).sum(axis=1), mode="CVM")
    x = rng.standard_normal((5, 30)).astype(np.float32)
    np.testing.assert_allclose(f(x), np.tanh((2 * x) @ w).sum(axis=1), rtol=1e-4, atol=1e-5)


def test_ops_are_inference_only_and_check_their_inputs():
    a = pt.matrix("a", dtype="float32")
    with pytest.raises(NotImplementedError, match="inference only"):
        pytensor.grad(ops.XnorGemm()(a, a).sum(), a)
    with pytest.raises(TypeError, match="float32 matrix"):
        ops.BaselineGemm()(pt.matrix(dtype="float64"), a)
    with pytest.raises(TypeError, match="unsigned"):
        ops.XnorGemmPacked()(a, a)
    with pytest.raises(ValueError, match="device"):
        ops.XnorGemm("tpu")


def test_gpu_ops_use_the_cuda_module():
    if importlib.util.find_spec("pycuda") is None:
        pytest.skip("pycuda is not installed: the GPU Ops cannot run here")
    try:
        import pycuda.autoinit  # noqa: F401
    except Exception as e:  # no driver or no GPU
        pytest.skip(f"no usable CUDA device: {e}")
    rng = np.random.default_rng(2)
    x, w = pm1(rng, (16, 500)), pm1(rng, (500, 30))
    a, b = pt.matrix("a", dtype="float32"), pt.matrix("b", dtype="float32")
    packed = pytensor.shared(ops.pack_weights(w, "gpu"), name="w_packed")
    f = pytensor.function([a, b], [ops.BaselineGemm("gpu")(a, b), ops.XnorGemmPaper("gpu")(a, b),
                                   ops.XnorGemm("gpu")(a, b), ops.XnorGemmPacked("gpu")(a, packed)],
                          mode="CVM")
    for out in f(x, w):
        assert np.array_equal(out, x @ w)
