"""Every kernel of the CUDA C family, launched on the CPU by fastconv.emu through the real launchers,
and the barriers they rely on. The per-op cases live in the op-family tests (tests/ops/test_<family>.py,
backend "emu"); run_every_op runs one small case of each of them (also on a GPU, by
test_emu_gpu_crosscheck.py)."""

import numpy as np

import fastconv
import fastconv.emu as emu
import test_graph_emu as graph_cases
import test_linear_emu as linear_cases
from backends import CONV_VERSIONS, Backend, conv_kernels
from fastconv import ops
from fastconv.backends.cuda.config import KERNELS, TF32_TILES
from checks import randn as _randn
from ops.test_activation import activations_all_passes
from ops.test_batchnorm import batchnorm_all_passes
from ops.test_conv import DEVICE_CASES as CONV_CASES, conv_all_passes
from ops.test_dropout import dropout_all_passes
from ops.test_embedding import embedding_all_passes
from ops.test_loss import bce_with_logits_case, gan_stats_case, softmax_cross_entropy_case
from ops.test_optim_backends import adam_update_case, sgd_update_case
from ops.test_pool import pool_all_passes
from test_emu_bandwidth import every_bandwidth_kernel


def randn(rng, *shape):
    return _randn(rng, shape, np.float32)


def run_every_op(cp, rng):
    """One small case of every op group and conv version: launches every kernel of the family."""
    backend = Backend("cupy", cp, "cupy")
    for version in CONV_VERSIONS:
        with conv_kernels(version):
            conv_all_passes(backend, rng, *CONV_CASES[3].values)
    for tile in TF32_TILES:  # TF32 (2^-9: twice the per-product rounding; bounds in tests/ops/test_conv_kernels.py)
        with fastconv.using(tf32=True, conv_tile=tile):
            conv_all_passes(backend, rng, *CONV_CASES[3].values, tol=2.0**-9)
    pool_all_passes(backend, rng, (1, 2, 5, 5), (2, 2), (2, 2), (1, 1))
    for size, offset in ((13, 0), (13, 1)):
        activations_all_passes(backend, rng, size, offset)
    for training in (True, False):
        batchnorm_all_passes(backend, rng, (3, 4, 2, 2), training)
    dropout_all_passes(backend, rng, 50, 0.5, 1)
    softmax_cross_entropy_case(backend, rng, 3, 5)
    bce_with_logits_case(backend, rng, (4, 1))
    gan_stats_case(backend, rng, 5)
    embedding_all_passes(cp, rng, 5, 3, 4, 2)
    sgd_update_case(backend, rng, 0.9, 0.0, False)
    adam_update_case(backend, rng)
    every_bandwidth_kernel(cp, rng)  # the pool/batchnorm/bias fast paths and multi-block reductions
    with fastconv.using(tf32=False):
        linear_cases.test_linear_forward_kernel(cp, 9, 130, 65)
        linear_cases.test_linear_backward_kernels(cp, 9, 130, 65)
    graph_cases.test_capture_kernels_against_float64(cp)  # adam_update_v2, accumulate, bias_add
    _multi_updates(cp, rng)


def _multi_updates(cp, rng):
    """sgd_update_multi / adam_update_multi (one launch for all tensors) equal one update per tensor."""
    shapes = [(70,), (3, 9)]
    host = [[randn(rng, *s) for s in shapes] for _ in range(4)]
    one, multi = ([[cp.asarray(a) for a in arrays] for arrays in host] for _ in range(2))
    ops.sgd_update_multi(multi[0], multi[1], multi[2], 0.05, 0.9, 1e-3, True)
    for p, g, v in zip(one[0], one[1], one[2]):
        ops.sgd_update(p, g, v, 0.05, 0.9, 1e-3, True)
    counters = [cp.asarray(np.array([[2, 0]] * len(shapes), np.int32)) for _ in range(2)]
    v_one, v_multi = ([cp.abs(a) for a in arrays[3]] for arrays in (one, multi))
    ops.adam_update_multi(multi[0], multi[1], multi[2], v_multi, [counters[1][i] for i in range(len(shapes))],
                          1e-2, 0.5, 0.999)
    for i in range(len(shapes)):
        ops.adam_update(one[0][i], one[1][i], one[2][i], v_one[i], counters[0][i], 1e-2, 0.5, 0.999)
    for a, b in zip(multi[0] + multi[2] + v_multi + [counters[1]], one[0] + one[2] + v_one + [counters[0]]):
        assert not np.isnan(a.get()).any()
        np.testing.assert_array_equal(a.get(), b.get())


def test_every_op_in_shuffled_thread_order(cp, rng):
    """The kernels' barriers hold: with the threads of each block run in a seeded random order
    between barriers, every op still matches the oracle."""
    with emu.shuffled(seed=12345):
        run_every_op(cp, rng)


def test_every_kernel_is_launched(cp, rng):
    """run_every_op launches every kernel that fastconv.backends.cuda.config.KERNELS lists."""
    with emu.trace() as t:
        run_every_op(cp, rng)
    listed = {name for names in KERNELS.values() for name in names}
    missing = sorted(listed - set(t.launch_names))
    assert not missing, f"kernels never launched by the ops: {missing}"

