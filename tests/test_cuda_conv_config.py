"""Conv launch configuration of the cupy kernel family (pure Python, no GPU): tile choice, grids,
split-K slices, transposed-conv phases, the kernel-name table and the output-size formula."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastconv.backends.cuda import config as cfg


def test_conv_tile_choice():
    assert cfg.conv_tile(32, 25, 132) == "t64x32"            # lenet.conv1 backward-weight: N = C*R*S = 25
    assert cfg.conv_tile(1, 100352, 132) == "t32x128"
    assert cfg.conv_tile(32, 100352, 132) == "t32x128"
    assert cfg.conv_tile(64, 200704, 132) == "t64x128"       # 64 rows: no 128-row tile; enough columns
    assert cfg.conv_tile(64, 2048, 132) == "t64x64"          # 16 wide tiles < 132 SMs
    assert cfg.conv_tile(256, 6272, 132) == "t128x64"        # resnet.c4 forward: 98 128x128 tiles < 132
    assert cfg.conv_tile(256, 100352, 132) == "t128x128"     # 1568 big tiles fill a wave
    assert cfg.conv_tile(256, 2048, 132) == "t64x64"         # dcgan.d3 forward: split-K fills the rest
    assert cfg.conv_tile(256, 2048, 132, z=64) == "t128x128"  # many groups/phases give every SM a block
    with pytest.raises(ValueError):
        cfg.conv_tile(0, 5, 132)


def test_conv_grid():
    assert cfg.conv_grid(256, 6272, "t64x64", 1) == (98, 4, 1)
    assert cfg.conv_grid(33, 129, "t128x128", 3) == (2, 1, 3)
    assert cfg.conv_grid(32, 25, "t64x32", 2) == (1, 1, 2)
    with pytest.raises(ValueError, match="65535"):
        cfg.conv_grid(64, 64, "t64x64", 70000)


@settings(max_examples=200, deadline=None)
@given(m=st.integers(1, 600), n=st.integers(1, 5000), red=st.integers(0, 10**6), z=st.integers(1, 64),
       sms=st.integers(1, 200))
def test_conv_splits_tile_the_reduction(m, n, red, z, sms):
    tile = cfg.conv_tile(m, n, sms, z)
    splits, chunk = cfg.conv_splits(m, n, red, tile, z, sms)
    assert 1 <= splits <= cfg.MAX_SPLITS
    assert z * splits <= cfg.MAX_GRID_YZ
    assert chunk % cfg.SPLIT_ALIGN == 0
    for bk in {t[2] for t in cfg.CONV_TILES.values()}:
        assert chunk % bk == 0
    # slices [s*chunk, min(red, (s+1)*chunk)) are non-empty and cover [0, red) exactly
    assert (splits - 1) * chunk < max(red, 1) <= splits * chunk
    assert splits * chunk <= cfg.INT32_LIMIT + cfg.SPLIT_ALIGN
    if splits > 1:
        assert chunk >= cfg.MIN_SPLIT_CHUNK - cfg.SPLIT_ALIGN
        gx, gy, _ = cfg.conv_grid(m, n, tile, z)
        assert gx * gy * z < sms * cfg.CONV_TILES[tile][4]  # only grids under a wave are split


def test_conv_splits_fill_the_gpu_for_design_shapes():
    # lenet.conv1 backward-weight: M=32, N=25, reduction 128*28*28
    splits, _ = cfg.conv_splits(32, 25, 128 * 784, "t64x32", 1, 132)
    assert splits == cfg.MAX_SPLITS
    # dcgan.d3 forward: M=256, N=2048 (32x8x8 outputs), reduction 128*4*4
    tile = cfg.conv_tile(256, 2048, 132)
    splits, _ = cfg.conv_splits(256, 2048, 128 * 16, tile, 1, 132)
    gx, gy, _ = cfg.conv_grid(256, 2048, tile, 1)
    assert gx * gy * splits >= 132 * cfg.CONV_TILES[tile][4] // 2
    # a grid of a full wave is not split
    assert cfg.conv_splits(256, 100352, 2304, "t128x128", 1, 132) == (1, 2304)


def test_conv_splits_of_an_empty_reduction():
    """A backward-data phase no filter tap reaches: one empty slice (the kernel writes zeros)."""
    assert cfg.conv_splits(8, 8, 0, "t64x64", 4, 132) == (1, cfg.SPLIT_ALIGN)


@pytest.mark.parametrize("red", [cfg.INT32_LIMIT, cfg.INT32_LIMIT - 100_000, 2**30 + 12345, 1_500_000_000])
def test_conv_splits_slice_ends_fit_int32(red):
    """The kernel computes a slice's end as s*chunk + chunk in an int: at most splits*chunk."""
    splits, chunk = cfg.conv_splits(64, 64, red, "t64x64", 1, 132)
    assert splits * chunk <= cfg.INT32_LIMIT + cfg.SPLIT_ALIGN
    assert (splits - 1) * chunk < red <= splits * chunk
    assert chunk % cfg.SPLIT_ALIGN == 0


def test_phase_max_taps_and_activation_codes():
    assert [cfg.phase_max_taps(r, s, d) for r, s, d in [(4, 2, 1), (5, 2, 1), (3, 3, 2), (2, 3, 1), (3, 2, 2)]] == \
        [2, 3, 1, 1, 3]
    assert [cfg.activation_code(a) for a in (None, "relu", "leaky_relu", "tanh")] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="activation: got 'elu', expected one of None"):
        cfg.activation_code("elu")


def test_conv_out_size_matches_the_oracle():
    """The one output-size formula (fastconv.argcheck, used by ops and every backend)."""
    import oracle
    from fastconv.argcheck import conv_out_size
    for args in [(28, 5, 1, 2, 1), (14, 4, 2, 1, 1), (7, 3, 2, 1, 1), (9, 3, 3, 0, 2)]:
        assert conv_out_size(*args) == oracle.out_size(*args)


def test_kernel_registry_covers_every_tile_and_pass():
    names = set(cfg.KERNELS["conv.cu"])
    for t in cfg.CONV_TILES:
        for p in ("conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight"):
            assert f"{p}_v3_{t}" in names
    for bm, bn, bk, nt, minb in cfg.CONV_TILES.values():
        assert nt == bm * bn // 64 and nt % bk == 0 and bn % (nt // bk) == 0  # 8x8 outputs per thread
