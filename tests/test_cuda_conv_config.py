"""Conv launch configuration of the cupy kernel family (pure Python, no GPU): tile choice, grids,
split-K slices, transposed-conv phases, the kernel-name table and the output-size formula."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastconv.backends.cuda import config as cfg


def test_conv_tile_choice():
    """The tuned choices (benchmarks/conv_sweep.py on an H200 and an H100, 132 SMs) for the benchmark rows,
    and TF32's untimed t32x128 for GEMMs of at most 32 rows."""
    assert cfg.conv_tile(32, 25, 132, wgrad=True) == "t64x64"      # lenet.conv1 backward-weight
    assert cfg.conv_tile(64, 800, 132, wgrad=True) == "t64x64"     # lenet.conv2 backward-weight
    assert cfg.conv_tile(32, 100352, 132) == "t32x128"             # lenet.conv1 forward
    assert cfg.conv_tile(32, 100352, 132, tf32=True) == "t32x128"  # TF32's own 32-row tile (untimed)
    assert cfg.conv_tile(32, 25088, 132, tf32=True) == "t32x128"   # lenet.conv2 backward-data
    assert cfg.conv_tile(32, 6272, 132, z=4) == "t64x128k16"       # fp32 phases keep their rule
    assert cfg.conv_tile(32, 6272, 132, z=4, tf32=True) == "t32x128"
    assert cfg.conv_tile(64, 25088, 132) == "t64x128"              # lenet.conv2 forward
    assert cfg.conv_tile(64, 6272, 132, z=4) == "t64x128k16"       # dcgan.d2 backward-data: 4 phases
    assert cfg.conv_tile(64, 6272, 132, z=4, tf32=True) == "t64x64"
    assert cfg.conv_tile(128, 6272, 132) == "t128x64"              # dcgan.d2 forward: 49 big tiles
    assert cfg.conv_tile(256, 2048, 132) == "t128x128"             # dcgan.d3 forward: 32 big tiles, split 4
    assert cfg.conv_tile(128, 1024, 132, wgrad=True) == "t128x128"  # dcgan.d2 backward-weight
    assert cfg.conv_tile(256, 6272, 132) == "t128x64"              # resnet.c4 forward: 98 big tiles
    assert cfg.conv_tile(256, 2304, 132, wgrad=True) == "t128x64"  # resnet.c4 backward-weight
    assert cfg.conv_tile(256, 100352, 132) == "t128x128"           # 1568 big tiles: many waves
    assert cfg.conv_tile(256, 2048, 132, tf32=True) == "t128x64"
    for m, n, z in [(1, 1, 1), (33, 5, 2), (500, 70000, 3)]:
        for tf32 in (False, True):
            for wgrad in (False, True):
                assert cfg.conv_tile(m, n, 132, z, tf32, wgrad) in (cfg.TF32_TILES if tf32 else cfg.CONV_TILES)
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
       sms=st.integers(1, 200), wgrad=st.booleans(), tf32=st.booleans())
def test_conv_splits_tile_the_reduction(m, n, red, z, sms, wgrad, tf32):
    tile = cfg.conv_tile(m, n, sms, z, tf32, wgrad)
    splits, chunk = cfg.conv_splits(m, n, red, tile, z, sms, wgrad=wgrad, tf32=tf32)
    assert 1 <= splits <= cfg.MAX_SPLITS
    assert z * splits <= cfg.MAX_GRID_YZ
    assert chunk % cfg.SPLIT_ALIGN == 0
    assert chunk % cfg.tile_spec(tile, tf32)[2] == 0  # whole BK tiles
    # slices [s*chunk, min(red, (s+1)*chunk)) are non-empty and cover [0, red) exactly
    assert (splits - 1) * chunk < max(red, 1) <= splits * chunk
    assert splits * chunk <= cfg.INT32_LIMIT + cfg.SPLIT_ALIGN
    if splits > 1:
        gx, gy, _ = cfg.conv_grid(m, n, tile, z)
        wave = sms * cfg.tile_spec(tile, tf32)[4]
        if wgrad and tf32:  # one wave, slices of at least TF32_WGRAD_MIN_CHUNK
            assert chunk >= cfg.TF32_WGRAD_MIN_CHUNK - cfg.SPLIT_ALIGN
            assert gx * gy * z * splits <= wave
        elif wgrad:  # slices of about WGRAD_CHUNK, up to WGRAD_WAVES waves; or the one-wave rule
            assert chunk >= min(cfg.WGRAD_CHUNK, cfg.MIN_SPLIT_CHUNK) - cfg.SPLIT_ALIGN
            assert gx * gy * z * splits <= max(cfg.WGRAD_WAVES * wave, wave)
        else:  # only grids under a wave are split, to at most a wave
            assert chunk >= (cfg.TF32_MIN_SPLIT_CHUNK if tf32 else cfg.MIN_SPLIT_CHUNK) - cfg.SPLIT_ALIGN
            assert gx * gy * z * splits <= wave


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 5000), red=st.integers(0, 10**7), out_elems=st.integers(1, 10**8), wgrad=st.booleans())
def test_conv_splits_cap_the_workspace(n, red, out_elems, wgrad):
    """The heuristic's workspace (splits x out_elems) stays <= MAX_WORKSPACE, with the split count
    it would pick uncapped when that fits; a forced count is not capped."""
    capped = cfg.conv_splits(8, n, red, "t64x64", 1, 132, wgrad=wgrad, out_elems=out_elems)
    free = cfg.conv_splits(8, n, red, "t64x64", 1, 132, wgrad=wgrad)
    assert capped[0] == 1 or capped[0] * out_elems <= cfg.MAX_WORKSPACE
    assert capped == free or free[0] * out_elems > cfg.MAX_WORKSPACE
    assert cfg.conv_splits(8, n, red, "t64x64", 1, 132, 64, out_elems=out_elems) == cfg.conv_splits(
        8, n, red, "t64x64", 1, 132, 64)


