"""The fused batch-norm op against the composed formula (forward, gradients, second order)."""
import numpy as np
import pytest

import needle as ndl
from needle import ops
from needle.testing import gradient_check


def composed(x, w, b, eps):
    """BatchNorm over all axes but 1 from elementary needle ops (the contract's formula)."""
    axes = (0,) + tuple(range(2, len(x.shape)))
    cshape = (1, x.shape[1]) + (1,) * (len(x.shape) - 2)
    m = int(np.prod([x.shape[a] for a in axes]))

    def per_channel(t):
        return ops.broadcast_to(ops.reshape(t, cshape), x.shape)

    mean = ops.summation(x, axes=axes) / m
    centered = x - per_channel(mean)
    var = ops.summation(centered * centered, axes=axes) / m
    normed = centered / per_channel(ops.power_scalar(var + eps, 0.5))
    return normed * per_channel(w) + per_channel(b)


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5, 2), (2, 4, 3, 3)])
def test_batch_norm_matches_composed(device, shape):
    x_np = np.random.randn(*shape).astype(np.float32) * 3 + 1
    w_np = np.random.rand(shape[1]).astype(np.float32) + 0.5
    b_np = np.random.randn(shape[1]).astype(np.float32)
    g_np = np.random.randn(*shape).astype(np.float32)
    results = []
    for fn in (lambda x, w, b: ops.batch_norm(x, w, b, 1e-5)[0], lambda x, w, b: composed(x, w, b, 1e-5)):
        x, w, b = (ndl.Tensor(a, device=device) for a in (x_np, w_np, b_np))
        y = fn(x, w, b)
        y.backward(ndl.Tensor(g_np, device=device, requires_grad=False))
        results.append([y.numpy(), x.grad.numpy(), w.grad.numpy(), b.grad.numpy()])
    for what, got, want in zip(["forward", "grad x", "grad w", "grad b"], *results):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=what)


