"""Launchers of kernels/conv.cu (its TF32 tiles: conv_tf32.cu, small-channel kernels: conv_smallc.cu):
conv2d forward (bias and activation fused), backward data (phase-decomposed), backward weight, bias.
Tile, grid and split-K come from ``config``.

Paths (``conv_version`` setting 3, the default; 1 runs the direct reference kernels):
- C/G*R*S <= smallc_config.SMALLC and no ``conv_tile`` forced: the small-channel kernels of all
  three passes (when their tiles fit shared memory: smallc_config.smallc_*_tile), in fp32 also with
  the ``tf32`` setting on: they are bound by memory traffic, not FLOPs, so TF32 would gain nothing
  there and fp32 is the more accurate; backward-weight's per-block partial sums are added by the
  split-K reduce.
- otherwise the v3 implicit-GEMM core (the ``tf32`` setting: its TF32 tensor-core kernels, on
  TF32_TILES, for forward and backward-data of filters up to config.GATHER_MASK_TAPS taps per
  dimension: their loaders test bounds by per-column bitmasks of that many taps; wider filters run
  the fp32 tiles; with the ``tf32_vector_gather`` setting, the default, backward-weight runs its vec
  kernel, 16 bytes per copy from channels-last copies of dy and x made by nchw_to_nhwc_v1, when K/G
  and C/G are multiples of 4); forward and backward-data read weights packed by conv2d_pack_*_v1 into
  a scratch array; any pass whose grid is under a wave is split along its reduction into a workspace
  summed by conv2d_splitk_reduce_v1 (a few splits) or _v2 (from config.REDUCE_WARP_SPLITS on), which
  then adds bias/activation.
The bias gradient is kernels/bias.cu's (launched by bias.py, re-exported here as the conv family's).
With the ``autotune`` setting the three passes' tile and split count (and Winograd or not) are picked
by timing, per shape (autotune.py).
"""

from __future__ import annotations

import numpy as np

from ... import settings
from ...argcheck import conv_out_size
from . import config as cfg
from . import smallc_config as scfg
from . import winograd_config as wcfg
from .autotune import gemm_dims, tuned
from .bias import conv2d_backward_bias  # noqa: F401  (the conv family's bias gradient)
from .channels_last import to_nhwc as _to_nhwc
from .launch import _F32, _aligned, _alloc, _arg, _eltwise_grid, _epilogue, _i32, _i32s, _launch, _out, num_sms


_CONV_LABELS = "N C H W K R S P Q stride_h stride_w pad_h pad_w dilation_h dilation_w groups"


def _conv_ints(name, n, c, h, w, k, r, s, p, q, stride, padding, dilation, groups):
    return _i32s(name, _CONV_LABELS, (n, c, h, w, k, r, s, p, q, stride[0], stride[1], padding[0], padding[1],
                                      dilation[0], dilation[1], groups))


