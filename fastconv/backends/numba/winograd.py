"""conv2d by Winograd's minimal filtering on 4 x 4 tiles in the numba family: the port of
kernels/winograd.cu (its header comment holds the math), for stride 1, dilation 1, one group and a
square R x R filter (R = 3 or 5, A = R + 3 points), taken by the CUDA C family's rule
(winograd_config.use_winograd: fp32 above the small-channel limit, or the conv_tile setting "winograd"). The
tables, the straight-line transforms and the slot transforms' stages are in winograd_tables.py.

    forward        y_t = AT [ sum over c of (G w G^T)[k, c] (.) (BT x_t B)[c] ] A  (F(4, R)), + bias;
    backward-data  the forward of dy with the filter flipped and transposed, padding R - 1 - pad;
    backward-weight dw[k, c] = AT [ sum over n, t of (G dy_t G^T)[k] (.) (BT x_t B)[c] ] A  (F(R, 4)).

The layouts are the CUDA C kernels' but for U: V[n, xi, c, t] (xi = u * A + v, t the tile), products
Y[n, xi, k, t] and M[xi, k, c]; U[xi, k, c] (flip: U[xi, c, k]) is the weight layout this family's
GEMM reads (it packs nothing; the CUDA C filter transform writes its GEMM's packed layout instead).
The sums between the transforms are this family's implicit GEMM (conv.py), fp32, on the tile the
CUDA C family takes for its products (tiles.winograd_tile): a 1x1 forward in A^2 groups (forward,
backward-data) and a 1x1 backward-weight in A^2 groups whose split partial sums sum_splits_v1 adds
before the output transform.

Kernels (suffix _r3 / _r5: R):
- conv2d_winograd_input_v3_r*   a thread per slot (image, channel, tile): its A x A patch (zeros
  outside), BT d B -> V.
- conv2d_winograd_filter_v2_r*  per (k, c): G w G^T -> U (flip: of w rotated by 180 degrees, at U[xi, c, k]);
  blocks of FT_KK reduction indices (U's last index, fastest: coalesced stores in both orientations) x
  FT_M output channels, the block's filters staged in shared memory by contiguous row loads.
- conv2d_winograd_output_v2_r*  A threads per slot (image, k, tile): AT Y_t A + bias, the tile's pixels
  inside P x Q.
- conv2d_winograd_wgrad_dy_v3_r*      a thread per slot (image, k, tile): the 4 x 4 dy tile (zeros past
  P, Q), G d G^T -> U.
- conv2d_winograd_wgrad_output_v2_r*  per (k, c, row r): row r of AT m A -> dw[k, c, r] (m = M[xi, k, c]).
The output transform takes blocks of (SLOTS, A) threads serving SLOTS consecutive slots in two stages
through shared memory T[o][j][slot]: stage 1, thread (slot = threadIdx.x, column j = threadIdx.y),
loads column j of its slot's A x A products (the lanes' slots adjacent: contiguous runs) and writes
column j of AT m; a barrier; stage 2 forms (AT m A)[o][p] = row o of T times row p of AT, the row
picked once per thread. So a slot's A^2 loads are spread over A threads (the thread-per-slot output
transform ran latency-bound). The input and dy transforms take a thread per slot, as
kernels/winograd.cu's v3 do (spreading them over A threads made the CUDA C ones slower on an H200).
Every grid is 1-D: slots <= the transformed array's size / A^2 < 2^31 / A^2 (the allocation checks it),
so the block count stays far below MAX_GRID_X and no image walk is needed.
The transforms are straight-line code over fixed-size local arrays (winograd_tables), the tile loops
have constant trip counts, each thread divides only to find its slot (tests/test_numba_ptx.py checks:
no local memory, no division or 64-bit multiply in any loop, none after the output's barrier). Index math is
32-bit (every array's size is checked below 2^31 by the allocation).
"""

from __future__ import annotations

from numba import cuda, float32, int32, uint32

