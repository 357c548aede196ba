"""The CPU ops and layers against PyTorch CPU (skipped when torch is not installed).

PyTorch runs in float64 on the same values; fastconv float32 results must match at relative L2
error <= 1e-5, float64 results at <= 1e-12. The loop oracles of tests/oracle.py are checked
against PyTorch here too, so the two references vouch for each other.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import oracle as ref  # noqa: E402
import fastconv.nn as nn  # noqa: E402
from fastconv import ops  # noqa: E402
from fastconv.testing import assert_close  # noqa: E402

TOL = {np.float32: 1e-5, np.float64: 1e-12}
DTYPES = [np.float32, np.float64]


@pytest.fixture(autouse=True)
def summary(request):
    ref.install_summary(request.config)


def T(a, grad=False):
    """A float64 torch tensor holding exactly the values of a (float32 or float64)."""
    t = torch.tensor(np.asarray(a, dtype=np.float64))
    return t.requires_grad_(grad)


def check(out, want, dtype, key):
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else want
    assert out.dtype == np.dtype(dtype)
    ref.record(f"cpu-vs-torch {key} {np.dtype(dtype).name}", assert_close(out, want, TOL[dtype], key))


def randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


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


# ---- pooling -------------------------------------------------------------------------------

POOL_CASES = [(6, 6, 2, None, 0), (7, 9, 3, 2, 1), (5, 5, 3, 1, 1), (9, 7, (3, 2), (2, 1), (1, 1)),
              (8, 7, 2, 3, 1), (11, 10, 5, 2, 2)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
def test_max_pool2d_vs_torch(case, dtype, rng):
    h, w, ks, stride, pad = case
    size = 2 * 3 * h * w
    x = ((rng.permutation(size) - size / 2) * 0.01).reshape(2, 3, h, w).astype(dtype)  # no ties
    tx = T(x, True)
    ty, tidx = F.max_pool2d(tx, ks, stride, pad, return_indices=True)
    y, argmax = ops.max_pool2d_forward(x, ks, stride, pad)
    check(y, ty, dtype, "max_pool2d_forward")
    np.testing.assert_array_equal(argmax, tidx.numpy())
    dy = randn(rng, y.shape, dtype)
    ty.backward(T(dy))
    check(ops.max_pool2d_backward(dy, argmax, x.shape, ks, stride, pad), tx.grad, dtype, "max_pool2d_backward")
    check(ref.max_pool2d_backward(dy, x, ks, stride, pad), tx.grad, np.float64, "oracle max_pool2d_backward")


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
def test_avg_pool2d_vs_torch(case, dtype, count_include_pad, rng):
    h, w, ks, stride, pad = case
    x = randn(rng, (2, 3, h, w), dtype) + 0.5
    tx = T(x, True)
    ty = F.avg_pool2d(tx, ks, stride, pad, count_include_pad=count_include_pad)
    y = ops.avg_pool2d_forward(x, ks, stride, pad, count_include_pad)
    check(y, ty, dtype, "avg_pool2d_forward")
    check(ref.avg_pool2d_forward(x, ks, stride, pad, count_include_pad), ty, np.float64, "oracle avg_pool2d_forward")
    dy = randn(rng, y.shape, dtype)
    ty.backward(T(dy))
    check(ops.avg_pool2d_backward(dy, x.shape, ks, stride, pad, count_include_pad), tx.grad, dtype,
          "avg_pool2d_backward")


# ---- activations, linear -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_activations_vs_torch(dtype, rng):
    x = randn(rng, (2, 3, 4, 5), dtype) * 2
    x = (x + np.sign(x) * 0.05).astype(dtype)
    dy = randn(rng, x.shape, dtype)
    for name, fwd, bwd, tfn in [
        ("relu", ops.relu_forward, ops.relu_backward, F.relu),
        ("tanh", ops.tanh_forward, ops.tanh_backward, torch.tanh),
        ("sigmoid", ops.sigmoid_forward, ops.sigmoid_backward, torch.sigmoid),
        ("leaky_relu", lambda a: ops.leaky_relu_forward(a, 0.2), lambda d, y: ops.leaky_relu_backward(d, y, 0.2),
         lambda t: F.leaky_relu(t, 0.2)),
    ]:
        tx = T(x, True)
        ty = tfn(tx)
        ty.backward(T(dy))
        y = fwd(x)
        check(y, ty, dtype, f"{name}_forward")
        check(bwd(dy, y), tx.grad, dtype, f"{name}_backward")


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_vs_torch(dtype, rng):
    x, w, b = randn(rng, (8, 20), dtype), randn(rng, (7, 20), dtype), randn(rng, (7,), dtype)
    tx, tw, tb = T(x, True), T(w, True), T(b, True)
    ty = F.linear(tx, tw, tb)
    check(ops.linear_forward(x, w, b), ty, dtype, "linear_forward")
    dy = randn(rng, (8, 7), dtype)
    ty.backward(T(dy))
    check(ops.linear_backward_data(dy, w), tx.grad, dtype, "linear_backward_data")
    dw, db = ops.linear_backward_weight(dy, x)
    check(dw, tw.grad, dtype, "linear_backward_weight")
    check(db, tb.grad, dtype, "linear_backward_bias")


# ---- batch normalisation -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_batchnorm_layer_vs_torch(kind, dtype, rng):
    """Several training steps (running stats included), then eval mode, forward and backward."""
    c = 3
    shape = (6, c) if kind == "1d" else (4, c, 3, 5)
    layer = (nn.BatchNorm1d if kind == "1d" else nn.BatchNorm2d)(c, eps=1e-5, momentum=0.2).astype(dtype)
    tl = (torch.nn.BatchNorm1d if kind == "1d" else torch.nn.BatchNorm2d)(c, eps=1e-5, momentum=0.2).double()
    gamma, beta = randn(rng, (c,), dtype), randn(rng, (c,), dtype)
    layer.weight.data[...] = gamma
    layer.bias.data[...] = beta
    with torch.no_grad():
        tl.weight.copy_(T(gamma))
        tl.bias.copy_(T(beta))
    for step in range(3):
        for mode in ("train", "eval") if step == 2 else ("train",):
            layer.train(mode == "train")
            tl.train(mode == "train")
            x = (randn(rng, shape, dtype) * 1.7 + 0.8).astype(dtype)
            tx = T(x, True)
            ty = tl(tx)
            layer.zero_grad()
            tl.zero_grad()
            y = layer.forward(x)
            check(y, ty, dtype, f"BatchNorm{kind} forward ({mode})")
            dy = randn(rng, shape, dtype)
            ty.backward(T(dy))
            check(layer.backward(dy), tx.grad, dtype, f"BatchNorm{kind} dx ({mode})")
            check(layer.weight.grad, tl.weight.grad, dtype, f"BatchNorm{kind} dgamma ({mode})")
            check(layer.bias.grad, tl.bias.grad, dtype, f"BatchNorm{kind} dbeta ({mode})")
            check(layer.buffer("running_mean"), tl.running_mean, dtype, f"BatchNorm{kind} running_mean")
            check(layer.buffer("running_var"), tl.running_var, dtype, f"BatchNorm{kind} running_var")


# ---- losses --------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1.0, 50.0])
def test_losses_vs_torch(scale, dtype, rng):
    z = (randn(rng, (9, 6), dtype) * scale).astype(dtype)
    labels = rng.integers(0, 6, 9)
    tz = T(z, True)
    tl = F.cross_entropy(tz, torch.tensor(labels))
    tl.backward()
    loss, d = ops.softmax_cross_entropy(z, labels)
    check(np.reshape(loss, 1), tl.reshape(1), dtype, "softmax_cross_entropy loss")
    check(d, tz.grad, dtype, "softmax_cross_entropy dlogits")
    t = rng.random(z.shape).astype(dtype)
    tz = T(z, True)
    tl = F.binary_cross_entropy_with_logits(tz, T(t))
    tl.backward()
    loss, d = ops.bce_with_logits(z, t)
    check(np.reshape(loss, 1), tl.reshape(1), dtype, "bce_with_logits loss")
    check(d, tz.grad, dtype, "bce_with_logits dlogits")


# ---- a whole network -----------------------------------------------------------------------

def test_lenet_like_network_vs_torch(rng):
    """A small LeNet (conv, ReLU, maxpool, conv, ReLU, avgpool, linear) forward, loss and all gradients."""
    dtype = np.float32
    model = nn.Sequential(nn.Conv2d(1, 4, 5, padding=2, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 6, 3, padding=1, rng=rng), nn.ReLU(), nn.AvgPool2d(2),
                          nn.Flatten(), nn.Linear(6 * 3 * 3, 5, rng=rng))
    for _, p in model.named_parameters():
        p.data[...] = p.data + 0.1 * rng.standard_normal(p.data.shape)
    tm = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                             torch.nn.Conv2d(4, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
                             torch.nn.Flatten(), torch.nn.Linear(54, 5)).double()
    tparams = dict(tm.named_parameters())
    with torch.no_grad():
        for name, p in model.named_parameters():
            tparams[name].copy_(T(p.data))
    x = randn(rng, (8, 1, 12, 12), dtype)
    labels = rng.integers(0, 5, 8)
    tx = T(x, True)
    tloss = F.cross_entropy(tm(tx), torch.tensor(labels))
    tloss.backward()
    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn.forward(model.forward(x), labels)
    dx = model.backward(loss_fn.backward())
    check(np.reshape(loss, 1), tloss.reshape(1), dtype, "LeNet loss")
    check(dx, tx.grad, dtype, "LeNet dx")
    for name, p in model.named_parameters():
        check(p.grad, tparams[name].grad, dtype, f"LeNet d{name.split('.')[-1]}")
