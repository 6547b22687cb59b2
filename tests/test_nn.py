"""needle.nn basic modules against hand-written numpy versions (forward, backward, RNG order)."""
import os
import textwrap

import numpy as np
import pytest

import needle as ndl
from needle import nn
from needle.testing import gradient_check

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def T(x, device, requires_grad=True):
    return ndl.Tensor(np.asarray(x, dtype=np.float32), device=device,
                      requires_grad=requires_grad)


def close(actual, expected, what, rtol=1e-5, atol=1e-5):
    actual = actual.numpy() if isinstance(actual, ndl.Tensor) else np.asarray(actual)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def kaiming_expected(fan_in, shape):
    """What init.kaiming_uniform(fan_in, ., shape) makes from the next rand draw."""
    bound = np.sqrt(6.0 / fan_in)
    return np.random.rand(*shape).astype(np.float32) * (2 * bound) - bound


# ---------------------------------------------------------------------------------------------
# Module machinery


class Holder(nn.Module):
    def __init__(self, device):
        super().__init__()
        self.first = nn.Linear(2, 3, device=device)
        self.stuff = {"layer2": [nn.Linear(3, 4, device=device),
                                 nn.Sequential(nn.ReLU(), nn.Linear(4, 5, device=device))]}
        self.pair = (nn.Dropout(0.2), nn.BatchNorm1d(5, device=device))
        self.plain = ndl.Tensor(np.zeros(3, dtype=np.float32), device=device)


def test_parameters_walk_order_and_names(device):
    m = Holder(device)
    names = [n for n, _ in m.named_parameters()]
    assert names == ["first.weight", "first.bias",
                     "stuff.layer2.0.weight", "stuff.layer2.0.bias",
                     "stuff.layer2.1.modules.1.weight", "stuff.layer2.1.modules.1.bias",
                     "pair.1.weight", "pair.1.bias"]
    params = m.parameters()
    assert [p.shape for p in params] == [(2, 3), (1, 3), (3, 4), (1, 4), (4, 5), (1, 5),
                                         (5,), (5,)]
    assert all(isinstance(p, nn.Parameter) for p in params)
    assert params[0] is m.first.weight
    assert not any(p is m.plain for p in params)
    assert sum(int(np.prod(p.shape)) for p in params) == 6 + 3 + 12 + 4 + 20 + 5 + 10


def test_train_eval_reach_every_nested_module(device):
    m = Holder(device)
    modules = [mod for _, mod in m.named_modules()]
    assert len(modules) == 8  # self, first, 2 in the list, ReLU, Linear, Dropout, BN
    m.eval()
    assert all(not mod.training for mod in modules)
    m.train()
    assert all(mod.training for mod in modules)
    assert m.eval() is m


def test_repr_lists_children(device):
    model = nn.Sequential(nn.Linear(4, 3, device=device), nn.ReLU(), nn.Dropout(0.1))
    text = repr(model)
    assert text.splitlines()[0] == "Sequential("
    assert "(modules.0): Linear(in_features=4, out_features=3, bias=True)" in text
    assert "(modules.2): Dropout(p=0.1)" in text


def test_modules_without_draws(device):
    x = T(np.random.rand(4, 3), device)
    np.random.seed(0)
    state = np.random.get_state()[1].copy()
    for m in (nn.BatchNorm1d(3, device=device), nn.LayerNorm1d(3, device=device), nn.ReLU(),
              nn.Sigmoid(), nn.Tanh(), nn.Flatten(), nn.Identity(), nn.Residual(nn.ReLU()),
              nn.Sequential(nn.ReLU())):
        m(x)
        m.eval()
        m(x)
    nn.SoftmaxLoss()(x, np.array([0, 1, 2, 0]))
    assert np.array_equal(state, np.random.get_state()[1]), "no module above draws"


def test_walk_survives_a_reference_to_the_parent(device):
    outer = nn.Sequential(nn.Linear(2, 2, device=device))
    outer.modules[0].owner = outer  # a back-reference must not recurse forever
    assert len(outer.parameters()) == 2
    assert len(list(outer.named_modules())) == 2
    outer.eval()
    assert not outer.modules[0].training


