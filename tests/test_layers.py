"""Layer API behaviour: parameters and names, state_dict round trips and strict loading,
train/eval switching, gradient accumulation and zero_grad, Sequential.backward, __repr__,
to("cpu"), initialisation."""

import math

import numpy as np
import pytest

import fastconv.nn as nn
from fastconv import ops
from fastconv.testing import assert_close


def small_cnn(seed, dropout_seed=7):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, rng=rng), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Dropout(0.5, seed=dropout_seed), nn.Linear(4 * 3 * 3, 3, rng=rng))


def batch(seed=0, n=5):
    return np.random.default_rng(seed).standard_normal((n, 2, 6, 6)).astype(np.float32)


def test_named_parameters_and_buffers():
    m = small_cnn(0)
    assert [name for name, _ in m.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias", "6.weight",
                                                          "6.bias"]
    assert [name for name, _ in m.named_buffers()] == ["1.running_mean", "1.running_var", "5.seed", "5.calls"]
    assert len(m.parameters()) == 6
    assert m[0].weight.data.shape == (4, 2, 3, 3) and m[6].weight.data.shape == (3, 36)
    assert all(p.data.dtype == np.float32 for p in m.parameters())
    assert set(m.state_dict()) == {name for name, _ in m.named_parameters()} | {n for n, _ in m.named_buffers()}


def test_state_dict_round_trip():
    a, b = small_cnn(1), small_cnn(2)
    for _ in range(3):  # move running stats and the dropout counter away from their initial values
        a.forward(batch(_))
    assert not np.allclose(a[0].weight.data, b[0].weight.data)
    saved = {k: np.array(v, copy=True) for k, v in a.state_dict().items()}
    b.load_state_dict(saved)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[k], v, err_msg=k)
    # same outputs in eval and (same dropout call count) in train mode
    a.eval(), b.eval()
    np.testing.assert_array_equal(a.forward(batch(9)), b.forward(batch(9)))
    # the dropout seed is a constructor argument (both 7 here); the call counter travels in the state
    a.train(), b.train()
    np.testing.assert_array_equal(a.forward(batch(9)), b.forward(batch(9)))
    # loading copies: changing the source afterwards does not reach the model
    before = b[0].weight.data.copy()
    saved["0.weight"][...] = 123.0
    np.testing.assert_array_equal(b[0].weight.data, before)


def test_load_state_dict_keeps_dtype_and_object_identity():
    m = small_cnn(0)
    w = m[0].weight.data
    state = {k: np.asarray(v, dtype=np.float64) + (0.5 if v.dtype.kind == "f" else 0) for k, v in m.state_dict().items()}
    m.load_state_dict(state)
    assert m[0].weight.data is w and w.dtype == np.float32
    assert_close(w, state["0.weight"], 1e-6)


