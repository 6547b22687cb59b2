"""The conv ops keep no state: an op object holds its constructor arguments only, no array
outlives the graph that uses it, and gradients (of gradients too) come from node.inputs alone.
Values are checked against torch's first and second derivatives."""
import gc
import inspect
import weakref

import numpy as np
import pytest

import needle as ndl
from needle.autograd import find_topo_sort
from needle.ops import ops_conv
from needle.testing import assert_close

torch = pytest.importorskip("torch")

CONV_OPS = (ops_conv.Conv, ops_conv.ConvTranspose, ops_conv.ConvWeightGrad, ops_conv.Compact)


def T(x, device, requires_grad=True):
    return ndl.Tensor(np.asarray(x, dtype=np.float32), device=device, requires_grad=requires_grad)


def _conv_ops(*roots):
    return [n.op for n in find_topo_sort(list(roots)) if isinstance(n.op, CONV_OPS)]


def _assert_only_constructor_arguments(op):
    allowed = set(inspect.signature(type(op).__init__).parameters) - {"self"}
    fields = vars(op)
    assert set(fields) <= allowed, f"{type(op).__name__} holds {set(fields) - allowed}"
    for name, value in fields.items():
        assert isinstance(value, (int, tuple)), f"{type(op).__name__}.{name} = {value!r}"


@pytest.mark.parametrize("create_graph", [False, True])
def test_conv_ops_hold_only_their_constructor_arguments(device, create_graph):
    x = T(np.random.randn(2, 5, 5, 4), device)
    w = T(np.random.randn(3, 3, 2, 6), device)
    wt = T(np.random.randn(3, 3, 6, 2), device)
    y = ndl.conv(x, w, stride=2, padding=1, groups=2)
    out = ndl.conv_transpose(y, wt, stride=2, padding=1, output_padding=(0, 0))
    out.backward(T(np.random.randn(*out.shape), device), create_graph=create_graph)
    grads = [t.grad for t in (x, w, wt, y) if t.grad is not None and t.grad.op is not None]
    ops = _conv_ops(out, *grads)
    kinds = {type(op) for op in ops}
    assert {ops_conv.Conv, ops_conv.ConvTranspose} <= kinds
    if create_graph:  # the gradient graph holds the weight-gradient and the shared Compact node
        assert {ops_conv.ConvWeightGrad, ops_conv.Compact} <= kinds
    for op in ops:
        _assert_only_constructor_arguments(op)


@pytest.mark.parametrize("create_graph", [False, True])
def test_no_array_outlives_the_graph_after_backward(device, create_graph):
    """Without the cycle collector: once the output, the gradients and the intermediate are
    dropped, the conv's input data is freed (no op object holds it)."""
    x = T(np.random.randn(2, 6, 6, 3), device)
    w = T(np.random.randn(3, 3, 3, 4), device)
    gc.collect()
    gc.disable()
    try:
        h = x * 2.0  # an intermediate: only the graph holds it once `h` is dropped
        data = weakref.ref(h.cached_data)
        y = ndl.conv(h, w, padding=1)
        y.backward(T(np.random.randn(*y.shape), device), create_graph=create_graph)
        del h, y
        if create_graph:  # differentiable gradients point back into the graph
            x.grad = w.grad = None
        assert data() is None
    finally:
        gc.enable()


def test_both_conv_gradients_read_one_compact_out_grad(device):
    """The copy of a permuted out_grad that both gradients read is one visible graph node."""
    x, w = T(np.random.randn(2, 5, 5, 3), device), T(np.random.randn(3, 3, 3, 4), device)
    y = ndl.conv(x, w, stride=2, padding=1)
    # N x H x W x C as a view of N x C x H x W; requiring grad, so the gradients are graph nodes
    g = ops_conv.permute(T(np.random.randn(2, 4, 3, 3), device), (0, 2, 3, 1))
    assert not g.cached_data.is_compact()
    y.backward(g, create_graph=True)
    assert isinstance(x.grad.op, ops_conv.ConvTranspose)
    assert isinstance(w.grad.op, ops_conv.ConvWeightGrad)
    shared = x.grad.inputs[0]
    assert shared is w.grad.inputs[1] and isinstance(shared.op, ops_conv.Compact)
    assert shared.cached_data.is_compact()
    np.testing.assert_array_equal(shared.numpy(), g.numpy())


def _torch_nhwc(fn, *arrays):
    """Tensors requiring grad, and fn's NHWC output from NHWC inputs / K.. x A x B weights."""
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    return ts, fn(*ts)


@pytest.mark.parametrize("data_batch", [False, True])
def test_conv_double_backward_matches_torch(device, data_batch):
    """Gradient of a gradient through conv with create_graph=True (a data batch's deferred
    input gradient included) against torch's double backward."""
    x, w = np.random.randn(2, 7, 6, 3), np.random.randn(3, 3, 3, 5)
    go, u, v = np.random.randn(2, 4, 3, 5), np.random.randn(*x.shape), np.random.randn(*w.shape)
    (xt, wt, gt), yt = _torch_nhwc(lambda a, b, c: torch.nn.functional.conv2d(
        a.permute(0, 3, 1, 2), b.permute(3, 2, 0, 1), stride=2, padding=1).permute(0, 2, 3, 1),
        x, w, go)
    dx, dw = torch.autograd.grad(yt, (xt, wt), gt, create_graph=True)
    ((dx * torch.tensor(u)).sum() + (dw * torch.tensor(v)).sum()).backward()
    X, W, G = T(x, device, requires_grad=not data_batch), T(w, device), T(go, device)
    ndl.conv(X, W, stride=2, padding=1).backward(G, create_graph=True)
    assert_close(X.grad, dx.detach().numpy(), rtol=1e-4, atol=1e-4, what="dx")
    ((X.grad * T(u, device)).sum() + (W.grad * T(v, device)).sum()).backward()
    for name, ours, ref in [("x", X, xt), ("w", W, wt), ("out_grad", G, gt)]:
        assert_close(ours.grad, ref.grad.numpy(), rtol=1e-4, atol=1e-3, what=f"d2/d{name}")


def test_conv_transpose_double_backward_matches_torch(device):
    y, w = np.random.randn(2, 3, 4, 4), np.random.randn(3, 3, 4, 2)
    go = np.random.randn(2, 6, 8, 2)
    u, v = np.random.randn(*y.shape), np.random.randn(*w.shape)
    (yt, wt, gt), ot = _torch_nhwc(lambda a, b, c: torch.nn.functional.conv_transpose2d(
        a.permute(0, 3, 1, 2), b.permute(2, 3, 0, 1), stride=2, padding=1,
        output_padding=1).permute(0, 2, 3, 1), y, w, go)
    dy, dw = torch.autograd.grad(ot, (yt, wt), gt, create_graph=True)
    ((dy * torch.tensor(u)).sum() + (dw * torch.tensor(v)).sum()).backward()
    Y, W, G = T(y, device), T(w, device), T(go, device)
    ndl.conv_transpose(Y, W, stride=2, padding=1, output_padding=1).backward(G, create_graph=True)
    ((Y.grad * T(u, device)).sum() + (W.grad * T(v, device)).sum()).backward()
    for name, ours, ref in [("y", Y, yt), ("w", W, wt), ("out_grad", G, gt)]:
        assert_close(ours.grad, ref.grad.numpy(), rtol=1e-4, atol=1e-3, what=f"d2/d{name}")
