"""ndl.jit: a jitted training run equals the eager run bit for bit; misuse raises JitError."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import needle as ndl
from needle import nn
from needle.autograd import BACKEND

from apps import train as train_app
from apps.models import LeNet, ResNet9

pytestmark = pytest.mark.skipif(BACKEND != "nd", reason="ndl.jit captures NDArray backend calls")

DEVICE = ndl.cpu()


def mlp(device):
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16, device=device), nn.ReLU(),
                         nn.Dropout(0.3), nn.Linear(16, 5, device=device))


def batches(shape, classes, steps, seed=1, sizes=None):
    """(x, y) numpy batches; `sizes` cycles through batch sizes (a partial last batch)."""
    rng = np.random.default_rng(seed)
    for i in range(steps):
        n = shape[0] if sizes is None else sizes[i % len(sizes)]
        yield (rng.standard_normal((n,) + shape[1:]).astype(np.float32),
               rng.integers(0, classes, n).astype(np.float32))


def train(make_model, make_opt, data, use_jit, replay_after=3, device=None, inspect=None):
    """Losses and final state (parameters, BatchNorm buffers, optimizer step count);
    inspect(jitted step, x, y) is called after the last jitted step."""
    device = device or DEVICE
    np.random.seed(0)  # same initial weights and dropout draws in both runs
    model = make_model(device)
    opt = make_opt(model.parameters())
    model.train()

    def step(x, y):
        opt.reset_grad()
        loss = ndl.ops.softmax_cross_entropy(model(x), y)
        loss.backward(create_graph=False)
        opt.step()
        return loss

    fn = ndl.jit(step) if use_jit else step
    losses = []
    for x, y in data:
        x = ndl.Tensor(x, device=device, requires_grad=False)
        y = ndl.Tensor.from_host(y, device=device)
        losses.append(fn(x, y).numpy())
        if use_jit and len(losses) > replay_after:
            assert fn.replaying(x, y), f"step {len(losses)} did not replay"
    if use_jit and inspect is not None:
        inspect(fn, x, y)
    return losses, model.state_dict(), getattr(opt, "t", None)


def assert_same_run(make_model, make_opt, shape, classes, steps, sizes=None, device=None,
                    inspect=None):
    eager = train(make_model, make_opt, batches(shape, classes, steps, sizes=sizes), False,
                  device=device)
    # each signature: an eager call, two captures, then replays
    replay_after = 3 * len(sizes) if sizes else 3
    jitted = train(make_model, make_opt, batches(shape, classes, steps, sizes=sizes), True,
                   replay_after, device, inspect)
    for i, (a, b) in enumerate(zip(eager[0], jitted[0])):
        np.testing.assert_array_equal(b, a, err_msg=f"loss of step {i}")
    assert eager[1].keys() == jitted[1].keys()
    for name, value in eager[1].items():
        np.testing.assert_array_equal(jitted[1][name], value, err_msg=name)
    assert eager[2] == jitted[2]


def sgd(params):
    return ndl.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-4)


def adam(params):
    return ndl.optim.Adam(params, lr=0.01, weight_decay=1e-4)


def sgd_torch_nesterov(params):
    return ndl.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)


def sgd_torch_plain(params):  # torch mode without momentum: no buffer
    return ndl.optim.SGD(params, lr=0.05, dampening=0.0, weight_decay=1e-4)


@pytest.mark.parametrize("make_opt", [sgd, sgd_torch_nesterov, sgd_torch_plain, adam],
                         ids=["sgd_momentum", "sgd_torch_nesterov", "sgd_torch_plain", "adam"])
def test_mlp_with_dropout_bit_exact(make_opt):
    assert_same_run(mlp, make_opt, (8, 3, 4), 5, 50)


def test_lenet_bit_exact():
    assert_same_run(lambda d: LeNet(device=d), sgd, (2, 1, 28, 28), 10, 50)


def test_resnet9_batchnorm_bit_exact():
    assert_same_run(lambda d: ResNet9(device=d), sgd, (2, 3, 16, 16), 10, 50)


def test_partial_last_batch_is_a_second_signature():
    # 10 samples in batches of 4: 4, 4, 2, 4, 4, 2, ... (two signatures, both replayed)
    assert_same_run(mlp, adam, (4, 3, 4), 5, 30, sizes=(4, 4, 2))


def test_adam_step_count_advances_in_replays():
    _, _, t = train(mlp, adam, batches((4, 3, 4), 5, 8), True)
    assert t == 8


def test_dropout_draws_fresh_numbers_each_replay():
    x = ndl.Tensor(np.ones((64,), dtype=np.float32), device=DEVICE, requires_grad=False)
    drop = nn.Dropout(0.5)

    def fn(x):
        return drop(x)

    outs = {}
    for name, f in (("eager", fn), ("jit", ndl.jit(fn))):
        np.random.seed(3)
        outs[name] = [f(x).numpy() for _ in range(6)]
    for a, b in zip(outs["eager"], outs["jit"]):
        np.testing.assert_array_equal(b, a)
    assert not np.array_equal(outs["jit"][4], outs["jit"][5])  # replays 4 and 5 differ


def test_results_are_not_overwritten_by_later_replays():
    f = ndl.jit(lambda x: x * 2.0)
    results = [f(ndl.Tensor([float(i)], device=DEVICE)) for i in range(6)]
    assert [r.numpy()[0] for r in results] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]


def test_capture_leaves_the_device_table_untouched():
    before = dict(DEVICE.__dict__)
    f = ndl.jit(lambda x: ndl.exp(x + 1.0))
    for _ in range(4):
        f(ndl.Tensor([1.0], device=DEVICE))
    assert dict(DEVICE.__dict__) == before
    with pytest.raises(ZeroDivisionError):
        g = ndl.jit(lambda x: x + 1 / 0)
        for _ in range(3):
            g(ndl.Tensor([1.0], device=DEVICE))
    assert dict(DEVICE.__dict__) == before


def test_temporaries_share_buffers():
    np.random.seed(0)
    model = ResNet9(device=DEVICE)
    f = ndl.jit(lambda x: model(x).sum())
    for _ in range(4):
        f(ndl.Tensor(np.random.randn(2, 3, 16, 16), device=DEVICE, requires_grad=False))
    ((entry,),) = f._cache.values()
    mem = entry.program.memory
    assert mem["buffers"] < mem["temporaries"], mem


def test_data_batches_are_read_in_place_and_other_inputs_copied():
    """A compact batch without gradients is read where it lies, by the captures and the
    replays (no copy: a jitted step peaks no higher than an eager one); a transposed batch,
    an input with gradients and one tensor passed twice are copied. Results equal eager's."""
    rng = np.random.default_rng(3)
    w = ndl.Tensor(rng.standard_normal((4, 3)).astype(np.float32), device=DEVICE)

    def f(x, y):
        rows = ndl.ops.broadcast_to(ndl.ops.summation(y, axes=(1,)).reshape((5, 1)), (5, 3))
        return ndl.ops.relu(x @ w) * 2.0 + rows

    fn = ndl.jit(f)

    def batch(transposed=False, grad=False):
        data = rng.standard_normal((4, 5) if transposed else (5, 4)).astype(np.float32)
        t = ndl.Tensor(data, device=DEVICE, requires_grad=grad)
        return ndl.ops.transpose(t).detach() if transposed else t

    for i in range(8):
        x, y = batch(transposed=i in (5, 6)), batch()
        np.testing.assert_array_equal(fn(x, y).numpy(), f(x, y).numpy())
        slots = next(iter(fn._cache.values()))[0].program
        if slots is not None:
            inputs = slots.inputs
            assert (inputs.current[0] is x.realize_cached_data()._handle) == (i not in (5, 6))
            assert inputs.current[1] is y.realize_cached_data()._handle
    g = ndl.jit(f)
    for _ in range(5):
        x = batch(grad=True)
        np.testing.assert_array_equal(g(x, x).numpy(), f(x, x).numpy())
    program = next(iter(g._cache.values()))[0].program
    assert program.inputs.in_place == [False, False]
    assert all(h is not x.realize_cached_data()._handle for h in program.inputs.current)


