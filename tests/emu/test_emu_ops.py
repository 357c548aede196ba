"""Every kernel of the CUDA C family, launched on the CPU by fastconv.emu through the real launchers,
and the barriers they rely on. The per-op cases live in the op-family tests (tests/ops/test_<family>.py,
backend "emu"); run_every_op runs one small case of each of them (also on a GPU, by
test_emu_gpu_crosscheck.py)."""

import fastconv
import fastconv.emu as emu
from backends import CONV_VERSIONS, Backend, conv_kernels
from fastconv.backends.cuda.config import KERNELS, TF32_TILES
from ops.test_activation import activations_all_passes
from ops.test_batchnorm import batchnorm_all_passes
from ops.test_conv import DEVICE_CASES as CONV_CASES, conv_all_passes
from ops.test_dropout import dropout_all_passes
from ops.test_loss import bce_with_logits_case, softmax_cross_entropy_case
from ops.test_optim_backends import adam_update_case, sgd_update_case
from ops.test_pool import pool_all_passes
from test_emu_bandwidth import every_bandwidth_kernel


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
    sgd_update_case(backend, rng, 0.9, 0.0, False)
    adam_update_case(backend, rng)
    every_bandwidth_kernel(cp, rng)  # the pool/batchnorm/bias fast paths and multi-block reductions


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
