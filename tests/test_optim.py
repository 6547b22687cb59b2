"""needle.optim: SGD and Adam step sequences against hand-written numpy versions."""
import os
import textwrap

import numpy as np
import pytest

import needle as ndl
from needle import nn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_params(device, shapes=((3, 4), (4,))):
    values = [np.random.randn(*s).astype(np.float32) for s in shapes]
    params = [nn.Parameter(ndl.Tensor(v, device=device)) for v in values]
    return values, params


def grad_sequence(shapes, steps=3):
    return [[np.random.randn(*s).astype(np.float32) for s in shapes] for _ in range(steps)]


def set_grads(params, grads, device):
    for p, g in zip(params, grads):
        p.grad = ndl.Tensor(g, device=device, requires_grad=False)


def sgd_ref(w, grads, lr, momentum, wd):
    u = np.zeros_like(w, dtype=np.float64)
    w = w.astype(np.float64)
    out = []
    for g in grads:
        g = g + wd * w
        u = momentum * u + (1 - momentum) * g
        w = w - lr * u
        out.append(w)
    return out


def adam_ref(w, grads, lr, b1, b2, eps, wd):
    m = np.zeros_like(w, dtype=np.float64)
    v = np.zeros_like(w, dtype=np.float64)
    w = w.astype(np.float64)
    out = []
    for t, g in enumerate(grads, start=1):
        g = g + wd * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        out.append(w)
    return out


@pytest.mark.parametrize("momentum,wd", [(0.0, 0.0), (0.9, 0.0), (0.5, 0.01)])
def test_sgd_three_steps(device, momentum, wd):
    shapes = ((3, 4), (4,))
    values, params = make_params(device, shapes)
    grads = grad_sequence(shapes)
    opt = ndl.optim.SGD(params, lr=0.1, momentum=momentum, weight_decay=wd)
    refs = [sgd_ref(v, [g[i] for g in grads], 0.1, momentum, wd) for i, v in enumerate(values)]
    for step in range(3):
        set_grads(params, grads[step], device)
        opt.step()
        for i, p in enumerate(params):
            np.testing.assert_allclose(p.numpy(), refs[i][step], rtol=1e-5, atol=1e-6,
                                       err_msg=f"param {i} after step {step + 1}")
            assert p.dtype == "float32"
            # step() leaves the grad's values alone
            np.testing.assert_array_equal(p.grad.numpy(), grads[step][i])
    for u in opt.u.values():
        assert u.op is None and not u.requires_grad and u.dtype == "float32"


def test_sgd_first_step_is_dampened(device):
    _, (p,) = make_params(device, ((2,),))
    before = p.numpy()
    p.grad = ndl.Tensor(np.ones(2, dtype=np.float32), device=device)
    ndl.optim.SGD([p], lr=1.0, momentum=0.9).step()
    np.testing.assert_allclose(p.numpy(), before - 0.1, rtol=1e-6)


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_adam_three_steps(device, wd):
    shapes = ((2, 5), (5,))
    values, params = make_params(device, shapes)
    grads = grad_sequence(shapes)
    opt = ndl.optim.Adam(params, lr=0.01, beta1=0.8, beta2=0.9, eps=1e-6, weight_decay=wd)
    refs = [adam_ref(v, [g[i] for g in grads], 0.01, 0.8, 0.9, 1e-6, wd)
            for i, v in enumerate(values)]
    for step in range(3):
        set_grads(params, grads[step], device)
        opt.step()
        assert opt.t == step + 1  # once per step(), shared by all parameters
        for i, p in enumerate(params):
            np.testing.assert_allclose(p.numpy(), refs[i][step], rtol=1e-5, atol=1e-6,
                                       err_msg=f"param {i} after step {step + 1}")
            np.testing.assert_array_equal(p.grad.numpy(), grads[step][i])
    for table in (opt.m, opt.v):
        assert len(table) == 2
        for s in table.values():
            assert s.op is None and not s.requires_grad and s.dtype == "float32"