def test_forward_not_implemented():
    with pytest.raises(NotImplementedError, match="Module.forward"):
        nn.Module()(1)


# ---------------------------------------------------------------------------------------------
# Linear


def test_linear_draw_order_and_values(device):
    np.random.seed(3)
    layer = nn.Linear(5, 7, device=device)
    np.random.seed(3)
    w = kaiming_expected(5, (5, 7))
    b = kaiming_expected(7, (7, 1)).reshape(1, 7)
    close(layer.weight, w, "weight", rtol=1e-6, atol=1e-6)
    close(layer.bias, b, "bias", rtol=1e-6, atol=1e-6)
    assert layer.bias.shape == (1, 7)
    assert layer.weight.device == device
    # Exactly two draws: the next draw matches a stream that made exactly those two.
    assert np.random.rand() == pytest.approx(np.random.RandomState(3).rand(5 * 7 + 7 + 1)[-1])


def test_linear_no_bias_draws_once():
    np.random.seed(1)
    layer = nn.Linear(3, 2, bias=False)
    assert layer.bias is None and len(layer.parameters()) == 1
    assert np.random.rand() == pytest.approx(np.random.RandomState(1).rand(7)[-1])


def test_linear_forward_backward(device):
    layer = nn.Linear(4, 3, device=device)
    x = np.random.randn(6, 4).astype(np.float32)
    dy = np.random.randn(6, 3).astype(np.float32)
    W, b = layer.weight.numpy(), layer.bias.numpy()
    xt = T(x, device)
    y = layer(xt)
    close(y, x @ W + b, "forward")
    y.backward(T(dy, device, requires_grad=False))
    close(xt.grad, dy @ W.T, "grad x")
    close(layer.weight.grad, x.T @ dy, "grad weight")
    close(layer.bias.grad, dy.sum(0, keepdims=True), "grad bias")


def test_linear_higher_rank_and_flat_bias(device):
    layer = nn.Linear(10, 5, device=device)
    x = np.random.randn(2, 3, 10).astype(np.float32)
    W, b = layer.weight.numpy(), layer.bias.numpy()
    close(layer(T(x, device)), x @ W + b, "3-D input")
    layer.bias = nn.Parameter(T(b.reshape(5), device))
    xt = T(x[0], device)
    close(layer(xt), x[0] @ W + b, "(out,)-shaped bias")
    layer(xt).sum().backward()
    close(layer.bias.grad, np.full(5, 3.0), "grad of (out,) bias")


def test_linear_rejects_wrong_in_features(device):
    layer = nn.Linear(784, 10, device=device)
    with pytest.raises(ValueError, match=r"Linear: expected input \(\.\.\., 784\), got \(32, 10\)"):
        layer(T(np.zeros((32, 10)), device))


# ---------------------------------------------------------------------------------------------
# Element-wise modules, Flatten, Sequential, Residual


