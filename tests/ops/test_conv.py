"""conv2d (every pass) and conv_transpose2d: the CPU path against tests/oracle.py, bad arguments
(tolerances and poisoning: tests/ops/__init__.py), and every pass on every backend (tests/backends.py).
More conv tests: test_conv_hypothesis.py (drawn shapes), test_conv_torch.py (PyTorch as the oracle),
test_conv_kernels.py and test_conv_tf32.py (each CUDA C conv path on fastconv.emu)."""

import numpy as np
import pytest

import fastconv
import oracle as ref
from backends import CONV_VERSIONS, GPU, conv_kernels, judge, skip_unless_conv_versions_apply
from checks import arr, check, check_out, DTYPES, out_view, raises, randn, W, X
from fastconv import ops
from fastconv.backends.cpu import buffers
from fastconv.backends.cuda.config import CONV_TILES
from fastconv.check import bench_conv_shapes
from fastconv.testing import F32_TOL, REDUCTION_TOL, assert_close


# N, C, H, W, K, R, S, stride, padding, dilation, groups
CONV_CASES = [
    (2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1),
    (2, 4, 9, 8, 6, 3, 2, (2, 1), (1, 0), (1, 2), 2),
    (1, 6, 11, 10, 6, 3, 3, 2, 2, 2, 6),      # depthwise, dilated, strided
    (3, 2, 5, 5, 4, 1, 1, 3, 0, 1, 1),        # stride larger than the kernel
    (2, 3, 8, 8, 5, 5, 5, 1, 2, 1, 1),        # LeNet-like 5x5 pad 2
    (2, 4, 6, 7, 8, 4, 4, 2, 1, 1, 1),        # DCGAN-like 4/2/1
    (2, 6, 5, 9, 9, 2, 3, (1, 3), (0, 1), (2, 1), 3),
    (4, 16, 12, 12, 8, 3, 3, 1, 1, 1, 1),     # a longer reduction (C*R*S = 144)
]


def conv_id(c):
    return "N{}C{}H{}W{}K{}R{}S{}-st{}-pd{}-dl{}-g{}".format(*c).replace(" ", "")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=conv_id)
