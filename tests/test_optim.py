"""SGD and Adam: against the update formulas over several steps, against torch.optim when torch is
installed, state_dict round trips, and short training runs that must clearly reduce the loss."""

import numpy as np
import pytest

import oracle as ref
import fastconv.nn as nn
from fastconv.nn import Parameter
from fastconv.optim import SGD, Adam
from fastconv.testing import assert_close

TOL = {np.float32: 1e-5, np.float64: 1e-12}
STEPS = 6
SHAPES = [(4, 3), (5,), (2, 3, 2, 2)]


@pytest.fixture(autouse=True)
def summary(request):
    ref.install_summary(request.config)


def make_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal(s).astype(dtype)) for s in SHAPES]


def grads_for(step, dtype, params):
    """Gradients that depend on the step and on the current parameters (so trajectories matter)."""
    rng = np.random.default_rng(100 + step)
    return [(rng.standard_normal(p.data.shape) + 0.5 * np.asarray(p.data, np.float64) ** 2).astype(dtype)
            for p in params]


SGD_CONFIGS = [dict(momentum=0.0), dict(momentum=0.9), dict(momentum=0.9, weight_decay=1e-2),
               dict(momentum=0.8, nesterov=True), dict(momentum=0.9, weight_decay=5e-3, nesterov=True),
               dict(weight_decay=1e-2)]