@pytest.mark.parametrize("name,fwd,dfwd", [
    ("ReLU", lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(np.float32)),
    ("Tanh", np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    ("Sigmoid", lambda x: 1 / (1 + np.exp(-x)),
     lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2),
    ("Identity", lambda x: x, lambda x: np.ones_like(x)),
])
def test_activation_modules(device, name, fwd, dfwd):
    x = np.random.randn(5, 4).astype(np.float32) * 3
    xt = T(x, device)
    y = getattr(nn, name)()(xt)
    close(y, fwd(x), f"{name} forward")
    if name != "Identity":
        y.sum().backward()
        close(xt.grad, dfwd(x), f"{name} grad")


def test_sigmoid_is_finite_for_large_inputs(device):
    x = T(np.array([[-200.0, -50.0, 0.0, 50.0, 200.0]]), device)
    y = nn.Sigmoid()(x)
    y.sum().backward()
    close(y, [[0, 0, 0.5, 1, 1]], "saturated forward", atol=1e-6)
    assert np.all(np.isfinite(x.grad.numpy()))


def test_flatten(device):
    x = np.random.randn(2, 3, 4, 5).astype(np.float32)
    xt = T(x, device)
    y = nn.Flatten()(xt)
    assert y.shape == (2, 60)
    close(y, x.reshape(2, 60), "flatten")
    (y * T(np.arange(120).reshape(2, 60), device, False)).sum().backward()
    close(xt.grad, np.arange(120).reshape(2, 3, 4, 5), "flatten grad")
    assert nn.Flatten()(T(np.ones((3, 4)), device)).shape == (3, 4)
    with pytest.raises(ValueError, match="Flatten"):
        nn.Flatten()(T(np.ones(3), device))


def test_sequential_and_residual(device):
    lin = nn.Linear(4, 4, device=device)
    model = nn.Sequential(nn.Residual(nn.Sequential(lin, nn.ReLU())), nn.Identity())
    assert model.modules[0].fn.modules[0] is lin
    x = np.random.randn(3, 4).astype(np.float32)
    W, b = lin.weight.numpy(), lin.bias.numpy()
    close(model(T(x, device)), np.maximum(x @ W + b, 0) + x, "residual")
    assert nn.Sequential()(x) is x


# ---------------------------------------------------------------------------------------------
# SoftmaxLoss


def softmax_loss_ref(z, y):
    z = z.astype(np.float64)
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    loss = np.mean(lse - z[np.arange(len(y)), y])
    p = np.exp(z - lse[:, None])
    p[np.arange(len(y)), y] -= 1
    return loss, p / len(y)


@pytest.mark.parametrize("label_dtype", [np.int64, np.uint8, np.float32, np.int32])
def test_softmax_loss(device, label_dtype):
    z = np.random.randn(6, 5).astype(np.float32) * 4
    y = np.array([0, 4, 2, 2, 1, 3])
    zt = T(z, device)
    labels = ndl.Tensor(y.astype(label_dtype), device=device, requires_grad=False)
    loss = nn.SoftmaxLoss()(zt, labels)
    ref, dz = softmax_loss_ref(z, y)
    assert loss.numpy().size == 1
    close(loss.numpy().reshape(()), ref, "loss")
    loss.backward()
    close(zt.grad, dz, "grad logits")
    # A numpy label array is accepted as well.
    close(nn.SoftmaxLoss()(zt, y.astype(label_dtype)).numpy().reshape(()), ref, "numpy labels")


def test_softmax_loss_large_logits(device):
    z = np.array([[1e5, 0.0, -1e5], [0.0, 3e4, 1.0]], dtype=np.float32)
    loss = nn.SoftmaxLoss()(T(z, device), T([0, 1], device, False))
    close(loss.numpy().reshape(()), 0.0, "stable", atol=1e-3)


@pytest.mark.parametrize("labels,match", [
    ([0, 1, 5], r"labels must be integers in \[0, 5\) for logits \(3, 5\)"),
    ([0, -1, 2], r"labels must be integers in \[0, 5\)"),
    ([0, 1.5, 2], r"labels must be integers"),
    ([[0], [1], [2]], r"expected labels of shape \(3,\) for logits \(3, 5\), got \(3, 1\)"),
    ([0, 1], r"expected labels of shape \(3,\)"),
])
def test_softmax_loss_bad_labels(device, labels, match):
    z = T(np.zeros((3, 5)), device)
    with pytest.raises(ValueError, match="SoftmaxLoss: " + match):
        nn.SoftmaxLoss()(z, np.array(labels, dtype=np.float32))


def test_softmax_loss_bad_logits(device):
    with pytest.raises(ValueError, match=r"SoftmaxLoss: expected logits \(n, k\), got \(2, 3, 4\)"):
        nn.SoftmaxLoss()(T(np.zeros((2, 3, 4)), device), np.zeros(2))


# ---------------------------------------------------------------------------------------------
# Normalisation


def norm_ref(x, w, b, dy, axis, eps):
    """y and (dx, dw, db) of w * (x - mean) / sqrt(var + eps) + b, statistics over `axis`."""
    x = x.astype(np.float64)
    n = x.shape[axis]
    mean = x.mean(axis, keepdims=True)
    var = x.var(axis, keepdims=True)
    std = np.sqrt(var + eps)
    xhat = (x - mean) / std
    y = xhat * w + b
    dxhat = dy * w
    dx = (n * dxhat - dxhat.sum(axis, keepdims=True)
          - xhat * (dxhat * xhat).sum(axis, keepdims=True)) / (n * std)
    red = tuple(range(x.ndim - 1))
    return y, dx, (dy * xhat).sum(red), dy.sum(red)


def test_batchnorm1d_train(device):
    bn = nn.BatchNorm1d(4, device=device)
    assert bn.running_mean.shape == (4,) and bn.running_var.shape == (4,)
    assert not isinstance(bn.running_mean, nn.Parameter)
    w = np.random.rand(4).astype(np.float32) + 0.5
    b = np.random.randn(4).astype(np.float32)
    bn.weight.data = T(w, device, False)
    bn.bias.data = T(b, device, False)
    run_mean, run_var = np.zeros(4), np.ones(4)
    for step in range(2):
        x = (np.random.randn(8, 4) * 2 + 1).astype(np.float32)
        dy = np.random.randn(8, 4).astype(np.float32)
        xt = T(x, device)
        bn.zero_grad()  # Parameters accumulate .grad across backward() calls (torch)
        y = bn(xt)
        ref, dx, dw, db = norm_ref(x, w, b, dy, 0, 1e-5)
        close(y, ref, f"forward step {step}", atol=1e-4)
        y.backward(T(dy, device, False))
        close(xt.grad, dx, "grad x", atol=1e-4)
        close(bn.weight.grad, dw, "grad weight", atol=1e-4)
        close(bn.bias.grad, db, "grad bias", atol=1e-4)
        run_mean = 0.9 * run_mean + 0.1 * x.mean(0)
        run_var = 0.9 * run_var + 0.1 * x.var(0)  # biased variance
        close(bn.running_mean, run_mean, "running_mean")
        close(bn.running_var, run_var, "running_var")
        assert bn.running_mean.op is None and not bn.running_mean.requires_grad


def test_batchnorm1d_eval(device):
    bn = nn.BatchNorm1d(3, eps=1e-3, momentum=0.5, device=device)
    bn(T(np.random.randn(5, 3) * 3, device))
    rm, rv = bn.running_mean.numpy(), bn.running_var.numpy()
    bn.eval()
    x = np.random.randn(4, 3).astype(np.float32)
    xt = T(x, device)
    y = bn(xt)
    close(y, (x - rm) / np.sqrt(rv + 1e-3), "eval forward")
    y.sum().backward()
    close(xt.grad, np.broadcast_to(1 / np.sqrt(rv + 1e-3), (4, 3)), "eval grad x")
    close(bn.running_mean, rm, "eval leaves running stats alone")


def test_batchnorm1d_rejects_wrong_shape(device):
    with pytest.raises(ValueError, match=r"BatchNorm1d: expected input \(N, 4\), got \(2, 3\)"):
        nn.BatchNorm1d(4, device=device)(T(np.zeros((2, 3)), device))


@pytest.mark.parametrize("shape", [(5, 6), (2, 3, 6)])
def test_layernorm1d(device, shape):
    ln = nn.LayerNorm1d(6, device=device)
    w = np.random.rand(6).astype(np.float32) + 0.5
    b = np.random.randn(6).astype(np.float32)
    ln.weight.data = T(w, device, False)
    ln.bias.data = T(b, device, False)
    x = (np.random.randn(*shape) * 3).astype(np.float32)
    dy = np.random.randn(*shape).astype(np.float32)
    xt = T(x, device)
    y = ln(xt)
    ref, dx, dw, db = norm_ref(x, w, b, dy, -1, 1e-5)
    close(y, ref, "forward", atol=1e-4)
    y.backward(T(dy, device, False))
    close(xt.grad, dx, "grad x", atol=1e-4)
    close(ln.weight.grad, dw, "grad weight", atol=1e-4)
    close(ln.bias.grad, db, "grad bias", atol=1e-4)


def test_layernorm1d_dim_one_has_zero_grad(device):
    xt = T(np.random.randn(3, 1), device)
    nn.LayerNorm1d(1, device=device)(xt).sum().backward()
    close(xt.grad, np.zeros((3, 1)), "dim 1")


# ---------------------------------------------------------------------------------------------
# Central-difference checks of whole modules (parameters passed in, so they are checked too)


def _with_params(module, names):
    def f(x, *params):
        for name, p in zip(names, params):
            setattr(module, name, p)
        return module(x)
    f.__name__ = type(module).__name__
    return f


@pytest.mark.parametrize("case", ["linear", "linear3d", "bn_train", "bn_eval", "layernorm",
                                  "sigmoid"])
def test_module_gradient_check(device, case):
    shape = (2, 3, 4) if case == "linear3d" else (5, 4)
    if case.startswith("linear"):
        module = nn.Linear(4, 3, device=device)
    elif case.startswith("bn"):
        module = nn.BatchNorm1d(4, device=device)
        module(T(np.random.randn(6, 4), device))
        if case == "bn_eval":
            module.eval()
    elif case == "layernorm":
        module = nn.LayerNorm1d(4, device=device)
    else:
        module = nn.Sigmoid()
    names = ["weight", "bias"] if case != "sigmoid" else []
    params = [T(np.random.rand(*getattr(module, n).shape) + 0.5, device) for n in names]
    x = T(np.random.randn(*shape), device)
    gradient_check(_with_params(module, names), x, *params)


def test_softmax_loss_gradient_check(device):
    y = ndl.Tensor(np.array([1.0, 0.0, 2.0]), device=device, requires_grad=False)
    gradient_check(lambda z: nn.SoftmaxLoss()(z, y), T(np.random.randn(3, 3), device))


# ---------------------------------------------------------------------------------------------
# Dropout


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 1.0])
def test_dropout_mask_follows_the_draw(device, p):
    x = np.random.randn(10, 7).astype(np.float32)
    np.random.seed(11)
    xt = T(x, device)
    y = nn.Dropout(p)(xt)
    np.random.seed(11)
    keep = np.random.rand(10, 7) <= 1 - p
    scale = 0.0 if p == 1 else 1 / (1 - p)
    close(y, x * keep * scale, "dropout forward")
    y.sum().backward()
    close(xt.grad, keep * scale, "dropout grad")
    after = np.random.rand()
    np.random.seed(11)
    np.random.rand(10, 7)
    assert after == np.random.rand(), "exactly one rand(*x.shape) draw"