def test_conv_splits_fill_the_gpu_for_design_shapes():
    """The tuned split counts for the benchmark rows (132 SMs)."""
    # lenet.conv1 backward-weight: M=32, N=25, reduction 128*28*28 in slices of about WGRAD_CHUNK
    splits, chunk = cfg.conv_splits(32, 25, 128 * 784, "t64x64", 1, 132, wgrad=True)
    assert (splits, chunk) == (392, 256)
    # resnet.c4 backward-weight: 72 blocks x 16 slices of 392 (under WGRAD_WAVES waves)
    assert cfg.conv_splits(256, 2304, 32 * 196, "t128x64", 1, 132, wgrad=True) == (16, 392)
    # resnet.c2 backward-weight: 9 blocks, capped at WGRAD_WAVES waves of t64x64 (6 blocks per SM)
    splits, _ = cfg.conv_splits(64, 576, 64 * 3136, "t64x64", 1, 132, wgrad=True)
    assert splits * 9 <= cfg.WGRAD_WAVES * 132 * 6 and splits >= 300
    # dcgan.d3 forward: 32 blocks of t128x128 split 4 ways (one wave), slices of 288
    assert cfg.conv_splits(256, 2048, 128 * 9, "t128x128", 1, 132) == (4, 288)
    # lenet.conv2 forward: 196 blocks of t64x128 (3 per SM) split 2 ways
    assert cfg.conv_splits(64, 25088, 800, "t64x128", 1, 132) == (2, 400)
    # strided backward-data phases count a wave at 3 blocks per SM: dcgan.d2's 392 t64x64 blocks
    # are not split, dcgan.d3's 128 t128x64 blocks are split 3 ways
    assert cfg.conv_splits(64, 6272, 512, "t64x64", 4, 132, phased=True) == (1, 512)
    assert cfg.conv_splits(128, 2048, 1024, "t128x64", 4, 132, phased=True) == (3, 344)
    # a grid of a full wave is not split, nor a reduction under 2 * MIN_SPLIT_CHUNK
    assert cfg.conv_splits(256, 100352, 2304, "t128x128", 1, 132) == (1, 2304)
    assert cfg.conv_splits(8, 8, 2 * cfg.MIN_SPLIT_CHUNK - 8, "t64x64", 1, 132)[0] == 1


