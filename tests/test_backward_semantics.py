"""What a PyTorch user relies on (contract §4.2, §7.1, §12): plain backward() is lean (no
reference cycles) yet keeps the course's `x.grad.backward()`; Parameters accumulate .grad;
tied weights count once; grad mode is per thread; a disabled device raises AttributeError;
post-accumulate-grad hooks."""
import gc
import subprocess
import sys
import threading
import weakref

import numpy as np
import pytest

import needle as ndl
import needle.backend_ndarray as nd
from needle import autograd, nn, ops
from needle.testing import assert_close


def randn(*shape):
    return np.random.randn(*shape).astype(np.float32)


def small_conv_step(device, **backward_kwargs):
    """One forward/backward of a conv + BN + softmax-loss net; returns (model, loss, probe)."""
    model = nn.Sequential(nn.Conv(3, 4, 3, device=device), nn.BatchNorm2d(4, device=device),
                          nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5, device=device))
    x = ndl.Tensor(randn(2, 3, 6, 6), device=device, requires_grad=False)
    y = ndl.Tensor(np.array([1.0, 3.0], dtype=np.float32), device=device, requires_grad=False)
    hidden = model.modules[0](x)
    probe = weakref.ref(hidden.cached_data)
    out = model.modules[4](model.modules[3](model.modules[2](model.modules[1](hidden))))
    loss = nn.SoftmaxLoss()(out, y)
    loss.backward(**backward_kwargs)
    return model, loss, probe


# ---------------------------------------------------------------------------------- lean default
def test_plain_backward_leaves_no_reference_cycles(device):
    gc.collect()
    gc.disable()
    try:
        model, loss, probe = small_conv_step(device)
        assert model.parameters()[0].grad is not None
        del loss
        assert probe() is None  # the activations went with the loss, by reference counting
        assert gc.collect() == 0  # and nothing cyclic was left for the collector
    finally:
        gc.enable()


def test_plain_and_create_graph_give_identical_values(device):
    np.random.seed(1)
    model, _, _ = small_conv_step(device)
    plain = [p.grad.numpy() for p in model.parameters()]
    np.random.seed(1)
    model, _, _ = small_conv_step(device, create_graph=True)
    for want, p in zip(plain, model.parameters()):
        assert p.grad.requires_grad
        # BatchNorm takes an array path without a graph: equal up to float32 rounding
        assert_close(p.grad, want, rtol=1e-5, atol=1e-6)


def test_second_order_pattern_needs_the_graph_alive(device):
    x2 = ndl.Tensor([6.0], device=device)
    x3 = ndl.Tensor([0.0], device=device)
    y = x2 * x2 + x2 * x3
    y.backward()
    grad_x2, grad_x3 = x2.grad, x3.grad
    assert not grad_x2.requires_grad  # a constant, yet differentiable on demand
    del y  # the output backward() was called on: the graph goes with it
    with pytest.raises(RuntimeError, match=r"create_graph=True"):
        grad_x2.backward()
    assert_close(grad_x2, [12.0])
    assert_close(grad_x3, [6.0])


def test_second_order_of_an_intermediate_and_with_out_grad(device):
    x = ndl.Tensor(randn(3), device=device)
    h = ops.exp(x)
    y = (h * h).sum()
    y.backward()
    g, h_grad = x.grad, h.grad  # 2 exp(2x) and 2h
    h_grad.backward()  # d/dx of 2 exp(x); overwrites .grad on every node of that graph
    x64 = x.numpy().astype(np.float64)
    assert_close(x.grad, 2 * np.exp(x64), rtol=1e-5)
    g.backward(ndl.Tensor(np.array([1.0, 2.0, 3.0], dtype=np.float32), device=device))
    assert_close(x.grad, 4 * np.exp(2 * x64) * [1.0, 2.0, 3.0], rtol=1e-5)


def test_ops_on_a_plain_gradient_refuse_backward(device):
    x = ndl.Tensor(randn(3), device=device)
    y = (x * x).sum()
    y.backward()
    penalty = (x.grad * x.grad).sum()  # a constant: nothing would reach x
    with pytest.raises(RuntimeError, match=r"create_graph=True"):
        penalty.backward()
    y.backward(create_graph=True)  # the way to do it
    (x.grad * x.grad).sum().backward()
    assert_close(x.grad, 8 * x.numpy(), rtol=1e-5)  # d/dx sum((2x)^2)