ADAM_CONFIGS = [dict(), dict(betas=(0.5, 0.999)), dict(weight_decay=1e-2), dict(betas=(0.8, 0.9), eps=1e-6)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", SGD_CONFIGS, ids=str)
def test_sgd_matches_formula(cfg, dtype):
    params = make_params(dtype)
    opt = SGD(params, lr=0.05, **cfg)
    want = [p.data.astype(np.float64) for p in params]
    vel = [np.zeros(p.data.shape) for p in params]
    for step in range(STEPS):
        gs = grads_for(step, dtype, params)
        for p, g in zip(params, gs):
            p.grad = g
        opt.step()
        for i, g in enumerate(gs):
            want[i], vel[i] = ref.sgd_step(want[i], g, vel[i], 0.05, cfg.get("momentum", 0.0),
                                           cfg.get("weight_decay", 0.0), cfg.get("nesterov", False))
        for p, w in zip(params, want):
            assert p.data.dtype == np.dtype(dtype)
            ref.record(f"optim-vs-formula SGD {np.dtype(dtype).name}", assert_close(p.data, w, TOL[dtype]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", ADAM_CONFIGS, ids=str)
def test_adam_matches_formula(cfg, dtype):
    params = make_params(dtype)
    opt = Adam(params, lr=1e-2, **cfg)
    b1, b2 = cfg.get("betas", (0.9, 0.999))
    state = [(p.data.astype(np.float64), np.zeros(p.data.shape), np.zeros(p.data.shape)) for p in params]
    for step in range(1, STEPS + 1):
        gs = grads_for(step, dtype, params)
        for p, g in zip(params, gs):
            p.grad = g
        opt.step()
        state = [ref.adam_step(w, g, m, v, step, 1e-2, b1, b2, cfg.get("eps", 1e-8), cfg.get("weight_decay", 0.0))
                 for (w, m, v), g in zip(state, gs)]
        for p, (w, _, _) in zip(params, state):
            ref.record(f"optim-vs-formula Adam {np.dtype(dtype).name}", assert_close(p.data, w, TOL[dtype]))


def _vs_torch(make_ours, make_theirs, dtype):
    torch = pytest.importorskip("torch")
    params = make_params(dtype)
    tparams = [torch.tensor(p.data.astype(np.float64), requires_grad=True) for p in params]
    opt, topt = make_ours(params), make_theirs(tparams)
    for step in range(STEPS):
        gs = grads_for(step, dtype, params)
        for p, tp, g in zip(params, tparams, gs):
            p.grad = g
            tp.grad = torch.tensor(g.astype(np.float64))
        opt.step()
        topt.step()
        for p, tp in zip(params, tparams):
            # float32 runs drift from the float64 reference by rounding only; each step is compared
            err = assert_close(p.data, tp.detach().numpy(), TOL[dtype])
            ref.record(f"optim-vs-torch {type(opt).__name__} {np.dtype(dtype).name}", err)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", SGD_CONFIGS, ids=str)
def test_sgd_matches_torch(cfg, dtype):
    torch = pytest.importorskip("torch")
    _vs_torch(lambda ps: SGD(ps, lr=0.05, **cfg), lambda ps: torch.optim.SGD(ps, lr=0.05, **cfg), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", ADAM_CONFIGS, ids=str)
def test_adam_matches_torch(cfg, dtype):
    torch = pytest.importorskip("torch")
    _vs_torch(lambda ps: Adam(ps, lr=1e-2, **cfg), lambda ps: torch.optim.Adam(ps, lr=1e-2, **cfg), dtype)


def gaps_case(kind, asarray=np.asarray, get=np.asarray, second_dtype=True):
    """PyTorch's semantics over the flat buffers: a parameter without a gradient in a step is not
    updated (no momentum, no weight decay) and its Adam count does not advance; the update runs
    over the runs of parameters that have one (``second_dtype``: a float64 parameter, a second
    flat buffer); the learning rate changes between steps (on the GPU: the device copy). Against
    the formula with per-parameter counts; a parameter that never had a gradient keeps its value
    and has no state entry. ``asarray``/``get``: to and from the device."""
    params = make_params(np.float32) + ([Parameter(np.linspace(-1, 1, 6))] if second_dtype else [])
    params.append(Parameter(np.ones(3, np.float32)))                               # never has a gradient
    never = len(params) - 1
    for p in params:
        p.data = asarray(p.data)
    cfg = dict(momentum=0.9, weight_decay=1e-2) if kind == "sgd" else dict(betas=(0.5, 0.99), weight_decay=1e-2)
    opt = SGD(params, lr=0.05, **cfg) if kind == "sgd" else Adam(params, lr=0.05, **cfg)
    want = [(get(p.data).astype(np.float64), np.zeros(p.data.shape), np.zeros(p.data.shape), 0) for p in params]
    pattern = [(0, 1, 2, 3), (0, 2, 3), (1, 3), (0, 1, 2, 3), (0, 2)]              # parameters with a gradient
    lrs = [0.05, 0.05, 0.02, 0.02, 0.01]
    for step, (live, lr) in enumerate(zip(pattern, lrs)):
        live = [i for i in live if i < never]
        gs = grads_for(step, np.float32, [Parameter(get(p.data)) for p in params])
        for i, p in enumerate(params):
            p.grad = asarray(gs[i].astype(p.data.dtype)) if i in live else None
        opt.lr = lr
        opt.step()
        for i in live:
            w, m, v, t = want[i]
            if kind == "sgd":
                w, m = ref.sgd_step(w, gs[i], m, lr, 0.9, 1e-2, False)
            else:
                w, m, v = ref.adam_step(w, gs[i], m, v, t + 1, lr, 0.5, 0.99, 1e-8, 1e-2)
            want[i] = (w, m, v, t + 1)
        for p, (w, *_) in zip(params, want):
            ref.record(f"optim-vs-formula {kind} with gaps", assert_close(get(p.data), w, 1e-5))
    assert np.array_equal(get(params[never].data), np.ones(3, np.float32))
    state = opt.state_dict()
    assert not any(k.endswith(f".{never}") and not k.startswith("t.") for k in state), sorted(state)
    if kind == "adam":
        counts = [sum(i in live for live in pattern) for i in range(never)]
        assert opt.step_counts() == counts + [0]


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_params_without_grad_are_left_alone(kind):
    gaps_case(kind)


def test_parameters_are_views_of_the_flat_buffers():
    """After the first step each parameter, gradient buffer and state slot is a view into one
    buffer per dtype: a change of the flat buffer shows in the parameter and the other way round;
    the backward's gradient lands in the flat gradient buffer; Module.astype makes them again."""
    model = nn.Sequential(nn.Linear(3, 4, rng=np.random.default_rng(0)), nn.ReLU(),
                          nn.Linear(4, 2, rng=np.random.default_rng(1)))
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = np.random.default_rng(2).standard_normal((5, 3)).astype(np.float32)
    for _ in range(2):
        opt.zero_grad()
        model.backward(np.ones((5, 2), np.float32) * model.forward(x), input_grad=False)
        opt.step()
    (_, bounds, data, grad, slots), = opt._groups
    assert bounds[-1] == sum(p.data.size for p in model.parameters()) == data.size
    w = model.parameters()[2]
    w.data[0, 1] = 7.0
    assert data[bounds[2] + 1] == 7.0
    data[bounds[2]:bounds[3]] = -1.0
    assert (w.data == -1.0).all()
    assert w.grad is w.grad_buffer and np.shares_memory(w.grad, grad) and np.shares_memory(opt.state["velocity"][2],
                                                                                            slots["velocity"])
    model.to("cpu")                           # already there: the views stay the parameters
    opt.zero_grad()
    model.forward(x)
    model.backward(np.ones((5, 2), np.float32), input_grad=False)
    assert w.grad is w.grad_buffer and np.array_equal(grad[bounds[2]:bounds[3]], w.grad.ravel())
    model.astype(np.float64)
    before = [p.data.copy() for p in model.parameters()]
    velocity = [v.astype(np.float64) for v in opt.state["velocity"]]
    opt.step()
    assert opt._groups[0][2].dtype == np.float64 and np.shares_memory(model.parameters()[0].data, opt._groups[0][2])
    for p, b, v, v2 in zip(model.parameters(), before, velocity, opt.state["velocity"]):
        np.testing.assert_allclose(v2, 0.9 * v + p.grad, rtol=1e-12)
        np.testing.assert_allclose(p.data, b - 0.1 * v2, rtol=1e-12)


def test_zero_grad():
    params = make_params(np.float32)
    for p in params:
        p.grad = np.ones_like(p.data)
    SGD(params, lr=0.1).zero_grad()
    assert all(p.grad is None for p in params)


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
                                  lambda ps: Adam(ps, lr=1e-2, betas=(0.5, 0.999))], ids=["sgd", "adam"])
def test_optimizer_state_dict_resume(make):
    """Three steps, save, then three more: a fresh optimizer loaded from the save follows exactly."""
    a_params, b_params = make_params(np.float32), make_params(np.float32)
    a = make(a_params)
    for step in range(3):
        for p, g in zip(a_params, grads_for(step, np.float32, a_params)):
            p.grad = g
        a.step()
    saved = {k: np.array(v, copy=True) for k, v in a.state_dict().items()}
    assert saved["steps"].shape == () and int(saved["steps"]) == 3
    for p, q in zip(a_params, b_params):
        q.data[...] = p.data
    b = make(b_params)
    b.load_state_dict(saved)
    for step in range(3, 6):
        for params, opt in ((a_params, a), (b_params, b)):
            for p, g in zip(params, grads_for(step, np.float32, params)):
                p.grad = g
            opt.step()
    for p, q in zip(a_params, b_params):
        np.testing.assert_array_equal(p.data, q.data)


# ---- short training runs -------------------------------------------------------------------

def bars_dataset(n=64, seed=0):
    """1x8x8 images holding a vertical (class 0) or horizontal (class 1) bar at a random place, plus noise."""
    rng = np.random.default_rng(seed)
    x = 0.3 * rng.standard_normal((n, 1, 8, 8))
    labels = np.arange(n) % 2
    for i in range(n):
        j = rng.integers(1, 7)
        if labels[i] == 0:
            x[i, 0, 1:7, j] += 1.5
        else:
            x[i, 0, j, 1:7] += 1.5
    return x.astype(np.float32), labels


def test_sgd_trains_a_small_cnn():
    x, labels = bars_dataset()
    rng = np.random.default_rng(1)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 2, rng=rng))
    loss_fn = nn.CrossEntropyLoss()
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        losses.append(float(loss_fn.forward(model.forward(x), labels)))
        model.backward(loss_fn.backward())
        opt.step()
    final = float(loss_fn.forward(model.forward(x), labels))
    accuracy = (model.forward(x).argmax(axis=1) == labels).mean()
    assert np.all(np.isfinite(losses))
    assert final < 0.25 * losses[0], f"loss {losses[0]:.3f} -> {final:.3f}"
    assert accuracy >= 0.95


def test_adam_trains_a_logistic_model_with_bce():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((128, 6)).astype(np.float32)
    t = (x @ np.array([1.0, -2.0, 0.5, 0.0, 1.5, -1.0]) > 0).astype(np.float32).reshape(-1, 1)
    model = nn.Sequential(nn.Linear(6, 8, rng=rng), nn.Tanh(), nn.Linear(8, 1, rng=rng))
    loss_fn = nn.BCEWithLogitsLoss()
    opt = Adam(model.parameters(), lr=0.05)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = float(loss_fn.forward(model.forward(x), t))
        first = loss if first is None else first
        model.backward(loss_fn.backward())
        opt.step()
    final = float(loss_fn.forward(model.forward(x), t))
    assert final < 0.3 * first, f"loss {first:.3f} -> {final:.3f}"