def test_small_cache_recaptures_correctly():
    f = ndl.jit(lambda x: x.sum(), max_cache=1)
    for i in range(12):
        n = 2 + i % 2
        out = f(ndl.Tensor(np.full(n, float(i)), device=DEVICE))
        assert out.numpy().item() == n * i


# ------------------------------------------------------------------ misuse
def call_until_replay(f, make_args, calls=4):
    for _ in range(calls):
        f(*make_args())


def tensor():
    return ndl.Tensor(np.random.randn(3).astype(np.float32), device=DEVICE)


def test_host_read_inside_raises():
    def fn(x):
        y = x * 2.0
        return y * float(y.numpy()[0])
    with pytest.raises(ndl.JitError, match="reads a device array to the host"):
        call_until_replay(ndl.jit(fn), lambda: (tensor(),))


def test_python_if_on_data_raises():
    def fn(x):
        return x + 1.0 if (x.sum().numpy() > 0).item() else x - 1.0
    with pytest.raises(ndl.JitError, match="reads a device array to the host"):
        call_until_replay(ndl.jit(fn), lambda: (tensor(),))


def test_changing_call_sequence_raises():
    calls = []

    def fn(x):
        calls.append(1)
        return ndl.exp(x) if len(calls) % 2 else ndl.log(x)
    with pytest.raises(ndl.JitError, match="call sequence changed"):
        call_until_replay(ndl.jit(fn), lambda: (tensor(),))