def test_load_state_dict_strict_errors():
    m = small_cnn(0)
    state = {k: v.copy() for k, v in m.state_dict().items()}
    missing = dict(state)
    del missing["1.running_var"]
    with pytest.raises(KeyError, match=r"missing keys \['1.running_var'\]"):
        m.load_state_dict(missing)
    with pytest.raises(KeyError, match=r"unexpected keys \['7.weight'\]"):
        m.load_state_dict({**state, "7.weight": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"state\['6.weight'\]: got shape \(3, 35\), expected \(3, 36\)"):
        m.load_state_dict({**state, "6.weight": np.zeros((3, 35), np.float32)})
    # non-strict: the keys present are loaded, the rest left alone
    rv = m[1].buffer("running_var").copy()
    missing["0.bias"] = np.full(4, 0.25, np.float32)
    m.load_state_dict({k: v for k, v in missing.items() if k != "6.weight"} | {"extra": np.ones(1)}, strict=False)
    np.testing.assert_array_equal(m[0].bias.data, np.full(4, 0.25, np.float32))
    np.testing.assert_array_equal(m[1].buffer("running_var"), rv)


def test_train_eval_switching():
    m = small_cnn(0)
    assert m.training and all(layer.training for layer in m.layers)
    assert m.eval() is m
    assert not m.training and not any(layer.training for layer in m.layers)
    m.train()
    assert all(layer.training for _, layer in m.named_modules())
    m.train(False)
    assert not m[1].training


def test_batchnorm_train_eval():
    bn = nn.BatchNorm2d(3, momentum=0.1)
    x = np.random.default_rng(0).standard_normal((4, 3, 2, 2)).astype(np.float32) * 3 + 2
    y = bn.forward(x)
    # training: normalised with the batch statistics, running stats moved toward them
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-3)
    rm, rv = bn.buffer("running_mean").copy(), bn.buffer("running_var").copy()
    np.testing.assert_allclose(rm, 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(rv, 0.9 + 0.1 * x.var(axis=(0, 2, 3), ddof=1), rtol=1e-5)
    bn.eval()
    y_eval = bn.forward(x)
    np.testing.assert_array_equal(bn.buffer("running_mean"), rm)  # eval leaves the running stats alone
    want = (x - rm.reshape(1, 3, 1, 1)) / np.sqrt(rv.reshape(1, 3, 1, 1) + 1e-5)
    assert_close(y_eval, want, 1e-5)


def test_dropout_train_eval_and_reproducibility():
    x = np.random.default_rng(0).standard_normal((8, 50)).astype(np.float32)
    d = nn.Dropout(0.5, seed=3)
    y1, y2 = d.forward(x), d.forward(x)
    assert np.count_nonzero(y1 == 0) > 100 and not np.array_equal(y1, y2)  # a fresh mask per call
    kept = y1 != 0
    assert_close(y1[kept], 2 * x[kept], 1e-6)
    # backward uses the mask of the last forward
    dy = np.ones_like(x)
    np.testing.assert_array_equal(d.backward(dy) != 0, y2 != 0)
    # same seed, same sequence of masks; a resumed layer continues the sequence
    e = nn.Dropout(0.5, seed=3)
    np.testing.assert_array_equal(e.forward(x), y1)
    f = nn.Dropout(0.5, seed=3)
    f.load_state_dict({k: np.array(v, copy=True) for k, v in e.state_dict().items()})
    np.testing.assert_array_equal(f.forward(x), y2)
    assert not np.array_equal(nn.Dropout(0.5, seed=4).forward(x), y1)
    d.eval()
    np.testing.assert_array_equal(d.forward(x), x)
    np.testing.assert_array_equal(d.backward(dy), dy)


def _loss_and_backward(m, x, labels):
    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn.forward(m.forward(x), labels)
    return loss, m.backward(loss_fn.backward())


def test_grad_accumulation_and_zero_grad():
    m = small_cnn(0)
    m[5].p = 0.0  # deterministic forward, so two passes give identical gradients
    x, labels = batch(1), np.array([0, 1, 2, 0, 1])
    assert all(p.grad is None for p in m.parameters())
    _loss_and_backward(m, x, labels)
    once = {name: p.grad.copy() for name, p in m.named_parameters()}
    _loss_and_backward(m, x, labels)
    for name, p in m.named_parameters():
        assert_close(p.grad, 2 * once[name], 1e-6, name)
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    _loss_and_backward(m, x, labels)
    for name, p in m.named_parameters():
        assert_close(p.grad, once[name], 1e-6, name)
        assert not np.shares_memory(p.grad, once[name])


def test_sequential_backward_returns_the_input_gradient():
    m = small_cnn(0)
    m[5].p = 0.0
    x = batch(2)
    y = m.forward(x)
    dy = np.random.default_rng(3).standard_normal(y.shape).astype(np.float32)
    dx = m.backward(dy)
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert m._fused == {3}  # ReLU (2) and MaxPool2d (3) ran as one relu_max_pool2d op
    # the same chain by hand, layer by layer (unfused)
    h = x
    for layer in m.layers:
        h = layer.forward(h)
    assert_close(y, h, 1e-6)
    g = dy
    for layer in reversed(m.layers):
        g = layer.backward(g)
    assert_close(dx, g, 1e-6)
    # input_grad=False skips only the first layer's input gradient
    m.zero_grad()
    m.forward(x)
    assert m.backward(dy, input_grad=False) is None
    assert all(p.grad is not None for p in m.parameters())


def fusion_net(seed=0):
    """Every fused pair a Sequential makes, and a layer two pairs claim (Conv2d, ReLU, MaxPool2d)."""
    rng = np.random.default_rng(seed)
    m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, rng=rng), nn.LeakyReLU(0.2),            # 0-1
                      nn.Conv2d(4, 4, 3, padding=1, bias=False, rng=rng), nn.BatchNorm2d(4), nn.ReLU(),  # 2-4
                      nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1, rng=rng), nn.Tanh(),  # 5-6
                      nn.Conv2d(3, 4, 3, rng=rng), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),  # 7-10
                      nn.Linear(100, 8, bias=False, rng=rng), nn.BatchNorm1d(8), nn.Tanh(),  # 11-13
                      nn.Linear(8, 6, rng=rng), nn.LeakyReLU(0.1), nn.Linear(6, 5, rng=rng), nn.Sigmoid())  # 14-17
    m.layers[5].bias.data[...] = rng.uniform(-0.5, 0.5, 3)   # a bias that moves tanh's input
    for _, layer in m.named_modules():
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):  # shifts that put values on both sides of 0
            layer.weight.data[...] = rng.uniform(0.5, 1.5, layer.weight.data.shape)
            layer.bias.data[...] = rng.uniform(-0.5, 0.5, layer.bias.data.shape)
    return m


