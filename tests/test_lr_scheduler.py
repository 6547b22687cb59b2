"""needle.optim.lr_scheduler against torch.optim.lr_scheduler: the lr sequences over many steps.

The sequences must be equal float for float (the same recurrences); each test also asserts the
max difference is 0 and prints it (run with -s).
"""
import numpy as np
import pytest

import needle as ndl
from needle import nn
from needle.optim import lr_scheduler as ours

torch = pytest.importorskip("torch")
theirs = torch.optim.lr_scheduler

STEPS = 120


def _opts(kind="sgd", groups=((0.1, {}),)):
    """A needle and a torch optimizer with the same parameter groups (lr, extra keys)."""
    nps, tps = [], []
    for lr, extra in groups:
        nps.append(dict({"params": [nn.Parameter(ndl.Tensor(np.zeros(2, np.float32)))],
                         "lr": lr}, **extra))
        tps.append(dict({"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr}, **extra))
    if kind == "sgd":
        return ndl.optim.SGD(nps, momentum=0.9), torch.optim.SGD(tps, momentum=0.9)
    return ndl.optim.Adam(nps), torch.optim.Adam(tps)


def _sequences(opt, sched, steps, keys=("lr",)):
    seq = []
    for _ in range(steps):
        seq.append([tuple(g[k] for k in keys) for g in opt.param_groups])
        opt.step()
        sched.step()
    return seq


def _compare(make_ours, make_theirs, kind="sgd", groups=((0.1, {}), (0.03, {})), steps=STEPS,
             keys=("lr",)):
    opt, topt = _opts(kind, groups)
    s, ts = make_ours(opt), make_theirs(topt)
    a = _sequences(opt, s, steps, keys)
    b = _sequences(topt, ts, steps, keys)
    diff = np.max(np.abs(np.array(a, dtype=np.float64) - np.array(b, dtype=np.float64)))
    assert a == b, f"first difference at step {next(i for i in range(steps) if a[i] != b[i])}"
    assert s.get_last_lr() == ts.get_last_lr()
    return diff


CASES = {
    "step": ("StepLR", dict(step_size=7, gamma=0.5)),
    "step_one": ("StepLR", dict(step_size=1, gamma=0.9)),
    "multistep": ("MultiStepLR", dict(milestones=[10, 30, 30, 80], gamma=0.3)),
    "exponential": ("ExponentialLR", dict(gamma=0.97)),
    "cosine": ("CosineAnnealingLR", dict(T_max=40)),
    "cosine_eta_min_wraps": ("CosineAnnealingLR", dict(T_max=25, eta_min=0.001)),
    "linear_warmup": ("LinearLR", dict(start_factor=0.1, total_iters=10)),
    "linear_decay": ("LinearLR", dict(start_factor=1.0, end_factor=0.05, total_iters=50)),
    "linear_default": ("LinearLR", dict()),
    "onecycle_cos": ("OneCycleLR", dict(max_lr=0.5, total_steps=STEPS)),
    "onecycle_linear_3phase": ("OneCycleLR", dict(max_lr=[0.4, 0.2], epochs=10,
                                                  steps_per_epoch=12, anneal_strategy="linear",
                                                  three_phase=True, pct_start=0.25)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_lr_sequence_equals_torch(case):
    name, kw = CASES[case]
    diff = _compare(lambda o: getattr(ours, name)(o, **kw), lambda o: getattr(theirs, name)(o, **kw))
    print(f"{case}: max lr difference over {STEPS} steps {diff}")
    assert diff == 0.0


@pytest.mark.parametrize("kind,keys", [("sgd", ("lr", "momentum")), ("adam", ("lr", "betas"))])
def test_onecycle_cycles_momentum_like_torch(kind, keys):
    diff_kw = dict(max_lr=0.3, total_steps=50, base_momentum=0.8, max_momentum=0.9)
    opt, topt = _opts(kind)
    s, ts = ours.OneCycleLR(opt, **diff_kw), theirs.OneCycleLR(topt, **diff_kw)
    a, b = _sequences(opt, s, 50, keys), _sequences(topt, ts, 50, keys)
    assert a == b


def test_sequential_warmup_then_cosine_equals_torch():
    def make(mod):
        def build(o):
            warm = mod.LinearLR(o, start_factor=0.01, total_iters=5)
            cos = mod.CosineAnnealingLR(o, T_max=60, eta_min=1e-4)
            return mod.SequentialLR(o, schedulers=[warm, cos], milestones=[5])
        return build
    assert _compare(make(ours), make(theirs)) == 0.0


def test_sequential_three_schedulers_equals_torch():
    def make(mod):
        def build(o):
            scheds = [mod.ExponentialLR(o, gamma=0.9), mod.StepLR(o, step_size=4, gamma=0.5),
                      mod.MultiStepLR(o, milestones=[3, 9], gamma=0.2)]
            return mod.SequentialLR(o, schedulers=scheds, milestones=[10, 40])
        return build
    assert _compare(make(ours), make(theirs)) == 0.0


def test_user_lr_edit_carries_on_like_torch():
    """The recurrences start from the current lr, so an edit between steps persists (as torch)."""
    opt, topt = _opts()
    s, ts = ours.ExponentialLR(opt, gamma=0.9), theirs.ExponentialLR(topt, gamma=0.9)
    for o, sch in ((opt, s), (topt, ts)):
        for _ in range(3):
            o.step()
            sch.step()
        o.param_groups[0]["lr"] = 0.5
        sch.step()
    assert s.get_last_lr() == ts.get_last_lr()


def test_step_with_epoch_uses_closed_form_like_torch():
    import warnings
    opt, topt = _opts()
    s, ts = ours.CosineAnnealingLR(opt, T_max=10), theirs.CosineAnnealingLR(topt, T_max=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates step(epoch)
        for epoch in (3, 7, 2):
            s.step(epoch)
            ts.step(epoch)
            assert s.get_last_lr() == ts.get_last_lr()


def test_scheduler_state_dict_resumes():
    opt = ndl.optim.SGD([nn.Parameter(ndl.Tensor(np.zeros(2, np.float32)))], lr=0.1)
    s = ours.StepLR(opt, step_size=3, gamma=0.5)
    for _ in range(5):
        s.step()
    sd_opt, sd_s = opt.state_dict(), s.state_dict()
    rest = [s.step() or s.get_last_lr() for _ in range(5)]
    opt2 = ndl.optim.SGD([nn.Parameter(ndl.Tensor(np.zeros(2, np.float32)))], lr=0.1)
    opt2.load_state_dict(sd_opt)
    s2 = ours.StepLR(opt2, step_size=3, gamma=0.5)  # torch's resume order: optimizer first,
    s2.load_state_dict(sd_s)  # then a fresh scheduler (it keeps the restored lr) and its state
    assert [s2.step() or s2.get_last_lr() for _ in range(5)] == rest


def test_scheduler_argument_errors():
    opt, _ = _opts()
    with pytest.raises(TypeError, match=r"StepLR: optimizer must be a needle Optimizer"):
        ours.StepLR(object(), step_size=2)
    with pytest.raises(ValueError, match=r"StepLR: step_size must be >= 1, got 0"):
        ours.StepLR(opt, step_size=0)
    with pytest.raises(TypeError, match=r"StepLR: step_size must be an int"):
        ours.StepLR(opt, step_size=2.5)
    with pytest.raises(TypeError, match=r"MultiStepLR: milestone must be an int"):
        ours.MultiStepLR(opt, milestones=[1.5])
    with pytest.raises(ValueError, match=r"LinearLR: start_factor must be in \(0.0, 1.0\]"):
        ours.LinearLR(opt, start_factor=0.0)
    with pytest.raises(ValueError, match=r"CosineAnnealingLR: T_max must be >= 1"):
        ours.CosineAnnealingLR(opt, T_max=0)
    with pytest.raises(ValueError, match=r"OneCycleLR: give total_steps, or epochs and"):
        ours.OneCycleLR(opt, max_lr=0.1)
    with pytest.raises(ValueError, match=r"OneCycleLR: expected 1 values of max_lr, got 2"):
        ours.OneCycleLR(opt, max_lr=[0.1, 0.2], total_steps=10)
    with pytest.raises(ValueError, match=r"OneCycleLR: anneal_strategy must be"):
        ours.OneCycleLR(opt, max_lr=0.1, total_steps=10, anneal_strategy="exp")
    s = ours.OneCycleLR(opt, max_lr=0.1, total_steps=2)
    s.step()
    s.step()
    with pytest.raises(ValueError, match=r"OneCycleLR: stepped 3 times; total_steps is 2"):
        s.step()
    fresh, _ = _opts()
    with pytest.raises(ValueError, match=r"StepLR: param_groups\[0\] has no 'initial_lr'"):
        ours.StepLR(fresh, step_size=2, last_epoch=4)
    a = ours.StepLR(fresh, step_size=2)
    with pytest.raises(ValueError, match=r"SequentialLR: expected 1 milestones for 2"):
        ours.SequentialLR(fresh, [a, ours.ExponentialLR(fresh, gamma=0.5)], milestones=[])
    other, _ = _opts()
    with pytest.raises(ValueError, match=r"SequentialLR: schedulers\[0\] drives another"):
        ours.SequentialLR(other, [a], milestones=[])
