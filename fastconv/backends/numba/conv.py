"""Numba conv launchers and backend functions (the implicit-GEMM kernels are in conv_kernels.py),
the split-K sum and the multi-block bias-gradient kernels."""

from __future__ import annotations

from numba import cuda, float32, int32, uint32

from ... import settings
from ..cuda import config as _cfg
from ..cuda import winograd_config as _wcfg
from ..cuda.config import cdiv
from .activation import activate, activate_backward
from .conv_smallc_launch import (backward_weight_smallc_splits, launch_conv2d_backward_data_smallc,
                                 launch_conv2d_backward_weight_smallc, launch_conv2d_forward_smallc)
from .driver import _blocks, _check, _check_out, _empty, _in, launch
from .tiles import (ELEMENTWISE_THREADS, REDUCE_THREADS, WAVE_BLOCKS, _conv_geometry, _gemm_grid,
                    backward_weight_splits, bwd_phases, conv_tile, gemm_splits, grid_stride,
                    split_chunk, smallc_tile)


def sum_splits_v1(out, parts, n, splits, add):
    """out[i] = sum_s parts[s*n + i], summed in split order (deterministic), or out[i] += that sum
    when ``add`` (a gradient op's accumulate); 32-bit grid-stride loop.
    Work: splits*n FLOPs (adds); traffic (splits + 1)*n*4 bytes (+ n*4 read with add)."""
    i, step = grid_stride()
    while i < uint32(n):
        v = float32(0.0)
        j = i
        for _ in range(splits):
            v += parts[j]
            j = int32(j + n)
        out[i] = out[i] + v if add else v
        i = uint32(i + step)


