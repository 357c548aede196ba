"""The numba activation kernels under the CUDA simulator against the NumPy path run in float64.

Shapes are tiny (the simulator runs each GPU thread as a Python thread). Outputs are poisoned with
NaN before each launch so unwritten elements fail; run by tests/test_numba_sim.py.
"""

import pytest

from fastconv.backends import cpu
from fastconv.backends import numba as nb
from fastconv.testing import F32_TOL, assert_close
from sim_arrays import _empty, _f64, _rand

assert nb.SIMULATOR


@pytest.mark.parametrize("shape", [(7,), (3, 5, 47), (2, 3, 4, 5, 2), (2, 1100)],
                         ids=["1d", "3d-3blocks", "5d", "2-full-blocks-and-a-ragged-one"])
def test_activations(rng, shape):
    x, dy = _rand(rng, *shape), _rand(rng, *shape)
    slope = 0.2
    y = nb.launch_relu_forward(_empty(*shape), x)
    ref_y = cpu.relu_forward(_f64(x))
    assert_close(y, ref_y, F32_TOL, "relu forward")
    assert_close(nb.launch_relu_backward(_empty(*shape), dy, y), cpu.relu_backward(_f64(dy), ref_y), F32_TOL,
                 "relu backward")
    y = nb.launch_leaky_relu_forward(_empty(*shape), x, slope)
    ref_y = cpu.leaky_relu_forward(_f64(x), slope)
    assert_close(y, ref_y, F32_TOL, "leaky_relu forward")
    assert_close(nb.launch_leaky_relu_backward(_empty(*shape), dy, y, slope),
                 cpu.leaky_relu_backward(_f64(dy), ref_y, slope), F32_TOL, "leaky_relu backward")
    y = nb.launch_tanh_forward(_empty(*shape), x)
    ref_y = cpu.tanh_forward(_f64(x))
    assert_close(y, ref_y, F32_TOL, "tanh forward")
    assert_close(nb.launch_tanh_backward(_empty(*shape), dy, y), cpu.tanh_backward(_f64(dy), ref_y), F32_TOL,
                 "tanh backward")


def test_activations_walk_the_grid(rng, monkeypatch):
    """A grid capped at one block: its threads take several trips of UNROLL elements, the last
    one ragged (2200 elements, 1024 per trip)."""
    from fastconv.backends.numba import activation
    monkeypatch.setattr(activation, "MAX_BLOCKS", 1)
    test_activations(rng, (2200,))


@pytest.mark.parametrize("act,slope", [("relu", 0.0), ("leaky_relu", 0.2), ("tanh", 0.0)])
def test_backward_data_through_activation_output(rng, act, slope):
    """The family's conv2d_backward_data with ``activation_output``: its backward-data launch, then the
    activation's backward at those outputs (a second launch of this family), against the CPU path."""
    x_shape, w = (2, 3, 5, 4), _rand(rng, 4, 3, 3, 3)
    dy, z = _rand(rng, 2, 4, 3, 2), _rand(rng, *x_shape)
    y = cpu.activation.activate(act, z, slope)
    args = ((1, 1), (0, 0), (1, 1), 1)
    got = nb.conv2d_backward_data(dy, w, x_shape, *args, activation=act, slope=slope, activation_output=y)
    want = cpu.conv2d_backward_data(_f64(dy), _f64(w), x_shape, *args, activation=act, slope=slope,
                                    activation_output=_f64(y))
    assert_close(got, want, F32_TOL, f"conv2d_backward_data through {act}")
