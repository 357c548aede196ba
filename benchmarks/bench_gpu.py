"""pytest-benchmark GPU rows (skipped without a GPU): the benchmarks/shapes.py conv shapes x 3
passes for the cupy and numba kernel families and torch cuDNN (fp32, TF32 off), ReLU and 2x2
max/avg pooling on 64x64x56x56 beside torch, and a device-to-device copy of the same size.
Grouped as <family>.<op>.<pass> <shape> so the backends sit side by side. Each round synchronizes the
device (pedantic mode), so the time includes the kernel, not only its launch.

    python -m pytest benchmarks/bench_gpu.py --benchmark-group-by=group
The ratio table with CUDA-event medians is benchmarks/gpu_table.py.
"""

import numpy as np
import pytest

from fastconv import ops
from fastconv.backend import gpu_available
from fastconv.settings import CONV_PASSES
from shapes import CONV_SHAPES, ELEMENTWISE_SHAPE, conv_arrays

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not gpu_available(), reason="no usable CUDA GPU")]
BACKENDS = ["cupy", "numba", "cudnn"]


def _run(benchmark, fn):
    import cupy as cp

    def call():
        fn()
        cp.cuda.Device().synchronize()
    call()
    benchmark.pedantic(call, rounds=20, iterations=1, warmup_rounds=3)


def _backend(name):
    if name == "numba":
        from fastconv.check import families
        if "numba" not in families():
            pytest.skip("numba-cuda cannot be imported here")
    if name == "cudnn":
        torch = pytest.importorskip("torch")
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        return torch
    return None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pass_", CONV_PASSES)
@pytest.mark.parametrize("shape", list(CONV_SHAPES))
def test_conv(benchmark, shape, pass_, backend):
    import cupy as cp
    torch = _backend(backend)
    benchmark.group = f"conv.conv2d.{pass_} {shape}"
    x, wt, _, dy = conv_arrays(cp, CONV_SHAPES[shape], np.random.default_rng(0))
    st, pd = CONV_SHAPES[shape][7:]
    if torch is None:
        fn = {"forward": lambda: ops.conv2d_forward(x, wt, None, st, pd, kernels=backend),
              "backward_data": lambda: ops.conv2d_backward_data(dy, wt, x.shape, st, pd, kernels=backend),
              "backward_weight": lambda: ops.conv2d_backward_weight(dy, x, wt.shape, st, pd, kernels=backend)}[pass_]
    else:
        tx, tw, tdy = (torch.from_dlpack(a) for a in (x, wt, dy))
        fn = {"forward": lambda: torch.nn.functional.conv2d(tx, tw, None, st, pd),
              "backward_data": lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tdy, st, pd),
              "backward_weight": lambda: torch.nn.grad.conv2d_weight(tx, tw.shape, tdy, st, pd)}[pass_]
    _run(benchmark, fn)


@pytest.mark.parametrize("backend", ["cupy", "numba", "torch", "copy"])
@pytest.mark.parametrize("op", ["relu_forward", "relu_backward", "max_pool2d_forward", "max_pool2d_backward",
                                "avg_pool2d_forward", "avg_pool2d_backward"])
def test_bandwidth(benchmark, op, backend):
    import cupy as cp
    name, pass_ = op.rsplit("_", 1)
    benchmark.group = f"{'activation' if name == 'relu' else 'pool'}.{name}.{pass_} {ELEMENTWISE_SHAPE}"
    rng = np.random.default_rng(1)
    x = cp.asarray(rng.standard_normal(ELEMENTWISE_SHAPE, dtype=np.float32))
    if backend == "copy":
        _run(benchmark, lambda: x.copy())
        return
    if backend == "torch":
        torch = _backend("cudnn")
        F = torch.nn.functional
        tx = torch.from_dlpack(x)
        ty = torch.relu(tx)
        tm, ti = F.max_pool2d(tx, 2, return_indices=True)
        fn = {"relu_forward": lambda: torch.relu(tx),
              "relu_backward": lambda: torch.ops.aten.threshold_backward(tx, ty, 0.0),
              "max_pool2d_forward": lambda: F.max_pool2d(tx, 2, return_indices=True),
              "max_pool2d_backward": lambda: torch.ops.aten.max_pool2d_with_indices_backward(
                  tm, tx, [2, 2], [2, 2], [0, 0], [1, 1], False, ti),
              "avg_pool2d_forward": lambda: F.avg_pool2d(tx, 2),
              "avg_pool2d_backward": lambda: torch.ops.aten.avg_pool2d_backward(
                  tm, tx, [2, 2], [2, 2], [0, 0], False, True, None)}[op]
        _run(benchmark, fn)
        return
    _backend(backend)
    y = ops.relu_forward(x)
    ym, am = ops.max_pool2d_forward(x, 2)
    fn = {"relu_forward": lambda: ops.relu_forward(x, kernels=backend),
          "relu_backward": lambda: ops.relu_backward(x, y, kernels=backend),
          "max_pool2d_forward": lambda: ops.max_pool2d_forward(x, 2, kernels=backend),
          "max_pool2d_backward": lambda: ops.max_pool2d_backward(ym, am, x.shape, 2, kernels=backend),
          "avg_pool2d_forward": lambda: ops.avg_pool2d_forward(x, 2, kernels=backend),
          "avg_pool2d_backward": lambda: ops.avg_pool2d_backward(ym, x.shape, 2, kernels=backend)}[op]
    _run(benchmark, fn)
