"""Element-wise and reduction grids of the cupy kernel family and the int32/grid-size limits every
launcher checks (pure Python, no GPU)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastconv.backends.cuda import config as cfg


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


def test_channel_splits_tile_the_rows():
    assert cfg.channel_splits(64, 128, 784, 132) == (9, 15)   # ~4 blocks per SM over 64 channels
    assert cfg.channel_splits(1024, 128, 784, 132) == (1, 128)  # channels alone fill the GPU
    assert cfg.channel_splits(4, 3, 10, 132) == (1, 3)         # too few elements to split
    with pytest.raises(ValueError, match="channel_splits: got channels=0"):
        cfg.channel_splits(0, 1, 1, 132)


@settings(max_examples=200, deadline=None)
@given(c=st.integers(1, 70000), rows=st.integers(1, 5000), hw=st.integers(1, 5000), sms=st.integers(1, 200))
def test_channel_splits_cover_every_row_once(c, rows, hw, sms):
    splits, chunk = cfg.channel_splits(c, rows, hw, sms)
    assert (splits - 1) * chunk < rows <= splits * chunk  # non-empty slices tiling [0, rows)
    assert splits == 1 or chunk * hw >= cfg.MIN_SLICE_ELEMS // 2


def test_check_int32_keeps_a_margin():
    # the kernels add tile offsets (k0 + BK, n0 + BN) to these sizes in 32-bit ints
    assert cfg.INT32_LIMIT == 2**31 - 1 - 4096
    assert cfg.check_int32("x", cfg.INT32_LIMIT, "N*P*Q") == cfg.INT32_LIMIT
    with pytest.raises(ValueError, match=r"x: got N\*P\*Q = 2147479552, expected at most 2147479551"):
        cfg.check_int32("x", cfg.INT32_LIMIT + 1, "N*P*Q")
    with pytest.raises(ValueError, match=r"x: got N\*P\*Q = 2147483648"):
        cfg.check_int32("x", 2**31, "N*P*Q")


def test_check_grid():
    assert cfg.check_grid("k", (2**31 - 1, 65535, 65535)) == (2**31 - 1, 65535, 65535)
    for bad in [(1, 65536, 1), (1, 1, 65536), (2**31, 1, 1), (0, 1, 1)]:
        with pytest.raises(ValueError, match=r"k: got a launch grid of .* expected 1 <= x <= 2147483647 and "
                                             r"1 <= y, z <= 65535"):
            cfg.check_grid("k", bad)
