"""softmax / log_softmax over any axis and the fused softmax_cross_entropy: numpy loops, the
composed max/exp/sum version, finite differences, large logits, torch."""

import numpy as np
import pytest

import needle as ndl
import needle.backend_ndarray as nd
import needle.nn as nn
from needle.testing import assert_close, gradient_check

from conv_reference import log_softmax_loops, softmax_loops


def T(x, device, requires_grad=True):
    return ndl.Tensor(np.asarray(x, dtype=np.float32), device=device, requires_grad=requires_grad)


SHAPES_AXES = [((5,), 0), ((3, 7), 1), ((3, 7), 0), ((2, 3, 4), 1), ((2, 3, 4), -1),
               ((2, 1, 3, 2), 2)]


@pytest.mark.parametrize("shape,axis", SHAPES_AXES)
def test_softmax_forward_and_gradient(device, shape, axis):
    x = np.random.randn(*shape) * 3
    assert_close(ndl.softmax(T(x, device), axis), softmax_loops(x, axis), rtol=1e-5, atol=1e-6,
                 what="softmax")
    assert_close(ndl.log_softmax(T(x, device), axis), log_softmax_loops(x, axis), rtol=1e-5,
                 atol=1e-5, what="log_softmax")
    gradient_check(ndl.softmax, T(x, device), axis=axis)
    gradient_check(ndl.log_softmax, T(x, device), axis=axis)


def test_softmax_backward_closed_form(device):
    """dx = y * (g - sum(g * y)) along the axis."""
    x, g = np.random.randn(4, 6), np.random.randn(4, 6)
    X = T(x, device)
    ndl.softmax(X, 1).backward(T(g, device))
    y = softmax_loops(x, 1)
    assert_close(X.grad, y * (g - (g * y).sum(1, keepdims=True)), rtol=1e-5, atol=1e-6,
                 what="softmax backward")


def test_softmax_double_backward(device):
    x = T(np.random.randn(3, 4), device)
    gradient_check(lambda a: ndl.softmax(a, 0) * ndl.softmax(a, 0), x)
    g = T(np.random.randn(3, 4), device)

    def grad_of_softmax(a, gg):
        (a_grad,) = ndl.ops.Softmax(1).gradient_as_tuple(gg, ndl.softmax(a, 1))
        return a_grad

    gradient_check(grad_of_softmax, x, g)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_softmax_backward_op(device, axis):
    """The fused SoftmaxBackward op: its value along any axis, and both of its gradients."""
    rng = np.random.default_rng(axis)
    y_np = softmax_loops(rng.standard_normal((3, 4, 5)), axis)
    g_np = rng.standard_normal((3, 4, 5))
    op = ndl.ops.SoftmaxBackward(axis)
    got = op(T(y_np, device), T(g_np, device))
    assert_close(got, y_np * (g_np - (g_np * y_np).sum(axis, keepdims=True)), rtol=1e-5,
                 atol=1e-6, what="SoftmaxBackward")
    gradient_check(lambda y, g: ndl.ops.SoftmaxBackward(axis)(y, g), T(y_np, device),
                   T(g_np, device))


def test_native_rows_match_composed_max_exp_sum(device):
    x = (np.random.randn(4, 5, 6) * 10).astype(np.float32)
    a = nd.array(x, device=device)
    for axis in (0, 1, 2):
        z = a - a.max(axis=axis, keepdims=True).broadcast_to(a.shape)
        e = z.exp()
        s = e.sum(axis=axis, keepdims=True).broadcast_to(a.shape)
        np.testing.assert_allclose(a.softmax(axis).numpy(), (e / s).numpy(), rtol=1e-5,
                                   atol=1e-7)
        np.testing.assert_allclose(a.log_softmax(axis).numpy(), (z - s.log()).numpy(), rtol=1e-5,
                                   atol=1e-5)


@pytest.mark.parametrize("scale", [1e4, 1e5, 1e30])
def test_large_logits_stay_finite(device, scale):
    x = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.25]]) * scale
    y = ndl.softmax(T(x, device), 1).numpy()
    ly = ndl.log_softmax(T(x, device), 1).numpy()
    assert np.isfinite(y).all() and np.isfinite(ly).all()
    assert_close(y, softmax_loops(x, 1), atol=1e-6, what="softmax of large logits")
    assert_close(ly, log_softmax_loops(x, 1), rtol=1e-6, atol=1e-6 * scale,
                 what="log_softmax of large logits")
    loss = ndl.softmax_cross_entropy(T(x, device), np.array([2, 0]))
    assert np.isfinite(loss.numpy()).all()


def test_softmax_cross_entropy(device):
    logits, y = np.random.randn(6, 5), np.array([0, 4, 2, 2, 1, 3])
    X = T(logits, device)
    loss = ndl.softmax_cross_entropy(X, y)
    expected = -log_softmax_loops(logits, 1)[np.arange(6), y].mean()
    assert loss.shape == (1,)
    assert_close(loss.numpy().reshape(()), expected, rtol=1e-5, what="loss")
    loss.backward()
    assert_close(X.grad, (softmax_loops(logits, 1) - np.eye(5)[y]) / 6, rtol=1e-5, atol=1e-6,
                 what="p - onehot")
    # agrees with the unfused SoftmaxLoss module, labels given as a float Tensor
    ref = nn.SoftmaxLoss()(T(logits, device), T(y, device, requires_grad=False))
    labels = T(y, device, requires_grad=False)
    assert_close(ndl.softmax_cross_entropy(T(logits, device), labels), ref.numpy(), rtol=1e-5,
                 what="fused vs SoftmaxLoss")
    gradient_check(lambda a: ndl.softmax_cross_entropy(a, y), T(logits, device))