def test_conv2d_all_passes(case, dtype, rng):
    n, c, h, w, k, r, s, stride, pad, dil, groups = case
    x = randn(rng, (n, c, h, w), dtype)
    wt = randn(rng, (k, c // groups, r, s), dtype)
    b = randn(rng, (k,), dtype)
    kw = dict(stride=stride, padding=pad, dilation=dil, groups=groups)
    y = ops.conv2d_forward(x, wt, b, **kw)
    check(y, ref.conv2d_forward(x, wt, b, **kw), dtype, "conv2d_forward", (x, wt, b))
    check(ops.conv2d_forward(x, wt, None, **kw), ref.conv2d_forward(x, wt, None, **kw), dtype,
          "conv2d_forward(no bias)")
    dy = randn(rng, y.shape, dtype)
    check(ops.conv2d_backward_data(dy, wt, x.shape, **kw), ref.conv2d_backward_data(dy, wt, x.shape, **kw),
          dtype, "conv2d_backward_data", (dy, wt))
    check(ops.conv2d_backward_weight(dy, x, wt.shape, **kw), ref.conv2d_backward_weight(dy, x, wt.shape, **kw),
          dtype, "conv2d_backward_weight", (dy, x))
    check(ops.conv2d_backward_bias(dy), ref.conv2d_backward_bias(dy), dtype, "conv2d_backward_bias", (dy,))


@pytest.mark.parametrize("case", CONV_CASES[:4], ids=conv_id)
def test_conv2d_batch_chunks(case, monkeypatch, rng):
    """The backend splits the batch to keep its column buffer small; force uneven chunks of 1-2 samples."""
    n, c, h, w, k, r, s, stride, pad, dil, groups = case
    n = 5
    kw = dict(stride=stride, padding=pad, dilation=dil, groups=groups)
    x, wt = randn(rng, (n, c, h, w), np.float64), randn(rng, (k, c // groups, r, s), np.float64)
    y_ref = ref.conv2d_forward(x, wt, None, **kw)
    dy = randn(rng, y_ref.shape, np.float64)
    per_sample = (c // groups) * r * s * y_ref.shape[2] * y_ref.shape[3] * 8
    monkeypatch.setattr(buffers, "_COLS_BYTES", 2 * per_sample + 1)
    assert buffers._batch_chunk(n, per_sample) == 2
    check(ops.conv2d_forward(x, wt, None, **kw), y_ref, np.float64, "conv2d_forward(chunked)")
    check(ops.conv2d_backward_data(dy, wt, x.shape, **kw), ref.conv2d_backward_data(dy, wt, x.shape, **kw),
          np.float64, "conv2d_backward_data(chunked)")
    check(ops.conv2d_backward_weight(dy, x, wt.shape, **kw), ref.conv2d_backward_weight(dy, x, wt.shape, **kw),
          np.float64, "conv2d_backward_weight(chunked)")


def test_conv2d_non_contiguous_input(rng):
    """A transposed (non-C-contiguous) view must give the same answer as its contiguous copy."""
    x = randn(rng, (2, 3, 8, 7), np.float64).transpose(0, 1, 3, 2)
    wt = randn(rng, (4, 3, 3, 3), np.float64)
    check(ops.conv2d_forward(x, wt, None, 2, 1), ref.conv2d_forward(x, wt, None, 2, 1), np.float64,
          "conv2d_forward(strided view)")


# N, C_in, H, W, C_out, R, S, stride, padding, output_padding, dilation, groups
CONVT_CASES = [
    (2, 4, 4, 5, 3, 4, 4, 2, 1, 0, 1, 1),
    (2, 4, 3, 3, 6, 3, 2, (2, 3), (1, 0), (1, 2), 1, 2),
    (1, 3, 5, 4, 2, 3, 3, 1, 1, 0, 2, 1),
    (2, 2, 4, 4, 2, 1, 1, 3, 0, 2, 1, 1),
    (1, 2, 5, 5, 3, 3, 3, 1, 1, 1, 2, 1),        # output_padding >= stride (< dilation), padding 1
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONVT_CASES, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
def test_conv_transpose2d_forward(case, dtype, rng):
    n, cin, h, w, cout, r, s, stride, pad, opad, dil, groups = case
    x = randn(rng, (n, cin, h, w), dtype)
    wt = randn(rng, (cin, cout // groups, r, s), dtype)
    b = randn(rng, (cout,), dtype)
    kw = dict(stride=stride, padding=pad, output_padding=opad, dilation=dil, groups=groups)
    check(ops.conv_transpose2d_forward(x, wt, b, **kw), ref.conv_transpose2d_forward(x, wt, b, **kw), dtype,
          "conv_transpose2d_forward", (x, wt, b))


# ---- bad arguments ---------------------------------------------------------------------------

@pytest.mark.parametrize("bad,name,shape", [
    (arr(3, 8, 8), "x", "(3, 8, 8) (3-d)"),
    (arr(1, 2, 3, 8, 8), "x", "(1, 2, 3, 8, 8) (5-d)"),
])
def test_conv_wrong_ndim(bad, name, shape):
    with raises(ValueError, f"{name}: got an array of shape {shape}", "expected 4-d"):
        ops.conv2d_forward(bad, W)


def test_conv_weight_wrong_ndim():
    with raises(ValueError, "w: got an array of shape (4, 3, 3)", "expected 4-d"):
        ops.conv2d_forward(X, arr(4, 3, 3))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float16, np.uint8, np.bool_])
def test_conv_wrong_dtype(dtype):
    with raises(TypeError, f"x: got dtype {np.dtype(dtype)}", "expected float32 or float64"):
        ops.conv2d_forward(X.astype(dtype), W)
    with raises(TypeError, f"w: got dtype {np.dtype(dtype)}", "expected float32 or float64"):
        ops.conv2d_forward(X, W.astype(dtype))


def test_mixed_float_dtypes():
    # the parameter sets the dtype: an input of another dtype is the one blamed
    with raises(TypeError, "x: got dtype float32", "expected float64 (the dtype of w)"):
        ops.conv2d_forward(X, W.astype(np.float64))
    with raises(TypeError, "b: got dtype float64", "expected float32"):
        ops.conv2d_forward(X, W, np.ones(4))


def test_not_an_array():
    with raises(TypeError, "x: got list", "expected"):
        ops.conv2d_forward(X.tolist(), W)


def test_channel_mismatch():
    with raises(ValueError, "w: got shape (4, 2, 3, 3)", "expected 3 input channels per group", "3 channels"):
        ops.conv2d_forward(X, arr(4, 2, 3, 3))


def test_groups_must_divide_channels():
    with raises(ValueError, "groups: got 2", "expected a divisor of the 3 input channels"):
        ops.conv2d_forward(X, arr(4, 1, 3, 3), groups=2)
    with raises(ValueError, "groups: got 2", "expected a divisor of the 3 output channels"):
        ops.conv2d_forward(arr(2, 4, 8, 8), arr(3, 2, 3, 3), groups=2)
    with raises(ValueError, "groups: got 0", "expected a positive int"):
        ops.conv2d_forward(X, W, groups=0)


def test_kernel_larger_than_padded_input():
    with raises(ValueError, "w: got a 7x7 kernel", "larger than the padded input 6x6", "expected a kernel that fits"):
        ops.conv2d_forward(arr(1, 3, 4, 4), arr(2, 3, 7, 7), padding=1)
    with raises(ValueError, "w: got a 3x3 kernel (dilation (4, 4))", "larger than the padded input 8x8"):
        ops.conv2d_forward(X, W, dilation=4)


@pytest.mark.parametrize("arg,value,bound", [("stride", 0, 1), ("stride", -1, 1), ("stride", (1, 0), 1),
                                              ("dilation", 0, 1), ("dilation", (-2, 1), 1), ("padding", -1, 0)])
def test_conv_hyper_parameters_out_of_range(arg, value, bound):
    with raises(ValueError, f"{arg}: got {value!r}", f"expected values >= {bound}"):
        ops.conv2d_forward(X, W, **{arg: value})


@pytest.mark.parametrize("value", [1.5, "2", (1, 2, 3), True])
def test_conv_hyper_parameters_wrong_type(value):
    with raises(TypeError, f"stride: got {value!r}", "expected an int or a pair of ints"):
        ops.conv2d_forward(X, W, stride=value)


def test_conv_backward_shape_checks():
    dy = arr(2, 4, 6, 6)
    with raises(ValueError, "dy: got shape (2, 4, 5, 6)", "expected (2, 4, 6, 6)"):
        ops.conv2d_backward_data(arr(2, 4, 5, 6), W, X.shape)
    with raises(ValueError, "dy: got shape (2, 5, 6, 6)", "expected (2, 4, 6, 6)"):
        ops.conv2d_backward_weight(arr(2, 5, 6, 6), X, W.shape)
    with raises(ValueError, "x_shape: got (2, 3, 8)", "expected 4 positive ints"):
        ops.conv2d_backward_data(dy, W, (2, 3, 8))
    with raises(ValueError, "w_shape: got (4, 3, 0, 3)", "expected 4 positive ints"):
        ops.conv2d_backward_weight(dy, X, (4, 3, 0, 3))


def test_conv_fused_activation_checks():
    with raises(ValueError, "activation: got 'gelu'", "expected one of (None, 'relu', 'leaky_relu', 'tanh')"):
        ops.conv2d_forward(X, W, activation="gelu")
    with raises(ValueError, "negative_slope: got -0.1"):
        ops.conv2d_forward(X, W, activation="leaky_relu", negative_slope=-0.1)


def test_fused_backward_checks():
    """The one-call backward passes check as the separate ones do, x and w first."""
    dy = arr(2, 4, 5, 5)
    with raises(TypeError, "x: got list", "expected a numpy.ndarray or cupy.ndarray"):
        ops.conv2d_backward(dy, [1.0], W)
    with raises(ValueError, "w: got an array of shape (3, 3, 3) (3-d)", "expected 4-d"):
        ops.conv_transpose2d_backward(dy, X, W[0])
    with raises(ValueError, "dy: got shape (2, 4, 5, 5)", "expected"):
        ops.conv2d_backward(dy, X, W)


def test_conv_bias_shape():
    with raises(ValueError, "b: got shape (3,)", "expected (4,)"):
        ops.conv2d_forward(X, W, arr(3))


def test_conv_transpose_checks():
    x = arr(2, 4, 5, 5)
    with raises(ValueError, "w: got shape (3, 2, 3, 3)", "expected dim 0 = 4"):
        ops.conv_transpose2d_forward(x, arr(3, 2, 3, 3))
    with raises(ValueError, "output_padding: got (2, 2)", "expected values smaller than stride (2, 2)"):
        ops.conv_transpose2d_forward(x, arr(4, 2, 3, 3), stride=2, output_padding=2)
    with raises(ValueError, "groups: got 3", "expected a positive divisor of the 4 channels of x"):
        ops.conv_transpose2d_forward(x, arr(4, 2, 3, 3), groups=3)


def test_conv_gradient_out_errors():
    dy, out_f32 = arr(2, 4, 8, 8), np.zeros(W.shape, np.float32)
    with raises(ValueError, "out: got shape (3, 3, 3)", "expected (4, 3, 3, 3)"):
        ops.conv2d_backward_weight(dy, X, W.shape, 1, 1, out=out_f32[0])
    with raises(TypeError, "out: got dtype float64", "expected float32 (the dtype of dy)"):
        ops.conv2d_backward_weight(dy, X, W.shape, 1, 1, out=np.zeros(W.shape))
    with raises(ValueError, "out: got a non-contiguous array", "expected a C-contiguous one"):
        ops.conv2d_backward_weight(dy, X, W.shape, 1, 1, out=np.zeros((4, 3, 3, 6), np.float32)[..., ::2])
    with raises(TypeError, "out: got list", "expected a numpy.ndarray or cupy.ndarray"):
        ops.conv2d_backward_weight(dy, X, W.shape, 1, 1, out=out_f32.tolist())
    with raises(ValueError, "out: got shape (3,)", "expected (4,)"):
        ops.conv2d_backward_bias(dy, out=np.zeros(3, np.float32))
    with raises(TypeError, "out: got dtype float64", "expected float32 (the dtype of x)"):
        ops.conv_transpose2d_backward_weight(arr(2, 3, 10, 10), X, (3, 3, 3, 3), out=np.zeros((3, 3, 3, 3)))


def test_empty_arrays_are_rejected():
    with raises(ValueError, "x: got an empty array of shape (0, 3, 5, 5)", "expected at least one element"):
        ops.conv2d_forward(np.zeros((0, 3, 5, 5), np.float32), W)
    with raises(ValueError, "logits: got an empty array of shape (0, 4)", "expected at least one element"):
        ops.softmax_cross_entropy(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    with raises(ValueError, "w: got an empty array", "expected at least one element"):
        ops.conv2d_forward(X, np.zeros((0, 3, 3, 3), np.float32))


# ---- every backend: float32, outputs poisoned -------------------------------------------------

# (N, C, H, W), (K, C/G, R, S), stride, padding, dilation, groups
DEVICE_CASES = [
    pytest.param((2, 3, 7, 6), (5, 3, 3, 3), 1, 1, 1, 1, id="3x3-p1-odd"),
    pytest.param((1, 4, 9, 7), (6, 2, 3, 2), (2, 1), (1, 0), (1, 2), 2, id="s21-d12-g2"),
    pytest.param((2, 3, 6, 6), (3, 1, 3, 3), 2, (2, 1), (2, 1), 3, id="depthwise-s2"),
    pytest.param((2, 8, 16, 16), (140, 8, 1, 1), 1, 0, 1, 1, id="1x1-k140-splitk"),
]


def conv_all_passes(backend, rng, x_shape, w_shape, stride, padding, dilation, groups, tol=None):
    """Every conv pass of backend against the oracle, at F32_TOL, or REDUCTION_TOL where a float32
    sum runs over the batch (weight/bias gradients); at ``tol`` for all when given."""
    f32_tol, reduction_tol = tol or F32_TOL, tol or REDUCTION_TOL
    x, w, b = randn(rng, x_shape, np.float32), randn(rng, w_shape, np.float32), randn(rng, w_shape[0], np.float32)
    args = (stride, padding, dilation, groups)
    y_ref = ref.conv2d_forward(x, w, b, *args)
    dy = randn(rng, y_ref.shape, np.float32)
    xd, wd, bd, dyd = (backend.asarray(a) for a in (x, w, b, dy))
    assert_close(ops.conv2d_forward(xd, wd, bd, *args), y_ref, f32_tol, "forward+bias")
    assert_close(ops.conv2d_forward(xd, wd, None, *args), ref.conv2d_forward(x, w, None, *args), f32_tol, "forward")
    for act, slope in ref.FUSED:
        assert_close(ops.conv2d_forward(xd, wd, bd, *args, activation=act, negative_slope=slope),
                     ref.activation(act, y_ref, slope), f32_tol, f"forward+bias+{act}")
    assert_close(ops.conv2d_backward_data(dyd, wd, x.shape, *args), ref.conv2d_backward_data(dy, w, x.shape, *args),
                 f32_tol, "backward_data")
    assert_close(ops.conv2d_backward_weight(dyd, xd, w.shape, *args),
                 ref.conv2d_backward_weight(dy, x, w.shape, *args), reduction_tol, "backward_weight")
    assert_close(ops.conv2d_backward_bias(dyd), ref.conv2d_backward_bias(dy), reduction_tol, "backward_bias")


@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation,groups", DEVICE_CASES[:2])
def test_fused_backward_is_the_two_passes(backend, rng, x_shape, w_shape, stride, padding, dilation, groups):
    """conv2d_backward and conv_transpose2d_backward: (dx, dw) bit for bit the separate passes, a pass
    not asked for None, dw into ``out``."""
    args = (stride, padding, dilation, groups)
    x, w = backend.asarray(randn(rng, x_shape, np.float32)), backend.asarray(randn(rng, w_shape, np.float32))
    dy = backend.asarray(randn(rng, ops.conv2d_forward(x, w, None, *args).shape, np.float32))
    dx, dw = ops.conv2d_backward(dy, x, w, *args)
    np.testing.assert_array_equal(backend.get(dx), backend.get(ops.conv2d_backward_data(dy, w, x.shape, *args)))
    np.testing.assert_array_equal(backend.get(dw), backend.get(ops.conv2d_backward_weight(dy, x, w.shape, *args)))
    assert ops.conv2d_backward(dy, x, w, *args, input_grad=False)[0] is None
    assert ops.conv2d_backward(dy, x, w, *args, weight_grad=False)[1] is None
    out = backend.xp.zeros(w.shape, np.float32)
    assert ops.conv2d_backward(dy, x, w, *args, input_grad=False, out=out)[1] is out
    np.testing.assert_array_equal(backend.get(out), backend.get(dw))
    # the transposed conv whose forward is this conv's backward-data: dy of the shape of x
    hyper = (stride, padding, 0, dilation, groups)
    tdx, tdw = ops.conv_transpose2d_backward(x, dy, w, *hyper)
    np.testing.assert_array_equal(backend.get(tdx), backend.get(ops.conv_transpose2d_backward_data(x, w, dy.shape,
                                                                                                   *hyper)))
    np.testing.assert_array_equal(backend.get(tdw), backend.get(ops.conv_transpose2d_backward_weight(x, dy, w.shape,
                                                                                                     *hyper)))


@pytest.mark.parametrize("version", CONV_VERSIONS)
@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation,groups", DEVICE_CASES)
def test_conv2d_backends(backend, rng, version, x_shape, w_shape, stride, padding, dilation, groups):
    skip_unless_conv_versions_apply(backend, version)
    with conv_kernels(version):
        conv_all_passes(backend, rng, x_shape, w_shape, stride, padding, dilation, groups)


@pytest.mark.parametrize("backend", GPU, indirect=True)
@pytest.mark.parametrize("name", list(bench_conv_shapes()))
def test_conv2d_benchmark_shapes(backend, name):
    judge("conv2d", bench_conv_shapes()[name], backend.name)


@pytest.mark.parametrize("backend", GPU[:1], indirect=True)
@pytest.mark.parametrize("tile", list(CONV_TILES))
def test_conv2d_every_tile_on_a_large_shape(backend, tile):
    """Multi-tile reductions, split-K and many blocks on each tile shape (CUDA C family)."""
    with fastconv.using(conv_tile=tile):
        judge("conv2d", (9, 24, 33, 31, 136, 3, 3, 1, 1, 1, 1), "cupy")
        judge("conv2d", (4, 36, 17, 19, 260, 4, 3, (2, 1), (1, 2), (1, 2), 2), "cupy")


@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("x_shape,w_shape", [((2, 3, 8, 8), (4, 3, 3, 3)), ((2, 8, 6, 6), (6, 8, 3, 3))],
                         ids=["smallc", "v3"])
def test_conv_gradients_into_out(backend, rng, x_shape, w_shape, offset):
    """conv2d backward-weight (on the CUDA C family its small-channel and v3 paths, one slice and
    split), the bias gradient and conv_transpose2d backward-weight written into out: a NaN-poisoned
    view ``offset`` elements into a larger buffer (offset 1: not 16-byte aligned, where the v3
    kernel's float4 stores cannot go), against the loops; nothing around it written."""
    x, k = randn(rng, x_shape, np.float32), w_shape[0]
    dy = randn(rng, (x_shape[0], k) + x_shape[2:], np.float32)
    xd, dyd, kw = backend.asarray(x), backend.asarray(dy), {"kernels": backend.kernels}
    want = ref.conv2d_backward_weight(dy, x, w_shape, 1, 1)
    for splits in (1, 3):
        with fastconv.using(conv_splits=splits):
            out, untouched = out_view(backend, w_shape, offset=offset)
            check_out(ops.conv2d_backward_weight(dyd, xd, w_shape, 1, 1, out=out, **kw), out, untouched, want,
                      REDUCTION_TOL, "conv2d_backward_weight")
    out, untouched = out_view(backend, (k,), offset=offset)
    check_out(ops.conv2d_backward_bias(dyd, out=out, **kw), out, untouched, ref.conv2d_backward_bias(dy),
              REDUCTION_TOL, "conv2d_backward_bias")
    # ConvTranspose2d 4/2/1 from x's k channels: the conv2d of its output dy_t gives back x's shape
    dy_t = randn(rng, (x_shape[0], 2, 2 * x_shape[2], 2 * x_shape[3]), np.float32)
    out, untouched = out_view(backend, (x_shape[1], 2, 4, 4), offset=offset)
    check_out(ops.conv_transpose2d_backward_weight(backend.asarray(dy_t), xd, (x_shape[1], 2, 4, 4), 2, 1, out=out,
                                                   **kw),
              out, untouched, ref.conv2d_backward_weight(x, dy_t, (x_shape[1], 2, 4, 4), 2, 1), REDUCTION_TOL,
              "conv_transpose2d_backward_weight")
    if backend.xp is not np:
        with raises(TypeError, "out: got a numpy array while dy is a cupy array"):
            ops.conv2d_backward_bias(dyd, out=np.zeros(k, np.float32), **kw)