def test_adam_matches_torch(device):
    torch = pytest.importorskip("torch")
    values, params = make_params(device, ((4, 3),))
    tp = torch.nn.Parameter(torch.tensor(values[0]))
    topt = torch.optim.Adam([tp], lr=0.05, weight_decay=0.01)
    opt = ndl.optim.Adam(params, lr=0.05, weight_decay=0.01)
    for g in grad_sequence(((4, 3),), steps=4):
        set_grads(params, g, device)
        tp.grad = torch.tensor(g[0])
        opt.step()
        topt.step()
    np.testing.assert_allclose(params[0].numpy(), tp.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_params_without_grad_are_skipped(device):
    values, params = make_params(device)
    params[0].grad = ndl.Tensor(np.ones((3, 4), dtype=np.float32), device=device)
    for opt in (ndl.optim.SGD(params, lr=0.1), ndl.optim.Adam(params, lr=0.1)):
        opt.step()
        np.testing.assert_array_equal(params[1].numpy(), values[1])
    assert not np.allclose(params[0].numpy(), values[0])


def test_reset_grad(device):
    _, params = make_params(device)
    set_grads(params, grad_sequence(((3, 4), (4,)), 1)[0], device)
    ndl.optim.SGD(params).reset_grad()
    assert all(p.grad is None for p in params)


def test_training_graph_does_not_grow(device):
    layer = nn.Linear(3, 2, device=device)
    opt = ndl.optim.Adam(layer.parameters(), lr=0.01)
    x = ndl.Tensor(np.random.randn(4, 3).astype(np.float32), device=device)
    for _ in range(3):
        opt.reset_grad()
        layer(x).sum().backward()
        opt.step()
    for p in layer.parameters():
        assert isinstance(p, nn.Parameter) and p.requires_grad
        assert p.op is None and p.is_leaf()  # updates replace data, never build a graph
        assert opt.m[p].is_leaf() and opt.v[p].is_leaf()


def test_clip_grad_norm(device):
    shapes = ((3, 4), (4,))
    _, params = make_params(device, shapes)
    grads = grad_sequence(shapes, 1)[0]
    set_grads(params, grads, device)
    opt = ndl.optim.SGD(params)
    total = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads))
    assert opt.clip_grad_norm(max_norm=0.5) == pytest.approx(total, rel=1e-6)
    scale = 0.5 / (total + 1e-6)
    for p, g in zip(params, grads):
        np.testing.assert_allclose(p.grad.numpy(), g * scale, rtol=1e-5)
    set_grads(params, grads, device)
    opt.clip_grad_norm(max_norm=1e6)  # below the limit: unchanged
    for p, g in zip(params, grads):
        np.testing.assert_array_equal(p.grad.numpy(), g)


@pytest.mark.parametrize("cls,kw", [(ndl.optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
                                    (ndl.optim.Adam, {"lr": 0.01, "weight_decay": 0.01})])
def test_optimizer_state_dict_round_trip(device, cls, kw):
    shapes = ((3, 4), (4,))
    values, params_a = make_params(device, shapes)
    params_b = [nn.Parameter(ndl.Tensor(v, device=device)) for v in values]
    grads = grad_sequence(shapes, 3)
    opt_a = cls(params_a, **kw)
    for g in grads[:2]:
        set_grads(params_a, g, device)
        opt_a.step()
    sd = opt_a.state_dict()
    assert sd["type"] == cls.__name__ and sd["hyper"]["lr"] == kw["lr"]
    assert set(sd["state"]) == {0, 1}
    for p_a, p_b in zip(params_a, params_b):
        p_b.data = p_a.detach()
    opt_b = cls(params_b, lr=123.0)
    opt_b.load_state_dict(sd)
    assert opt_b.lr == kw["lr"]
    for params, opt in ((params_a, opt_a), (params_b, opt_b)):
        set_grads(params, grads[2], device)
        opt.step()
    for p_a, p_b in zip(params_a, params_b):
        np.testing.assert_allclose(p_b.numpy(), p_a.numpy(), rtol=1e-6)


def test_optimizer_load_state_dict_errors(device):
    _, params = make_params(device)
    opt = ndl.optim.Adam(params)
    set_grads(params, grad_sequence(((3, 4), (4,)), 1)[0], device)
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match=r"SGD.load_state_dict: state is for 'Adam'"):
        ndl.optim.SGD(params).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"parameter index 1 out of range for 1 parameters"):
        ndl.optim.Adam(params[:1]).load_state_dict(sd)
    _, other = make_params(device, ((4, 3), (4,)))
    with pytest.raises(ValueError, match=r"buffer 'm' of parameter 0 has shape \(3, 4\), "
                                         r"parameter has \(4, 3\)"):
        ndl.optim.Adam(other).load_state_dict(sd)


@pytest.mark.parametrize("kw", [{"lr": -1.0}, {"momentum": -0.5}])
def test_sgd_rejects_bad_hyper_parameters(kw):
    with pytest.raises(ValueError, match="SGD"):
        ndl.optim.SGD([], **kw)


