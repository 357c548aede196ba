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
from fastconv.backends.cuda.config import KERNELS, REDUCE_WARP_SPLITS, TF32_TILES
from checks import TF32_L2, randn as _randn
from ops.test_activation import activations_all_passes
from ops.test_batchnorm import batchnorm_all_passes
from ops.test_conv import DEVICE_CASES as CONV_CASES, conv_all_passes
from ops.test_conv_winograd import CASES as WINOGRAD_CASES, PASSES as WINOGRAD_PASSES, winograd_case
from ops.test_dropout import dropout_all_passes
from ops.test_embedding import embedding_all_passes
from ops.test_loss import bce_with_logits_case, gan_stats_case, softmax_cross_entropy_case
from ops.test_optim_backends import adam_update_case, sgd_update_case
from ops.test_pool import pool_all_passes
from ops.test_pool_kernels import every_pool_2x2_variant
from test_emu_bandwidth import every_bandwidth_kernel


def randn(rng, *shape):
    return _randn(rng, shape, np.float32)


def run_every_op(cp, rng):
    """One small case of every op group and conv version: launches every kernel of the family."""
    backend = Backend("cupy", cp, "cupy")
    for version in CONV_VERSIONS:
        with conv_kernels(version):
            conv_all_passes(backend, rng, *CONV_CASES[3].values)
    with fastconv.using(conv_tile="t64x64", conv_splits=REDUCE_WARP_SPLITS):  # the many-split reduce
        conv_all_passes(backend, rng, *CONV_CASES[3].values)
    for tile in TF32_TILES:  # TF32, at checks.TF32_L2
        for vec in (False, True):  # C = 8, K = 140, P*Q = 256: backward-weight's both gathers
            with fastconv.using(tf32=True, conv_tile=tile, tf32_vector_gather=vec):
                conv_all_passes(backend, rng, *CONV_CASES[3].values, tol=TF32_L2)
    for case in WINOGRAD_CASES[1:3]:  # 5x5 and 3x3, every pass
        for what in WINOGRAD_PASSES:
            winograd_case(cp, what, case)
    pool_all_passes(backend, rng, (1, 2, 5, 5), (2, 2), (2, 2), (1, 1))
    every_pool_2x2_variant(cp, rng)
    for size, offset in ((13, 0), (13, 1)):
        activations_all_passes(backend, rng, size, offset)
    for training in (True, False):
        batchnorm_all_passes(backend, rng, (3, 4, 2, 2), training)
        batchnorm_all_passes(backend, rng, (6, 5), training)   # (N, C): the c32 kernels
    dropout_all_passes(backend, rng, 50, 0.5, 1)
    softmax_cross_entropy_case(backend, rng, 3, 5)       # one block: the kernel finishes the mean ...
    softmax_cross_entropy_case(backend, rng, 700, 100)   # ... more logits than ONE_BLOCK_ELEMS: sum_scale_v1
    bce_with_logits_case(backend, rng, (4, 1))
    bce_with_logits_case(backend, rng, (300, 5))
    gan_stats_case(backend, rng, 5)
    embedding_all_passes(cp, rng, 5, 3, 4, 2)
    sgd_update_case(backend, rng, 0.9, 0.0, False)
    adam_update_case(backend, rng)
    every_bandwidth_kernel(cp, rng)  # the pool/batchnorm/bias fast paths and multi-block reductions
    with fastconv.using(tf32=False):
        linear_cases.test_linear_forward_kernel(cp, 9, 130, 65)
        linear_cases.test_linear_backward_kernels(cp, 9, 130, 65)
        linear_cases.test_linear_split_k(cp, *linear_cases.SPLIT_SHAPES[0])
        linear_cases.test_linear_forward_rows(cp, *linear_cases.ROWS_SHAPES[0])
        linear_cases.test_linear_backward_rows(cp, *linear_cases.BACK_ROWS_SHAPES[2])
    graph_cases.test_capture_kernels_against_float64(cp)  # adam_update_v2, accumulate, bias_add
    _device_scalar_forms(cp, rng)


