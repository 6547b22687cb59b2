"""needle.optim against torch.optim: 20 steps side by side from the same weights and grads.

Each test prints the largest relative difference it saw (run with -s to read them); the bound is
1e-5 relative. Also: parameter groups, state dicts and argument validation.
"""
import pickle

import numpy as np
import pytest

import needle as ndl
from needle import nn

torch = pytest.importorskip("torch")

SHAPES = ((5, 4), (4,), (3, 2, 2))
STEPS = 20


def _params(values, device):
    return ([nn.Parameter(ndl.Tensor(v, device=device)) for v in values],
            [torch.nn.Parameter(torch.tensor(v)) for v in values])


def _set_grads(ours, theirs, grads, device):
    for p, tp, g in zip(ours, theirs, grads):
        p.grad = ndl.Tensor(g, device=device, requires_grad=False)
        tp.grad = torch.tensor(g)


def _rel(a, b):
    """max |a - b| / max |b|: the difference relative to the tensor's scale."""
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))


def _max_rel(ours, theirs):
    return max(_rel(p.numpy(), tp.detach().numpy()) for p, tp in zip(ours, theirs))


def run_side_by_side(device, make_ours, make_theirs, steps=STEPS, between=None):
    """Step both optimizers `steps` times on the same random grads; returns the max rel diff."""
    values = [np.random.randn(*s).astype(np.float32) for s in SHAPES]
    ours, theirs = _params(values, device)
    opt, topt = make_ours(ours), make_theirs(theirs)
    worst = 0.0
    for step in range(steps):
        grads = [np.random.randn(*s).astype(np.float32) for s in SHAPES]
        _set_grads(ours, theirs, grads, device)
        opt.step()
        topt.step()
        if between is not None:
            between(step, opt, topt)
        worst = max(worst, _max_rel(ours, theirs))
        assert worst < 1e-5, f"step {step + 1}: relative difference {worst:.2e}"
        for i, (p, tp) in enumerate(zip(ours, theirs)):
            np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-5, atol=1e-6,
                                       err_msg=f"param {i} after step {step + 1}")
    return worst


SGD_CASES = {
    "momentum": dict(lr=0.05, momentum=0.9, dampening=0.0),
    "momentum_wd": dict(lr=0.05, momentum=0.9, dampening=0.0, weight_decay=0.01),
    "nesterov_wd": dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    "dampening": dict(lr=0.1, momentum=0.5, dampening=0.3, weight_decay=0.05),
    "plain": dict(lr=0.1, dampening=0.0),
    "plain_wd": dict(lr=0.1, dampening=0.5, weight_decay=0.1),  # momentum 0: no buffer
    "dampening_no_wd": dict(lr=0.03, momentum=0.95, dampening=0.9),
    "nesterov_no_wd": dict(lr=0.02, momentum=0.5, nesterov=True),
}


@pytest.mark.parametrize("case", list(SGD_CASES))
def test_sgd_torch_keywords_match_torch(device, case):
    kw = SGD_CASES[case]
    torch_kw = dict(kw)
    worst = run_side_by_side(device, lambda ps: ndl.optim.SGD(ps, **kw),
                             lambda ps: torch.optim.SGD(ps, **torch_kw))
    print(f"SGD {case}: max rel diff {worst:.2e}")


ADAM_CASES = {
    "adam_betas": (ndl.optim.Adam, torch.optim.Adam, dict(lr=0.01, betas=(0.8, 0.95))),
    "adam_betas_wd": (ndl.optim.Adam, torch.optim.Adam,
                      dict(lr=0.01, betas=(0.85, 0.99), eps=1e-6, weight_decay=0.05)),
    "adamw_default": (ndl.optim.AdamW, torch.optim.AdamW, dict()),
    "adamw_wd": (ndl.optim.AdamW, torch.optim.AdamW,
                 dict(lr=0.02, betas=(0.8, 0.9), weight_decay=0.1)),
}


@pytest.mark.parametrize("case", list(ADAM_CASES))
def test_adam_family_matches_torch(device, case):
    ours, theirs, kw = ADAM_CASES[case]
    worst = run_side_by_side(device, lambda ps: ours(ps, **kw), lambda ps: theirs(ps, **kw))
    print(f"{case}: max rel diff {worst:.2e}")


