"""conv2d by Winograd's minimal filtering on 4 x 4 tiles in the numba family: the port of
kernels/winograd.cu (its header comment holds the math), for stride 1, dilation 1, one group and a
square R x R filter (R = 3 or 5, A = R + 3 points), taken by the CUDA C family's rule
(config.use_winograd: fp32 above the small-channel limit, or the conv_tile setting "winograd"). The
tables and the straight-line transforms are in winograd_tables.py.

    forward        y_t = AT [ sum over c of (G w G^T)[k, c] (.) (BT x_t B)[c] ] A  (F(4, R)), + bias;
    backward-data  the forward of dy with the filter flipped and transposed, padding R - 1 - pad;
    backward-weight dw[k, c] = AT [ sum over n, t of (G dy_t G^T)[k] (.) (BT x_t B)[c] ] A  (F(R, 4)).

The layouts are the CUDA C kernels' but for U: V[n, xi, c, t] (xi = u * A + v, t the tile), products
Y[n, xi, k, t] and M[xi, k, c]; U[xi, k, c] (flip: U[xi, c, k]) is the weight layout this family's
GEMM reads (it packs nothing; the CUDA C filter transform writes its GEMM's packed layout instead).
The sums between the transforms are this family's implicit GEMM (conv.py), fp32: a 1x1 forward in
A^2 groups (forward, backward-data) and a 1x1 backward-weight in A^2 groups whose split partial sums
sum_splits_v1 adds before the output transform.

Kernels (suffix _r3 / _r5: R), one thread per item of the grid's x (no grid-stride loop: the set-up
divides once), the transforms over images walking n by blockIdx.z (offsets added, no division):
- conv2d_winograd_input_v1_r*   per (channel, tile) x n: its A x A patch (zeros outside), BT d B -> V.
- conv2d_winograd_filter_v2_r*  per (k, c): G w G^T -> U (flip: of w rotated by 180 degrees, at U[xi, c, k]);
  blocks of FT_KK reduction indices (U's last index, fastest: coalesced stores in both orientations) x
  FT_M output channels, the block's filters staged in shared memory by contiguous row loads.
- conv2d_winograd_output_v1_r*  per (k, tile) x n: AT Y_t A + bias, the tile's pixels inside P x Q.
- conv2d_winograd_wgrad_dy_v1_r*      per (k, tile) x n: the 4 x 4 dy tile (zeros past P, Q), G d G^T -> U.
- conv2d_winograd_wgrad_output_v2_r*  per (k, c, row r): row r of AT m A -> dw[k, c, r] (m = M[xi, k, c]).
The transforms are straight-line code over fixed-size local arrays (winograd_tables._transform), the tile loops
have constant trip counts (tests/test_numba_ptx.py checks: no local memory, no division or 64-bit
multiply in any loop). Index math is 32-bit (every array's size is checked below
2^31 by the allocation).
"""

from __future__ import annotations

from numba import cuda, float32, int32

from ..cuda import config as _cfg
from ..cuda.config import cdiv
from .conv import _sum_partials, backward_weight_gemm, launch_conv2d_forward
from .driver import _empty, launch
from .tiles import ELEMENTWISE_THREADS, _conv_geometry, _digits_split, conv_tile
from .winograd_tables import _row_transform, _transform, matrices

M = _cfg.WINOGRAD_TILE   # output tile side (WINO_M)
# the filter transform's block: FT_KK reduction indices (stored fastest) x FT_M output channels of the
# products' GEMM, a thread each
FT_KK, FT_M = 32, 8

# grid z of the transforms over images: CUDA's limit (tests lower it to make the kernels walk images)
WINO_MAX_Z = _cfg.MAX_GRID_YZ