FUSED_INDICES = {1, 4, 6, 9, 13, 15}  # the second layer of each pair that ran as one pass


def fusion_matches_unfused(m, x, dy, get):
    """The Sequential's fused passes equal the same layers run one at a time, bit for bit: output,
    input gradient and every parameter gradient, in training and in eval mode (``get``: to host)."""
    for training in (True, False):
        m.train(training)
        m.zero_grad()
        y = m.forward(x)
        assert m._fused == FUSED_INDICES
        dx = m.backward(dy)
        fused = [get(y), get(dx)] + [get(p.grad) for p in m.parameters()]
        m.zero_grad()
        h = x
        for layer in m.layers:
            h = layer.forward(h)
        g = dy
        for layer in reversed(m.layers):
            g = layer.backward(g)
        unfused = [get(h), get(g)] + [get(p.grad) for p in m.parameters()]
        for a, b in zip(fused, unfused):
            np.testing.assert_array_equal(a, b)


def test_sequential_fuses_activations():
    m = fusion_net()
    x = np.random.default_rng(1).standard_normal((5, 2, 6, 6)).astype(np.float32)
    dy = np.random.default_rng(2).standard_normal((5, 5)).astype(np.float32)
    fusion_matches_unfused(m, x, dy, np.asarray)
    # not fused: a Sigmoid (no op fuses it), an activation after a non-activation layer
    rng = np.random.default_rng(0)
    other = nn.Sequential(nn.Conv2d(2, 3, 3, rng=rng), nn.Sigmoid(), nn.Flatten(), nn.Linear(48, 4, rng=rng),
                          nn.Dropout(0.0), nn.ReLU())
    other.forward(x)
    assert other._fused == set()


def test_activation_backward_across_modules():
    """A GAN's generator ending in ConvTranspose2d + Tanh and a discriminator starting with a Conv2d:
    D.backward(input_activation=G.output_activation()) then G.backward(skip_output_activation=True)
    give, bit for bit, the plain passes' gradients (the Tanh's backward in D's first backward-data
    pass); the same through the conditional pair's wrappers; and the errors of both arguments."""
    from fastconv.nn.conditional import ConditionalGenerator, ProjectionDiscriminator
    rng = np.random.default_rng(0)
    g_body = nn.Sequential(nn.Linear(6, 32, rng=rng), nn.ReLU(), nn.Unflatten((2, 4, 4)),
                           nn.ConvTranspose2d(2, 2, 4, stride=2, padding=1, rng=rng), nn.Tanh())
    d_trunk = nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1, rng=rng), nn.LeakyReLU(0.2), nn.Flatten())
    G = ConditionalGenerator(g_body, 4, 3, 2, rng=rng)
    D = ProjectionDiscriminator(d_trunk, nn.Linear(48, 1, rng=rng), 48, 3, rng=rng)
    z, labels = rng.standard_normal((5, 4)).astype(np.float32), np.array([0, 1, 2, 1, 0])
    dlogits = rng.standard_normal((5, 1)).astype(np.float32)
    assert G.output_activation() == ("tanh", 0.0) and D.takes_input_activation
    grads = []
    for fused in (False, True):
        G.zero_grad(), D.zero_grad()
        D.forward(G.forward(z, labels), labels)
        if fused:
            G.backward(D.backward(dlogits, input_activation=G.output_activation()), skip_output_activation=True)
        else:
            G.backward(D.backward(dlogits))
        grads.append([p.grad.copy() for p in (*G.parameters(), *D.parameters())])
    for a, b in zip(*grads):
        np.testing.assert_array_equal(a, b)
    assert d_trunk.output_activation() == ("leaky_relu", 0.2)   # looked for through its Flatten
    assert g_body.takes_input_activation   # it starts with a Linear
    head = nn.Sequential(nn.Linear(48, 4, rng=rng))
    head.forward(np.ones((5, 48), np.float32))
    assert head.output_activation() is None
    with pytest.raises(ValueError, match=r"skip_output_activation: got True, expected False"):
        head.backward(np.ones((5, 4), np.float32), skip_output_activation=True)
    tconv = nn.Sequential(nn.ConvTranspose2d(2, 2, 3, rng=rng))
    tconv.forward(np.ones((1, 2, 4, 4), np.float32))
    assert not tconv.takes_input_activation
    with pytest.raises(ValueError, match=r"input_activation: got \('relu', 0.0\), expected None \(the first layer, "
                                         r"ConvTranspose2d, takes none\)"):
        tconv.backward(np.ones((1, 2, 6, 6), np.float32), input_activation=("relu", 0.0))
    with pytest.raises(ValueError, match=r"input_activation: got \('relu', 0.0\), expected None \(ConvTranspose2d"):
        tconv.layers[0].backward(np.ones((1, 2, 6, 6), np.float32), input_activation=("relu", 0.0))