def test_adam_beta1_beta2_spelling_equals_betas(device):
    values = [np.random.randn(3, 2).astype(np.float32)]
    a, _ = _params(values, device)
    b, _ = _params(values, device)
    opt_a = ndl.optim.Adam(a, lr=0.1, beta1=0.7, beta2=0.9)
    opt_b = ndl.optim.Adam(b, lr=0.1, betas=(0.7, 0.9))
    assert (opt_a.beta1, opt_a.beta2) == (0.7, 0.9) == opt_b.betas
    for _ in range(3):
        g = np.random.randn(3, 2).astype(np.float32)
        for p, opt in ((a[0], opt_a), (b[0], opt_b)):
            p.grad = ndl.Tensor(g, device=device)
            opt.step()
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())


def test_adamw_differs_from_adam_l2(device):
    """Decoupled decay is not L2-in-gradient: the same weight_decay gives different weights."""
    values = [np.random.randn(4).astype(np.float32)]
    a, _ = _params(values, device)
    b, _ = _params(values, device)
    opt_a = ndl.optim.Adam(a, lr=0.1, weight_decay=0.5)
    opt_b = ndl.optim.AdamW(b, lr=0.1, weight_decay=0.5)
    for p, opt in ((a[0], opt_a), (b[0], opt_b)):
        p.grad = ndl.Tensor(np.ones(4, dtype=np.float32), device=device)
        opt.step()
    assert np.max(np.abs(a[0].numpy() - b[0].numpy())) > 1e-3


def _groups(params, extra):
    return [dict({"params": params[:2]}, **extra[0]), dict({"params": params[2:]}, **extra[1])]


def test_param_groups_match_torch_and_are_writable(device):
    extra = ({"lr": 0.1, "momentum": 0.5}, {"weight_decay": 0.01, "nesterov": True})

    def change_lr(step, opt, topt):
        if step == 9:  # halve group 1's lr mid-run in both
            opt.param_groups[1]["lr"] = topt.param_groups[1]["lr"] = 0.025

    worst = run_side_by_side(
        device,
        lambda ps: ndl.optim.SGD(_groups(ps, extra), lr=0.05, momentum=0.9, dampening=0.0),
        lambda ps: torch.optim.SGD(_groups(ps, extra), lr=0.05, momentum=0.9, dampening=0.0),
        between=change_lr)
    print(f"SGD param groups: max rel diff {worst:.2e}")


def test_torch_mode_param_groups_follow_hyper_parameter_changes(device):
    """Three torch-mode groups (no momentum, dampened, Nesterov); lr, momentum (from 0 too),
    dampening and weight decay changed mid-run in both optimizers (as schedulers do)."""
    def groups(ps):
        return [{"params": ps[:1], "momentum": 0.0, "weight_decay": 0.05},
                {"params": ps[1:2], "dampening": 0.4, "lr": 0.2},
                {"params": ps[2:], "nesterov": True, "weight_decay": 0.01}]

    def change(step, opt, topt):
        for o in (opt, topt):
            if step == 5:
                o.param_groups[1]["momentum"] = 0.6
                o.param_groups[2]["lr"] = 0.01
            if step == 9:
                o.param_groups[1]["dampening"] = 0.1
                o.param_groups[0]["lr"] = 0.3
                o.param_groups[0]["momentum"] = 0.7  # its buffer starts now, at the gradient
            if step == 13:
                o.param_groups[2]["momentum"] = 0.95
                o.param_groups[0]["weight_decay"] = 0.2

    worst = run_side_by_side(
        device, lambda ps: ndl.optim.SGD(groups(ps), lr=0.05, momentum=0.9, dampening=0.0),
        lambda ps: torch.optim.SGD(groups(ps), lr=0.05, momentum=0.9, dampening=0.0),
        between=change)
    print(f"SGD torch-mode groups with changes: max rel diff {worst:.2e}")


def test_param_groups_adamw_match_torch(device):
    extra = ({"lr": 0.01, "betas": (0.8, 0.9)}, {"weight_decay": 0.0})
    worst = run_side_by_side(device, lambda ps: ndl.optim.AdamW(_groups(ps, extra), lr=0.003),
                             lambda ps: torch.optim.AdamW(_groups(ps, extra), lr=0.003))
    print(f"AdamW param groups: max rel diff {worst:.2e}")


def test_param_groups_structure_and_contract_attributes(device):
    ps, _ = _params([np.zeros((2,), np.float32), np.zeros((3,), np.float32)], device)
    opt = ndl.optim.SGD([{"params": [ps[0]], "lr": 0.5}, {"params": ps[1]}], lr=0.1,
                        momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.1]
    assert all({"params", "lr", "weight_decay", "momentum"} <= set(g) for g in opt.param_groups)
    assert opt.params == ps and opt.lr == 0.5
    opt.lr = 0.2  # the contract attribute writes every group
    assert [g["lr"] for g in opt.param_groups] == [0.2, 0.2]
    adam = ndl.optim.Adam(ps, betas=(0.8, 0.9))
    adam.beta2 = 0.95
    assert adam.param_groups[0]["betas"] == (0.8, 0.95) and adam.t == 0
    assert adam.m == {} and adam.v == {}