@cuda.jit(device=True, inline="always")
def _tile_slot(rows, aa, ph, pw, pad_h, pad_w, tp_n, tq_n):
    """This thread's item of a transform grid over (row, tile) along x and images along z: an
    N x rows x ph x pw array of planes on one side, an (N, A^2, rows, TP x TQ) one on the other.
    Returns (ok, row, h0, w0, n, pixel offset of (n, row, h0, w0), xi offset of (n, 0, row, t), their
    steps per gridDim.z images, the xi step), (h0, w0) the tile's top-left pixel less the padding.
    Divides here once; the kernels' loops only add."""
    tt = int32(tp_n * tq_n)
    i = int32(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x)
    row, tp, tq = _digits_split(i, tt, tq_n)
    h0 = int32(tp * M - pad_h)
    w0 = int32(tq * M - pad_w)
    n = int32(cuda.blockIdx.z)
    pix = int32(int32(n * rows + row) * int32(ph * pw) + h0 * pw + w0)
    xi = int32(n * aa * rows * tt + i)
    return (i < int32(rows * tt), row, h0, w0, n, pix, xi, int32(cuda.gridDim.z * rows * ph * pw),
            int32(cuda.gridDim.z * aa * rows * tt), int32(rows * tt))


def _tile_access(size: int):
    """Device functions (patch, load_xi, store_xi) for size x size tiles d:
    patch(src, at, h0, w0, ph, pw, d): d[u, v] = src[at + u * pw + v] where (h0 + u, w0 + v) is inside
    ph x pw, else 0; load_xi(src, at, step, d): d[u, v] = src[at + (u * size + v) * step];
    store_xi(dst, at, step, d): the reverse (the A^2 values of a tile, xi-major)."""
    @cuda.jit(device=True, inline="always")
    def patch(src, at, h0, w0, ph, pw, d):
        for u in range(size):
            for v in range(size):
                d[u, v] = src[int32(at + v)] if 0 <= h0 + u < ph and 0 <= w0 + v < pw else float32(0.0)
            at = int32(at + pw)

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
    return patch, load_xi, store_xi


def _patch_transform(size: int, a: int, transform, store_a):
    """Device function run(src, dst, n_img, rows, ph, pw, pad_h, pad_w, tp_n, tq_n) of the input and
    wgrad dy kernels: per (row, tile) of an N x rows x ph x pw ``src`` and images n = blockIdx.z, +
    gridDim.z, ..., the size x size patch at (4 tp - pad_h, 4 tq - pad_w) (zeros outside the plane),
    ``transform``-ed to A x A and stored xi-major at dst[n, xi, row, t] (store_a)."""
    patch = _tile_access(size)[0]

    @cuda.jit(device=True, inline="always")
    def run(src, dst, n_img, rows, ph, pw, pad_h, pad_w, tp_n, tq_n):
        ok, _, h0, w0, n, s_off, d_off, s_step, d_step, xi_step = _tile_slot(rows, a * a, ph, pw, pad_h, pad_w, tp_n,
                                                                             tq_n)
        d = cuda.local.array((size, size), float32)
        out = cuda.local.array((a, a), float32)
        while ok and n < n_img:
            patch(src, s_off, h0, w0, ph, pw, d)
            transform(d, out)
            store_a(dst, d_off, xi_step, out)
            n = int32(n + cuda.gridDim.z)
            s_off = int32(s_off + s_step)
            d_off = int32(d_off + d_step)
    return run


# Kernel factories, one per kernel and R (the CUDA C kernels' templates): F(4, R) for forward and
# backward-data (matrices(r, M, r)), F(R, 4) for backward-weight (matrices(r, r, M)).

