"""The first gradient of a step goes straight into the optimizer's flat gradient buffer: the layers
pass Parameter.grad_out() as their gradient op's ``out`` (the buffers are made at that first
gradient, also when the optimizer was built before Module.to), and a second backward pass in the
same step (a GAN's D on its real, then its fake batch) adds into it: the gradient ops' own kernels
add (``accumulate``). On the CPU and on the CPU execution layer (fastconv.emu, the CUDA C family):
the sum of the two passes' separate gradients (within relative L2 error 1e-6, not bit for bit:
reductions choose their vector width, and so their rounding, by the arrays' alignment, which
differs between the runs), no accumulate launch in either pass (one add per parameter in the
second before the ops took ``accumulate``)."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv
from backends import NO_GXX
from fastconv import emu, nn, optim
from fastconv.testing import assert_close, to_numpy


@pytest.fixture(scope="module", params=["cpu", pytest.param("emu", marks=NO_GXX)])
def xp(request):
    if request.param == "cpu":
        yield np
        return
    with emu.activate() as cp, fastconv.using(poison=True, kernels="cupy"):
        yield cp


def _model():
    rng = np.random.default_rng(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, rng=rng), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1, rng=rng), nn.Flatten(),
                         nn.Linear(2 * 12 * 12, 6, rng=rng), nn.BatchNorm1d(6))


def _batch(seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((5, 2, 6, 6)).astype(np.float32), rng.standard_normal((5, 6)).astype(np.float32)


def _passes(xp, batches):
    """The model after a backward pass per batch in one step, its SGD (built before .to(), as the
    trainers build it) and the accumulate launches of each pass on emu."""
    m = _model()
    opt = optim.SGD(m.parameters(), lr=0.1)
    m.to("cpu" if xp is np else "cuda")
    m.zero_grad()
    adds = []
    for x, dy in batches:
        m.forward(xp.asarray(x))
        with emu.trace() as t:
            m.backward(xp.asarray(dy), input_grad=False)
        adds.append(t.launch_names.count("accumulate_v2"))
    return m, opt, adds


def test_two_passes_add_into_the_flat_gradient_buffer(xp):
    b1, b2 = _batch(1), _batch(2)
    singles = [[to_numpy(p.grad).copy() for p in _passes(xp, [b])[0].parameters()] for b in (b1, b2)]
    m, opt, adds = _passes(xp, [b1, b2])
    for (name, p), g1, g2 in zip(m.named_parameters(), *singles):
        assert p.grad is p.grad_buffer, f"{name}: the gradient is not the flat buffer's view"
        assert_close(p.grad, g1.astype(np.float64) + g2, 1e-6, f"{name}: not the sum of the two passes")
    if xp is not np:
        assert adds == [0, 0], adds
    opt.step()   # the update reads the summed gradients from the flat buffer