def handoff_nets():
    """(Sequential, x shape, dy shape) of the activation hand-offs past a fused pair: Linear -> ReLU
    -> Dropout -> Linear -> LeakyReLU -> Dropout(0) -> Linear (each Dropout takes the activation's
    backward before it: in its kernel; with no mask, the activation's own op), and Conv2d ->
    LeakyReLU -> Flatten -> Linear -> ReLU -> Unflatten -> Conv2d (the Linear and the last Conv2d
    take the activation before the reshape)."""
    rng = np.random.default_rng(0)
    return [(nn.Sequential(nn.Linear(6, 8, rng=rng), nn.ReLU(), nn.Dropout(0.5, seed=3), nn.Linear(8, 5, rng=rng),
                           nn.LeakyReLU(0.2), nn.Dropout(0.0), nn.Linear(5, 3, rng=rng)), (7, 6), (7, 3)),
            (nn.Sequential(nn.Conv2d(2, 3, 3, rng=rng), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(48, 4, rng=rng),
                           nn.ReLU(), nn.Unflatten((4, 1, 1)), nn.Conv2d(4, 2, 1, rng=rng)), (5, 2, 6, 6),
             (5, 2, 1, 1))]


def handoff_matches_layers(m, x_shape, dy_shape, xp=np, get=np.asarray, kernels=None):
    """The Sequential's backward equals, bit for bit, its layers' own backward passes run one at a
    time on the same forward (the same masks), in training and in eval mode."""
    rng = np.random.default_rng(1)
    if xp is not np:
        m.to("cuda", kernels=kernels)
    x = xp.asarray(rng.standard_normal(x_shape).astype(np.float32))
    dy = xp.asarray(rng.standard_normal(dy_shape).astype(np.float32))
    for training in (True, False):
        m.train(training)
        m.zero_grad()
        m.forward(x)
        fused = [get(m.backward(dy))] + [get(p.grad) for p in m.parameters()]
        m.zero_grad()
        g = dy
        for layer in reversed(m.layers):
            g = layer.backward(g)
        unfused = [get(g)] + [get(p.grad) for p in m.parameters()]
        for a, b in zip(fused, unfused):
            assert np.isfinite(a).all()
            np.testing.assert_array_equal(a, b)
    return x, dy


def test_activation_backward_handed_past_dropout_and_reshapes():
    for m, x_shape, dy_shape in handoff_nets():
        handoff_matches_layers(m, x_shape, dy_shape)
    assert nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Flatten()).output_activation() == ("tanh", 0.0)


def test_requires_grad_false_skips_parameter_gradients():
    """requires_grad_(False): the input gradient unchanged, bit for bit; no parameter gradient made,
    one already there kept; True restores them. Every kind of parameterised layer of the GANs."""
    from fastconv.nn.conditional import ProjectionDiscriminator
    m = fusion_net()
    x = np.random.default_rng(1).standard_normal((5, 2, 6, 6)).astype(np.float32)
    dy = np.random.default_rng(2).standard_normal((5, 5)).astype(np.float32)
    m.forward(x)
    dx = m.backward(dy)
    before = [p.grad.copy() for p in m.parameters()]
    assert m.requires_grad_(False) is m
    m.forward(x)
    np.testing.assert_array_equal(m.backward(dy), dx)
    for p, g in zip(m.parameters(), before):
        np.testing.assert_array_equal(p.grad, g)   # not accumulated into
    m.zero_grad()
    m.forward(x)
    m.backward(dy)
    assert all(p.grad is None and not p.requires_grad for p in m.parameters())
    m.requires_grad_(True)
    m.forward(x)
    m.backward(dy)
    for p, g in zip(m.parameters(), before):
        np.testing.assert_array_equal(p.grad, g)
    rng = np.random.default_rng(0)
    d = ProjectionDiscriminator(nn.Sequential(nn.Flatten(), nn.Linear(72, 4, rng=rng)), nn.Linear(4, 1, rng=rng),
                                4, 3, rng=rng).requires_grad_(False)
    d.forward(x, np.array([0, 1, 2, 1, 0]))
    assert d.backward(np.ones((5, 1), np.float32)).shape == x.shape
    assert all(p.grad is None for p in d.parameters())
    with pytest.raises(ValueError, match="requires_grad: got 0, expected True or False"):
        m.requires_grad_(0)