def test_tf32_tile_choice_and_splits():
    """TF32 picks from TF32_TILES, splits in whole BK tiles of that table and counts a wave with
    its tiles' blocks per SM."""
    assert cfg.conv_tile(32, 25, 132, tf32=True, wgrad=True) == "t64x64"   # lenet.conv1 backward-weight
    assert cfg.conv_tile(32, 25088, 132, tf32=True) == "t32x128"           # lenet.conv2 backward-data: m = 32
    assert cfg.conv_tile(64, 200704, 132, tf32=True) == "t64x128"          # resnet.c2 forward
    assert cfg.conv_tile(256, 6272, 132, tf32=True) == "t128x64"           # resnet.c4 forward
    assert cfg.conv_tile(256, 100352, 132, tf32=True) == "t128x128"        # many waves of big tiles
    # backward-weight: t128x128 when one wave of it leaves slices of >= TF32_WGRAD_WIDE_CHUNK, else t128x64
    assert cfg.conv_tile(256, 2304, 132, tf32=True, wgrad=True, red=32 * 196) == "t128x128"  # resnet.c4: 896
    assert cfg.conv_tile(256, 1152, 132, tf32=True, wgrad=True, red=128 * 16) == "t128x64"   # dcgan.d3: 146
    assert cfg.conv_tile(128, 1024, 132, tf32=True, wgrad=True, red=128 * 49) == "t128x64"   # dcgan.d2: 190
    assert cfg.conv_tile(256, 100352, 132, tf32=True, wgrad=True, red=64) == "t128x128"      # many waves
    assert cfg.conv_tile(128, 1024, 132, tf32=True, wgrad=True, red=512 * 33) == "t128x128"  # 8 blocks, 33 slices
    assert cfg.conv_tile(128, 1024, 132, tf32=True, wgrad=True, red=512 * 33 - 1) == "t128x64"
    assert cfg.conv_tile(64, 800, 132, tf32=True, wgrad=True) == "t64x128"  # lenet.conv2 backward-weight
    # a strided backward-data's phases are not split with TF32 (dcgan.d2: 4 phases, 392 t64x128 blocks)
    assert cfg.conv_splits(64, 6272, 512, "t64x128", 4, 132, tf32=True, phased=True) == (1, 512)
    # backward-weight: one wave of the tile's blocks, slices >= TF32_WGRAD_MIN_CHUNK (lenet.conv2: 7
    # blocks, 56 slices; dcgan.d2: 16 t128x64 blocks, 24; dcgan.d3: 36, 11; resnet.c2: 5, 79; resnet.c4:
    # 36 t128x128 blocks, 7)
    assert cfg.conv_splits(64, 800, 128 * 196, "t64x128", 1, 132, wgrad=True, tf32=True) == (56, 448)
    assert cfg.conv_splits(128, 1024, 128 * 49, "t128x64", 1, 132, wgrad=True, tf32=True) == (24, 272)
    assert cfg.conv_splits(256, 1152, 128 * 16, "t128x64", 1, 132, wgrad=True, tf32=True) == (11, 192)
    assert cfg.conv_splits(64, 576, 64 * 3136, "t64x128", 1, 132, wgrad=True, tf32=True) == (79, 2544)
    assert cfg.conv_splits(256, 2304, 32 * 196, "t128x128", 1, 132, wgrad=True, tf32=True) == (7, 896)
    # short reductions keep slices of TF32_WGRAD_MIN_CHUNK: 36 blocks of a 1000-long one, 7 slices of 144
    assert cfg.conv_splits(256, 1152, 1000, "t128x64", 1, 132, wgrad=True, tf32=True) == (7, 144)
    # 1568 blocks, more than a wave already: not split; the workspace cap holds
    assert cfg.conv_splits(256, 100352, 6272, "t128x128", 1, 132, wgrad=True, tf32=True) == (1, 6272)
    assert cfg.conv_splits(64, 800, 128 * 196, "t64x128", 1, 132, wgrad=True, tf32=True, out_elems=1 << 21)[0] == 8
    # lenet.conv2 backward-data: 196 t32x128 blocks, 4 per SM: 2 slices of 800 (whole BK-16 tiles)
    assert cfg.conv_splits(32, 25088, 1600, "t32x128", 1, 132, tf32=True) == (2, 800)
    # forward: slices of at least TF32_MIN_SPLIT_CHUNK (dcgan.d2: 98 t128x64 blocks, 2 slices of 512)
    assert cfg.conv_splits(128, 6272, 1024, "t128x64", 1, 132, tf32=True) == (2, 512)
    assert cfg.conv_splits(64, 6272, 512, "t64x128", 4, 132, tf32=True, phased=True, force=2)[0] == 2
    assert cfg.tile_spec("t128x64", tf32=True) == cfg.TF32_TILES["t128x64"] != cfg.tile_spec("t128x64")
    # dcgan.d3-sized forward on the BK 16 tile: 64 blocks, a wave of 132 x 3, but slices of at least
    # TF32_MIN_SPLIT_CHUNK: 2 slices of 36 BK tiles
    assert cfg.conv_splits(256, 2048, 1152, "t128x64", 1, 132, tf32=True) == (2, 576)
    with pytest.raises(KeyError):
        cfg.tile_spec("t64x32", tf32=True)  # no TF32 tile of that name (the launcher names the setting)


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
