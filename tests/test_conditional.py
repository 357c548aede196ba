"""Class-conditioning layers (fastconv.nn.conditional) and the conditional DCGAN.

Gradients: float64 central differences through tests/test_gradcheck.py's check_layer, the labels
bound to the layer so the harness drives its one float input. Values and gradients: PyTorch
float64 autograd on the same weights. Labels: out-of-range, float and misshaped labels are clear
errors, never a silent wrap-around.
"""

import numpy as np
import pytest

import fastconv.nn as nn
from fastconv.nn.conditional import ClassProjection, ConditionalGenerator, Embedding, ProjectionDiscriminator
from fastconv.testing import assert_close
from fastconv.train.cdcgan import build_cdcgan, fit_cdcgan, generate_labelled, grid_labels
from test_gradcheck import check_layer

LABELS = np.array([3, 0, 3, 1, 2])


class Bound(nn.Module):
    """x -> layer.forward(x, labels) with the labels fixed, for the one-input gradient harness."""

    def __init__(self, layer, labels):
        super().__init__()
        self.layer = self.add_module("layer", layer)
        self.labels = labels

    def forward(self, x):
        return self.layer.forward(x, self.labels)

    def backward(self, dy, input_grad=True):
        return self.layer.backward(dy, input_grad)


class ScaledEmbedding(nn.Module):
    """x * embed(labels): exercises Embedding's weight gradient with a float input to check against."""

    def __init__(self, labels):
        super().__init__()
        self.embed = self.add_module("embed", Embedding(4, 3, rng=np.random.default_rng(0)))
        self.labels = labels
        self._saved_x = None

    def forward(self, x):
        self._saved_x = x
        return x * self.embed.forward(self.labels)

    def backward(self, dy, input_grad=True):
        self.embed.backward(dy * self._saved_x)
        return dy * self.embed.weight.data[self.labels]


def _small_g():
    rng = np.random.default_rng(1)
    return ConditionalGenerator(nn.Sequential(nn.Linear(5, 6, rng=rng), nn.Tanh()), 3, 4, 2, rng=rng)


def _small_d():
    rng = np.random.default_rng(2)
    trunk = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1, rng=rng), nn.LeakyReLU(0.2), nn.Flatten())
    return ProjectionDiscriminator(trunk, nn.Linear(8, 1, rng=rng), 8, 4, rng=rng)


@pytest.mark.parametrize("make,shape", [
    (lambda: ScaledEmbedding(LABELS), (5, 3)),
    (lambda: Bound(ClassProjection(4, 6, std=1.0, rng=np.random.default_rng(3)), LABELS), (5, 6)),
    (lambda: Bound(_small_g(), LABELS), (5, 3)),
    (lambda: Bound(_small_d(), LABELS), (5, 1, 4, 4)),
], ids=["embedding", "projection", "cond-generator", "projection-discriminator"])
def test_gradients_float64(make, shape):
    x = np.random.default_rng(4).standard_normal(shape)
    x += np.sign(x) * 0.1  # LeakyReLU inputs away from the kink
    check_layer(make(), x)


def test_embedding_and_projection_vs_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    proj = ClassProjection(4, 6, std=1.0, rng=rng).astype(np.float64)
    h = rng.standard_normal((5, 6))
    dy = rng.standard_normal((5, 1))
    out = proj.forward(h, LABELS)
    dh = proj.backward(dy)
    e = torch.tensor(proj.embed.weight.data.copy(), requires_grad=True)
    th = torch.tensor(h, requires_grad=True)
    want = (torch.nn.functional.embedding(torch.tensor(LABELS), e) * th).sum(1, keepdim=True)
    want.backward(torch.tensor(dy))
    assert_close(out, want.detach().numpy(), 1e-12, "projection")
    assert_close(dh, th.grad.numpy(), 1e-12, "projection dh")
    assert_close(proj.embed.weight.grad, e.grad.numpy(), 1e-12, "embedding weight gradient")


