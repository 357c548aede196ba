"""Launch-configuration helpers of the cupy kernel family (pure Python, no GPU)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastconv.backends import cuda_config as cfg


def test_elementwise_blocks():
    assert cfg.elementwise_blocks(0, 132) == 1
    assert cfg.elementwise_blocks(1, 132) == 1
    assert cfg.elementwise_blocks(256, 132) == 1
    assert cfg.elementwise_blocks(257, 132) == 2
    assert cfg.elementwise_blocks(10**9, 132) == 32 * 132
    assert cfg.elementwise_blocks(1024, 132, per_thread=4) == 1
    assert cfg.elementwise_blocks(1025, 132, per_thread=4) == 2
    with pytest.raises(ValueError, match="n=-1"):
        cfg.elementwise_blocks(-1, 132)


def test_warp_rows_blocks():
    assert cfg.warp_rows_blocks(1) == 1
    assert cfg.warp_rows_blocks(8) == 1
    assert cfg.warp_rows_blocks(9) == 2
    assert cfg.warp_rows_blocks(128) == 16


def test_conv_tile_choice():
    assert cfg.conv_tile(1, 100352, 132) == "t32x128"
    assert cfg.conv_tile(32, 100352, 132) == "t32x128"
    assert cfg.conv_tile(64, 200704, 132) == "t64x64"       # a 128-row tile would be half padding
    assert cfg.conv_tile(128, 6272, 132) == "t64x64"        # dcgan.d2 forward
    assert cfg.conv_tile(256, 2048, 132) == "t64x64"        # dcgan.d3 forward: 32 tiles of 128 < 33
    assert cfg.conv_tile(256, 6272, 132) == "t128x128"      # resnet.c4 forward: 98 tiles of 128
    assert cfg.conv_tile(256, 2304, 132) == "t128x128"      # resnet.c4 backward-weight: 36 tiles
    with pytest.raises(ValueError):
        cfg.conv_tile(0, 5, 132)


def test_conv_grid():
    assert cfg.conv_grid(256, 6272, "t64x64", 1) == (98, 4, 1)
    assert cfg.conv_grid(33, 129, "t128x128", 3) == (2, 1, 3)
    with pytest.raises(ValueError, match="65535"):
        cfg.conv_grid(64, 64, "t64x64", 70000)


@settings(max_examples=200, deadline=None)
@given(m=st.integers(1, 600), n=st.integers(1, 5000), red=st.integers(1, 10**6), groups=st.integers(1, 64),
       sms=st.integers(1, 200))
def test_wgrad_splits_tile_the_reduction(m, n, red, groups, sms):
    tile = cfg.conv_tile(m, n, sms)
    splits, chunk = cfg.wgrad_splits(m, n, red, tile, groups, sms)
    assert 1 <= splits <= cfg.MAX_WGRAD_SPLITS
    assert groups * splits <= cfg.MAX_GRID_YZ
    assert chunk % cfg.SPLIT_ALIGN == 0
    for bk in {t[2] for t in cfg.CONV_TILES.values()}:
        assert chunk % bk == 0
    # slices [z*chunk, min(red, (z+1)*chunk)) are non-empty and cover [0, red) exactly
    assert (splits - 1) * chunk < red <= splits * chunk
    if splits > 1:
        assert chunk >= cfg.MIN_WGRAD_CHUNK - cfg.SPLIT_ALIGN


def test_wgrad_splits_fill_the_gpu_for_design_shapes():
    # lenet.conv1 backward-weight: M=32, N=25, reduction 128*28*28
    splits, chunk = cfg.wgrad_splits(32, 25, 128 * 784, "t32x128", 1, 132)
    assert splits >= 100
    # resnet.c4: M=256, N=2304, reduction 32*14*14
    tile = cfg.conv_tile(256, 2304, 132)
    splits, _ = cfg.wgrad_splits(256, 2304, 32 * 196, tile, 1, 132)
    gx, gy, _ = cfg.conv_grid(256, 2304, tile, 1)
    assert gx * gy * splits >= 132


def test_check_int32():
    assert cfg.check_int32("x", 2**31 - 1, "N*P*Q") == 2**31 - 1
    with pytest.raises(ValueError, match=r"x: got N\*P\*Q = 2147483648"):
        cfg.check_int32("x", 2**31, "N*P*Q")


def test_conv_out_size_matches_ops():
    from fastconv.ops import conv_out_size
    for args in [(28, 5, 1, 2, 1), (14, 4, 2, 1, 1), (7, 3, 2, 1, 1), (9, 3, 3, 0, 2)]:
        assert cfg.conv_out_size(*args) == conv_out_size(*args)


def test_kernel_registry_covers_every_tile_and_pass():
    names = set(cfg.KERNELS["conv.cu"])
    for t in cfg.CONV_TILES:
        for p in ("conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight"):
            assert f"{p}_v2_{t}" in names
    for bm, bn, bk in cfg.CONV_TILES.values():
        assert cfg.CONV_THREADS % bk == 0 and (bm * bk) % cfg.CONV_THREADS == 0 and (bn * bk) % cfg.CONV_THREADS == 0


def test_loader_finds_sources_and_inlines_headers():
    from fastconv.backends import cuda_loader
    src = cuda_loader.source("conv.cu", {"CONV_BK_T128": 16})
    assert src.startswith("#define CONV_BK_T128 16\n")
    assert '#include "common.cuh"' not in src.splitlines() and "block_sum" in src and "#pragma once" not in src
    with pytest.raises(ValueError, match="kernel file"):
        cuda_loader.source("nope.cu")
    with pytest.raises(ValueError, match="kernel: got 'conv2d_forward_v9'"):
        cuda_loader.function("conv.cu", "conv2d_forward_v9")


def test_cpu_import_does_not_need_cupy():
    import subprocess
    import sys
    code = ("import sys; sys.modules['cupy'] = None; import fastconv, fastconv.ops, fastconv.backends.cuda_config, "
            "fastconv.backends.cuda_loader; import numpy as np; "
            "print(fastconv.ops.relu_forward(np.array([-1.0, 2.0])))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