def test_changing_python_scalar_raises():
    counter = [0]

    def fn(x):
        counter[0] += 1
        return x * float(counter[0])
    with pytest.raises(ndl.JitError, match="changed from 2.0 to 3.0"):
        call_until_replay(ndl.jit(fn), lambda: (tensor(),))


def test_changing_host_constant_raises():
    def fn(x):
        noise = ndl.Tensor(np.random.randn(3), device=DEVICE)  # a host-side draw
        return x + noise
    with pytest.raises(ndl.JitError, match="uploads host data"):
        call_until_replay(ndl.jit(fn), lambda: (tensor(),))


def test_bad_return_and_argument_types():
    with pytest.raises(ndl.JitError, match="returned a float"):
        call_until_replay(ndl.jit(lambda x: 1.0), lambda: (tensor(),))
    with pytest.raises(TypeError, match="neither a Tensor nor hashable"):
        ndl.jit(lambda x, opts: x)(tensor(), [1, 2])
    with pytest.raises(TypeError, match="expected a function"):
        ndl.jit(3)


def test_nested_capture_raises():
    inner = ndl.jit(lambda x: x + 1.0)

    def outer(x):
        return inner(x) * 2.0
    with pytest.raises(ndl.JitError, match="while another one was being captured"):
        call_until_replay(ndl.jit(outer), lambda: (tensor(),))


def test_rebound_state_replays_and_a_second_signature_fails_loudly():
    def run(f, tags):
        np.random.seed(0)
        w = ndl.Tensor(np.ones(3, dtype=np.float32), device=DEVICE)

        def step(x, tag=0):
            w.data = (w * 0.5 + x).detach()  # rebinds w to a new buffer each call
            return w * 1.0
        g = f(step)
        return [g(ndl.Tensor(np.full(3, i, dtype=np.float32), device=DEVICE), tag=t).numpy()
                for i, t in enumerate(tags)]
    tags = [0] * 8
    eager, jitted = run(lambda s: s, tags), run(ndl.jit, tags)
    for a, b in zip(eager, jitted):
        np.testing.assert_array_equal(b, a)
    with pytest.raises(ndl.JitError, match="was rebound elsewhere"):
        run(ndl.jit, [0] * 4 + [1] * 4 + [0])


def test_import_leaves_the_environment_alone():
    # the CPU backend's thread pool needs no environment setting (tests/test_threads.py)
    code = ("import os, needle as ndl; ndl.cpu().Array(1); "
            "print('GOMP_SPINCOUNT' in os.environ, 'OMP_WAIT_POLICY' in os.environ)")
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("schedule", ["none", "onecycle"])
def test_train_app_jit_equals_no_jit(tmp_path, capsys, schedule):
    # 1,438 images: 11 batches of 128 (replayed from the 4th) and one of 30; onecycle changes
    # the lr and momentum every step (live in the replays)
    common = ["--model", "lenet", "--dataset", "digits", "--batch-size", "128", "--epochs", "1",
              "--optimizer", "sgd", "--schedule", schedule]
    curves = {}
    for flag in ("", "--no-jit"):
        out = tmp_path / (flag or "jit")
        assert train_app.main(common + ["--out", str(out)] + ([flag] if flag else [])) == 0
        capsys.readouterr()
        curves[flag] = [e["step_losses"] for e in
                        json.loads((out / "metrics.json").read_text())["epochs"]]
    assert curves[""] == curves["--no-jit"]  # bit for bit