# ---------------------------------------------------------------------------------- accumulation
def test_parameter_grad_accumulates_plain_tensor_overwrites(device):
    p = nn.Parameter(ndl.Tensor([1.0, 2.0, 3.0], device=device))
    t = ndl.Tensor([1.0, 2.0, 3.0], device=device)
    for _ in range(2):
        (p * 2.0).sum().backward()
        (t * 2.0).sum().backward()
    assert_close(p.grad, [4.0, 4.0, 4.0])  # torch's accumulation
    assert_close(t.grad, [2.0, 2.0, 2.0])  # the course's overwrite
    with pytest.raises(RuntimeError, match="accumulated"):
        p.grad.backward()


def test_zero_grad_of_module_and_optimizer(device):
    model = nn.Linear(3, 2, device=device)
    x = ndl.Tensor(randn(4, 3), device=device, requires_grad=False)
    model(x).sum().backward()
    first = model.weight.grad.numpy()
    model(x).sum().backward()
    assert_close(model.weight.grad, 2 * first, rtol=1e-6)
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model(x).sum().backward()
    assert_close(model.weight.grad, first, rtol=1e-6)
    opt = ndl.optim.SGD(model.parameters(), lr=0.1)
    opt.zero_grad()
    assert model.weight.grad is None and model.bias.grad is None