from ..cuda import config as _cfg
from ..cuda.config import cdiv
from .conv import _sum_partials, backward_weight_gemm, launch_conv2d_forward
from .driver import _empty, launch
from .tiles import ELEMENTWISE_THREADS, _conv_geometry, _digits_split, winograd_tile
from .winograd_tables import SLOTS, _columns, _pick_row, _row_dot, _row_transform, _transform, matrices

M = _cfg.WINOGRAD_TILE   # output tile side (WINO_M)
# the filter transform's block: FT_KK reduction indices (stored fastest) x FT_M output channels of the
# products' GEMM, a thread each
FT_KK, FT_M = 32, 8


def _tile_access(size: int):
    """Device functions (load_xi, store_xi) for size x size tiles d: load_xi(src, at, step, d):
    d[u, v] = src[at + (u * size + v) * step]; store_xi(dst, at, step, d): the reverse (the A^2 values
    of a tile, xi-major)."""
    @cuda.jit(device=True, inline="always")
    def load_xi(src, at, step, d):
        for u in range(size):
            for v in range(size):
                d[u, v] = src[at]
                at = int32(at + step)

    @cuda.jit(device=True, inline="always")
    def store_xi(dst, at, step, d):
        for u in range(size):
            for v in range(size):
                dst[at] = d[u, v]
                at = int32(at + step)
    return load_xi, store_xi


