"""CPU benchmarks: fastconv's NumPy path beside PyTorch CPU, one group per op and shape, named
<family>.<op>.<pass> <shape> (pooling rows are 2x2 windows, stride 2).

Run: python -m pytest benchmarks/bench_cpu.py --benchmark-json=bench_cpu.json
then: python benchmarks/ratio_table.py bench_cpu.json
Every fastconv result is checked against PyTorch before it is timed.
"""

import numpy as np
import pytest

from fastconv import nn, ops
from fastconv.settings import CONV_PASSES
from fastconv.optim import SGD
from fastconv.testing import assert_close
from shapes import BATCH, CONV_SHAPES, ELEMENTWISE_SHAPE, conv_arrays, lenet, torch_lenet

torch = pytest.importorskip("torch")
F = torch.nn.functional
PASSES = CONV_PASSES
ROUNDS = dict(rounds=5, warmup_rounds=1, iterations=1)


def _conv_case(shape, rng):
    """(x, w, dy, stride, pad) of one shape: shapes.conv_arrays on the host (the bias is not used)."""
    x, wt, _, dy = conv_arrays(np, shape, rng)
    return x, wt, dy, *shape[7:]


def _fastconv_conv(pass_, x, wt, dy, st, pd):
    if pass_ == "forward":
        return lambda: ops.conv2d_forward(x, wt, None, st, pd)
    if pass_ == "backward_data":
        return lambda: ops.conv2d_backward_data(dy, wt, x.shape, st, pd)
    return lambda: ops.conv2d_backward_weight(dy, x, wt.shape, st, pd)


def _torch_conv(pass_, x, wt, dy, st, pd):
    tx, tw, tdy = map(torch.from_numpy, (x, wt, dy))
    mask = (pass_ == "backward_data", pass_ == "backward_weight", False)

    if pass_ == "forward":
        return lambda: F.conv2d(tx, tw, None, st, pd)

    def run():
        grads = torch.ops.aten.convolution_backward(tdy, tx, tw, None, (st, st), (pd, pd), (1, 1), False, (0, 0), 1,
                                                    mask)
        return grads[0] if pass_ == "backward_data" else grads[1]

    return run


@pytest.mark.parametrize("pass_", PASSES)
@pytest.mark.parametrize("name", list(CONV_SHAPES))
@pytest.mark.parametrize("impl", ["fastconv", "torch"])
def test_conv(benchmark, impl, name, pass_):
    benchmark.group = f"conv.conv2d.{pass_} {name}"
    benchmark.extra_info.update(impl=impl, op="conv", shape=name, pass_=pass_)
    case = _conv_case(CONV_SHAPES[name], np.random.default_rng(0))
    fc = _fastconv_conv(pass_, *case)
    tc = _torch_conv(pass_, *case)
    if impl == "fastconv":
        assert_close(fc(), tc().numpy(), tol=1e-4, name=f"{name} {pass_}")
    benchmark.pedantic(fc if impl == "fastconv" else tc, **ROUNDS)


ELEMENTWISE = {
    "activation.relu.forward": (lambda x, dy: lambda: ops.relu_forward(x), lambda x, dy: lambda: F.relu(x)),
    "activation.relu.backward": (lambda x, dy: lambda: ops.relu_backward(dy, x),
                      lambda x, dy: lambda: torch.ops.aten.threshold_backward(dy, x, 0)),
    "pool.max_pool2d.forward": (lambda x, dy: lambda: ops.max_pool2d_forward(x, 2),
                           lambda x, dy: lambda: F.max_pool2d(x, 2, return_indices=True)),
    "pool.avg_pool2d.forward": (lambda x, dy: lambda: ops.avg_pool2d_forward(x, 2), lambda x, dy: lambda: F.avg_pool2d(x, 2)),
    "pool.avg_pool2d.backward": (lambda x, dy: lambda: ops.avg_pool2d_backward(dy[:, :, ::2, ::2].copy(), x.shape, 2),
                            lambda x, dy: lambda: torch.ops.aten.avg_pool2d_backward(
                                dy[:, :, ::2, ::2].contiguous(), x, (2, 2), (2, 2), (0, 0), False, True, None)),
}


@pytest.mark.parametrize("name", list(ELEMENTWISE))
@pytest.mark.parametrize("impl", ["fastconv", "torch"])
def test_elementwise(benchmark, impl, name):
    benchmark.group = f"{name} {ELEMENTWISE_SHAPE}"
    benchmark.extra_info.update(impl=impl, op=name)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(ELEMENTWISE_SHAPE, dtype=np.float32)
    dy = rng.standard_normal(ELEMENTWISE_SHAPE, dtype=np.float32)
    make = ELEMENTWISE[name][0 if impl == "fastconv" else 1]
    fn = make(x, dy) if impl == "fastconv" else make(torch.from_numpy(x), torch.from_numpy(dy))
    benchmark.pedantic(fn, **ROUNDS)


def test_maxpool_backward(benchmark):
    # separate: the backward needs the forward's argmax
    benchmark.group = f"pool.max_pool2d.backward {ELEMENTWISE_SHAPE}"
    benchmark.extra_info.update(impl="fastconv", op="pool.max_pool2d.backward")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(ELEMENTWISE_SHAPE, dtype=np.float32)
    y, arg = ops.max_pool2d_forward(x, 2)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    benchmark.pedantic(lambda: ops.max_pool2d_backward(dy, arg, x.shape, 2), **ROUNDS)


def test_maxpool_backward_torch(benchmark):
    benchmark.group = f"pool.max_pool2d.backward {ELEMENTWISE_SHAPE}"
    benchmark.extra_info.update(impl="torch", op="pool.max_pool2d.backward")
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal(ELEMENTWISE_SHAPE, dtype=np.float32))
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    dy = torch.from_numpy(rng.standard_normal(tuple(y.shape), dtype=np.float32))
    benchmark.pedantic(lambda: torch.ops.aten.max_pool2d_with_indices_backward(dy, x, 2, 2, 0, 1, False, idx),
                       **ROUNDS)


@pytest.mark.parametrize("impl", ["fastconv", "torch"])
def test_lenet_train_step(benchmark, impl):
    """One SGD-momentum step of the design's LeNet at batch 128 (images/s = 128 / time)."""
    benchmark.group = "model.lenet.train_step b128"
    benchmark.extra_info.update(impl=impl, op="model.lenet.train_step", images=BATCH)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 1, 28, 28), dtype=np.float32)
    labels = rng.integers(0, 10, BATCH)
    if impl == "fastconv":
        model = lenet(rng)
        opt = SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()

        def step():
            opt.zero_grad()
            loss = loss_fn.forward(model.forward(x), labels)
            model.backward(loss_fn.backward(), input_grad=False)
            opt.step()
            return loss
    else:
        model = torch_lenet()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        tx, ty = torch.from_numpy(x), torch.from_numpy(labels)

        def step():
            opt.zero_grad()
            loss = F.cross_entropy(model(tx), ty)
            loss.backward()
            opt.step()
            return loss
    benchmark.pedantic(step, rounds=10, warmup_rounds=2, iterations=1)