def _input_kernel(r: int):
    a = r + M - 1
    input_run = _patch_transform(a, a, _transform(matrices(r, M, r)[2]), _tile_access(a)[2])

    def input_v1(x, v_out, n_img, c_in, h_in, w_in, pad_h, pad_w, tp_n, tq_n):
        """V[n, xi, c, t] = (BT x_t B)[xi] of each (channel c, tile t) of images n = blockIdx.z, +
        gridDim.z, ...; the patch's top-left pixel at (4 tp - pad_h, 4 tq - pad_w). Work: 2 A^3 FMAs
        per (n, c, tile); traffic A^2 * 4 bytes in (rows shared by overlapping patches, cache-served)
        and A^2 * 4 bytes out."""
        input_run(x, v_out, n_img, c_in, h_in, w_in, pad_h, pad_w, tp_n, tq_n)
    return input_v1


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
    filter_t, store_a = _transform(matrices(r, M, r)[1]), _tile_access(a)[2]
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
    aa = a * a
    output_t, load_a = _transform(matrices(r, M, r)[0]), _tile_access(a)[1]

    def output_v1(y_in, y, bias, n_img, k_out, p_out, q_out, tp_n, tq_n, has_bias):
        """y[n, k] of each (filter k, tile t), images n = blockIdx.z, + gridDim.z, ...: AT Y_t A
        (Y[n, xi, k, t]) + bias[k], its pixels inside P x Q written. Work: 2 (4 A^2 + 16 A) FMAs per
        (n, k, tile); traffic A^2 * 4 bytes in, 16 * 4 bytes out."""
        ok, k, p0, q0, n, dst, src, dst_step, src_step, xi_step = _tile_slot(k_out, aa, p_out, q_out, 0, 0, tp_n,
                                                                             tq_n)
        if not ok:
            return
        b = bias[k] if has_bias else float32(0.0)
        m = cuda.local.array((a, a), float32)
        out = cuda.local.array((M, M), float32)
        while n < n_img:
            load_a(y_in, src, xi_step, m)
            output_t(m, out)
            row = dst
            for e in range(M):
                for f in range(M):
                    if p0 + e < p_out and q0 + f < q_out:
                        y[int32(row + f)] = out[e, f] + b
                row = int32(row + q_out)
            n = int32(n + cuda.gridDim.z)
            src = int32(src + src_step)
            dst = int32(dst + dst_step)
    return output_v1


def _wgrad_dy_kernel(r: int):
    a = r + M - 1
    dy_run = _patch_transform(M, a, _transform(matrices(r, r, M)[1]), _tile_access(a)[2])

    def wgrad_dy_v1(dy, u_out, n_img, k_out, p_out, q_out, tp_n, tq_n):
        """U[n, xi, k, t] = (G dy_t G^T)[xi] of each (filter k, 4 x 4 tile t) of dy (zeros past P, Q),
        images n = blockIdx.z, + gridDim.z, ... Work: 2 (4 A^2 + A^3) FMAs per (n, k, tile) at most;
        traffic 16 * 4 bytes in, A^2 * 4 bytes out."""
        dy_run(dy, u_out, n_img, k_out, p_out, q_out, 0, 0, tp_n, tq_n)
    return wgrad_dy_v1