def test_conditional_gan_modules_vs_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(6)
    G, D = _small_g().astype(np.float64), _small_d().astype(np.float64)
    z, x = rng.standard_normal((5, 3)), rng.standard_normal((5, 1, 4, 4))
    gy, dy = rng.standard_normal((5, 6)), rng.standard_normal((5, 1))
    out_g, out_d = G.forward(z, LABELS), D.forward(x, LABELS)
    dz, dx = G.backward(gy), D.backward(dy)
    tg = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in G.state_dict().items()}
    td = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in D.state_dict().items()}
    tz, tx, lab = torch.tensor(z, requires_grad=True), torch.tensor(x, requires_grad=True), torch.tensor(LABELS)
    want_g = torch.tanh(F.linear(torch.cat([tz, F.embedding(lab, tg["embed.weight"])], 1), tg["body.0.weight"],
                                 tg["body.0.bias"]))
    h = F.leaky_relu(F.conv2d(tx, td["trunk.0.weight"], td["trunk.0.bias"], stride=2, padding=1), 0.2).flatten(1)
    want_d = F.linear(h, td["head.weight"], td["head.bias"]) + \
        (F.embedding(lab, td["project.embed.weight"]) * h).sum(1, keepdim=True)
    (want_g * torch.tensor(gy)).sum().backward()
    (want_d * torch.tensor(dy)).sum().backward()
    assert_close(out_g, want_g.detach().numpy(), 1e-12, "G(z, y)")
    assert_close(out_d, want_d.detach().numpy(), 1e-12, "D(x, y)")
    assert_close(dz, tz.grad.numpy(), 1e-12, "dz")
    assert_close(dx, tx.grad.numpy(), 1e-12, "dx")
    for name, p in G.named_parameters():
        assert_close(p.grad, tg[name].grad.numpy(), 1e-12, f"G {name}")
    for name, p in D.named_parameters():
        assert_close(p.grad, td[name].grad.numpy(), 1e-12, f"D {name}")


@pytest.mark.parametrize("labels,match", [
    (np.array([0, 4]), r"labels: got values in \[0, 4\], expected class indices in \[0, 3\]"),
    (np.array([-1, 0]), r"labels: got values in \[-1, 0\]"),
    (np.array([0.0, 1.0]), "expected an integer array"),
    (np.array([[0, 1]]), r"of shape \(1, 2\)"),
    ([0, 1], "got list"),
])
def test_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        Embedding(4, 2).forward(labels)


def test_label_count_must_match_the_batch():
    with pytest.raises(ValueError, match=r"labels: got 2 labels, expected 5"):
        _small_g().forward(np.zeros((5, 3), np.float32), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"labels: got values in \[0, 9\], expected class indices in \[0, 3\]"):
        _small_g().forward(np.zeros((2, 3), np.float32), np.array([0, 9]))
    with pytest.raises(ValueError, match=r"z: got shape \(5, 4\), expected \(N, 3\)"):
        _small_g().forward(np.zeros((5, 4), np.float32), LABELS)


class _CountedMin(np.ndarray):
    """Labels that count their min() calls (each is a device read on a GPU)."""
    calls = 0

    def min(self, *args, **kw):
        type(self).calls += 1
        return super().min(*args, **kw)


def test_generator_reads_the_label_values_as_its_embedding_does():
    """G(z, y) checks the label values once, in its embedding's forward (not again before it)."""
    labels = np.array([0, 3, 1]).view(_CountedMin)
    g = _small_g()
    g.embed.forward(labels)
    by_embedding, _CountedMin.calls = _CountedMin.calls, 0
    g.forward(np.ones((3, 3), np.float32), labels)
    assert by_embedding >= 1 and _CountedMin.calls == by_embedding


def test_backward_before_forward_is_a_clear_error():
    with pytest.raises(RuntimeError, match="Embedding.backward: got no saved labels"):
        Embedding(4, 2).backward(np.zeros((2, 2), np.float32))


# ---------------------------------------------------------------------------------------------
# the conditional DCGAN

def test_cdcgan_shapes_and_the_label_reaches_both_nets():
    G, D = build_cdcgan(nz=8, width=4, rng=np.random.default_rng(0))
    G.eval(), D.eval()
    z = np.random.default_rng(1).standard_normal((10, 8)).astype(np.float32)
    a, b = G.forward(z, np.zeros(10, np.int64)), G.forward(z, np.arange(10))
    assert a.shape == (10, 1, 28, 28) and a.dtype == np.float32
    assert np.abs(a - b).max() > 1e-3
    da, db = D.forward(a, np.zeros(10, np.int64)), D.forward(a, np.arange(10))
    assert da.shape == (10, 1) and np.abs(da - db).max() > 1e-6


def test_fit_cdcgan_is_seeded_and_finite():
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (40, 1, 28, 28)).astype(np.float32)
    y = np.repeat(np.arange(10), 4)
    G1, _, h1 = fit_cdcgan(x, y, 3, batch_size=16, seed=5, nz=8, width=4)
    G2, _, h2 = fit_cdcgan(x, y, 3, batch_size=16, seed=5, nz=8, width=4)
    _, _, h3 = fit_cdcgan(x, y, 3, batch_size=16, seed=6, nz=8, width=4)
    assert h1 == h2 and h1 != h3
    assert all(np.isfinite(v).all() and len(v) == 3 for v in h1.values())
    for (_, p), (_, q) in zip(G1.named_parameters(), G2.named_parameters()):
        assert np.array_equal(p.data, q.data)
    images, labels = generate_labelled(G1, 3, np.random.default_rng(0), batch_size=7)
    assert images.shape == (30, 1, 28, 28) and np.array_equal(labels, grid_labels(10, 3))
    assert np.all(np.abs(images) <= 1)