def test_dropout_eval_is_identity_without_draw(device):
    d = nn.Dropout(0.5)
    d.eval()
    x = T(np.random.randn(4, 4), device)
    state = np.random.get_state()[1].copy()
    assert d(x) is x
    assert np.array_equal(state, np.random.get_state()[1])


def test_dropout_rejects_bad_p():
    with pytest.raises(ValueError, match="Dropout"):
        nn.Dropout(1.5)


# ---------------------------------------------------------------------------------------------
# state_dict


def small_model(device):
    return nn.Sequential(nn.Linear(4, 6, device=device), nn.BatchNorm1d(6, device=device),
                         nn.ReLU(), nn.Linear(6, 3, device=device),
                         nn.LayerNorm1d(3, device=device))


def test_state_dict_round_trip(device):
    a = small_model(device)
    a(T(np.random.randn(8, 4), device))  # moves the BatchNorm running statistics
    sd = a.state_dict()
    assert list(sd) == ["modules.0.weight", "modules.0.bias",
                        "modules.1.weight", "modules.1.bias",
                        "modules.1.running_mean", "modules.1.running_var",
                        "modules.3.weight", "modules.3.bias",
                        "modules.4.weight", "modules.4.bias"]
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    assert not np.allclose(sd["modules.1.running_mean"], 0)
    b = small_model(device)
    b.load_state_dict(sd)
    for (name, va), vb in zip(sd.items(), b.state_dict().values()):
        np.testing.assert_array_equal(va, vb, err_msg=name)
    a.eval()
    b.eval()
    x = T(np.random.randn(5, 4), device)
    close(b(x), a(x).numpy(), "same outputs after load")
    assert b.modules[0].weight.dtype == "float32"
    assert b.modules[0].weight.device == device