def test_softmax_cross_entropy_constant_gradient_is_the_graph_one(device):
    """Plain backward() computes the gradient on arrays, without graph nodes; it must give the
    numbers of the differentiable path (create_graph=True) bit for bit, for any out_grad."""
    logits, y = np.random.randn(7, 4).astype(np.float32) * 3, np.array([0, 3, 2, 2, 1, 3, 0])
    grads = []
    for create_graph in (False, True):
        X = T(logits, device)
        loss = ndl.softmax_cross_entropy(X, y) * 2.5
        loss.backward(create_graph=create_graph)
        grads.append(X.grad.numpy())
        assert (X.grad.inputs == []) != create_graph  # a constant, or a node of the graph
    np.testing.assert_array_equal(grads[0], grads[1])


@pytest.mark.parametrize("call,exc,match", [
    (lambda X: ndl.softmax(X, 2), ValueError, "axis 2 out of range"),
    (lambda X: ndl.log_softmax(X, 5), ValueError, "out of range"),
    (lambda X: ndl.softmax(X, 1.0), TypeError, "axis must be an int"),
    (lambda X: ndl.softmax_cross_entropy(X, [0, 1]), ValueError, "2 labels"),
    (lambda X: ndl.softmax_cross_entropy(X, [0, 1, 4]), ValueError, r"in \[0, 4\)"),
    (lambda X: ndl.softmax_cross_entropy(X, [0, 1, 0.5]), ValueError, "integers"),
    (lambda X: ndl.softmax_cross_entropy(ndl.reshape(X, (12,)), [0]), ValueError, "N x K"),
])
def test_softmax_bad_input(device, call, exc, match):
    with pytest.raises(exc, match=match):
        call(T(np.zeros((3, 4)), device))


def test_softmax_modules(device):
    x = np.random.randn(2, 3, 4)
    assert_close(nn.Softmax(1)(T(x, device)), softmax_loops(x, 1), rtol=1e-5, atol=1e-6,
                 what="nn.Softmax")
    assert_close(nn.LogSoftmax()(T(x, device)), log_softmax_loops(x, -1), rtol=1e-5, atol=1e-5,
                 what="nn.LogSoftmax")


def test_softmax_against_torch(device):
    torch = pytest.importorskip("torch")
    x = np.random.randn(3, 4, 5) * 5
    for axis in (0, 1, 2):
        for ours, theirs in [(ndl.softmax, torch.softmax), (ndl.log_softmax, torch.log_softmax)]:
            xt = torch.tensor(x, requires_grad=True)
            yt = theirs(xt, axis)
            X = T(x, device)
            y = ours(X, axis)
            go = np.random.randn(*x.shape)
            yt.backward(torch.tensor(go))
            y.backward(T(go, device))
            assert_close(y, yt.detach().numpy(), rtol=1e-5, atol=1e-5, what=f"{ours.__name__}")
            assert_close(X.grad, xt.grad.numpy(), rtol=1e-4, atol=1e-5, what="grad")
    logits, y = np.random.randn(5, 4), np.array([3, 0, 1, 1, 2])
    lt = torch.tensor(logits, requires_grad=True)
    torch.nn.functional.cross_entropy(lt, torch.tensor(y)).backward()
    X = T(logits, device)
    ndl.softmax_cross_entropy(X, y).backward()
    assert_close(X.grad, lt.grad.numpy(), rtol=1e-5, atol=1e-6, what="cross entropy grad")


NP_MODE_SCRIPT = """
import numpy as np
import needle as ndl
x = ndl.Tensor(np.random.randn(3, 4))          # float64 in numpy mode
y = ndl.softmax(x, axis=0)
assert isinstance(y.cached_data, np.ndarray) and y.dtype == np.float64
e = np.exp(x.numpy() - x.numpy().max(0))
assert np.allclose(y.numpy(), e / e.sum(0))
y.backward(ndl.Tensor(np.ones((3, 4))))
assert np.allclose(x.grad.numpy(), 0)           # softmax rows sum to 1
loss = ndl.softmax_cross_entropy(x, np.array([0, 3, 1]))
assert loss.shape == ()
loss.backward()
p = np.exp(x.numpy() - x.numpy().max(1, keepdims=True))
p /= p.sum(1, keepdims=True)
assert np.allclose(x.grad.numpy(), (p - np.eye(4)[[0, 3, 1]]) / 3)
try:
    ndl.conv(ndl.Tensor(np.zeros((1, 3, 3, 1))), ndl.Tensor(np.zeros((1, 1, 1, 1))))
except TypeError as err:
    assert "NEEDLE_BACKEND=nd" in str(err)
else:
    raise AssertionError("conv accepted numpy-mode tensors")
print("np-mode softmax OK")
"""


def test_numpy_mode_softmax_and_conv_error(run_numpy_mode):
    """NEEDLE_BACKEND=np: softmax ops work on numpy arrays (float64 kept); conv says it needs
    NDArray mode instead of failing obscurely."""
    run_numpy_mode(NP_MODE_SCRIPT, "np-mode softmax OK")
