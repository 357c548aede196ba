"""load_state_dict is atomic for modules and optimizers: everything is checked before anything
changes, so a bad state dict leaves every parameter, buffer and optimizer slot as it was."""

import numpy as np
import pytest

import fastconv.nn as nn
from fastconv.optim import SGD, Adam


def _model(seed):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, rng=rng), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 5, rng=rng), nn.Dropout(0.5, seed=3))


def _copy(state):
    return {k: np.array(v, copy=True) for k, v in state.items()}


def _assert_same(state, before):
    assert sorted(state) == sorted(before)
    for k in before:
        assert state[k].tobytes() == before[k].tobytes(), f"{k} changed"


@pytest.mark.parametrize("edit, error, match", [
    (lambda s: s.update({"4.weight": np.zeros((5, 47), np.float32)}), ValueError,
     r"state\['4.weight'\]: got shape \(5, 47\), expected \(5, 48\)"),
    (lambda s: s.update({"4.bias": np.zeros(5, np.complex64)}), TypeError, r"state\['4.bias'\]: got complex64"),
    (lambda s: s.update({"5.calls": np.asarray(1.5)}), TypeError, r"state\['5.calls'\]: got float64 values"),
    (lambda s: s.update({"4.bias": [0.0] * 5}), TypeError, r"state\['4.bias'\]: got list"),
])
def test_failing_module_load_leaves_every_array_unchanged(edit, error, match):
    m = _model(0)
    before = _copy(m.state_dict())
    new = _copy(_model(1).state_dict())  # different values in every float array
    new["1.running_var"] += 1.0
    edit(new)  # one bad entry, after the good ones in layer order
    with pytest.raises(error, match=match):
        m.load_state_dict(new)
    _assert_same(m.state_dict(), before)
    m.load_state_dict(_copy(_model(1).state_dict()))  # a good one still loads, every array
    _assert_same(m.state_dict(), _model(1).state_dict())


def _trained(make, steps=3):
    rng = np.random.default_rng(0)
    params = [nn.Parameter(rng.standard_normal(s).astype(np.float32)) for s in ((4, 3), (3,))]
    opt = make(params)
    for _ in range(steps):
        for p in params:
            p.grad = rng.standard_normal(p.data.shape).astype(np.float32)
        opt.step()
    return opt


MAKERS = {"sgd": lambda p: SGD(p, lr=0.1, momentum=0.9), "adam": lambda p: Adam(p, lr=0.01)}


@pytest.mark.parametrize("name", ["sgd", "adam"])
@pytest.mark.parametrize("key, value, match", [
    ("lr", np.asarray(np.nan), r"state\['lr'\]: got nan"),
    ("lr", np.asarray(-0.5), r"state\['lr'\]: got -0.5"),
    ("steps", np.asarray(-1), r"state\['steps'\]: got .*expected an int >= 0"),
    ("steps", np.asarray(2.5), r"state\['steps'\]: got .*expected an int >= 0"),
    ("extra.0", np.zeros(3, np.float32), r"unexpected keys \['extra.0'\]"),
    ("@slot.1", np.zeros(4, np.float32), r"got shape \(4,\), expected \(3,\)"),
    ("@slot.1", np.full(3, np.inf, np.float32), "non-finite"),
])
def test_failing_optimizer_load_leaves_it_unchanged(name, key, value, match):
    opt = _trained(MAKERS[name])
    good = _copy(_trained(MAKERS[name], steps=5).state_dict())
    before = _copy(opt.state_dict())
    key = key.replace("@slot", "velocity" if name == "sgd" else "v")
    bad = dict(good, **{key: value})
    with pytest.raises((ValueError, KeyError, TypeError), match=match):
        opt.load_state_dict(bad)
    _assert_same(_copy(opt.state_dict()), before)
    assert opt.lr == float(before["lr"]) and opt.steps == int(before["steps"])
    opt.load_state_dict(good)
    _assert_same(_copy(opt.state_dict()), good)


def test_adam_state_into_sgd_is_refused():
    sgd = _trained(MAKERS["sgd"])
    with pytest.raises(KeyError, match="unexpected keys"):
        sgd.load_state_dict(_trained(MAKERS["adam"]).state_dict())