def _wgrad_output_kernel(r: int):
    a = r + M - 1
    row_t, load_a = _row_transform(matrices(r, r, M)[0]), _tile_access(a)[1]

    def wgrad_output_v2(m_in, dw, k_out, c_in):
        """dw[k, c, row] of each (k, c, row): row of AT m A, m the products M[xi, k, c] (their splits
        already summed). Thread i = (k C + c) R + row: a warp's stores cover 32 R consecutive floats.
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
            dw[f + z] = out[0, z]
    return wgrad_output_v2


conv2d_winograd_input_v1_r3 = _input_kernel(3)
conv2d_winograd_input_v1_r5 = _input_kernel(5)
conv2d_winograd_filter_v2_r3 = _filter_kernel(3)
conv2d_winograd_filter_v2_r5 = _filter_kernel(5)
conv2d_winograd_output_v1_r3 = _output_kernel(3)
conv2d_winograd_output_v1_r5 = _output_kernel(5)
conv2d_winograd_wgrad_dy_v1_r3 = _wgrad_dy_kernel(3)
conv2d_winograd_wgrad_dy_v1_r5 = _wgrad_dy_kernel(5)
conv2d_winograd_wgrad_output_v2_r3 = _wgrad_output_kernel(3)
conv2d_winograd_wgrad_output_v2_r5 = _wgrad_output_kernel(5)


def _grid(items: int, n_img: int = 1):
    """One thread per item along x; images along z (the kernels walk n past CUDA's 65535)."""
    return (max(1, cdiv(items, ELEMENTWISE_THREADS)), 1, min(n_img, WINO_MAX_Z))


_BLOCK = (ELEMENTWISE_THREADS, 1, 1)


def _input(x, padding, tp, tq, r, what, stream):
    """V = BT x_t B of every (image, channel, 4 x 4 tile) of x: (N, A^2 * C, TP, TQ)."""
    n, c, h, w = x.shape
    a = r + M - 1
    v = _empty((n, a * a * c, tp, tq), x, what=f"Winograd transform of {what}")
    launch(f"conv2d_winograd_input_v1_r{r}", _grid(c * tp * tq, n), _BLOCK,
           (x, v, n, c, h, w, padding[0], padding[1], tp, tq), stream)
    return v


def winograd_forward(y, x, w, b, padding, stream=None, flip=False):
    """y = conv2d(x, w) (+ b) by F(4x4, RxR): V of x's patches, U = G w G^T (flip: of w rotated and
    transposed, backward-data's weights, x then dy and y dx), their products summed over channels as
    a 1x1 forward in A^2 groups (the family's GEMM on tiles.conv_tile's tile, fp32), then AT Y_t A per
    tile with the bias. Shapes: x (N, C, H, W), w (K, C, R, R) (flip: (C, K, R, R)), y (N, K, P, Q)."""
    n, k, p, q = y.shape
    c, r = x.shape[1], w.shape[2]
    a, tp, tq = r + M - 1, cdiv(p, M), cdiv(q, M)
    v = _input(x, padding, tp, tq, r, "dy" if flip else "x", stream)
    u = _empty((a * a * k, c, 1, 1), x, what="Winograd transform of w")
    launch(f"conv2d_winograd_filter_v2_r{r}", (cdiv(c, FT_KK), cdiv(k, FT_M), 1), (FT_KK * FT_M, 1, 1),
           (w, u) + ((c, k) if flip else (k, c)) + (int(flip),), stream)
    prod = _empty((n, a * a * k, tp, tq), x, what="Winograd products")
    launch_conv2d_forward(prod, v, u, None, (1, 1), (0, 0), (1, 1), a * a, stream, tile=conv_tile(k, n * tp * tq, a * a))
    launch(f"conv2d_winograd_output_v1_r{r}", _grid(k * tp * tq, n), _BLOCK,
           (prod, y, w if b is None else b, n, k, p, q, tp, tq, int(b is not None)), stream)
    return y


def winograd_backward_weight(dw, dy, x, padding, stream=None):
    """dw by F(RxR, 4x4): V of x's patches, U = G dy_t G^T of dy's 4 x 4 tiles, their products summed
    over images and tiles as a 1x1 backward-weight in A^2 groups (the family's GEMM, split as
    tiles.backward_weight_splits says, the splits added by sum_splits_v1), then AT m A into dw, a
    thread per row. Shapes: dy (N, K, P, Q), x (N, C, H, W), dw (K, C, R, R)."""
    n, k, p, q = dy.shape
    c, r = x.shape[1], dw.shape[2]
    a, tp, tq = r + M - 1, cdiv(p, M), cdiv(q, M)
    v = _input(x, padding, tp, tq, r, "x", stream)
    u = _empty((n, a * a * k, tp, tq), dy, what="Winograd transform of dy")
    launch(f"conv2d_winograd_wgrad_dy_v1_r{r}", _grid(k * tp * tq, n), _BLOCK, (dy, u, n, k, p, q, tp, tq), stream)
    m = _empty((a * a * k, c, 1, 1), dy, what="Winograd products")
    geo = _conv_geometry(v.shape, m.shape, (1, 1), (0, 0), (1, 1), a * a)
    parts, splits = backward_weight_gemm(m, u, v, geo, None, None, stream, conv_tile(k, c, a * a, wgrad=True))
    _sum_partials(m, parts, splits, stream)
    threads = _cfg.WINOGRAD_WGRAD_OUTPUT_BLOCK
    launch(f"conv2d_winograd_wgrad_output_v2_r{r}", (cdiv(k * c * r, threads), 1, 1), (threads, 1, 1), (m, dw, k, c),
           stream)
    return dw
