"""conv2d (every pass) and conv_transpose2d: the CPU path against tests/oracle.py, and bad
arguments (tolerances and poisoning: tests/ops/__init__.py)."""

import numpy as np
import pytest

import oracle as ref
from fastconv import ops
from fastconv.backends.cpu import buffers
from checks import arr, check, DTYPES, raises, randn, W, X


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


def test_empty_arrays_are_rejected():
    with raises(ValueError, "x: got an empty array of shape (0, 3, 5, 5)", "expected at least one element"):
        ops.conv2d_forward(np.zeros((0, 3, 5, 5), np.float32), W)
    with raises(ValueError, "logits: got an empty array of shape (0, 4)", "expected at least one element"):
        ops.softmax_cross_entropy(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    with raises(ValueError, "w: got an empty array", "expected at least one element"):
        ops.conv2d_forward(X, np.zeros((0, 3, 3, 3), np.float32))
