"""ndl.jit with state that changes between calls: live hyper-parameters (lr schedules, `opt.lr`)
and guards (train/eval, requires_grad, parameter groups, rebound parameters) give the eager run
bit for bit."""
import numpy as np
import pytest

import needle as ndl
from needle import nn
from needle.autograd import BACKEND
from needle.jit_capture import host_op
from needle.jit_live import LiveScalar, collect_guards, live
from needle.optim import lr_scheduler

pytestmark = pytest.mark.skipif(BACKEND != "nd", reason="ndl.jit captures NDArray backend calls")

DEVICE = ndl.cpu()
STEPS = 30


def make_model(device=DEVICE):
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16, device=device),
                         nn.BatchNorm1d(16, device=device), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(16, 5, device=device))


def run(make_opt, use_jit, events=None, make_sched=None, steps=STEPS, device=DEVICE,
        inspect=None, build=make_model):
    """Losses, logits and final state of `steps` training steps of the model build(device);
    `events[i](model, opt)` runs before step i; the scheduler steps after every step;
    inspect(jitted step, x, y) after the last one. With jit: (results, jitted step)."""
    np.random.seed(0)
    model = build(device)
    opt = make_opt(model.parameters())
    sched = make_sched(opt) if make_sched else None
    rng = np.random.default_rng(1)

    def step(x, y):
        opt.reset_grad()
        logits = model(x)
        loss = ndl.ops.softmax_cross_entropy(logits, y)
        loss.backward(create_graph=False)
        opt.step()
        return loss, logits

    fn = ndl.jit(step) if use_jit else step
    out = []
    for i in range(steps):
        if events and i in events:
            events[i](model, opt)
        x = ndl.Tensor(rng.standard_normal((8, 3, 4)).astype(np.float32), device=device,
                       requires_grad=False)
        y = ndl.Tensor.from_host(rng.integers(0, 5, 8).astype(np.float32), device=device)
        loss, logits = fn(x, y)
        out.append((loss.numpy(), logits.numpy()))
        if sched is not None:
            sched.step()
    if use_jit and inspect is not None:
        inspect(fn, x, y)
    state = model.state_dict()
    return (out, state, getattr(opt, "t", None)), fn


def assert_jit_equals_eager(make_opt, events=None, make_sched=None, replays=True, device=DEVICE,
                            inspect=None, build=make_model):
    eager, _ = run(make_opt, False, events, make_sched, device=device, build=build)
    jitted, fn = run(make_opt, True, events, make_sched, device=device, inspect=inspect,
                     build=build)
    for i, ((la, ga), (lb, gb)) in enumerate(zip(eager[0], jitted[0])):
        np.testing.assert_array_equal(lb, la, err_msg=f"loss of step {i}")
        np.testing.assert_array_equal(gb, ga, err_msg=f"logits of step {i}")
    for name, value in eager[1].items():
        np.testing.assert_array_equal(jitted[1][name], value, err_msg=name)
    assert eager[2] == jitted[2]
    if replays:  # the last steps were replays, not eager calls
        assert any(e.program is not None for v in fn._cache.values() for e in v)
    return fn


def sgd(params):
    return ndl.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-4)


def sgd_torch(params):
    return ndl.optim.SGD(params, lr=0.05, momentum=0.9, dampening=0.0, nesterov=True,
                         weight_decay=1e-4)


def sgd_torch_dampening(params):
    return ndl.optim.SGD(params, lr=0.05, momentum=0.8, dampening=0.3, weight_decay=1e-3)


def adam(params):
    return ndl.optim.Adam(params, lr=0.01, weight_decay=1e-4)


def adamw(params):
    return ndl.optim.AdamW(params, lr=0.01, weight_decay=0.05)


OPTIMIZERS = {"sgd_momentum": sgd, "sgd_torch_nesterov": sgd_torch,
              "sgd_torch_dampening": sgd_torch_dampening, "adam": adam, "adamw": adamw}
SCHEDULES = {
    "step": lambda opt: lr_scheduler.StepLR(opt, step_size=4, gamma=0.5),
    "cosine": lambda opt: lr_scheduler.CosineAnnealingLR(opt, T_max=STEPS),
    # cycles SGD's momentum / Adam's beta1 every step as well
    "onecycle": lambda opt: lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=STEPS),
}


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("make_opt", list(OPTIMIZERS.values()), ids=list(OPTIMIZERS))
def test_lr_schedule_reaches_replays(make_opt, schedule):
    assert_jit_equals_eager(make_opt, make_sched=SCHEDULES[schedule])


def set_hyper(**values):
    def event(model, opt):
        for key, value in values.items():
            setattr(opt, key, value)
    return event


@pytest.mark.parametrize("make_opt", list(OPTIMIZERS.values()), ids=list(OPTIMIZERS))
def test_manual_lr_change_reaches_replays(make_opt):
    events = {8: set_hyper(lr=0.002), 12: set_hyper(lr=0.03), 20: set_hyper(weight_decay=0.01)}
    fn = assert_jit_equals_eager(make_opt, events)
    assert fn.recaptures == 0  # numbers are re-read, not recaptured


def test_changed_betas_and_eps_reach_replays():
    events = {6: set_hyper(betas=(0.8, 0.99), eps=1e-6), 15: set_hyper(beta1=0.95)}
    assert_jit_equals_eager(adam, events)


def test_eval_after_capture_recaptures_and_train_replays_again():
    def mode(train):
        return lambda model, opt: model.train(train)
    # train captured by step 3, eval from step 8 (captured anew), train again from 14
    fn = assert_jit_equals_eager(sgd, {8: mode(False), 14: mode(True)})
    assert fn.recaptures == 1  # eval was new; back in train, the first capture holds again
    ((train_entry, eval_entry),) = [tuple(v) for v in fn._cache.values()]
    assert train_entry.program is not None and eval_entry.program is not None


