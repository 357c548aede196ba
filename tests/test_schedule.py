"""Learning-rate schedules against PyTorch's StepLR and CosineAnnealingLR, and against their formulas."""

import math

import pytest

from fastconv.schedule import LRSchedule


def torch_rates(make, epochs, lr=0.1):
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make(torch, opt)
    rates = []
    for _ in range(epochs):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


def test_step_matches_torch_steplr():
    want = torch_rates(lambda t, o: t.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5), 10)
    s = LRSchedule("step", 0.1, step_size=3, gamma=0.5)
    assert [s(e) for e in range(10)] == pytest.approx(want, rel=1e-12)


def test_cosine_matches_torch_cosineannealing():
    want = torch_rates(lambda t, o: t.optim.lr_scheduler.CosineAnnealingLR(o, T_max=8, eta_min=0.001), 9)
    s = LRSchedule("cosine", 0.1, total=8, min_lr=0.001)
    assert [s(e) for e in range(9)] == pytest.approx(want, rel=1e-9)


def test_within_an_epoch_and_past_the_end():
    s = LRSchedule("cosine", 0.2, total=4)
    assert s(2.0) == pytest.approx(0.1) and s(1.0) == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)))
    assert s(4.0) == pytest.approx(0.0, abs=1e-15) and s(9.0) == pytest.approx(0.0, abs=1e-15)
    assert LRSchedule("step", 0.2, step_size=2)(1.99) == 0.2
    assert LRSchedule("constant", 0.3)(7.5) == 0.3


@pytest.mark.parametrize("kwargs,match", [
    ({"kind": "linear", "base_lr": 0.1}, "schedule: got 'linear'"),
    ({"kind": "step", "base_lr": 0.0}, "lr: got 0.0"),
    ({"kind": "step", "base_lr": 0.1, "gamma": 1.5}, "gamma: got 1.5"),
    ({"kind": "cosine", "base_lr": 0.1, "total": 0}, "total: got 0"),
    ({"kind": "cosine", "base_lr": 0.1, "min_lr": 0.2}, "min_lr: got 0.2"),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LRSchedule(**kwargs)


def test_negative_progress():
    with pytest.raises(ValueError, match="t: got -1"):
        LRSchedule("constant", 0.1)(-1)
