"""Split-K summed by the last block of each output tile on a GPU (marker ``gpu``), where a tile's
split blocks run at once and any of them may arrive last (the CPU layer runs blocks in launch
order): on the benchmark shapes of benchmarks/shapes.py, every pass, fp32 and TF32, the launcher's
own split count and forced 2, 3 and 5 splits, each call under conv_splitk "last_block" the same
bits as under "reduce" (the separate reduce launch), call after call (the tile counters must come
back to zero each time), outputs NaN-poisoned."""

import numpy as np
import pytest

import fastconv
from fastconv import ops

pytestmark = pytest.mark.gpu

# lenet.conv2, dcgan.d3, resnet.c4: N, C, H, W, K, R, S, stride, padding
SHAPES = [(128, 32, 14, 14, 64, 5, 5, 1, 2), (128, 128, 7, 7, 256, 3, 3, 2, 1), (32, 256, 14, 14, 256, 3, 3, 1, 1)]
CALLS = 5


@pytest.mark.parametrize("tf32", [False, True], ids=["fp32", "tf32"])
@pytest.mark.parametrize("shape", SHAPES, ids=["lenet.conv2", "dcgan.d3", "resnet.c4"])
def test_last_block_sum_is_the_reduce_bit_for_bit(shape, tf32):
    import cupy as cp

    from fastconv.backends.cuda import conv as launchers
    n, c, h, w, k, r, s, st, pd = shape
    rng = np.random.default_rng(0)
    x = cp.asarray(rng.standard_normal((n, c, h, w), dtype=np.float32))
    wt = cp.asarray(rng.standard_normal((k, c, r, s), dtype=np.float32) * 0.1)
    b = cp.asarray(rng.standard_normal(k, dtype=np.float32))
    p, q = (h + 2 * pd - r) // st + 1, (w + 2 * pd - s) // st + 1
    dy = cp.asarray(rng.standard_normal((n, k, p, q), dtype=np.float32))
    passes = {"forward": lambda: launchers.conv2d_forward(x, wt, b, (st, st), (pd, pd), (1, 1), 1, activation="relu"),
              "backward_data": lambda: ops.conv2d_backward_data(dy, wt, x.shape, st, pd),
              "backward_weight": lambda: ops.conv2d_backward_weight(dy, x, wt.shape, st, pd)}
    for what, call in passes.items():
        for splits in (None, 2, 3, 5):
            with fastconv.using(poison=True, tf32=tf32, conv_splits=splits, conv_splitk="reduce"):
                want = cp.asnumpy(call()).view(np.uint32)
            with fastconv.using(poison=True, tf32=tf32, conv_splits=splits, conv_splitk="last_block"):
                for i in range(CALLS):
                    got = cp.asnumpy(call()).view(np.uint32)
                    assert np.array_equal(got, want), f"{what} splits {splits} call {i}: {(got != want).sum()} differ"