NP_MODE_SCRIPT = textwrap.dedent("""
    import numpy as np
    import needle as ndl
    import needle.nn as nn
    assert ndl.BACKEND == "np"
    np.random.seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    x = ndl.Tensor(np.random.randn(8, 4))  # float64 input: float64 grads
    y = ndl.Tensor(np.random.randint(0, 3, 8))
    for opt in (ndl.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01),
                ndl.optim.Adam(model.parameters(), lr=0.01, weight_decay=0.01)):
        for _ in range(3):
            opt.reset_grad()
            loss = nn.SoftmaxLoss()(model(x), y)
            loss.backward()
            opt.step()
        for p in model.parameters():
            assert p.dtype == np.float32, p.dtype
            assert isinstance(p.cached_data, np.ndarray)
    opt.clip_grad_norm()
    for kw in (dict(momentum=0.9, nesterov=True, weight_decay=0.01),
               dict(momentum=0.8, dampening=0.3), dict(dampening=0.0, weight_decay=0.1)):
        # torch-mode SGD against its formula in float64
        p = ndl.Tensor(np.array([1.0, -2.0, 3.0], dtype=np.float32), requires_grad=True)
        sgd = ndl.optim.SGD([p], lr=0.1, **kw)
        m, wd, damp = kw.get("momentum", 0.0), kw.get("weight_decay", 0.0), kw.get("dampening")
        w, u = p.numpy().astype(np.float64), None
        for g in ([0.5, 1.0, -1.0], [2.0, 0.0, 1.0], [-1.0, 0.25, 0.5]):
            p.grad = ndl.Tensor(np.array(g, dtype=np.float32))
            sgd.step()
            d = np.array(g) + wd * w
            if m:
                u = d if u is None else m * u + (1 - (damp or 0.0)) * d
                d = d + m * u if kw.get("nesterov") else u
            w = w - 0.1 * d
            assert np.allclose(p.numpy(), w, rtol=1e-6, atol=1e-7), (kw, p.numpy(), w)
    print("np-mode optim OK")
""")


def test_numpy_mode_subprocess(run_numpy_mode):
    run_numpy_mode(NP_MODE_SCRIPT, "np-mode optim OK")


@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
@pytest.mark.parametrize("momentum", [0.0, 0.37, 0.9])
def test_sgd_step_kernel_matches_separate_array_ops(device, momentum, weight_decay):
    """NDArray.sgd_step (one backend call, used by SGD.step) rounds exactly like the array ops
    the contract's formula spells out, with and without a velocity."""
    import needle.backend_ndarray as nd
    rng = np.random.default_rng(11)
    w, g, u = (nd.array(rng.standard_normal((33, 7)).astype(np.float32), device=device)
               for _ in range(3))
    lr = 0.0123
    for velocity in (None, u):
        got_w, got_u = w.sgd_step(g, velocity, momentum, -lr, weight_decay)
        grad = g + w * weight_decay if weight_decay else g
        want_u = grad * (1 - momentum) if velocity is None else u * momentum + grad * (1 - momentum)
        np.testing.assert_array_equal(got_u.numpy(), want_u.numpy())
        np.testing.assert_array_equal(got_w.numpy(), (w + want_u * (-lr)).numpy())
    with pytest.raises(ValueError, match=r"sgd_step: grad of shape \(7, 33\)"):
        w.sgd_step(g.permute((1, 0)), None, momentum, -lr)


@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
@pytest.mark.parametrize("direction", [0, 1, 2], ids=["gradient", "momentum", "nesterov"])
def test_sgd_torch_update_matches_separate_array_ops(device, direction, weight_decay):
    """optim_update.sgd_torch_update (one backend call, torch-mode SGD's step) rounds exactly
    like torch's formula spelled out in array ops, with and without a buffer, in place too."""
    import needle.backend_ndarray as nd
    from needle.backend_ndarray import optim_update
    rng = np.random.default_rng(12)
    w, g, u = (nd.array(rng.standard_normal((33, 7)).astype(np.float32), device=device)
               for _ in range(3))
    momentum, dampening, lr = 0.8, 0.0 if direction == 2 else 0.25, 0.0123
    hyper = optim_update.hyper_array([momentum, 1 - dampening, -lr, weight_decay], device)
    for velocity in (None, u):
        got_w, got_u = optim_update.sgd_torch_update(w, g, velocity, hyper, weight_decay != 0,
                                                     direction)
        grad = g + w * weight_decay if weight_decay else g
        step, want_u = grad, None
        if direction:
            want_u = grad if velocity is None else u * momentum + grad * (1 - dampening)
            step = grad + want_u * momentum if direction == 2 else want_u
            np.testing.assert_array_equal(got_u.numpy(), want_u.numpy())
        else:
            assert got_u is None
        want_w = (w + step * (-lr)).numpy()
        np.testing.assert_array_equal(got_w.numpy(), want_w)
    w_in, u_in = w + 0.0, u + 0.0  # copies overwritten in place
    got_w, got_u = optim_update.sgd_torch_update(w_in, g, u_in, hyper, weight_decay != 0,
                                                 direction, in_place=True)
    assert got_w is w_in and (got_u is u_in if direction else got_u is None)
    np.testing.assert_array_equal(w_in.numpy(), want_w)
    with pytest.raises(ValueError, match=r"sgd_torch_step: grad of shape \(7, 33\) for weights "
                                         r"of shape \(33, 7\)"):
        optim_update.sgd_torch_update(w, g.permute((1, 0)), None, hyper, False, direction)
    with pytest.raises(ValueError, match=r"sgd_torch_step: hyper must be a 4-element NDArray"):
        optim_update.sgd_torch_update(w, g, None, w, False, direction)
    with pytest.raises(ValueError, match=r"sgd_torch_step: direction must be 0, 1 or 2, got 5"):
        optim_update.sgd_torch_update(w, g, None, hyper, False, 5)