def conv2d_backward_bias_v1(part, dy, n_img, k_out, pq, chunk):
    """part[s, k] = sum of dy[n, k, p, q] over the s-th ``chunk`` of the channel's N*P*Q elements
    (in (n, p, q) order). Grid (K, splits), block (REDUCE_THREADS,): several blocks per channel fill
    the card; each thread carries its (n, pq) position and dy offset by REDUCE_THREADS per step (no
    division in the loop), then a shared-memory tree reduction. With one split, part is db itself.
    Work: N*K*P*Q FLOPs (adds); traffic N*K*P*Q*4 bytes in, splits*K*4 bytes out."""
    buf = cuda.shared.array(REDUCE_THREADS, float32)
    k = int32(cuda.blockIdx.x)
    s = int32(cuda.blockIdx.y)
    tid = int32(cuda.threadIdx.x)
    kpq = int32(k_out * pq)
    e = int32(s * chunk + tid)
    end = int32(min(n_img * pq, s * chunk + chunk))
    n = int32(e // pq)
    i = int32(e - n * pq)
    off = int32(n * kpq + k * pq + i)
    dn = int32(REDUCE_THREADS // pq)  # the step in (n, i) digits, and in dy
    di = int32(REDUCE_THREADS - dn * pq)
    d_off = int32(dn * kpq + di)
    v = float32(0.0)
    while e < end:
        v += dy[off]
        e = int32(e + REDUCE_THREADS)
        i = int32(i + di)
        off = int32(off + d_off)
        if i >= pq:  # into the next image's plane of channel k
            i = int32(i - pq)
            off = int32(off + kpq - pq)
    buf[tid] = v
    cuda.syncthreads()
    width = REDUCE_THREADS // 2
    while width > 0:
        if tid < width:
            buf[tid] += buf[tid + width]
        cuda.syncthreads()
        width //= 2
    if tid == 0:
        part[int32(s * k_out + k)] = buf[0]


def backward_bias_splits(n_img: int, k_out: int, pq: int) -> int:
    """Blocks per channel of the bias gradient: about 8 blocks per SM of an H100 in all, each thread
    summing at least 16 elements."""
    return max(1, min(cdiv(8 * WAVE_BLOCKS, k_out), n_img * pq // (16 * REDUCE_THREADS), _cfg.MAX_GRID_YZ))


def _slices(splits, base_blocks: int, kred: int, z: int, tile) -> int:
    """Slices of a forward or backward-data reduction: ``splits`` as given (a positive int) or,
    when None, tiles.gemm_splits' choice within one wave of ``tile`` (1 where the base_blocks
    output tiles fill it: partial sums cost traffic)."""
    if splits is None:
        return gemm_splits(base_blocks, kred, z, tile.wave)
    return _positive(splits)


def _positive(splits) -> int:
    if not (isinstance(splits, int) and splits >= 1):
        raise ValueError(f"splits: got {splits!r}, expected a positive int")
    return splits


def _partials(dst, splits: int, workspace, what: str, add=False):
    """Where a split-K kernel writes: ``dst`` itself for one slice (unless its sum is to be added
    into dst, ``add``), else ``workspace`` (splits*|dst| floats, allocated when None)."""
    if splits == 1 and not add:
        return dst
    if workspace is None:
        workspace = _empty((splits * dst.size,), dst, what=f"{what} split workspace")
    return _check_out(workspace, "workspace", (splits * dst.size,))


def _sum_partials(dst, parts, splits: int, stream, add=False):
    """dst = the sum of the splits partial results in parts, added in slice order (deterministic);
    dst += that sum with ``add``."""
    if parts is not dst:
        launch("sum_splits_v1", (_blocks(dst.size, ELEMENTWISE_THREADS), 1, 1), (ELEMENTWISE_THREADS, 1, 1),
               (dst, parts, dst.size, splits, int(add)), stream)


def _winograd(what, w_shape, stride, dilation, groups, forced=False):
    """Whether pass ``what`` runs on the Winograd kernels (winograd.py): winograd_config.use_winograd of the
    conv_tile and tf32 settings (the CUDA C family's rule, so both families take the same path;
    it refuses the shapes it has no tables for), never when the caller ``forced`` a GEMM tile or
    split count (an explicit launcher argument wins over the setting; Winograd's own products are so
    launched). The launchers import winograd.py where they take it (it builds on this
    module's GEMM launchers)."""
    if forced:
        return False
    cur = settings.current()
    k, cg, r, s = w_shape
    return _wcfg.use_winograd(cur.conv_tile, cur.tf32, what, r, s, stride, dilation, groups, cg)


def launch_conv2d_forward(y, x, w, b, stride, padding, dilation, groups, stream=None, tile=None, splits=None,
                          workspace=None):
    """y = conv2d(x, w) (+ b); ``tile``: a tiles.Tile, default tiles.conv_tile's choice. The
    reduction is cut into ``splits`` slices (default: split only when the grid is under a wave) whose
    partial sums go to ``workspace`` (splits*|y| floats, allocated when None) and are added in a
    fixed order. With neither ``tile`` nor ``splits`` given, the small-channel kernel runs where
    tiles.smallc_tile serves the shape (a given tile or split count forces the implicit GEMM). With
    the conv_tile setting "winograd" the Winograd kernels run instead (winograd.py; no tile or split
    count applies)."""
    _check(x, "x"), _check(w, "w")
    geo = _conv_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    n, _, _, _, k, r, s, p, q = geo[:9]
    _check_out(y, "y", (n, k, p, q))
    if b is not None:
        _check_out(b, "b", (k,))
    if _winograd("forward", w.shape, stride, dilation, groups, tile is not None or splits is not None):
        from .winograd import winograd_forward
        return winograd_forward(y, x, w, b, padding, stream)
    small = tile is None and splits is None and smallc_tile("forward", geo)
    if small:
        return launch_conv2d_forward_smallc(y, x, w, b, geo, small, stream)
    tile = tile or conv_tile(k // groups, n * p * q, groups)
    kred = w.shape[1] * r * s
    splits, chunk = split_chunk(kred, _slices(splits, tile.blocks(k // groups, n * p * q) * groups, kred, groups,
                                                tile))
    grid = _gemm_grid("conv2d_forward", n * p * q, k // groups, groups * splits, tile)
    out = _partials(y, splits, workspace, "conv2d_forward")
    launch(f"conv2d_forward{tile.suffix}_v1", grid, tile.block,
           (out, x, w, w if b is None else b, int(b is not None)) + geo + (splits, chunk), stream)
    _sum_partials(y, out, splits, stream)
    return y


def launch_conv2d_backward_data(dx, dy, w, stride, padding, dilation, groups, stream=None, tile=None, splits=None,
                                workspace=None):
    """dx from dy and w, all stride phases in one launch (grid z = phases x groups x splits, each
    block decoding its phase on the device); ``tile``, ``splits`` and ``workspace`` (and the
    small-channel kernel) as for launch_conv2d_forward (every phase cuts its reduction into the same
    number of slices; a slice past a phase's reduction writes zeros; the Winograd kernels run as
    for launch_conv2d_forward, on dy with the filter flipped and transposed)."""
    _check(dy, "dy"), _check(w, "w")
    geo = _conv_geometry(dx.shape, w.shape, stride, padding, dilation, groups)
    n, c, h, wd, k, r, s, p, q = geo[:9]
    _check(dx, "dx")
    _check_out(dy, "dy", (n, k, p, q))
    if _winograd("backward_data", w.shape, stride, dilation, groups, tile is not None or splits is not None):
        from .winograd import winograd_forward
        return winograd_forward(dx, dy, w, None, (r - 1 - padding[0], s - 1 - padding[1]), stream, flip=True)
    small = tile is None and splits is None and smallc_tile("backward_data", geo)
    if small:
        return launch_conv2d_backward_data_smallc(dx, dy, w, geo, small, stream)
    phases = bwd_phases(h, wd, r, s, stride, padding, dilation)
    z = groups * stride[0] * stride[1]
    cols = n * phases[0][1] * phases[0][8]  # phase (0, 0) has the most columns
    tile = tile or conv_tile(c // groups, cols, z)
    splits = _slices(splits, sum(tile.blocks(c // groups, n * ph[1] * ph[8]) for ph in phases) * groups,
                     max(k // groups * ph[4] * ph[11] for ph in phases), z, tile)
    if z * splits > _cfg.MAX_GRID_YZ:
        raise ValueError(f"conv2d_backward_data: got a grid z of {stride[0] * stride[1]} stride phases x {groups} "
                         f"groups x {splits} splits = {z * splits} blocks, expected at most {_cfg.MAX_GRID_YZ}; "
                         "use fewer groups or splits per call")
    grid = _gemm_grid("conv2d_backward_data", cols, c // groups, z * splits, tile)
    out = _partials(dx, splits, workspace, "conv2d_backward_data")
    launch(f"conv2d_backward_data{tile.suffix}_v1", grid, tile.block, (out, dy, w) + geo + (splits,), stream)
    _sum_partials(dx, out, splits, stream)
    return dx


def launch_conv2d_backward_weight(dw, dy, x, stride, padding, dilation, groups, splits=None, workspace=None,
                                  stream=None, tile=None, add=False):
    """dw from dy and x (added into dw with ``add``). The reduction is cut into ``splits`` slices
    (default: see backward_weight_splits, whatever the grid) whose partial sums go to ``workspace``
    (splits*|dw| floats, allocated when None) and are then added in a fixed order, so the result
    is deterministic. ``tile`` (and the small-channel kernel, its blocks' partial sums added the
    same way) and the Winograd kernels as for launch_conv2d_forward."""
    _check(dy, "dy"), _check(x, "x")
    geo = _conv_geometry(x.shape, dw.shape, stride, padding, dilation, groups)
    n, _, _, _, k, r, s, p, q = geo[:9]
    _check(dw, "dw")
    _check_out(dy, "dy", (n, k, p, q))
    if _winograd("backward_weight", dw.shape, stride, dilation, groups, tile is not None or splits is not None):
        from .winograd import winograd_backward_weight
        return winograd_backward_weight(dw, dy, x, padding, stream, add)
    small = tile is None and splits is None and smallc_tile("backward_weight", geo)
    if small:
        splits, per = backward_weight_smallc_splits(geo, small)
        out = _partials(dw, splits, workspace, "conv2d_backward_weight", add)
        launch_conv2d_backward_weight_smallc(out, dy, x, geo, small, splits, per, stream)
    else:
        out, splits = backward_weight_gemm(dw, dy, x, geo, splits, workspace, stream, tile, add)
    _sum_partials(dw, out, splits, stream, add)
    return dw


def backward_weight_gemm(dw, dy, x, geo, splits, workspace, stream, tile, add=False):
    """The implicit-GEMM weight gradient of the _conv_geometry ``geo`` (``tile``, ``splits`` and
    ``workspace`` as for launch_conv2d_backward_weight, None: the default); returns (partial sums,
    splits): dw itself for one slice (not with ``add``), else the workspace's ``splits`` slices of
    |dw| floats, unsummed."""
    n, _, _, _, k, r, s, p, q = geo[:9]
    groups, cg = geo[15], dw.shape[1]
    tile = tile or conv_tile(k // groups, cg * r * s, groups, wgrad=True)
    if splits is None:
        splits = backward_weight_splits(dy.shape, dw.shape, groups, tile=tile)
    splits, chunk = split_chunk(n * p * q, _positive(splits))
    grid = _gemm_grid("conv2d_backward_weight", cg * r * s, k // groups, groups * splits, tile)
    out = _partials(dw, splits, workspace, "conv2d_backward_weight", add)
    launch(f"conv2d_backward_weight{tile.suffix}_v1", grid, tile.block, (out, dy, x) + geo + (splits, chunk), stream)
    return out, splits


def launch_conv2d_backward_bias(db, dy, stream=None, splits=None, workspace=None, add=False):
    """db = dy summed over (n, p, q) (db += that with ``add``): ``splits`` blocks per channel
    (default backward_bias_splits) whose partial sums go to ``workspace`` (splits*K floats,
    allocated when None) and are added in a fixed order."""
    _check(dy, "dy")
    n, k, p, q = dy.shape
    _check_out(db, "db", (k,))
    splits = _positive(backward_bias_splits(n, k, p * q) if splits is None else splits)
    chunk = cdiv(n * p * q, splits)
    grid = _cfg.check_grid("conv2d_backward_bias", (k, splits, 1))
    out = _partials(db, splits, workspace, "conv2d_backward_bias", add)
    launch("conv2d_backward_bias_v1", grid, (REDUCE_THREADS, 1, 1), (out, dy, n, k, p * q, chunk), stream)
    _sum_partials(db, out, splits, stream, add)
    return db


# backend functions (signatures of notes/INTERFACES.md): check inputs as the cupy family does,
# allocate (NaN-poisoned under the poison setting), then launch on the current stream


def conv2d_forward(x, w, b, stride, padding, dilation, groups, activation=None, slope=0.0):
    """y = act(conv2d(x, w) + b): this family applies the activation by a second, elementwise launch."""
    x, w = _in(x, "x"), _in(w, "w")
    b = None if b is None else _in(b, "b")
    geo = _conv_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    y = _empty((geo[0], geo[4], geo[7], geo[8]), x, what="conv2d_forward output")
    return activate(activation, launch_conv2d_forward(y, x, w, b, stride, padding, dilation, groups), slope)


def conv2d_backward_data(dy, w, x_shape, stride, padding, dilation, groups, b=None, activation=None, slope=0.0,
                         activation_output=None):
    """act(dx + b[c]) (ConvTranspose2d's forward): the bias added by the CUDA C family's bias_add_v1,
    the activation by a second elementwise launch of this family; or, given ``activation_output`` (the
    outputs of ``activation`` that were x), dx through that activation's backward, a second launch too."""
    dy, w = _in(dy, "dy"), _in(w, "w")
    dx = _empty(tuple(x_shape), dy, what="conv2d_backward_data output")
    launch_conv2d_backward_data(dx, dy, w, stride, padding, dilation, groups)
    if activation_output is not None:
        return activate_backward(activation, dx, _in(activation_output, "activation_output"), slope)
    if b is not None:
        from ..cuda.bias import bias_add
        bias_add(dx, b)
    return activate(activation, dx, slope)


def _result(out, shape, like, what):
    """The array a backend function writes into: ``out`` (checked as an input written in place:
    fastconv.ops has checked its shape) when given, else a new one."""
    return _empty(shape, like, what=what) if out is None else _in(out, "out", inplace=True)


def conv2d_backward_weight(dy, x, w_shape, stride, padding, dilation, groups, out=None, accumulate=False):
    dy, x = _in(dy, "dy"), _in(x, "x")
    dw = _result(out, tuple(w_shape), dy, "conv2d_backward_weight output")
    return launch_conv2d_backward_weight(dw, dy, x, stride, padding, dilation, groups, add=accumulate)


def conv2d_backward_bias(dy, out=None, accumulate=False):
    dy = _in(dy, "dy")
    return launch_conv2d_backward_bias(_result(out, (dy.shape[1],), dy, "conv2d_backward_bias output"), dy,
                                       add=accumulate)
