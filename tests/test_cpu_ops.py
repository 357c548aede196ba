"""Every CPU op (through fastconv.ops) against the float64 loop oracles in tests/oracle.py.

float32 inputs must match at relative L2 error <= 1e-5, float64 inputs at <= 1e-12. Outputs must
be new C-contiguous arrays of the input dtype, and the backend's np.empty/np.empty_like are
poisoned with NaN so that an element the backend forgets to write fails the comparison.
"""

import importlib
import pkgutil

import numpy as np
import pytest

import oracle as ref
from fastconv import ops
from fastconv.backends import cpu
from fastconv.backends.cpu import buffers
from fastconv.testing import assert_close

CPU_MODULES = [m.name for m in pkgutil.iter_modules(cpu.__path__)]
TOL = {np.float32: 1e-5, np.float64: 1e-12}
DTYPES = [np.float32, np.float64]


class _PoisonedNumpy:
    """numpy, except that fresh uninitialised arrays come back full of NaN (or -1 for ints)."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def empty(shape, dtype=float, **kw):
        a = np.empty(shape, dtype=dtype, **kw)
        a.fill(np.nan if a.dtype.kind == "f" else -1)
        return a

    @staticmethod
    def empty_like(proto, dtype=None, **kw):
        a = np.empty_like(proto, dtype=dtype, **kw)
        a.fill(np.nan if a.dtype.kind == "f" else -1)
        return a


@pytest.fixture(autouse=True)
def poisoned_backend(monkeypatch, request):
    ref.install_summary(request.config)
    for name in CPU_MODULES:  # every op-family module of the CPU backend allocates through its own np
        monkeypatch.setattr(importlib.import_module(f"fastconv.backends.cpu.{name}"), "np", _PoisonedNumpy(),
                            raising=False)


def check(out, want, dtype, key, inputs=()):
    """Compare one op output with its oracle; also dtype, contiguity and no aliasing of inputs."""
    assert out.dtype == np.dtype(dtype), f"{key}: dtype {out.dtype}, expected {np.dtype(dtype)}"
    assert out.flags.c_contiguous, f"{key}: result is not C-contiguous"
    for a in inputs:
        assert not np.shares_memory(out, a), f"{key}: result is a view of an input"
    err = assert_close(out, want, TOL[dtype], key)
    ref.record(f"cpu-vs-loops {key} {np.dtype(dtype).name}", err)


def randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def distinct(rng, shape, dtype):
    """Values at least 0.01 apart, so a max-pool window never holds a tie."""
    n = int(np.prod(shape))
    return ((rng.permutation(n) - n / 2) * 0.01).reshape(shape).astype(dtype)


def away_from_zero(rng, shape, dtype, gap=0.05):
    x = rng.standard_normal(shape)
    return (x + np.sign(x) * gap).astype(dtype)


# ---- convolution ---------------------------------------------------------------------------

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


# ---- pooling -------------------------------------------------------------------------------

# H, W, kernel, stride, padding
POOL_CASES = [
    (6, 6, 2, None, 0),
    (7, 9, 3, 2, 1),            # overlapping windows, padding
    (5, 5, 3, 1, 1),            # heavy overlap
    (9, 7, (3, 2), (2, 1), (1, 1)),
    (8, 7, 2, 3, 1),            # stride larger than the kernel
    (11, 10, 5, 2, 2),
    (3, 3, 3, None, 0),         # one window covering everything
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
def test_max_pool2d(case, dtype, rng):
    h, w, ks, stride, pad = case
    x = distinct(rng, (2, 3, h, w), dtype)
    y, argmax = ops.max_pool2d_forward(x, ks, stride, pad)
    want_y, want_arg = ref.max_pool2d_forward(x, ks, stride, pad)
    check(y, want_y, dtype, "max_pool2d_forward", (x,))
    assert argmax.dtype == np.int32
    np.testing.assert_array_equal(argmax, want_arg)
    dy = randn(rng, y.shape, dtype)
    check(ops.max_pool2d_backward(dy, argmax, x.shape, ks, stride, pad),
          ref.max_pool2d_backward(dy, x, ks, stride, pad), dtype, "max_pool2d_backward", (dy,))


def test_max_pool2d_negative_inputs_ignore_padding(rng):
    """All-negative inputs: a zero-padded implementation would pick the padding; -inf padding must not."""
    x = -np.abs(distinct(rng, (1, 2, 5, 5), np.float64)) - 1.0
    y, argmax = ops.max_pool2d_forward(x, 3, 2, 1)
    check(y, ref.max_pool2d_forward(x, 3, 2, 1)[0], np.float64, "max_pool2d_forward(negative)")
    assert (y < 0).all()


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
def test_avg_pool2d(case, dtype, count_include_pad, rng):
    h, w, ks, stride, pad = case
    x = randn(rng, (2, 3, h, w), dtype) + 0.5  # not zero-mean, so the divisor matters
    y = ops.avg_pool2d_forward(x, ks, stride, pad, count_include_pad)
    check(y, ref.avg_pool2d_forward(x, ks, stride, pad, count_include_pad), dtype, "avg_pool2d_forward", (x,))
    dy = randn(rng, y.shape, dtype)
    check(ops.avg_pool2d_backward(dy, x.shape, ks, stride, pad, count_include_pad),
          ref.avg_pool2d_backward(dy, x.shape, ks, stride, pad, count_include_pad), dtype,
          "avg_pool2d_backward", (dy,))


# ---- activations ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4, 5)])
def test_relu(shape, dtype, rng):
    x = away_from_zero(rng, shape, dtype)
    y = ops.relu_forward(x)
    check(y, ref.relu(x), dtype, "relu_forward", (x,))
    dy = randn(rng, shape, dtype)
    check(ops.relu_backward(dy, y), np.where(ref.relu(x) > 0, ref._f64(dy), 0.0), dtype, "relu_backward", (dy, y))


@pytest.mark.parametrize("slope", [0.01, 0.2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_leaky_relu(slope, dtype, rng):
    x = away_from_zero(rng, (2, 3, 4, 5), dtype)
    y = ops.leaky_relu_forward(x, slope)
    check(y, ref.leaky_relu(x, slope), dtype, "leaky_relu_forward", (x,))
    dy = randn(rng, x.shape, dtype)
    check(ops.leaky_relu_backward(dy, y, slope), np.where(ref._f64(x) > 0, 1.0, slope) * ref._f64(dy), dtype,
          "leaky_relu_backward", (dy, y))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_tanh(dtype, rng):
    x = randn(rng, (2, 3, 4, 5), dtype) * 3
    dy = randn(rng, x.shape, dtype)
    s = ops.sigmoid_forward(x)
    check(s, ref.sigmoid(x), dtype, "sigmoid_forward", (x,))
    check(ops.sigmoid_backward(dy, s), ref._f64(dy) * ref.sigmoid(x) * (1 - ref.sigmoid(x)), dtype,
          "sigmoid_backward", (dy, s))
    t = ops.tanh_forward(x)
    check(t, np.tanh(ref._f64(x)), dtype, "tanh_forward", (x,))
    check(ops.tanh_backward(dy, t), ref._f64(dy) * (1 - np.tanh(ref._f64(x)) ** 2), dtype, "tanh_backward",
          (dy, t))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_extreme_inputs_stay_finite(dtype):
    x = np.array([-1000.0, -100.0, -30.0, 0.5, 30.0, 100.0, 1000.0], dtype=dtype)
    with np.errstate(over="raise"):
        s = ops.sigmoid_forward(x)
    assert np.all(np.isfinite(s)) and np.all((s >= 0) & (s <= 1))
    check(s, ref.sigmoid(np.clip(x, -700, 700)), dtype, "sigmoid_forward(extreme)")


# ---- linear --------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,fin,fout", [(1, 3, 2), (5, 17, 9), (16, 64, 10)])
def test_linear(n, fin, fout, dtype, rng):
    x, w, b = randn(rng, (n, fin), dtype), randn(rng, (fout, fin), dtype), randn(rng, (fout,), dtype)
    check(ops.linear_forward(x, w, b), ref.linear_forward(x, w, b), dtype, "linear_forward", (x, w, b))
    check(ops.linear_forward(x, w, None), ref.linear_forward(x, w), dtype, "linear_forward(no bias)")
    dy = randn(rng, (n, fout), dtype)
    # backward of y = x w^T + b from the definition: dx[i, j] = sum_o dy[i, o] w[o, j], etc.
    dx_ref = np.array([[sum(float(dy[i, o]) * float(w[o, j]) for o in range(fout)) for j in range(fin)]
                       for i in range(n)])
    dw_ref = np.array([[sum(float(dy[i, o]) * float(x[i, j]) for i in range(n)) for j in range(fin)]
                       for o in range(fout)])
    check(ops.linear_backward_data(dy, w), dx_ref, dtype, "linear_backward_data", (dy, w))
    dw, db = ops.linear_backward_weight(dy, x)
    check(dw, dw_ref, dtype, "linear_backward_weight", (dy, x))
    check(db, ref._f64(dy).sum(axis=0), dtype, "linear_backward_bias", (dy,))


# ---- batch normalisation -------------------------------------------------------------------

@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 4), (3, 5, 4, 3)], ids=["1d", "2d"])
def test_batchnorm(shape, dtype, training, rng):
    c = shape[1]
    x = (randn(rng, shape, dtype) * 2 + 1.5).astype(dtype)
    gamma, beta = randn(rng, (c,), dtype), randn(rng, (c,), dtype)
    rm = randn(rng, (c,), dtype)
    rv = (rng.random(c) + 0.5).astype(dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    y, mean, invstd = ops.batchnorm_forward(x, gamma, beta, rm, rv, training, 0.1, 1e-5)
    y_ref, rm_ref, rv_ref = ref.batchnorm_forward(x, gamma, beta, rm0, rv0, training, 0.1, 1e-5)
    check(y, y_ref, dtype, f"batchnorm_forward(train={training})", (x, gamma, beta, rm, rv))
    check(rm, rm_ref, dtype, f"batchnorm running_mean(train={training})")
    check(rv, rv_ref, dtype, f"batchnorm running_var(train={training})")
    if not training:
        np.testing.assert_array_equal(rm, rm0)
        np.testing.assert_array_equal(rv, rv0)
    dy = randn(rng, shape, dtype)
    dx, dgamma, dbeta = ops.batchnorm_backward(dy, x, gamma, mean, invstd, training)
    dx_ref, dg_ref, db_ref = ref.batchnorm_backward(dy, x, gamma, training, rm0, rv0)
    check(dx, dx_ref, dtype, f"batchnorm_backward dx(train={training})", (dy, x))
    check(dgamma, dg_ref, dtype, f"batchnorm_backward dgamma(train={training})")
    check(dbeta, db_ref, dtype, f"batchnorm_backward dbeta(train={training})")


# ---- dropout -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p,seed", [(0.5, 0), (0.1, 1), (0.9, 12345), (0.3, 2 ** 32 - 1), (0.0, 7)])
def test_dropout_mask_is_the_documented_hash(p, seed, dtype, rng):
    x = randn(rng, (3, 4, 5, 6), dtype)
    y, mask = ops.dropout_forward(x, p, seed)
    want = ref.dropout_mask(x.size, p, seed).reshape(x.shape)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, want)
    check(y, ref._f64(x) * want / (1 - p), dtype, "dropout_forward", (x,))
    dy = randn(rng, x.shape, dtype)
    check(ops.dropout_backward(dy, mask, p), ref._f64(dy) * want / (1 - p), dtype, "dropout_backward", (dy,))


def test_dropout_keep_rate_and_seed_dependence(rng):
    x = np.ones((64, 1000), dtype=np.float32)
    _, m0 = ops.dropout_forward(x, 0.3, 0)
    _, m1 = ops.dropout_forward(x, 0.3, 1)
    assert abs(m0.mean() - 0.7) < 0.01
    assert (m0 != m1).mean() > 0.3  # different seeds give (mostly) different masks
    np.testing.assert_array_equal(m0, ops.dropout_forward(x, 0.3, 0)[1])  # and the same seed the same one


# ---- losses --------------------------------------------------------------------------------

@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1.0, 30.0, 1000.0])
def test_softmax_cross_entropy(scale, dtype, label_dtype, rng):
    z = (randn(rng, (7, 5), dtype) * scale).astype(dtype)
    labels = rng.integers(0, 5, 7).astype(label_dtype)
    loss, d = ops.softmax_cross_entropy(z, labels)
    want_loss, want_d = ref.softmax_cross_entropy(z, labels)
    assert loss.shape == () and loss.dtype == np.dtype(dtype)
    check(np.asarray(loss).reshape(1), np.array([want_loss]), dtype, "softmax_cross_entropy loss")
    check(d, want_d, dtype, "softmax_cross_entropy dlogits", (z,))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,scale", [((8, 1), 1.0), ((4, 6), 3.0), ((2, 3, 4, 5), 1.0), ((9,), 200.0)])
def test_bce_with_logits(shape, scale, dtype, rng):
    z = (randn(rng, shape, dtype) * scale).astype(dtype)
    t = rng.random(shape).astype(dtype)
    loss, d = ops.bce_with_logits(z, t)
    want_loss, want_d = ref.bce_with_logits(z, t)
    assert loss.shape == () and loss.dtype == np.dtype(dtype)
    check(np.asarray(loss).reshape(1), np.array([want_loss]), dtype, "bce_with_logits loss")
    check(d, want_d, dtype, "bce_with_logits dlogits", (z, t))


# ---- optimizer updates ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,wd,nesterov", [(0.0, 0.0, False), (0.9, 0.0, False), (0.9, 1e-2, True),
                                                  (0.5, 1e-3, False), (0.0, 1e-2, False)])
def test_sgd_update(momentum, wd, nesterov, dtype, rng):
    p = randn(rng, (4, 3, 2), dtype)
    v = np.zeros_like(p) if momentum else None
    p_ref, v_ref = p.astype(np.float64), np.zeros(p.shape)
    for _ in range(4):
        g = randn(rng, p.shape, dtype)
        ops.sgd_update(p, g, v, 0.05, momentum, wd, nesterov)
        p_ref, v_ref = ref.sgd_step(p_ref, g, v_ref, 0.05, momentum, wd, nesterov)
        assert p.dtype == np.dtype(dtype)
        check(p, p_ref, dtype, "sgd_update param")
        if momentum:
            check(v, v_ref, dtype, "sgd_update velocity")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("wd", [0.0, 1e-2])
def test_adam_update(wd, dtype, rng):
    p = randn(rng, (5, 4), dtype)
    m, v = np.zeros_like(p), np.zeros_like(p)
    p_ref, m_ref, v_ref = p.astype(np.float64), np.zeros(p.shape), np.zeros(p.shape)
    for t in range(1, 6):
        g = randn(rng, p.shape, dtype)
        ops.adam_update(p, g, m, v, t, 1e-2, 0.9, 0.999, 1e-8, wd)
        p_ref, m_ref, v_ref = ref.adam_step(p_ref, g, m_ref, v_ref, t, 1e-2, 0.9, 0.999, 1e-8, wd)
        check(p, p_ref, dtype, "adam_update param")
        check(m, m_ref, dtype, "adam_update m")
        check(v, v_ref, dtype, "adam_update v")


@pytest.mark.parametrize("ks,stride,padding", [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)), ((2, 3), (1, 2), (0, 1))])
def test_max_pool_nan_wins_and_takes_the_gradient(ks, stride, padding):
    """A NaN in a window is its maximum and its argmax is the first NaN in scan order (as on the
    GPU), so the gradient reaches the NaN's input instead of hiding it."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 7, 8)).astype(np.float32)
    x[0, 1, 2, 3] = np.nan
    x[0, 1, 2, 4] = np.nan
    y, arg = ops.max_pool2d_forward(x, ks, stride, padding)
    clean = x.copy()
    clean[0, 1, 2, 3:5] = -np.inf
    y_clean, _ = ops.max_pool2d_forward(clean, ks, stride, padding)
    nan = np.isnan(y)
    assert nan.any() and not np.isnan(y_clean).any()
    # windows holding a NaN: y is NaN and argmax names the first NaN of the window in scan order
    for n, c, p, q in zip(*np.nonzero(nan)):
        h0, w0 = p * stride[0] - padding[0], q * stride[1] - padding[1]
        cells = [(h, w) for h in range(h0, h0 + ks[0]) for w in range(w0, w0 + ks[1])
                 if 0 <= h < 7 and 0 <= w < 8 and np.isnan(x[n, c, h, w])]
        assert arg[n, c, p, q] == cells[0][0] * 8 + cells[0][1]
    # the other windows are untouched by the NaN
    np.testing.assert_array_equal(y[~nan], y_clean[~nan])
    dx = ops.max_pool2d_backward(np.ones_like(y), arg, x.shape, ks, stride, padding)
    assert dx[0, 1, 2, 3] + dx[0, 1, 2, 4] >= nan.sum()