def test_layer_forward_is_the_op():
    rng = np.random.default_rng(0)
    conv = nn.Conv2d(2, 4, 3, stride=2, padding=1, dilation=1, groups=2, rng=rng)
    conv.bias.data[...] = rng.standard_normal(4)
    x = batch(4)
    np.testing.assert_array_equal(conv.forward(x), ops.conv2d_forward(x, conv.weight.data, conv.bias.data, 2, 1, 1, 2))
    assert conv(x).shape == (5, 4, 3, 3)


def test_repr():
    m = nn.Sequential(nn.Conv2d(1, 32, 5, padding=2, rng=np.random.default_rng(0)), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(6272, 10, rng=np.random.default_rng(0)))
    r = repr(m)
    assert r.startswith("Sequential(")
    for part in ["(0): Conv2d(1, 32, kernel_size=(5, 5)", "padding=(2, 2)", "(1): ReLU()", "(2): MaxPool2d(",
                 "kernel_size=(2, 2)", "(3): Flatten()", "(4): Linear(in_features=6272, out_features=10"]:
        assert part in r, f"{part!r} not in {r!r}"
    assert "negative_slope=0.2" in repr(nn.LeakyReLU(0.2))
    assert "p=0.3" in repr(nn.Dropout(0.3))
    assert "count_include_pad=False" in repr(nn.AvgPool2d(3, 2, 1, count_include_pad=False))
    assert "output_padding=(1, 1)" in repr(nn.ConvTranspose2d(2, 3, 3, 2, 1, 1))


def test_to_cpu():
    m = small_cnn(0)
    m.eval()
    y = m.forward(batch(0))
    assert m.to("cpu") is m
    assert m.device == "cpu"
    assert all(isinstance(a, np.ndarray) for a in m.state_dict().values())
    np.testing.assert_array_equal(m.forward(batch(0)), y)


def test_astype_float64():
    m = small_cnn(0).astype(np.float64)
    assert all(p.data.dtype == np.float64 for p in m.parameters())
    assert m[1].buffer("running_mean").dtype == np.float64
    assert m[5].buffer("calls").dtype == np.int64
    assert m.forward(batch(0).astype(np.float64)).dtype == np.float64


def test_initialisation():
    rng = np.random.default_rng(0)
    conv = nn.Conv2d(64, 128, 3, rng=rng)
    fan_in = 64 * 9
    std = conv.weight.data.std()
    assert abs(std - math.sqrt(2 / fan_in)) < 0.02 * math.sqrt(2 / fan_in)
    np.testing.assert_array_equal(conv.bias.data, 0)
    np.testing.assert_array_equal(nn.Conv2d(3, 4, 3, rng=np.random.default_rng(5)).weight.data,
                                  nn.Conv2d(3, 4, 3, rng=np.random.default_rng(5)).weight.data)
    a = np.empty((200, 300), np.float32)
    nn.init.xavier_uniform_(a, rng)
    bound = math.sqrt(6 / 500)
    assert a.max() <= bound and a.min() >= -bound and a.max() > 0.95 * bound
    nn.init.normal_(a, rng, std=0.02)
    assert abs(a.std() - 0.02) < 0.001 and abs(a.mean()) < 0.001
    assert a.dtype == np.float32
    nn.init.zeros_(a)
    assert not a.any()
    bn = nn.BatchNorm1d(5)
    np.testing.assert_array_equal(bn.weight.data, 1)
    np.testing.assert_array_equal(bn.bias.data, 0)
    np.testing.assert_array_equal(bn.buffer("running_var"), 1)


def test_flatten_unflatten_shapes():
    x = batch(0)
    f, u = nn.Flatten(), nn.Unflatten((2, 6, 6))
    y = f.forward(x)
    assert y.shape == (5, 72)
    np.testing.assert_array_equal(u.forward(y), x)
    np.testing.assert_array_equal(f.backward(y), x)
    np.testing.assert_array_equal(u.backward(x), y)


def test_losses_return_0d_arrays():
    z = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    loss = nn.CrossEntropyLoss()(z, np.array([0, 1, 2, 0]))
    assert isinstance(loss, np.ndarray) and loss.shape == () and loss.dtype == np.float32
    loss = nn.BCEWithLogitsLoss()(z, (z > 0).astype(np.float32))
    assert isinstance(loss, np.ndarray) and loss.shape == () and loss.dtype == np.float32