def test_lr_written_between_steps_takes_effect(device):
    (p,), _ = _params([np.zeros(3, np.float32)], device)
    opt = ndl.optim.SGD([p], lr=1.0)
    opt.param_groups[0]["lr"] = 0.25
    p.grad = ndl.Tensor(np.ones(3, np.float32), device=device)
    opt.step()
    np.testing.assert_allclose(p.numpy(), -0.25 * np.ones(3))


@pytest.mark.parametrize("make", [
    lambda ps: ndl.optim.SGD(ps, lr=0.1, momentum=0.9),
    lambda ps: ndl.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda ps: ndl.optim.Adam(ps, lr=0.01, weight_decay=0.01),
    lambda ps: ndl.optim.AdamW([{"params": ps[:1], "lr": 0.02}, {"params": ps[1:]}]),
], ids=["sgd", "sgd_nesterov", "adam", "adamw_groups"])
def test_state_dict_round_trip_resumes_bit_exactly(device, make):
    values = [np.random.randn(*s).astype(np.float32) for s in SHAPES]
    grads = [[np.random.randn(*s).astype(np.float32) for s in SHAPES] for _ in range(6)]
    a, _ = _params(values, device)
    b, _ = _params(values, device)
    opt_a = make(a)
    for g in grads[:3]:
        for p, gi in zip(a, g):
            p.grad = ndl.Tensor(gi, device=device)
        opt_a.step()
    opt_a.param_groups[0]["lr"] *= 0.5  # group values travel too
    sd = pickle.loads(pickle.dumps(opt_a.state_dict()))  # plain values, as in a checkpoint
    assert set(sd) >= {"state", "param_groups"}
    assert sorted(i for g in sd["param_groups"] for i in g["params"]) == [0, 1, 2]
    for p_a, p_b in zip(a, b):
        p_b.data = p_a.detach()
    opt_b = make(b)
    opt_b.load_state_dict(sd)
    for g in grads[3:]:
        for params, opt in ((a, opt_a), (b, opt_b)):
            for p, gi in zip(params, g):
                p.grad = ndl.Tensor(gi, device=device)
            opt.step()
    for p_a, p_b in zip(a, b):
        np.testing.assert_array_equal(p_b.numpy(), p_a.numpy())


def test_load_state_dict_rejects_other_groups(device):
    ps, _ = _params([np.zeros(2, np.float32), np.zeros(3, np.float32)], device)
    sd = ndl.optim.SGD([{"params": [ps[0]]}, {"params": [ps[1]]}]).state_dict()
    with pytest.raises(ValueError, match=r"SGD.load_state_dict: the state has 2 parameter "
                                         r"groups, the optimizer has 1"):
        ndl.optim.SGD(ps).load_state_dict(sd)
    with pytest.raises(TypeError, match=r"SGD.load_state_dict: expected a dict"):
        ndl.optim.SGD(ps).load_state_dict([1])
    bad = dict(sd, hyper={"lr": "fast"})  # an edited legacy entry must not be ignored
    with pytest.raises(ValueError, match=r"SGD.load_state_dict: hyper-parameter lr 'fast' "
                                         r"disagrees with param_groups\[0\] \(0.01\)"):
        ndl.optim.SGD([{"params": [ps[0]]}, {"params": [ps[1]]}]).load_state_dict(bad)
    sd["param_groups"][0]["lr"] = sd["hyper"]["lr"] = -1.0
    with pytest.raises(ValueError, match=r"SGD: lr must be a non-negative number"):
        ndl.optim.SGD([{"params": [ps[0]]}, {"params": [ps[1]]}]).load_state_dict(sd)


