"""conv2d, conv_transpose2d and the ConvTranspose2d layer on the CPU against PyTorch CPU (skipped when
torch is not installed), float32 and float64; the loop oracles of tests/oracle.py are checked against
PyTorch here too, so the two references vouch for each other (tolerances: tests/torch_checks.py)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import oracle as ref  # noqa: E402
import fastconv.nn as nn  # noqa: E402
from checks import DTYPES, randn  # noqa: E402
from fastconv import ops  # noqa: E402
from torch_checks import T, check  # noqa: E402


# ---- convolution ---------------------------------------------------------------------------

CONV_CASES = [  # N, C, H, W, K, R, S, stride, padding, dilation, groups
    (2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1),
    (2, 4, 9, 8, 6, 3, 2, (2, 1), (1, 0), (1, 2), 2),
    (1, 6, 11, 10, 6, 3, 3, 2, 2, 2, 6),
    (3, 2, 5, 5, 4, 1, 1, 3, 0, 1, 1),
    (2, 4, 14, 14, 8, 4, 4, 2, 1, 1, 1),
    (4, 16, 12, 12, 8, 5, 5, 1, 2, 1, 1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
def test_conv2d_vs_torch(case, dtype, rng):
    n, c, h, w, k, r, s, stride, pad, dil, groups = case
    kw = dict(stride=stride, padding=pad, dilation=dil, groups=groups)
    x, wt, b = randn(rng, (n, c, h, w), dtype), randn(rng, (k, c // groups, r, s), dtype), randn(rng, (k,), dtype)
    tx, tw, tb = T(x, True), T(wt, True), T(b, True)
    ty = F.conv2d(tx, tw, tb, **kw)
    y = ops.conv2d_forward(x, wt, b, **kw)
    check(y, ty, dtype, "conv2d_forward")
    check(ref.conv2d_forward(x, wt, b, **kw), ty, np.float64, "oracle conv2d_forward")
    dy = randn(rng, y.shape, dtype)
    ty.backward(T(dy))
    check(ops.conv2d_backward_data(dy, wt, x.shape, **kw), tx.grad, dtype, "conv2d_backward_data")
    check(ops.conv2d_backward_weight(dy, x, wt.shape, **kw), tw.grad, dtype, "conv2d_backward_weight")
    check(ops.conv2d_backward_bias(dy), tb.grad, dtype, "conv2d_backward_bias")
    check(ref.conv2d_backward_data(dy, wt, x.shape, **kw), tx.grad, np.float64, "oracle conv2d_backward_data")
    check(ref.conv2d_backward_weight(dy, x, wt.shape, **kw), tw.grad, np.float64, "oracle conv2d_backward_weight")


CONVT_CASES = [  # N, C_in, H, W, C_out, R, S, stride, padding, output_padding, dilation, groups
    (2, 4, 4, 5, 3, 4, 4, 2, 1, 0, 1, 1),
    (2, 4, 3, 3, 6, 3, 2, (2, 3), (1, 0), (1, 2), 1, 2),
    (1, 3, 5, 4, 2, 3, 3, 1, 1, 0, 2, 1),
    (2, 2, 4, 4, 2, 1, 1, 3, 0, 2, 1, 1),
    (2, 8, 7, 7, 4, 4, 4, 2, 1, 0, 1, 1),        # DCGAN generator 7 -> 14
    (1, 2, 3, 3, 3, 2, 2, 1, 0, 1, 2, 1),        # output_padding < dilation (allowed by PyTorch) with stride 1
    (1, 2, 5, 5, 3, 3, 3, 1, 1, 1, 2, 1),        # ... with padding: the taps reach the extra row and column
    (2, 2, 4, 5, 4, 3, 2, (1, 2), (2, 1), (2, 1), (3, 2), 2),   # two extra rows (output_padding 2, stride 1)
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONVT_CASES, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
def test_conv_transpose2d_vs_torch(case, dtype, rng):
    n, cin, h, w, cout, r, s, stride, pad, opad, dil, groups = case
    kw = dict(stride=stride, padding=pad, output_padding=opad, dilation=dil, groups=groups)
    x, wt, b = randn(rng, (n, cin, h, w), dtype), randn(rng, (cin, cout // groups, r, s), dtype), randn(rng, (cout,), dtype)
    ty = F.conv_transpose2d(T(x), T(wt), T(b), **kw)
    check(ref.conv_transpose2d_forward(x, wt, b, **kw), ty, np.float64, "oracle conv_transpose2d_forward")
    check(ops.conv_transpose2d_forward(x, wt, b, **kw), ty, dtype, "conv_transpose2d_forward")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONVT_CASES, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
def test_conv_transpose2d_layer_vs_torch(case, dtype, rng):
    """ConvTranspose2d forward and all its gradients against torch.nn.ConvTranspose2d."""
    n, cin, h, w, cout, r, s, stride, pad, opad, dil, groups = case
    layer = nn.ConvTranspose2d(cin, cout, (r, s), stride, pad, opad, dil, groups, rng=rng).astype(dtype)
    layer.bias.data[...] = randn(rng, (cout,), dtype)
    tl = torch.nn.ConvTranspose2d(cin, cout, (r, s), stride, pad, opad, groups, True, dil).double()
    with torch.no_grad():
        tl.weight.copy_(T(layer.weight.data))
        tl.bias.copy_(T(layer.bias.data))
    x = randn(rng, (n, cin, h, w), dtype)
    tx = T(x, True)
    ty = tl(tx)
    y = layer.forward(x)
    check(y, ty, dtype, "ConvTranspose2d forward")
    dy = randn(rng, y.shape, dtype)
    ty.backward(T(dy))
    check(layer.backward(dy), tx.grad, dtype, "ConvTranspose2d dx")
    check(layer.weight.grad, tl.weight.grad, dtype, "ConvTranspose2d dweight")
    check(layer.bias.grad, tl.bias.grad, dtype, "ConvTranspose2d dbias")