def test_load_state_dict_errors(device):
    model = small_model(device)
    sd = model.state_dict()
    missing = dict(sd)
    del missing["modules.1.running_var"]
    with pytest.raises(KeyError, match=r"missing keys \['modules.1.running_var'\]"):
        model.load_state_dict(missing)
    extra = dict(sd, **{"modules.9.weight": np.zeros(2)})
    with pytest.raises(KeyError, match=r"unexpected keys \['modules.9.weight'\]"):
        model.load_state_dict(extra)
    bad = dict(sd, **{"modules.3.weight": np.zeros((3, 6))})
    with pytest.raises(ValueError, match=r"modules.3.weight: expected \(6, 3\), got \(3, 6\)"):
        model.load_state_dict(bad)
    before = model.modules[0].weight.numpy()
    partial = {"modules.0.weight": np.ones((4, 6)), "modules.3.weight": np.zeros((1, 1))}
    with pytest.raises(ValueError):
        model.load_state_dict(partial, strict=False)
    np.testing.assert_array_equal(model.modules[0].weight.numpy(), before)  # untouched
    model.load_state_dict({"modules.0.weight": np.ones((4, 6))}, strict=False)
    np.testing.assert_array_equal(model.modules[0].weight.numpy(), np.ones((4, 6)))


# ---------------------------------------------------------------------------------------------
# numpy mode (NEEDLE_BACKEND=np) in a subprocess