def test_batchnorm_momentum_change_recaptures():
    """The running statistics' momentum is a scalar argument of their update kernel: a change
    must recapture (a guard), not replay the old value."""
    def slower(model, opt):
        model[2].momentum = 0.01
    fn = assert_jit_equals_eager(sgd, {9: slower})
    assert fn.recaptures == 1


def test_frozen_parameter_recaptures():
    def freeze(model, opt):
        model[1].weight.requires_grad = False
    fn = assert_jit_equals_eager(sgd, {6: freeze})
    assert fn.recaptures == 1


def test_added_parameter_group_recaptures():
    extra = {}

    def add_group(model, opt):
        # a new head trained alongside, with its own lr
        extra["w"] = model[5].bias
        opt.param_groups[0]["params"].remove(model[5].bias)
        opt.add_param_group({"params": [model[5].bias], "lr": 0.2})
    fn = assert_jit_equals_eager(sgd, {7: add_group})
    assert fn.recaptures == 1


def test_weight_decay_switched_on_recaptures():
    # Adam adds weight_decay * p to the gradient only when weight_decay != 0: a new code path
    fn = assert_jit_equals_eager(lambda p: ndl.optim.Adam(p, lr=0.01), {9: set_hyper(
        weight_decay=0.1)})
    assert fn.recaptures == 1


def test_parameters_rebound_from_outside_recapture():
    def reload(model, opt):
        state = {k: v * 0.5 for k, v in model.state_dict().items()}
        model.load_state_dict(state)  # rebinds every p.data
    assert_jit_equals_eager(sgd, {10: reload})


@pytest.mark.parametrize("make_opt", [sgd, adam], ids=["sgd", "adam"])
def test_optimizer_state_loaded_after_capture_reaches_replays(make_opt):
    saved = {}

    def save(model, opt):
        saved["state"] = opt.state_dict()

    def load(model, opt):
        opt.load_state_dict(saved["state"])  # back to step 5's momentum / m, v and t
    fn = assert_jit_equals_eager(make_opt, {5: save, 12: load})
    assert fn.recaptures == 0


def test_live_scalar_arithmetic_follows_its_getter():
    group = {"lr": 0.1, "wd": 0.01}
    with collect_guards(live=True):
        lr = live(group["lr"], lambda: group["lr"])
        wd = live(group["wd"], lambda: group["wd"])
    decay, neg, ratio = 1 - lr * wd, -lr, 2.0 / lr ** 2
    assert isinstance(decay, LiveScalar) and decay == 1 - 0.1 * 0.01
    group.update(lr=0.3, wd=0.5)
    assert decay.getter() == 1 - 0.3 * 0.5
    assert neg.getter() == -0.3
    assert ratio.getter() == 2.0 / 0.3 ** 2
    assert live(0.5, lambda: 0.5) == 0.5 and type(live(0.5, lambda: 0.5)) is float  # eager


def test_live_scalar_may_not_become_plain():
    group = {"lr": 0.1}
    calls = []

    def fn(x):
        calls.append(1)
        # a Python number that is live in one capture and plain in the next
        lr = live(group["lr"], lambda: group["lr"]) if len(calls) % 2 else group["lr"]
        return x * lr
    f = ndl.jit(fn)
    with pytest.raises(ndl.JitError, match="live scalar in one capture"):
        for _ in range(4):
            f(ndl.Tensor(np.ones(3, dtype=np.float32), device=DEVICE))


def test_step_that_sets_train_mode_itself_replays_after_one_eager_call():
    np.random.seed(0)
    model = make_model()
    x = ndl.Tensor(np.random.randn(8, 3, 4).astype(np.float32), device=DEVICE,
                   requires_grad=False)

    def step(x):
        model.train()
        return model(x)
    f = ndl.jit(step)
    for _ in range(4):
        f(x)
    model.eval()  # an evaluation between epochs
    f(x)  # the guard fails: eager, in train mode again
    assert f.recaptures == 1 and f.replaying(x)
    assert len(next(iter(f._cache.values()))) == 1  # no second capture of the same state


# ------------------------------------------------------------------ host ops
def cumulative_max(values):
    return [np.maximum.accumulate(values.reshape(-1))]


def host_step(x):
    data = (x * 3.0).realize_cached_data()  # a temporary read by the host op
    out = data.device.empty(data.shape)
    host_op(cumulative_max, [data], [out])
    return ndl.Tensor.make_const(out) + 1.0


def test_host_op_runs_again_in_every_replay():
    f = ndl.jit(host_step)
    rng = np.random.default_rng(0)
    for i in range(6):
        x = rng.standard_normal(7).astype(np.float32)
        got = f(ndl.Tensor(x, device=DEVICE)).numpy()
        np.testing.assert_array_equal(got, np.maximum.accumulate(x * np.float32(3)) + 1,
                                      err_msg=f"call {i}")
    assert f.replaying(ndl.Tensor(x, device=DEVICE))


def test_host_op_bad_outputs():
    a = ndl.cpu().full((2, 3), 1.0)
    with pytest.raises(ValueError, match="host_op: outputs must be compact"):
        host_op(cumulative_max, [a], [a.permute((1, 0))])
    with pytest.raises(ValueError, match="host_op: the function returned 1 arrays for 2"):
        host_op(cumulative_max, [a], [a, a])
    with pytest.raises(ValueError, match=r"host_op: a result of 6 values for an output of "
                                         r"shape \(2,\)"):
        host_op(cumulative_max, [a], [ndl.cpu().empty((2,))])