def test_accumulation_matches_torch():
    torch = pytest.importorskip("torch")
    w = randn(3, 2)
    xs = [randn(4, 3), randn(4, 3)]
    p = nn.Parameter(ndl.Tensor(w))
    tp = torch.tensor(w, requires_grad=True)
    for x in xs:
        ops.tanh(ndl.Tensor(x, requires_grad=False) @ p).sum().backward()
        torch.tanh(torch.tensor(x) @ tp).sum().backward()
    assert_close(p.grad, tp.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_accumulation_with_create_graph_stays_differentiable(device):
    p = nn.Parameter(ndl.Tensor([2.0], device=device))
    (p * p).sum().backward(create_graph=True)
    (p * p * p).sum().backward(create_graph=True)
    g = p.grad  # 2p + 3p^2 = 16, as a graph
    assert_close(g, [16.0])
    p.grad = None
    g.backward()
    assert_close(p.grad, [2.0 + 6 * 2.0])


# ---------------------------------------------------------------------------------- hooks
def test_post_accumulate_grad_hook(device):
    p = nn.Parameter(ndl.Tensor([1.0, 2.0], device=device))
    q = nn.Parameter(ndl.Tensor([3.0, 4.0], device=device))
    seen = []
    handle = p.register_post_accumulate_grad_hook(lambda t: seen.append((t, t.grad.numpy())))
    for _ in range(2):
        (p * q).sum().backward()
    assert [t is p for t, _ in seen] == [True, True]
    assert_close(seen[0][1], [3.0, 4.0])
    assert_close(seen[1][1], [6.0, 8.0])  # the accumulated gradient
    handle.remove()
    handle.remove()  # idempotent
    (p * q).sum().backward()
    assert len(seen) == 2
    with pytest.raises(RuntimeError, match="leaf"):  # RuntimeError, as torch
        (p * 2.0).register_post_accumulate_grad_hook(print)
    with pytest.raises(TypeError, match="callable"):
        p.register_post_accumulate_grad_hook("not a function")
    with pytest.raises(RuntimeError, match="require"):
        ndl.Tensor([1.0], device=device, requires_grad=False).register_post_accumulate_grad_hook(
            print)


def test_hooks_run_in_the_callers_grad_mode(device):
    p = nn.Parameter(ndl.Tensor([1.0], device=device))
    modes = []
    p.register_post_accumulate_grad_hook(lambda t: modes.append(autograd.is_grad_enabled()))
    (p * 2.0).sum().backward()  # the pass itself runs under no_grad
    with ndl.no_grad():
        (p * 2.0).sum()
    (p * 3.0).sum().backward(create_graph=True)
    assert modes == [True, True] and autograd.is_grad_enabled()


def test_post_accumulate_grad_hook_matches_torch_call_count():
    torch = pytest.importorskip("torch")
    w = randn(2)
    p, tp = nn.Parameter(ndl.Tensor(w)), torch.tensor(w, requires_grad=True)
    ours, theirs = [], []
    p.register_post_accumulate_grad_hook(lambda t: ours.append(t.grad.numpy().copy()))
    tp.register_post_accumulate_grad_hook(lambda t: theirs.append(t.grad.numpy().copy()))
    (p * p + p * 3.0).sum().backward()  # p used twice: still one call, after the sum
    (tp * tp + tp * 3.0).sum().backward()
    assert len(ours) == len(theirs) == 1
    assert_close(ours[0], theirs[0], rtol=1e-6)


# ---------------------------------------------------------------------------------- tied weights
class Tied(nn.Module):
    def __init__(self, device=None):
        super().__init__()
        self.enc = nn.Linear(3, 3, bias=False, device=device)
        self.dec = nn.Linear(3, 3, bias=False, device=device)
        self.dec.weight = self.enc.weight
        self.layers = [self.enc, self.dec]  # the same modules reached again

    def forward(self, x):
        return self.dec(self.enc(x))


def test_tied_weight_is_listed_and_updated_once(device):
    model = Tied(device)
    assert len(model.parameters()) == 1
    assert [n for n, _ in model.named_parameters()] == ["enc.weight"]
    w0 = model.enc.weight.numpy()
    x = ndl.Tensor(randn(2, 3), device=device, requires_grad=False)
    model(x).sum().backward()
    g = model.enc.weight.grad.numpy()
    ndl.optim.SGD(model.parameters(), lr=0.1).step()
    assert_close(model.enc.weight, w0 - 0.1 * g, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------- threads
def test_grad_mode_is_per_thread():
    w = ndl.Tensor(randn(4))
    results = {}

    def other():
        results["enabled"] = autograd.is_grad_enabled()
        results["tracked"] = (w * 2.0).requires_grad

    with ndl.no_grad():
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert not (w * 2.0).requires_grad
    assert results == {"enabled": True, "tracked": True}


def test_no_grad_in_one_thread_never_detaches_another():
    w = ndl.Tensor(randn(4))
    stop = threading.Event()

    def eval_loop():
        while not stop.is_set():
            with ndl.no_grad():
                (w * 2.0).sum()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so the loops interleave
    thread = threading.Thread(target=eval_loop)
    thread.start()
    try:
        detached = sum(not (w * 3.0).requires_grad for _ in range(3000))
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
    assert detached == 0


def _make_model(seed):
    np.random.seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _train(model, seed, steps=15):
    rng = np.random.default_rng(seed)
    opt = ndl.optim.SGD(model.parameters(), lr=0.1)
    x = ndl.Tensor(rng.standard_normal((16, 4)).astype(np.float32), requires_grad=False)
    y = ndl.Tensor(rng.integers(0, 2, 16).astype(np.float32), requires_grad=False)
    for _ in range(steps):
        opt.reset_grad()
        nn.SoftmaxLoss()(model(x), y).backward()  # backward's no_grad must stay in this thread
        opt.step()
    return [p.numpy() for p in model.parameters()]


def test_training_beside_an_evaluating_thread_matches_serial():
    serial = _train(_make_model(1), 1)
    model, other = _make_model(1), _make_model(2)  # drawn here: the global RNG is shared
    x = ndl.Tensor(randn(16, 4), requires_grad=False)
    stop = threading.Event()

    def evaluate():
        while not stop.is_set():
            with ndl.no_grad():
                other(x)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    thread = threading.Thread(target=evaluate)
    thread.start()
    try:
        got = _train(model, 1)
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
    for a, b in zip(got, serial):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------- devices
def test_disabled_device_raises_attribute_error():
    dev = nd.cuda()
    if dev.enabled():
        pytest.skip("cuda is enabled here: nothing to look up on a disabled device")
    with pytest.raises(nd.DeviceNotEnabledError, match=r"cuda\(\) is not enabled.*'ewise_add'"):
        dev.ewise_add
    assert issubclass(nd.DeviceNotEnabledError, AttributeError)
    assert getattr(dev, "Array", None) is None and not hasattr(dev, "__name__")


COURSE_STYLE_TEST = """
import needle as ndl
import pytest

@pytest.mark.parametrize("device", [ndl.cpu(), ndl.cuda()])
def test_runs(device):
    if not device.enabled():
        pytest.skip("No GPU")
    assert (ndl.Tensor([1.0], device=device) * 2.0).numpy()[0] == 2.0
"""


def test_course_style_device_parametrize_collects(tmp_path):
    path = tmp_path / "test_course_style.py"
    path.write_text(COURSE_STYLE_TEST)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(path)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