@cuda.jit(device=True, inline="always")
def _slot(i, chans, tt, tq_n, aa):
    """Slot i of a transform over N x ``chans`` planes of tt = TP x TQ tiles: (plane (n * chans +
    channel), tp, tq, the offset of (n, xi = 0, channel, t) in an (N, aa * chans, TP, TQ) array).
    Divides: once per thread, before any loop."""
    plane, tp, tq = _digits_split(i, tt, tq_n)
    return plane, tp, tq, int32(i + int32(plane // chans) * int32((aa - 1) * chans * tt))


def _patch_transform(lmat):
    """Device function run(src, dst, n_img, chans, ph, pw, pad_h, pad_w, tp_n, tq_n) of the input and
    wgrad dy kernels, a thread per slot: dst[n, xi, channel, t] = (L d L^T)[xi] (L = ``lmat``, A x I)
    of slot i = (n, channel, tile t) of an N x chans x ph x pw ``src``, d its I x I patch at
    (4 tp - pad_h, 4 tq - pad_w) (zeros outside the plane); a warp's slots store each xi contiguously.
    (Spreading a slot over A threads through shared memory, as the output transform does, made these
    two slower in the CUDA C family on an H200.)"""
    a, i_n = lmat.shape
    transform, store = _transform(lmat), _tile_access(a)[1]

    @cuda.jit(device=True, inline="always")
    def run(src, dst, n_img, chans, ph, pw, pad_h, pad_w, tp_n, tq_n):
        tt = int32(tp_n * tq_n)
        i = int32(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x)
        if i >= int32(n_img * chans * tt):
            return
        plane, tp, tq, at = _slot(i, chans, tt, tq_n, a * a)
        h0 = int32(tp * M - pad_h)
        w0 = int32(tq * M - pad_w)
        src_at = int32(int32(plane * ph + h0) * pw + w0)
        d = cuda.local.array((i_n, i_n), float32)
        out = cuda.local.array((a, a), float32)
        for u in range(i_n):
            for v in range(i_n):
                d[u, v] = src[int32(src_at + v)] if 0 <= h0 + u < ph and 0 <= w0 + v < pw else float32(0.0)
            src_at = int32(src_at + pw)
        transform(d, out)
        store(dst, at, int32(chans * tt), out)
    return run


# Kernel factories, one per kernel and R (the CUDA C kernels' templates): F(4, R) for forward and
# backward-data (matrices(r, M, r)), F(R, 4) for backward-weight (matrices(r, r, M)).

def _input_kernel(r: int):
    input_run = _patch_transform(matrices(r, M, r)[2])

    def input_v3(x, v_out, n_img, c_in, h_in, w_in, pad_h, pad_w, tp_n, tq_n):
        """V[n, xi, c, t] = (BT x_t B)[xi] of each slot (image n, channel c, tile t) of x, the patch's
        top-left pixel at (4 tp - pad_h, 4 tq - pad_w); a thread per slot. Work: 2 A^3 FMAs per slot;
        traffic A^2 * 4 bytes in (rows shared by overlapping patches, cache-served) and A^2 * 4 bytes
        out."""
        input_run(x, v_out, n_img, c_in, h_in, w_in, pad_h, pad_w, tp_n, tq_n)
    return input_v3


def _filter_stage(r: int, nk: int, row: int):
    """Device function stage(w, tile, src, src_step, kn, have) of the filter transform: a block's
    nk x ``row`` floats of w (row i at src + i * src_step; only rows < kn and floats < have exist)
    to tile[i * (row + 1) + j]; thread t takes element t + FT_KK FT_M j, R^2 per thread, (row, j)
    carried without division."""
    threads, pitch = FT_KK * FT_M, row + 1
    step_kl, step_rem = divmod(threads, row)

    @cuda.jit(device=True, inline="always")
    def stage(w, tile, src, src_step, kn, have):
        kl = int32(cuda.threadIdx.x // row)
        rem = int32(cuda.threadIdx.x - kl * row)
        dst = int32(kl * pitch + rem)
        at = int32(src + kl * src_step + rem)
        at_step = int32(step_kl * src_step + step_rem)
        at_wrap = int32(src_step - row)
        for _ in range(r * r):
            if kl < kn and rem < have:
                tile[dst] = w[at]
            kl = int32(kl + step_kl)
            rem = int32(rem + step_rem)
            dst = int32(dst + step_kl * pitch + step_rem)
            at = int32(at + at_step)
            if rem >= row:
                rem = int32(rem - row)
                kl = int32(kl + 1)
                dst = int32(dst + 1)
                at = int32(at + at_wrap)
    return stage


def _filter_kernel(r: int):
    a, rr = r + M - 1, r * r
    staged = FT_KK * FT_M * rr + FT_KK  # floats of the shared tile: either orientation's rows at their pitch
    filter_t, store_a = _transform(matrices(r, M, r)[1]), _tile_access(a)[1]
    stage_w = _filter_stage(r, FT_M, FT_KK * rr)  # m = k, kk = c: FT_M rows of k, each FT_KK filters long
    stage_flip = _filter_stage(r, FT_KK, FT_M * rr)  # m = c, kk = k: FT_KK rows of k, each FT_M filters long

    def filter_v2(w, u_out, k_out, c_in, flip):
        """U[xi, k, c] = (G w[k, c] G^T)[xi] of a K x C x R x R filter; flip: of w[k, c] rotated by
        180 degrees, at U[xi, c, k] (the forward weights of backward-data). U[xi, m, kk]: block
        (x, y) takes kk in FT_KK x, m in FT_M y, thread kk fastest; its filters are first copied to
        shared memory (_filter_stage: the tile's c range of one k is contiguous in w), rows at an odd
        pitch so both orientations' reads (lanes R^2 or FT_M R^2 + 1 floats apart) are free of
        conflicts. Work: 2 (A R^2 + A^2 R) FMAs per (k, c); traffic R^2 * 4 bytes in, A^2 * 4 bytes out."""
        tile = cuda.shared.array(staged, float32)
        kk0 = int32(cuda.blockIdx.x * FT_KK)
        m0 = int32(cuda.blockIdx.y * FT_M)
        if flip:
            k0, c0, m_n, kk_n, pitch = kk0, m0, c_in, k_out, int32(FT_M * rr + 1)
        else:
            k0, c0, m_n, kk_n, pitch = m0, kk0, k_out, c_in, int32(FT_KK * rr + 1)
        src = int32((k0 * c_in + c0) * rr)
        kn = int32(k_out - k0)
        have = int32((c_in - c0) * rr)  # the rows' floats inside w (c < C), or more
        if flip:
            stage_flip(w, tile, src, int32(c_in * rr), kn, have)
        else:
            stage_w(w, tile, src, int32(c_in * rr), kn, have)
        cuda.syncthreads()
        kkl = int32(cuda.threadIdx.x % FT_KK)
        ml = int32(cuda.threadIdx.x // FT_KK)
        m = int32(m0 + ml)
        kk = int32(kk0 + kkl)
        if m >= m_n or kk >= kk_n:
            return
        f = int32(kkl * pitch + ml * rr) if flip else int32(ml * pitch + kkl * rr)
        d = cuda.local.array((r, r), float32)
        out = cuda.local.array((a, a), float32)
        for y in range(r):
            for z in range(r):
                d[y, z] = tile[f + (rr - 1 - y * r - z if flip else y * r + z)]
        filter_t(d, out)
        store_a(u_out, int32(m * kk_n + kk), int32(k_out * c_in), out)
    return filter_v2


def _output_kernel(r: int):
    a = r + M - 1
    at_m = matrices(r, M, r)[0]
    columns, pick, row_dot = _columns(at_m), _pick_row(at_m), _row_dot(a)
    steps = cdiv(M * M, a)  # stage 2's trips: M * M * SLOTS outputs over a * SLOTS threads
    staged = M * a * SLOTS  # floats of T[o][j][slot]
    o_step, s_step = divmod(a * SLOTS // M, SLOTS)

    def output_v2(y_in, y, bias, n_img, k_out, p_out, q_out, tp_n, tq_n, has_bias):
        """y[n, k] of each slot (image n, filter k, tile t): AT Y_t A (Y[n, xi, k, t]) + bias[k], its
        pixels inside P x Q written; blocks of (SLOTS, A) threads, a block per SLOTS slots. Stage 1:
        thread (slot, j) loads column j of the slot's products (A loads, the lanes' slots adjacent)
        into T[o][j][slot] = (AT m)[o][j], and thread j = 0 the slot's pixel offset, rows and columns
        left inside P x Q (none past the last slot) and bias into shared memory; stage 2: thread
        f = tid + m * blockDim (tid = threadIdx.y * SLOTS + threadIdx.x, m < ceil(M^2 / A)) takes
        output (o, p) of block slot f / M % SLOTS, p = f % M (fixed per thread: its row of AT picked
        once), o = f / (M SLOTS): a warp writes 8 slots' 4 adjacent pixels of a row. Work: 2 (4 A^2 +
        16 A) FMAs per slot; traffic A^2 * 4 bytes in, 16 * 4 bytes out."""
        sh = cuda.shared.array(staged, float32)
        pix = cuda.shared.array(SLOTS, int32)  # y offset of the slot's top-left pixel
        rows = cuda.shared.array(SLOTS, int32)  # its rows inside P (0: no slot)
        cols = cuda.shared.array(SLOTS, int32)  # its columns inside Q
        b_sh = cuda.shared.array(SLOTS, float32)
        tt = int32(tp_n * tq_n)
        i = int32(cuda.blockIdx.x * SLOTS + cuda.threadIdx.x)
        nk, tp, tq, at = _slot(i, k_out, tt, tq_n, a * a)
        slot = int32(cuda.threadIdx.x)
        j = int32(cuda.threadIdx.y)
        ok = i < int32(n_img * k_out * tt)
        d = cuda.local.array(a, float32)
        at = int32(at + j * k_out * tt)
        for u in range(a):
            d[u] = y_in[at] if ok else float32(0.0)
            at = int32(at + a * k_out * tt)
        columns(d, sh, uint32(j * SLOTS + slot))
        if j == 0:
            p0 = int32(tp * M)
            q0 = int32(tq * M)
            pix[slot] = int32(int32(nk * p_out + p0) * q_out + q0)
            rows[slot] = int32(p_out - p0) if ok else int32(0)
            cols[slot] = int32(q_out - q0)
            b_sh[slot] = bias[nk - int32(nk // k_out) * k_out] if ok and has_bias else float32(0.0)
        cuda.syncthreads()
        # output (o, s, p) of f = (o * SLOTS + s) * M + p; f's steps of blockDim carried by adding
        # (o_step, s_step) = blockDim / M split at SLOTS, no division; o < M: f inside the block's outputs
        p = int32(slot % M)
        c = pick(p)
        tid = int32(j * SLOTS + slot)
        s = int32(tid // M % SLOTS)
        o = int32(tid // (M * SLOTS))
        for _ in range(steps):
            if o < M and o < rows[s] and p < cols[s]:
                y[int32(pix[s] + o * q_out + p)] = row_dot(sh, uint32(o * a * SLOTS + s), c) + b_sh[s]
            s = int32(s + s_step)
            o = int32(o + o_step)
            if s >= SLOTS:
                s = int32(s - SLOTS)
                o = int32(o + 1)
    return output_v2


def _wgrad_dy_kernel(r: int):
    dy_run = _patch_transform(matrices(r, r, M)[1])

    def wgrad_dy_v3(dy, u_out, n_img, k_out, p_out, q_out, tp_n, tq_n):
        """U[n, xi, k, t] = (G dy_t G^T)[xi] of each slot (image n, filter k, 4 x 4 tile t) of dy (zeros
        past P, Q); a thread per slot. Work: 2 (4 A^2 + 4 A^2) FMAs per slot; traffic 16 * 4 bytes in,
        A^2 * 4 bytes out."""
        dy_run(dy, u_out, n_img, k_out, p_out, q_out, 0, 0, tp_n, tq_n)
    return wgrad_dy_v3


def _wgrad_output_kernel(r: int):
    a = r + M - 1
    row_t, load_a = _row_transform(matrices(r, r, M)[0]), _tile_access(a)[0]

    def wgrad_output_v2(m_in, dw, k_out, c_in, add):
        """dw[k, c, row] of each (k, c, row): row of AT m A, m the products M[xi, k, c] (their splits
        already summed); added into dw when ``add`` (the op's accumulate). Thread i = (k C + c) R +
        row: a warp's stores cover 32 R consecutive floats.
        Work: 2 (A^2 + R A) FMAs per (k, c, row); traffic A^2 * 4 bytes in (each (k, c)'s read by its
        R rows, cache-served), R * 4 bytes out."""
        i = int32(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x)
        kc = int32(k_out * c_in)
        if i >= kc * r:
            return
        j = int32(i // r)
        m = cuda.local.array((a, a), float32)
        out = cuda.local.array((1, r), float32)
        load_a(m_in, j, kc, m)
        row_t(m, int32(i - j * r), out)
        f = int32(i * r)
        for z in range(r):
            dw[f + z] = dw[f + z] + out[0, z] if add else out[0, z]
    return wgrad_output_v2


conv2d_winograd_input_v3_r3 = _input_kernel(3)
conv2d_winograd_input_v3_r5 = _input_kernel(5)
conv2d_winograd_filter_v2_r3 = _filter_kernel(3)
conv2d_winograd_filter_v2_r5 = _filter_kernel(5)
conv2d_winograd_output_v2_r3 = _output_kernel(3)
conv2d_winograd_output_v2_r5 = _output_kernel(5)
conv2d_winograd_wgrad_dy_v3_r3 = _wgrad_dy_kernel(3)
conv2d_winograd_wgrad_dy_v3_r5 = _wgrad_dy_kernel(5)
conv2d_winograd_wgrad_output_v2_r3 = _wgrad_output_kernel(3)
conv2d_winograd_wgrad_output_v2_r5 = _wgrad_output_kernel(5)


def _slot_launch(slots: int, r: int):
    """(grid, block) of the output transform over ``slots`` (image, channel, tile) slots: a block of
    (SLOTS, A) threads per SLOTS slots."""
    return (cdiv(slots, SLOTS), 1, 1), (SLOTS, r + M - 1, 1)


def _patch_launch(slots: int):
    """(grid, block) of the input and dy transforms: a thread per slot."""
    return (cdiv(slots, ELEMENTWISE_THREADS), 1, 1), (ELEMENTWISE_THREADS, 1, 1)


def _input(x, padding, tp, tq, r, what, stream):
    """V = BT x_t B of every (image, channel, 4 x 4 tile) of x: (N, A^2 * C, TP, TQ)."""
    n, c, h, w = x.shape
    a = r + M - 1
    v = _empty((n, a * a * c, tp, tq), x, what=f"Winograd transform of {what}")
    launch(f"conv2d_winograd_input_v3_r{r}", *_patch_launch(n * c * tp * tq),
           (x, v, n, c, h, w, padding[0], padding[1], tp, tq), stream)
    return v


def winograd_forward(y, x, w, b, padding, stream=None, flip=False):
    """y = conv2d(x, w) (+ b) by F(4x4, RxR): V of x's patches, U = G w G^T (flip: of w rotated and
    transposed, backward-data's weights, x then dy and y dx), their products summed over channels as
    a 1x1 forward in A^2 groups (the family's GEMM on tiles.winograd_tile's tile, fp32), then AT Y_t A per
    tile with the bias. Shapes: x (N, C, H, W), w (K, C, R, R) (flip: (C, K, R, R)), y (N, K, P, Q)."""
    n, k, p, q = y.shape
    c, r = x.shape[1], w.shape[2]
    a, tp, tq = r + M - 1, cdiv(p, M), cdiv(q, M)
    v = _input(x, padding, tp, tq, r, "dy" if flip else "x", stream)
    u = _empty((a * a * k, c, 1, 1), x, what="Winograd transform of w")
    launch(f"conv2d_winograd_filter_v2_r{r}", (cdiv(c, FT_KK), cdiv(k, FT_M), 1), (FT_KK * FT_M, 1, 1),
           (w, u) + ((c, k) if flip else (k, c)) + (int(flip),), stream)
    prod = _empty((n, a * a * k, tp, tq), x, what="Winograd products")
    launch_conv2d_forward(prod, v, u, None, (1, 1), (0, 0), (1, 1), a * a, stream,
                          tile=winograd_tile(k, n * tp * tq, a * a))
    launch(f"conv2d_winograd_output_v2_r{r}", *_slot_launch(n * k * tp * tq, r),
           (prod, y, w if b is None else b, n, k, p, q, tp, tq, int(b is not None)), stream)
    return y


def winograd_backward_weight(dw, dy, x, padding, stream=None, add=False):
    """dw by F(RxR, 4x4): V of x's patches, U = G dy_t G^T of dy's 4 x 4 tiles, their products summed
    over images and tiles as a 1x1 backward-weight in A^2 groups (the family's GEMM on
    tiles.winograd_tile's tile, split as tiles.backward_weight_splits says, the splits added by
    sum_splits_v1), then AT m A into dw (added into it with ``add``), a thread per row. Shapes:
    dy (N, K, P, Q), x (N, C, H, W), dw (K, C, R, R)."""
    n, k, p, q = dy.shape
    c, r = x.shape[1], dw.shape[2]
    a, tp, tq = r + M - 1, cdiv(p, M), cdiv(q, M)
    v = _input(x, padding, tp, tq, r, "x", stream)
    u = _empty((n, a * a * k, tp, tq), dy, what="Winograd transform of dy")
    launch(f"conv2d_winograd_wgrad_dy_v3_r{r}", *_patch_launch(n * k * tp * tq), (dy, u, n, k, p, q, tp, tq),
           stream)
    m = _empty((a * a * k, c, 1, 1), dy, what="Winograd products")
    geo = _conv_geometry(v.shape, m.shape, (1, 1), (0, 0), (1, 1), a * a)
    parts, splits = backward_weight_gemm(m, u, v, geo, None, None, stream, winograd_tile(k, c, a * a, wgrad=True))
    _sum_partials(m, parts, splits, stream)
    threads = _cfg.WINOGRAD_WGRAD_OUTPUT_BLOCK
    launch(f"conv2d_winograd_wgrad_output_v2_r{r}", (cdiv(k * c * r, threads), 1, 1), (threads, 1, 1),
           (m, dw, k, c, int(add)), stream)
    return dw