def test_batch_norm_statistics(device):
    x_np = np.random.randn(5, 3, 2, 2).astype(np.float32)
    x = ndl.Tensor(x_np, device=device)
    _, op = ops.batch_norm(x, ndl.init.ones(3, device=device), ndl.init.zeros(3, device=device))
    np.testing.assert_allclose(op.batch_mean.numpy(), x_np.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(op.batch_var.numpy(), x_np.var(axis=(0, 2, 3)), rtol=1e-4, atol=1e-6)


def test_batch_norm_gradient_check(device):
    x = ndl.Tensor(np.random.randn(4, 2, 3).astype(np.float32), device=device)
    w = ndl.Tensor(np.random.rand(2).astype(np.float32) + 0.5, device=device)
    b = ndl.Tensor(np.random.randn(2).astype(np.float32), device=device)

    def bn(x, w, b):
        return ops.batch_norm(x, w, b)[0]
    gradient_check(bn, x, w, b)


def test_batch_norm_second_order(device):
    """The gradient is built from needle ops: differentiate it again."""
    x_np = np.random.randn(5, 2).astype(np.float32)
    grads = []
    for fn in (lambda x, w, b: ops.batch_norm(x, w, b)[0], lambda x, w, b: composed(x, w, b, 1e-5)):
        x = ndl.Tensor(x_np, device=device)
        w = ndl.Tensor(np.array([1.5, 0.7], np.float32), device=device)
        b = ndl.Tensor(np.zeros(2, np.float32), device=device)
        y = fn(x, w, b)
        (y * y * y).sum().backward(create_graph=True)  # gx is differentiated below
        gx = x.grad
        (gx * gx).sum().backward()
        grads.append(x.grad.numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-3, atol=1e-3)


def test_batch_norm_bad_input(device):
    x = ndl.Tensor(np.ones((4, 3)), device=device)
    with pytest.raises(ValueError, match="batch_norm"):
        ops.batch_norm(x, ndl.init.ones(2, device=device), ndl.init.zeros(2, device=device))
    with pytest.raises(ValueError, match="batch_norm"):
        ops.batch_norm(ndl.Tensor(np.ones(4), device=device), ndl.init.ones(1, device=device),
                       ndl.init.zeros(1, device=device))


@pytest.mark.parametrize("shape", [(6, 4), (5, 3, 4, 2)])
def test_batch_norm_gradient_without_graph(device, shape):
    """backward(create_graph=False) takes the array path: same values as the graph path,
    constant grads; a strided input, a repeated backward and a replaced x stay correct."""
    rng = np.random.default_rng(3)
    x0 = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    w0 = rng.uniform(0.5, 1.5, shape[1]).astype(np.float32)
    b0 = rng.standard_normal(shape[1]).astype(np.float32)
    g0 = rng.standard_normal(shape).astype(np.float32)

    def grads(create_graph, transposed=False, twice=False, replace=False):
        x = ndl.Tensor(x0, device=device)
        w, b = ndl.Tensor(w0, device=device), ndl.Tensor(b0, device=device)
        inp = x
        if transposed:  # a strided (non-compact) input of the same values
            inp = ops.transpose(ndl.Tensor(x0.swapaxes(0, 1).copy(), device=device), (0, 1))
        y, _ = ops.batch_norm(inp, w, b)
        if replace:  # new values under the graph: the gradient must use them
            inp.data = ndl.Tensor(x0 * 0.5, device=device)
        g = ndl.Tensor(g0, device=device, requires_grad=False)
        y.backward(g, create_graph=create_graph)
        if twice:
            y.backward(g, create_graph=create_graph)
        if not create_graph:
            assert w.grad.op is None and b.grad.op is None
        return [t.grad.numpy() for t in (inp, w, b)]

    for kw in ({}, {"transposed": True}, {"twice": True}, {"replace": True}):
        want = grads(True, **kw)
        got = grads(False, **kw)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # and against the composed formula's gradient
    x = ndl.Tensor(x0, device=device)
    w, b = ndl.Tensor(w0, device=device), ndl.Tensor(b0, device=device)
    composed(x, w, b, 1e-5).backward(ndl.Tensor(g0, device=device), create_graph=False)
    got = grads(False)
    for a, t in zip(got, (x, w, b)):
        np.testing.assert_allclose(a, t.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_ndarray_batch_norm_errors(device):
    import needle.backend_ndarray as nd
    x = nd.array(np.ones((2, 3, 2), np.float32), device=device)
    w, b = nd.array(np.ones(3, np.float32), device=device), nd.array(np.ones(2, np.float32),
                                                                     device=device)
    with pytest.raises(ValueError, match=r"batch_norm: bias of shape \(2,\) for 3 channels"):
        x.batch_norm(w, b)
    with pytest.raises(ValueError, match=r"batch_norm: weight of shape \(2,\)"):
        x.batch_norm(b, w)
    with pytest.raises(ValueError, match=r"N x C x \.\.\. with N \* H \* W > 0"):
        nd.array(np.ones((0, 3), np.float32), device=device).batch_norm(w, w)
    out, mean, var = x.batch_norm(w, w)
    with pytest.raises(ValueError, match="batch_norm_backward: out_grad"):
        x.batch_norm_backward(out.reshape((6, 2)), w, mean, var)


@pytest.mark.parametrize("channels", [1, 7, 300])
def test_running_update_matches_array_ops(device, channels):
    """One backend call updates both running statistics with the rounding of the array ops
    running * (1 - momentum) + batch * momentum (what BatchNorm did before, four calls each)."""
    import needle.backend_ndarray as nd
    rng = np.random.default_rng(channels)
    rm, rv, mean, var = (nd.array(rng.standard_normal(channels).astype(np.float32), device=device)
                         for _ in range(4))
    momentum = 0.37
    want_m, want_v = rm * (1 - momentum) + mean * momentum, rv * (1 - momentum) + var * momentum
    rm.batch_norm_running_update(rv, mean, var, momentum)
    np.testing.assert_array_equal(rm.numpy(), want_m.numpy())
    np.testing.assert_array_equal(rv.numpy(), want_v.numpy())
    with pytest.raises(ValueError, match=r"batch_norm_running_update: var of shape \(2,\)"):
        rm.batch_norm_running_update(rv, mean, nd.array(np.ones(2, np.float32), device=device),
                                     momentum)
    if channels > 1:
        with pytest.raises(ValueError, match="running_var must be compact"):
            every_other = nd.array(np.ones(2 * channels, np.float32), device=device)[::2]
            rm.batch_norm_running_update(every_other, mean, var, momentum)


def test_running_statistics_follow_torch(device):
    """BatchNorm2d's running mean and variance after three training steps, against torch's
    (needle keeps the biased batch variance, the contract's; torch the unbiased one)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    bn = ndl.nn.BatchNorm2d(4, momentum=0.2, device=device)
    tbn = torch.nn.BatchNorm2d(4, momentum=0.2)
    for _ in range(3):
        x = rng.standard_normal((6, 4, 3, 3)).astype(np.float32) * 2 + 1
        bn(ndl.Tensor(x, device=device))
        tbn(torch.tensor(x))
    n = 6 * 3 * 3
    np.testing.assert_allclose(bn.running_mean.numpy(), tbn.running_mean.numpy(), rtol=1e-5,
                               atol=1e-6)
    # torch's running var mixes in var * n / (n - 1): undo that per step to compare
    want = np.ones(4, np.float32)
    torch_var = tbn.running_var.numpy()
    assert not np.allclose(torch_var, bn.running_var.numpy(), rtol=1e-3)
    rng = np.random.default_rng(5)
    for _ in range(3):
        x = rng.standard_normal((6, 4, 3, 3)).astype(np.float32) * 2 + 1
        want = want * 0.8 + x.var(axis=(0, 2, 3)) * 0.2
    np.testing.assert_allclose(bn.running_var.numpy(), want, rtol=1e-5, atol=1e-6)
    assert n > 1