NP_MODE_SCRIPT = textwrap.dedent("""
    import numpy as np
    import needle as ndl
    import needle.nn as nn
    assert ndl.BACKEND == "np"
    np.random.seed(0)
    lin = nn.Linear(4, 3)
    assert isinstance(lin.weight.cached_data, np.ndarray) and lin.weight.dtype == np.float32
    x64 = ndl.Tensor(np.random.randn(5, 4))
    out = lin(x64)
    assert out.dtype == np.float64, out.dtype
    W, b = lin.weight.numpy(), lin.bias.numpy()
    np.testing.assert_allclose(out.numpy(), x64.numpy() @ W + b, rtol=1e-6)
    model = nn.Sequential(lin, nn.BatchNorm1d(3), nn.ReLU(), nn.Dropout(0.2), nn.Linear(3, 2),
                          nn.LayerNorm1d(2), nn.Residual(nn.Identity()), nn.Sigmoid())
    x = ndl.Tensor(np.random.randn(6, 4).astype(np.float32))
    loss = nn.SoftmaxLoss()(model(x), ndl.Tensor(np.array([0, 1, 1, 0, 1, 0], dtype=np.uint8)))
    assert loss.shape == (), loss.shape
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    bn = model.modules[1]
    assert bn.running_mean.dtype == np.float32 and bn.running_mean.shape == (3,)
    model.train()
    model(x64)  # float64 input: the running statistics stay float32
    assert bn.running_var.dtype == np.float32, bn.running_var.dtype
    sd = model.state_dict()
    other = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Dropout(0.2),
                          nn.Linear(3, 2), nn.LayerNorm1d(2), nn.Residual(nn.Identity()),
                          nn.Sigmoid())
    other.load_state_dict(sd)
    model.eval(); other.eval()
    np.testing.assert_allclose(model(x).numpy(), other(x).numpy())
    print("np-mode nn OK")
""")


def test_numpy_mode_subprocess(run_numpy_mode):
    run_numpy_mode(NP_MODE_SCRIPT, "np-mode nn OK")
