"""A whole network on the CPU against PyTorch CPU (skipped when torch is not installed): forward,
loss and every gradient, PyTorch in float64 on the same values, float32 results at relative L2
error <= 1e-5. Each op family's PyTorch comparisons are in tests/ops/test_<family>*.py."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import oracle as ref  # noqa: E402
import fastconv.nn as nn  # noqa: E402
from checks import randn  # noqa: E402
from torch_checks import T, check  # noqa: E402


@pytest.fixture(autouse=True)
def summary(request):
    ref.install_summary(request.config)


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