def _conv_shape_checks(name, n, c, h, w, k, r, s, p, q, groups):
    """Every tensor the kernels index in 32 bits: x/dx, y/dy and the weights."""
    cfg.check_int32(name, n * c * h * w, "N*C*H*W")
    cfg.check_int32(name, n * k * p * q, "N*K*P*Q")
    cfg.check_int32(name, k * (c // groups) * r * s, "K*C/groups*R*S")


def _tile(m, cols, red, z, tf32, wgrad, products=False):
    """The v3 tile: the conv_tile setting's, else config.conv_tile's; for Winograd's ``products`` the
    winograd_tile setting's, else winograd_config.winograd_tile's."""
    if products:
        tile = settings.current().winograd_tile
        return wcfg.winograd_tile(m, cols, num_sms(), z, wgrad) if tile is None else tile
    tile = settings.current().conv_tile
    if tile is None:
        return cfg.conv_tile(m, cols, num_sms(), z, tf32, wgrad, red)
    if tf32 and tile not in cfg.TF32_TILES:
        raise ValueError(f"conv_tile: got {tile!r} with tf32 on, expected one of {list(cfg.TF32_TILES)}")
    if not tf32 and tile not in cfg.CONV_TILES:
        why = (f"for a filter wider than {cfg.GATHER_MASK_TAPS} taps (it runs the fp32 tiles)"
               if settings.current().tf32 else "with tf32 off")
        raise ValueError(f"conv_tile: got {tile!r} {why}, expected one of {list(cfg.CONV_TILES)}")
    return tile


def gemm_tf32(what, r, s):
    """Whether pass ``what``'s GEMM runs on the TF32 tiles: the tf32 setting, and for forward and
    backward-data at most config.GATHER_MASK_TAPS taps per dimension (the bitmasks of their gathered
    operand's bounds; wider filters run the fp32 tiles there)."""
    return settings.current().tf32 and (what == "backward_weight" or max(r, s) <= cfg.GATHER_MASK_TAPS)


def _smallc(cg, r, s):
    """Whether the small-channel kernels may serve this filter shape (their tile must also fit)."""
    return settings.current().conv_tile is None and cg * r * s <= scfg.SMALLC


def _gemm(kernel, m, cols, red, z, out, what, args, tail=(), phased=False, tf32=False, products=False, vec=False,
          add=False):
    """Launch a v3 kernel over an m x cols GEMM (z = groups x phases; ``phased``: more than one
    phase; ``tf32``: on a TF32 tile, ``vec``: its vec backward-weight; ``products``: Winograd's
    products, see _tile) into ``out``, split along the reduction as config.conv_splits says. Returns
    the workspace and split count (the workspace is ``out`` when the kernel wrote ``out`` itself;
    never with ``add``: the sum is to be added into ``out`` by the split-K reduce)."""
    cur = settings.current()
    wgrad = kernel == "conv2d_backward_weight"
    tile = _tile(m, cols, red, z, tf32, wgrad, products)
    splits, chunk = cfg.conv_splits(m, cols, red, tile, z, num_sms(), cur.conv_splits, wgrad=wgrad, tf32=tf32,
                                    phased=phased, out_elems=out.size)
    cfg.check_int32(what, splits * out.size, "split-K workspace size")
    # the epilogue's float4 stores need a 16-byte aligned out: a given dw (a view) that is not gets
    # its one slice in a workspace too, and so does the vec backward-weight's, in (r, s, c) order
    direct = splits == 1 and not add and (not wgrad or (_aligned(out) and not vec))
    ws = out if direct else _alloc((splits, out.size), _F32, f"{what} split-K workspace")
    grid = cfg.check_grid(what, cfg.conv_grid(m, cols, tile, z * splits))
    name = f"{kernel}_v3_{'tf32_' if tf32 else ''}{'vec_' if vec else ''}{tile}"
    _launch("conv_tf32.cu" if tf32 else "conv.cu", name, grid, cfg.tile_spec(tile, tf32)[3],
            (args[0], args[1]) + args[2] + (ws,) + args[3] + (_i32(splits), _i32(chunk)) + tail)
    return ws, splits


def _reduce(ws, out, splits, b, plane, channels, act, slope, transpose=(0, 0), add=False, grad=False):
    """out = act(sum of the split-K workspace's slices + bias) (``grad``: through the backward of act at
    its outputs b, launch._epilogue), or out += that with ``add``: a thread
    per 4 outputs for a few splits, warps sharing the splits of 32 outputs from
    config.REDUCE_WARP_SPLITS on; ``transpose`` (rows, cols): the sums of a (M, rows, cols) array
    written into out as (M, cols, rows)."""
    tail = (_i32(plane), _i32(channels)) + _epilogue(b, act, slope, grad)
    bias, t = out if b is None else b, _i32s("dw", "rows cols", transpose) + (_i32(add),)
    if splits >= cfg.REDUCE_WARP_SPLITS:
        _launch("conv.cu", "conv2d_splitk_reduce_v2", (cfg.cdiv(out.size, 32),), 32 * min(32, splits),
                (ws, out, bias, np.int64(out.size), _i32(splits)) + tail + t)
        return
    vec = out.size % 4 == 0 and _aligned(ws, out)
    _launch("conv.cu", "conv2d_splitk_reduce_v1", _eltwise_grid(out.size, 4 if vec else 1), cfg.BLOCK,
            (ws, out, bias, _i32(out.size), _i32(splits)) + tail + (_i32(vec),) + t)


@tuned("forward")
def conv2d_forward(x, w, b, stride, padding, dilation, groups, activation=None, slope=0.01):
    """y = act(conv2d(x, w) + b); activation None, "relu", "leaky_relu" (negative slope ``slope``)
    or "tanh", fused into the kernel's epilogue."""
    act = cfg.activation_code(activation)
    x = _arg(x, "x")
    w = _arg(w, "w")
    b = None if b is None else _arg(b, "b")
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    p = conv_out_size(h, r, stride[0], padding[0], dilation[0])
    q = conv_out_size(wd, s, stride[1], padding[1], dilation[1])
    _conv_shape_checks("x", n, c, h, wd, k, r, s, p, q, groups)
    y = _alloc((n, k, p, q), _F32, "conv2d_forward output")
    ints = _conv_ints("x", n, c, h, wd, k, r, s, p, q, stride, padding, dilation, groups)
    fused, bias = _epilogue(b, act, slope), w if b is None else b
    if settings.current().conv_version == 1:
        _launch("conv.cu", "conv2d_forward_v1", _eltwise_grid(y.size), cfg.BLOCK, (x, w, bias, y) + ints + fused)
        return y
    if _winograd("forward", r, s, stride, dilation, groups, cg):
        _winograd_forward(x, w, b, y, padding, act, slope)
        return y
    tile = _smallc(cg, r, s) and scfg.smallc_forward_tile(cg, p, q, r, s, stride, dilation)
    if tile:
        tpr, tqq = tile
        warps = min(4, cfg.cdiv(k // groups, scfg.SMALLC_KT))
        grid = cfg.check_grid("x", (n * cfg.cdiv(p, tpr) * cfg.cdiv(cfg.cdiv(q, 4), tqq),
                                    cfg.cdiv(k // groups, scfg.SMALLC_KT * warps), groups))
        _launch("conv_smallc.cu", "conv2d_forward_smallc_v2", grid, 32 * warps,
                (x, w, bias, y) + ints + (_i32(tpr), _i32(tqq)) + fused + (_i32(q % 4 == 0 and _aligned(y)),))
        return y
    tf32 = gemm_tf32("forward", r, s)
    _forward_gemm(x, _pack_forward(w, groups, tf32), b, y, ints, groups, act, slope, tf32)
    return y


def _packed_forward(kg, crs, groups, what):
    """A new array for the forward GEMM's packed weights: (groups, C/G*R*S, K/G rounded up to 4), the
    layout of kernels/conv_index.cuh packed_forward_at."""
    return _alloc((groups, crs, cfg.cdiv(kg, 4) * 4), _F32, what)


def _pack_forward(w, groups, tf32):
    """w (K, C/G, R, S) packed for the forward GEMM by conv2d_pack_forward_v1 (tf32: rounded)."""
    kg, crs = w.shape[0] // groups, w.size // w.shape[0]
    wp = _packed_forward(kg, crs, groups, "conv2d_forward packed weights")
    cfg.check_int32("w", max(wp.size, w.size), "packed weight size")
    _launch("conv.cu", "conv2d_pack_forward_v1",
            cfg.check_grid("w", (cfg.cdiv(crs, cfg.PACK_TILE), cfg.cdiv(wp.shape[2], cfg.PACK_TILE), groups)),
            cfg.PACK_BLOCK,
            (w, wp) + _i32s("w", "K/groups K/groups_padded C/groups*R*S groups", (kg, wp.shape[2], crs, groups))
            + (_i32(tf32),))
    return wp


def _forward_gemm(x, wp, b, y, ints, groups, act, slope, tf32, products=False):
    """y = act(conv2d(x, w) + b) on the v3 core from w packed (wp: _packed_forward's layout), the GEMM
    split along C/G*R*S as config.conv_splits says, the splits summed with bias and activation
    (``products``: Winograd's, as _tile)."""
    n, k, p, q = y.shape
    kg, crs = k // groups, int(ints[1]) // groups * int(ints[5]) * int(ints[6])  # C/G*R*S
    fused = _epilogue(b, act, slope)
    ws, splits = _gemm("conv2d_forward", kg, n * p * q, crs, groups, y, "x", (x, wp, (wp if b is None else b,), ints),
                       fused, tf32=tf32, products=products)
    if splits > 1:
        _reduce(ws, y, splits, b, p * q, k, act, slope)


def _backward_args(what, dy, other, x_shape, w_shape, stride, padding, dilation, groups, out=None, add=False,
                   b=None, act=0, slope=0.0, grad=False):
    """The shared start of the backward passes: sizes (N, C, H, W, K, C/G, R, S, P, Q), the checked
    output (dx or dw: ``out`` when given, else new) and the int arguments; with conv_version 1 the
    direct kernel has then already filled the output and the ints are None. That kernel has no
    epilogue: to add into the output (``add``) or add a bias ``b`` and activation ``act`` to it, it
    writes a new array that a one-slice split-K reduce then adds or finishes (``grad``: b holds act's
    outputs, see _reduce)."""
    n, c, h, wd = x_shape
    k, cg, r, s = w_shape
    p, q = dy.shape[2], dy.shape[3]
    _conv_shape_checks("dy", n, c, h, wd, k, r, s, p, q, groups)
    out = _out(out, tuple(x_shape) if what == "data" else tuple(w_shape), f"conv2d_backward_{what} output")
    ints = _conv_ints("dy", n, c, h, wd, k, r, s, p, q, stride, padding, dilation, groups)
    if settings.current().conv_version == 1:
        direct = not add and b is None and not act
        into = out if direct else _alloc(out.shape, _F32, f"conv2d_backward_{what} output")
        _launch("conv.cu", f"conv2d_backward_{what}_v1", _eltwise_grid(out.size), cfg.BLOCK, (dy, other, into) + ints)
        if not direct:
            _reduce(into, out, 1, b, h * wd, c, act, slope, add=add, grad=grad)
        ints = None
    return (n, c, h, wd, k, cg, r, s, p, q), out, ints


@tuned("backward_data")
def conv2d_backward_data(dy, w, x_shape, stride, padding, dilation, groups, b=None, activation=None, slope=0.0,
                         activation_output=None):
    """act(dx of conv2d + b[c]) (ConvTranspose2d's forward pass, its bias and activation fused: no
    bias or activation by default); or, given ``activation_output`` (x's shape: the outputs of
    ``activation`` that were x; b None), dx through that activation's backward. One sub-convolution
    per output phase (h % stride_h, w % stride_w), each with only the filter taps that reach it. The
    bias and activation (or its backward) go into the kernel's epilogue (split: the split-K
    reduce's)."""
    act = cfg.activation_code(activation)
    dy, w = _arg(dy, "dy"), _arg(w, "w")
    grad = activation_output is not None
    b = _arg(activation_output, "activation_output") if grad else None if b is None else _arg(b, "b")
    (n, c, h, wd, k, cg, r, s, p, q), dx, ints = _backward_args("data", dy, w, x_shape, w.shape, stride, padding,
                                                                 dilation, groups, b=b, act=act, slope=slope,
                                                                 grad=grad)
    if ints is None:
        return dx
    fused = (w if b is None else b,) + _epilogue(b, act, slope, grad)
    if _winograd("backward_data", r, s, stride, dilation, groups, cg):
        _winograd_forward(dy, w, b, dx, (r - 1 - padding[0], s - 1 - padding[1]), act, slope, flip=True, grad=grad)
        return dx
    tile = _smallc(cg, r, s) and scfg.smallc_backward_data_tile(k // groups, h, wd, r, s, stride, dilation)
    if tile:
        tpr, tqq, kc = tile
        grid = cfg.check_grid("dy", (n * cfg.cdiv(cfg.cdiv(cfg.cdiv(h, stride[0]), 2), tpr)
                                     * cfg.cdiv(cfg.cdiv(cfg.cdiv(wd, stride[1]), 4), tqq), c, stride[0] * stride[1]))
        vec = stride[1] == 1 and wd % 4 == 0 and _aligned(dx)
        _launch("conv_smallc.cu", "conv2d_backward_data_smallc_v2", grid, 32 * min(4, k // groups),
                (dy, w, dx) + ints + (_i32(tpr), _i32(tqq), _i32(kc), _i32(vec)) + fused)
        return dx
    kg, phases, tf32 = k // groups, stride[0] * stride[1], gemm_tf32("backward_data", r, s)
    # the phase GEMMs: the largest phase's columns, its reduction (K/G x the most taps a phase has)
    _, cols, krs_max, _, _ = gemm_dims("backward_data", n, c, h, wd, k, r, s, stride, padding, dilation, groups)
    cp_ = cfg.cdiv(cg, 4) * 4
    wp = _alloc((phases, groups, krs_max, cp_), _F32, "conv2d_backward_data packed weights")
    cfg.check_int32("w", wp.size, "packed weight size")
    _launch("conv.cu", "conv2d_pack_backward_data_v1",   # a warp per row
            (cfg.cdiv(wp.size // cp_, cfg.PACK_BLOCK // 32),), cfg.PACK_BLOCK,
            (w, wp, _i32(kg), _i32(cg), _i32(cp_)) + ints[2:4] + ints[5:7] + ints[9:]
            + (_i32(krs_max), _i32(tf32)))
    ws, splits = _gemm("conv2d_backward_data", cg, cols, krs_max, groups * phases, dx, "dy", (dy, wp, (), ints),
                       (_i32(krs_max),) + fused, phased=phases > 1, tf32=tf32)
    if splits > 1:
        _reduce(ws, dx, splits, b, h * wd, c, act, slope, grad=grad)
    return dx


@tuned("backward_weight")
def conv2d_backward_weight(dy, x, w_shape, stride, padding, dilation, groups, out=None, accumulate=False):
    """dw of conv2d (into ``out`` when given; added into it with ``accumulate``): the small-channel
    kernel (slices of the batch, partial sums reduced) or the v3 core (split along N*P*Q when its
    grid is under a wave); a split's workspace is the launcher's own, its final sum goes into dw.
    With ``accumulate`` the last kernel adds: the split-K reduce (one slice of a workspace when
    the pass is not split) or Winograd's output transform."""
    dy, x = _arg(dy, "dy"), _arg(x, "x")
    (n, c, h, wd, k, cg, r, s, p, q), dw, ints = _backward_args("weight", dy, x, x.shape, w_shape, stride, padding,
                                                                 dilation, groups, out, accumulate)
    if ints is None:
        return dw
    if _winograd("backward_weight", r, s, stride, dilation, groups, cg):
        _winograd_backward_weight(dy, x, dw, padding, accumulate)
        return dw
    tp = _smallc(cg, r, s) and scfg.smallc_backward_weight_tile(cg, p, q, r, s, stride, dilation)
    vec = False  # the TF32 vec kernel: its columns run (r, s, c), its workspace is (K, R*S, C/G)
    if tp:
        chunks = cfg.cdiv(k // groups, 32)
        splits, per = scfg.smallc_backward_weight_splits(n * cfg.cdiv(p, tp), chunks * groups, num_sms(), dw.size)
        ws = (dw if splits == 1 and not accumulate
              else _alloc((splits, dw.size), _F32, "conv2d_backward_weight split workspace"))
        _launch("conv_smallc.cu", "conv2d_backward_weight_smallc_v1", cfg.check_grid("dy", (splits, chunks, groups)),
                scfg.SMALLC_WGRAD_THREADS, (dy, x, ws) + ints + (_i32(tp), _i32(per), _i32(q % 4 == 0 and _aligned(dy))))
    else:
        tf32 = gemm_tf32("backward_weight", r, s)
        # the vec kernel: 4 consecutive GEMM rows (K/G channels of a dy pixel) and 4 columns (C/G
        # channels of an x pixel) each one aligned 16-byte copy
        vec = tf32 and settings.current().tf32_vector_gather and (k // groups) % 4 == 0 and cg % 4 == 0
        if vec:
            dy, x = _to_nhwc(dy, "dy"), _to_nhwc(x, "x")
        ws, splits = _gemm("conv2d_backward_weight", k // groups, cg * r * s, n * p * q, groups, dw, "dy",
                           (dy, x, (), ints), tf32=tf32, vec=vec, add=accumulate)
    if vec and splits == 1 and not accumulate:   # the vec kernel's one slice, transposed into dw
        _to_nhwc(ws.reshape(k, r * s, cg, 1), "dw", dw.reshape(k, cg, 1, r * s), tf32=False)
    elif ws is not dw:        # the splits summed (a vec kernel's straight into dw's order)
        _reduce(ws, dw, splits, None, 1, 1, 0, 0.0, (r * s, cg) if vec else (0, 0), add=accumulate)
    return dw


# ---- Winograd (kernels/winograd.cu): the conv_tile setting "winograd", 3x3 / 5x5 stride 1 ----------------

def _winograd(what, r, s, stride, dilation, groups, cg):
    """Whether pass ``what`` runs on kernels/winograd.cu (winograd_config.use_winograd)."""
    cur = settings.current()
    return wcfg.use_winograd(cur.conv_tile, cur.tf32, what, r, s, stride, dilation, groups, cg)


def _points(r):
    """A, the points of F(4, r) (WINOGRAD_TILE outputs of an r-tap filter): the side of a transformed tile."""
    return r + cfg.WINOGRAD_TILE - 1


def _slot_launch(slots, r):
    """(grid, block) of the output transform over ``slots`` (image, channel, tile) slots: a block of
    A * WINOGRAD_SLOTS threads per WINOGRAD_SLOTS slots."""
    return (cfg.cdiv(slots, cfg.WINOGRAD_SLOTS),), _points(r) * cfg.WINOGRAD_SLOTS


def _winograd_input(x, padding, tp, tq, r, what):
    """V = BT x_t B of every (image, channel, 4x4 tile) of x: (N, A^2 * C, TP, TQ)."""
    n, c, h, wd = x.shape
    a = _points(r)
    cfg.check_int32(what, n * a * a * c * tp * tq, "Winograd transform: N*A^2*C*tiles")
    v = _alloc((n, a * a * c, tp, tq), _F32, f"Winograd transform of {what}")
    _launch("winograd.cu", f"conv2d_winograd_input_v3_r{r}", _eltwise_grid(n * c * tp * tq), cfg.BLOCK,
            (x, v) + _i32s(what, "N C H W pad_h pad_w tile_rows tile_cols", (n, c, h, wd) + tuple(padding) + (tp, tq)))
    return v


def _product_ints(n, a, c, k, tp, tq):
    """The int arguments of the products' GEMM: a 1x1 convolution of C to K channels in A^2 groups
    on TP x TQ tiles."""
    return _conv_ints("x", n, a * a * c, tp, tq, a * a * k, 1, 1, tp, tq, (1, 1), (0, 0), (1, 1), a * a)


def _winograd_forward(x, w, b, y, padding, act, slope, flip=False, grad=False):
    """y = act(conv2d(x, w) + b) by F(4x4, RxR): V of x's patches, U = G w G^T (flip: of w rotated and
    transposed, backward-data's weights) written packed for the forward GEMM (no pack launch), their
    products summed over channels as a 1x1 forward in A^2 groups on the v3 core (fp32), then AT Y_t A
    per tile with bias and activation (``grad``: the backward of act at its outputs b)."""
    n, k, p, q = y.shape
    c, r = x.shape[1], w.shape[2]
    a, tp, tq = _points(r), cfg.cdiv(p, cfg.WINOGRAD_TILE), cfg.cdiv(q, cfg.WINOGRAD_TILE)
    v = _winograd_input(x, padding, tp, tq, r, "dy" if flip else "x")
    u = _packed_forward(k, c, a * a, "Winograd transform of w")
    cfg.check_int32("w", u.size, "Winograd transform of w: A^2*C*K")
    bm, bkk = cfg.WINOGRAD_FILTER_BLOCK
    grid = cfg.check_grid("w", (cfg.cdiv(k, bm), cfg.cdiv(c, bkk), 1))
    _launch("winograd.cu", f"conv2d_winograd_filter_v2_r{r}", grid, bm * bkk,
            (w, u) + ((_i32(c), _i32(k)) if flip else (_i32(k), _i32(c))) + (_i32(flip),))
    cfg.check_int32("x", n * a * a * k * tp * tq, "Winograd products: N*A^2*K*tiles")
    prod = _alloc((n, a * a * k, tp, tq), _F32, "Winograd products")
    _forward_gemm(v, u, None, prod, _product_ints(n, a, c, k, tp, tq), a * a, 0, 0.0, False, products=True)
    _launch("winograd.cu", f"conv2d_winograd_output_v2_r{r}", *_slot_launch(n * k * tp * tq, r),
            (prod, y, w if b is None else b) + _i32s("y", "N K P Q tile_rows tile_cols", (n, k, p, q, tp, tq))
            + _epilogue(b, act, slope, grad))


def _winograd_backward_weight(dy, x, dw, padding, add=False):
    """dw by F(RxR, 4x4): V of x's patches, U = G dy_t G^T of dy's 4x4 tiles, their products summed
    over images and tiles as a 1x1 backward-weight in A^2 groups on the v3 core (fp32; the conv_splits
    setting splits it, the split-K reduce adds the splits), then AT m A into dw (added with ``add``),
    a thread per row."""
    n, k, p, q = dy.shape
    c, r = x.shape[1], dw.shape[2]
    a, tp, tq = _points(r), cfg.cdiv(p, cfg.WINOGRAD_TILE), cfg.cdiv(q, cfg.WINOGRAD_TILE)
    v = _winograd_input(x, padding, tp, tq, r, "x")
    cfg.check_int32("dy", n * a * a * k * tp * tq, "Winograd transform: N*A^2*K*tiles")
    u = _alloc((n, a * a * k, tp, tq), _F32, "Winograd transform of dy")
    _launch("winograd.cu", f"conv2d_winograd_wgrad_dy_v3_r{r}", _eltwise_grid(n * k * tp * tq), cfg.BLOCK,
            (dy, u) + _i32s("dy", "N K P Q tile_rows tile_cols", (n, k, p, q, tp, tq)))
    m = _alloc((a * a * k, c, 1, 1), _F32, "Winograd products")
    ws, splits = _gemm("conv2d_backward_weight", k, c, n * tp * tq, a * a, m, "dy",
                       (u, v, (), _product_ints(n, a, c, k, tp, tq)), products=True)
    if splits > 1:
        _reduce(ws, m, splits, None, 1, 1, 0, 0.0)
    _launch("winograd.cu", f"conv2d_winograd_wgrad_output_v2_r{r}",
            (cfg.elementwise_blocks(k * c * r, num_sms(), cfg.WINOGRAD_WGRAD_OUTPUT_BLOCK),),
            cfg.WINOGRAD_WGRAD_OUTPUT_BLOCK, (m, dw, _i32(k), _i32(c), _i32(add)))