def test_optimizer_argument_errors(device):
    ps, _ = _params([np.zeros(2, np.float32)], device)
    with pytest.raises(ValueError, match=r"SGD: nesterov momentum requires momentum > 0"):
        ndl.optim.SGD(ps, nesterov=True)
    with pytest.raises(ValueError, match=r"SGD: nesterov .* zero dampening"):
        ndl.optim.SGD(ps, momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"SGD: dampening must be a non-negative number"):
        ndl.optim.SGD(ps, momentum=0.9, dampening=-0.1)
    with pytest.raises(TypeError, match=r"SGD: nesterov must be a bool"):
        ndl.optim.SGD(ps, momentum=0.9, nesterov="yes")
    with pytest.raises(TypeError, match=r"Adam: give betas=\(b1, b2\) or beta1/beta2"):
        ndl.optim.Adam(ps, beta1=0.5, betas=(0.8, 0.9))
    with pytest.raises(TypeError, match=r"AdamW: betas must be a pair of numbers"):
        ndl.optim.AdamW(ps, betas=(0.9,))
    with pytest.raises(ValueError, match=r"AdamW: betas must be in \[0, 1\)"):
        ndl.optim.AdamW(ps, betas=(0.9, 1.0))
    with pytest.raises(TypeError, match=r"SGD: params must be an iterable"):
        ndl.optim.SGD(ps[0])
    with pytest.raises(TypeError, match=r"SGD: parameters must be Tensors"):
        ndl.optim.SGD([1.0])
    with pytest.raises(ValueError, match=r"SGD: some parameters appear more than once"):
        ndl.optim.SGD([{"params": ps}, {"params": ps}])
    with pytest.raises(ValueError, match=r"SGD: unknown parameter-group keys \['betas'\]"):
        ndl.optim.SGD([{"params": ps, "betas": (0.9, 0.9)}])
    with pytest.raises(ValueError, match=r"SGD.zero_grad: only set_to_none=True"):
        ndl.optim.SGD(ps).zero_grad(set_to_none=False)


def test_model_trained_side_by_side_with_torch(device):
    """A small MLP, weights copied from torch, 20 steps of torch-style Nesterov SGD."""
    tmodel = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    model = nn.Sequential(nn.Linear(6, 8, device=device), nn.ReLU(),
                          nn.Linear(8, 3, device=device))
    pairs = [(model.modules[0], tmodel[0]), (model.modules[2], tmodel[2])]
    for ours, theirs in pairs:
        ours.weight.data = ndl.Tensor(theirs.weight.detach().numpy().T.copy(), device=device)
        ours.bias.data = ndl.Tensor(theirs.bias.detach().numpy().reshape(1, -1), device=device)
    opt = ndl.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                        weight_decay=1e-3)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                           weight_decay=1e-3)
    worst = 0.0
    for _ in range(STEPS):
        x = np.random.randn(16, 6).astype(np.float32)
        y = np.random.randn(16, 3).astype(np.float32)
        opt.reset_grad()
        d = model(ndl.Tensor(x, device=device)) - ndl.Tensor(y, device=device)
        ((d * d).sum() / d.shape[0]).backward()
        opt.step()
        topt.zero_grad()
        ((tmodel(torch.tensor(x)) - torch.tensor(y)) ** 2).sum(1).mean().backward()
        topt.step()
        for ours, theirs in pairs:
            w, tw = ours.weight.numpy(), theirs.weight.detach().numpy().T
            worst = max(worst, _rel(w, tw))
            np.testing.assert_allclose(w, tw, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(ours.bias.numpy().reshape(-1),
                                       theirs.bias.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert worst < 1e-5
    print(f"MLP + nesterov SGD: max rel diff {worst:.2e}")


def test_float64_reference_path(device):
    """float32 noise can hide a bug: measure needle's and torch's float32 runs against torch in
    float64 from the same start. needle's error must be of torch's own float32 size."""
    values = [np.random.randn(*s).astype(np.float32) for s in SHAPES]
    ours, theirs = _params(values, device)
    ref = [torch.nn.Parameter(torch.tensor(v, dtype=torch.float64)) for v in values]
    kw = dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)
    opts = [ndl.optim.SGD(ours, **kw), torch.optim.SGD(theirs, **kw), torch.optim.SGD(ref, **kw)]
    for _ in range(STEPS):
        grads = [np.random.randn(*s).astype(np.float32) for s in SHAPES]
        _set_grads(ours, theirs, grads, device)
        for r, g in zip(ref, grads):
            r.grad = torch.tensor(g, dtype=torch.float64)
        for opt in opts:
            opt.step()
    ours_err = max(_rel(p.numpy().astype(np.float64), r.detach().numpy())
                   for p, r in zip(ours, ref))
    torch_err = max(_rel(t.detach().numpy().astype(np.float64), r.detach().numpy())
                    for t, r in zip(theirs, ref))
    print(f"vs float64: needle {ours_err:.2e}, torch float32 {torch_err:.2e}")
    assert ours_err <= 4 * torch_err + 1e-7