def _device_scalar_forms(cp, rng):
    """The kernels that read per-step scalars from the device (what a captured step needs) equal
    the forms with host scalars: sgd_update_v2 / adam_update_v3 (lr on the device; Adam's
    counters over two rows, as a flat update of two parameters) against sgd_update_v1 /
    adam_update_v2, then adam_update_v4 (int step, lr on the device) against adam_update_v1,
    dropout_forward_v2 (call counter) against dropout_forward_v1 with seed + calls,
    and accumulate_v2 writing instead of adding."""
    host = [randn(rng, 300) for _ in range(4)]
    host[3] = np.abs(host[3])
    a, b = ([cp.asarray(h) for h in host] for _ in range(2))
    lr = cp.asarray(np.array([0.05], np.float32))
    ops.sgd_update(a[0], a[1], a[2], 0.05, 0.9, 1e-3, True)
    ops.sgd_update(b[0], b[1], b[2], lr, 0.9, 1e-3, True)
    counters = [cp.asarray(np.array([[2, 0]] * 2, np.int32)) for _ in range(2)]
    ops.adam_update(a[0], a[1], a[2], a[3], counters[0][:1], 0.05, 0.5, 0.999)
    ops.adam_update(b[0], b[1], b[2], b[3], counters[1], lr, 0.5, 0.999)
    assert counters[0].get().tolist() == [[3, 0], [2, 0]] and counters[1].get().tolist() == [[3, 0], [3, 0]]
    ops.adam_update(a[0], a[1], a[2], a[3], 4, 0.05, 0.5, 0.999)
    ops.adam_update(b[0], b[1], b[2], b[3], 4, lr, 0.5, 0.999)
    x = b[1].reshape(30, 10)
    calls = cp.asarray(np.array([0xFFFFFFFF, 0], np.uint32))       # the counter wraps to 0
    y1, m1 = ops.dropout_forward(x, 0.3, 0x12345678 + 0xFFFFFFFF)
    y2, m2 = ops.dropout_forward(x, 0.3, 0x12345678, calls)
    assert calls.get().tolist() == [0, 0]
    acc = cp.asarray(host[1])
    ops.accumulate(acc, a[0], add=False)
    for u, w in zip(a + [y1, m1, acc], b + [y2, m2, a[0]]):
        assert not np.isnan(u.get()).any()
        np.testing.assert_array_equal(u.get(), w.get())


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



def test_one_block_losses_equal_the_two_launch_form(cp, rng, monkeypatch):
    """softmax_cross_entropy on a classifier's batch runs as one block that finishes the mean with
    sum_scale_v1's sum in its order: bit for bit the loss and dlogits of the two-launch form (forced
    by ONE_BLOCK_ELEMS = 0). bce_with_logits on a GAN's logits: one launch, the oracle's loss."""
    from fastconv import plan
    from fastconv.backends.cuda import loss as launchers
    z = cp.asarray(randn(rng, 128, 10) * 3)
    labels = cp.asarray(rng.integers(0, 10, 128).astype(np.int32))
    with emu.trace() as one:
        loss1, d1 = ops.softmax_cross_entropy(z, labels)
    monkeypatch.setattr(launchers, "ONE_BLOCK_ELEMS", 0)
    plan.clear_all()
    with emu.trace() as two:
        loss2, d2 = ops.softmax_cross_entropy(z, labels)
    plan.clear_all()
    assert one.launch_names == ["softmax_xent_rows_v1"], one.launch_names
    assert two.launch_names == ["softmax_xent_rows_v1", "sum_scale_v1"], two.launch_names
    assert np.isfinite(loss1.get()) and loss1.get().tobytes() == loss2.get().tobytes()
    np.testing.assert_array_equal(d1.get(), d2.get())
    with emu.trace() as t:
        bce_with_logits_case(Backend("cupy", cp, "cupy"), rng, (128, 1))
    assert t.launch_names == ["bce_logits_v1"], t.launch_names
