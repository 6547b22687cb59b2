"""Every op of contract §5 (mathematic + tuple ops): forward vs numpy, backward by gradient_check,
on every device; torch comparisons when torch is installed."""
import numpy as np
import pytest

import needle as ndl
from needle import ops
from needle.testing import assert_close, check_op, gradient_check


def randn(*shape):
    return np.random.randn(*shape).astype(np.float32)


def positive(*shape):
    return np.random.uniform(0.5, 2.0, size=shape).astype(np.float32)


def away_from_zero(*shape):
    """Values with |x| >= 0.2, so finite differences never cross relu's kink."""
    x = np.random.uniform(0.2, 1.5, size=shape) * np.random.choice([-1.0, 1.0], size=shape)
    return x.astype(np.float32)


def np_logsumexp(x, axes=None):
    m = np.max(x, axis=axes, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
    return out.reshape(()) if axes is None else np.squeeze(out, axis=axes)


def np_dilate(x, axes, dilation):
    axes = [a for a in axes if a < x.ndim]
    shape = [n * (dilation + 1) if i in axes else n for i, n in enumerate(x.shape)]
    out = np.zeros(shape, dtype=x.dtype)
    out[tuple(slice(None, None, dilation + 1) if i in axes else slice(None)
              for i in range(x.ndim))] = x
    return out


def np_pow(a, scalar):
    return np.power(a, scalar)


def np_swap(x, axes=None):
    i, j = (-2, -1) if axes is None else axes
    return np.swapaxes(x, i, j)


# (id, needle fn, numpy reference, input makers, kwargs)
UNARY_BINARY = [
    ("add", ops.add, np.add, [lambda: randn(3, 4), lambda: randn(3, 4)], {}),
    ("add_scalar", ops.add_scalar, lambda a, scalar: a + scalar, [lambda: randn(3, 4)],
     {"scalar": 1.5}),
    ("multiply", ops.multiply, np.multiply, [lambda: randn(2, 5), lambda: randn(2, 5)], {}),
    ("mul_scalar", ops.mul_scalar, lambda a, scalar: a * scalar, [lambda: randn(4, 3)],
     {"scalar": -2.5}),
    ("power", ops.power, np.power, [lambda: positive(3, 3), lambda: randn(3, 3)], {}),
    ("power_scalar_2", ops.power_scalar, np_pow, [lambda: randn(3, 4)], {"scalar": 2}),
    ("power_scalar_0", ops.power_scalar, np_pow, [lambda: positive(3, 4)], {"scalar": 0}),
    ("power_scalar_neg_frac", ops.power_scalar, np_pow, [lambda: positive(3, 4)],
     {"scalar": -1.5}),
    ("power_scalar_half", ops.power_scalar, np_pow, [lambda: positive(3, 4)], {"scalar": 0.5}),
    ("divide", ops.divide, np.divide, [lambda: randn(3, 4), lambda: positive(3, 4)], {}),
    ("divide_scalar", ops.divide_scalar, lambda a, scalar: a / scalar, [lambda: randn(3, 4)],
     {"scalar": 3.0}),
    ("negate", ops.negate, np.negative, [lambda: randn(3, 4)], {}),
    ("log", ops.log, np.log, [lambda: positive(3, 4)], {}),
    ("exp", ops.exp, np.exp, [lambda: randn(3, 4)], {}),
    ("relu", ops.relu, lambda a: np.maximum(a, 0), [lambda: away_from_zero(4, 5)], {}),
    ("tanh", ops.tanh, np.tanh, [lambda: randn(3, 4)], {}),
    ("sigmoid", ops.sigmoid, lambda a: 1 / (1 + np.exp(-a)), [lambda: randn(3, 4)], {}),
    ("matmul_2d", ops.matmul, np.matmul, [lambda: randn(5, 4), lambda: randn(4, 3)], {}),
    ("matmul_batch_2d", ops.matmul, np.matmul, [lambda: randn(2, 3, 5, 4), lambda: randn(4, 3)],
     {}),
    ("matmul_2d_batch", ops.matmul, np.matmul, [lambda: randn(5, 4), lambda: randn(2, 4, 3)], {}),
    ("matmul_bcast_batch", ops.matmul, np.matmul,
     [lambda: randn(3, 2, 1), lambda: randn(3, 3, 1, 2)], {}),
    ("matmul_both_bcast", ops.matmul, np.matmul,
     [lambda: randn(2, 1, 3, 4), lambda: randn(1, 3, 4, 2)], {}),
    ("summation_all", ops.summation, lambda a, axes: np.sum(a, axis=axes), [lambda: randn(3, 4)],
     {"axes": None}),
    ("summation_int", ops.summation, lambda a, axes: np.sum(a, axis=axes),
     [lambda: randn(3, 4, 2)], {"axes": 1}),
    ("summation_tuple", ops.summation, lambda a, axes: np.sum(a, axis=axes),
     [lambda: randn(3, 4, 2)], {"axes": (0, 2)}),
    ("summation_neg", ops.summation, lambda a, axes: np.sum(a, axis=axes),
     [lambda: randn(3, 4)], {"axes": -1}),
    ("broadcast_col", ops.broadcast_to, lambda a, shape: np.broadcast_to(a, shape),
     [lambda: randn(3, 1)], {"shape": (3, 3)}),
    ("broadcast_rank", ops.broadcast_to, lambda a, shape: np.broadcast_to(a, shape),
     [lambda: randn(1, 5)], {"shape": (4, 2, 5)}),
    ("broadcast_mid", ops.broadcast_to, lambda a, shape: np.broadcast_to(a, shape),
     [lambda: randn(2, 1, 3)], {"shape": (2, 4, 3)}),
    ("reshape", ops.reshape, lambda a, shape: np.reshape(a, shape), [lambda: randn(3, 4)],
     {"shape": (2, 6)}),
    ("reshape_infer", ops.reshape, lambda a, shape: np.reshape(a, shape),
     [lambda: randn(2, 3, 2)], {"shape": (-1, 4)}),
    ("transpose_default", ops.transpose, np_swap, [lambda: randn(2, 3, 4)], {"axes": None}),
    ("transpose_01", ops.transpose, np_swap, [lambda: randn(2, 3, 4)], {"axes": (0, 1)}),
    ("transpose_02", ops.transpose, np_swap, [lambda: randn(2, 3, 4)], {"axes": (0, 2)}),
    ("logsumexp_all", ops.logsumexp, np_logsumexp, [lambda: randn(3, 4)], {"axes": None}),
    ("logsumexp_1", ops.logsumexp, np_logsumexp, [lambda: randn(3, 4)], {"axes": (1,)}),
    ("logsumexp_12", ops.logsumexp, np_logsumexp, [lambda: randn(2, 3, 4)], {"axes": (1, 2)}),
    ("logsumexp_02", ops.logsumexp, np_logsumexp, [lambda: randn(2, 3, 4)], {"axes": (0, 2)}),
    ("logsumexp_013", ops.logsumexp, np_logsumexp, [lambda: randn(2, 3, 2, 3)],
     {"axes": (0, 1, 3)}),
    ("logsoftmax", ops.logsoftmax, lambda a: a - np_logsumexp(a, (1,))[:, None],
     [lambda: randn(4, 5)], {}),
    ("flip_0", ops.flip, lambda a, axes: np.flip(a, axes), [lambda: randn(3, 4)], {"axes": (0,)}),
    ("flip_12", ops.flip, lambda a, axes: np.flip(a, axes), [lambda: randn(2, 3, 4)],
     {"axes": (1, 2)}),
    ("dilate_1", ops.dilate, np_dilate, [lambda: randn(2, 3)], {"axes": (0, 1), "dilation": 1}),
    ("dilate_2_axis1", ops.dilate, np_dilate, [lambda: randn(2, 3)], {"axes": (1,), "dilation": 2}),
    ("dilate_ignored_axis", ops.dilate, np_dilate, [lambda: randn(2, 3)],
     {"axes": (0, 5), "dilation": 1}),
    ("dilate_0", ops.dilate, np_dilate, [lambda: randn(2, 3)], {"axes": (0,), "dilation": 0}),
    ("undilate", ops.undilate,
     lambda a, axes, dilation: a[tuple(slice(None, None, dilation + 1) if i in axes else
                                       slice(None) for i in range(a.ndim))],
     [lambda: randn(4, 6)], {"axes": (0, 1), "dilation": 1}),
]


@pytest.mark.parametrize("name,fn,ref,makers,kwargs", UNARY_BINARY,
                         ids=[c[0] for c in UNARY_BINARY])
def test_op_forward_backward(device, name, fn, ref, makers, kwargs):
    arrays = [m() for m in makers]
    check_op(fn, ref, *arrays, device=device, rtol=1e-5, atol=1e-5, **kwargs)


def test_keyword_names(device):
    x = ndl.Tensor(randn(2, 3), device=device)
    assert ndl.summation(x, axes=(1,)).shape == (2,)
    assert ndl.broadcast_to(ndl.reshape(x, shape=(2, 3, 1)), shape=(2, 3, 4)).shape == (2, 3, 4)
    assert ndl.transpose(x, axes=(0, 1)).shape == (3, 2)
    assert ndl.power_scalar(x, scalar=2).shape == (2, 3)
    assert ndl.divide_scalar(x, scalar=2).shape == (2, 3)
    assert ops.logsumexp(x, axes=(1,)).shape == (2,)
    assert ops.logsumexp(x, (0,)).shape == (3,)
    assert ops.flip(x, axes=(0,)).shape == (2, 3)
    assert ops.dilate(x, dilation=1, axes=(0,)).shape == (4, 3)
    assert ops.stack([x, x], axis=0).shape == (2, 2, 3)


def test_divide_scalar_numpy_scalar(device):
    x = randn(2, 3)
    out = ops.divide_scalar(ndl.Tensor(x, device=device), np.float32(4.0))
    assert_close(out, x / 4.0)


def test_logsumexp_mixed_magnitudes(device):
    x = np.array([[1e10, -10.0, 0.0], [-1e5, -1e5 + 1, -1e5]], dtype=np.float32)
    out = ops.logsumexp(ndl.Tensor(x, device=device), axes=(1,))
    assert_close(out, np_logsumexp(x.astype(np.float64), (1,)), rtol=1e-6, atol=1e-2)
    assert np.isfinite(out.numpy()).all()


def test_logsoftmax_large_inputs_are_stable(device):
    x = np.array([[1e5, 1e5 + 1, 0.0], [-3e5, 2e5, 1.0]], dtype=np.float32)
    out = ops.logsoftmax(ndl.Tensor(x, device=device)).numpy()
    expected = x.astype(np.float64) - np_logsumexp(x.astype(np.float64), (1,))[:, None]
    assert np.isfinite(out).all()
    assert_close(out, expected, rtol=1e-6, atol=1e-3)


def test_sigmoid_saturates_without_nan(device):
    out = ops.sigmoid(ndl.Tensor(np.array([-200.0, 0.0, 200.0]), device=device)).numpy()
    assert_close(out, [0.0, 0.5, 1.0], atol=1e-7)


def test_relu_gradient_is_zero_at_zero(device):
    x = ndl.Tensor(np.array([-1.0, 0.0, 2.0]), device=device)
    ops.relu(x).backward()
    assert_close(x.grad, [0.0, 0.0, 1.0])


def test_power_scalar_zero_gradient_is_zero_at_zero(device):
    x = ndl.Tensor(np.array([0.0, 2.0]), device=device)
    ops.power_scalar(x, 0).backward()
    assert_close(x.grad, [0.0, 0.0])


def test_matmul_batch_grads_have_input_shapes(device):
    a = ndl.Tensor(randn(3, 2, 5, 4), device=device)
    b = ndl.Tensor(randn(4, 2), device=device)
    (a @ b).sum().backward()
    assert a.grad.shape == (3, 2, 5, 4) and b.grad.shape == (4, 2)
    assert_close(b.grad, a.numpy().reshape(-1, 4).sum(0)[:, None].repeat(2, 1), rtol=1e-4)


def test_linear_style_3d_input(device):
    x = ndl.Tensor(randn(2, 3, 4), device=device)
    w = ndl.Tensor(randn(4, 5), device=device)
    gradient_check(ops.matmul, x, w)


def test_ops_compose_on_non_compact_views(device):
    # transpose / broadcast produce strided views; later ops must read them correctly.
    x = randn(3, 4)
    t = ndl.Tensor(x, device=device)
    y = ops.reshape(ops.transpose(t), (12,))
    assert_close(y, x.T.reshape(12))
    z = ops.summation(ops.broadcast_to(ops.reshape(t, (3, 4, 1)), (3, 4, 2)) * 2.0, axes=(2,))
    assert_close(z, 4 * x)


def test_second_order_through_ops(device):
    # d/dx sum(exp(x)^2) = 2 exp(2x); differentiate the gradient once more: 4 exp(2x).
    x = ndl.Tensor(randn(3), device=device)
    y = ops.summation(ops.power_scalar(ops.exp(x), 2))
    y.backward(create_graph=True)  # ops on a gradient need its graph built eagerly
    g = x.grad
    assert_close(g, 2 * np.exp(2 * x.numpy().astype(np.float64)), rtol=1e-5)
    ops.summation(g).backward()
    assert_close(x.grad, 4 * np.exp(2 * x.numpy().astype(np.float64)), rtol=1e-5)


def test_higher_order_gradient_check(device):
    # The gradient graph of tanh / logsumexp / matmul is itself checked numerically.
    a = ndl.Tensor(randn(3, 4), device=device)
    b = ndl.Tensor(randn(4, 2), device=device)

    def grad_of_loss(a, b):
        loss = ops.summation(ops.logsumexp(ops.tanh(a @ b), axes=(1,)))
        loss.backward(create_graph=True)
        return a.grad

    gradient_check(grad_of_loss, a, b, tol=3e-2)


# ---------------------------------------------------------------------------------- tuple ops
def test_stack_forward_backward(device):
    xs = [randn(3, 4) for _ in range(3)]
    ts = [ndl.Tensor(x, device=device) for x in xs]
    for axis in (0, 1, 2):
        out = ops.stack(ts, axis=axis)
        assert_close(out, np.stack(xs, axis=axis))
    gradient_check(lambda a, b, c: ops.stack([a, b, c], axis=1), *ts, op_name="stack")
    for t in ts:
        assert t.grad.shape == (3, 4)


def test_stack_single_tensor(device):
    x = randn(2, 3)
    t = ndl.Tensor(x, device=device)
    assert_close(ops.stack([t], 0), x[None])
    assert_close(ops.stack(t, 1), x[:, None])


def test_split_forward_backward(device):
    x = randn(3, 4, 2)
    t = ndl.Tensor(x, device=device)
    parts = ops.split(t, axis=1)
    assert isinstance(parts, ndl.TensorTuple) and len(parts) == 4
    for i, p in enumerate(parts.tuple()):
        assert_close(p, x[:, i, :])

    def weighted_parts(a):
        ps = ops.split(a, 1)
        return ps[0] * 2.0 + ps[1] * ps[3] + ops.exp(ps[2])

    gradient_check(weighted_parts, t, op_name="split")


def test_stack_gradient_is_split(device):
    ts = [ndl.Tensor(randn(2, 3), device=device) for _ in range(2)]
    out = ops.stack(ts, 0)
    g = out.op.gradient_as_tuple(ndl.Tensor(np.ones((2, 2, 3)), device=device), out)
    assert len(g) == 1 and isinstance(g[0], ndl.TensorTuple)
    assert [x.shape for x in g[0].tuple()] == [(2, 3), (2, 3)]


def test_make_tuple_and_get_item(device):
    a = ndl.Tensor(randn(2), device=device)
    b = ndl.Tensor(randn(3), device=device)
    tt = ops.make_tuple(a, b)
    assert isinstance(tt, ndl.TensorTuple) and len(tt) == 2
    assert tt[1] is b  # get_item of make_tuple folds to the input
    assert_close(ops.tuple_get_item(tt, 0), a.numpy())
    s = tt + tt
    assert_close(s[0], 2 * a.numpy())
    assert isinstance(tt.detach(), ndl.TensorTuple) and not tt.detach().requires_grad
    assert "TensorTuple" in repr(tt)


def test_fused_add_scalars(device):
    x = ndl.Tensor(randn(3), device=device)
    tt = ops.fused_add_scalars(x, 1.0, 2.0)
    assert_close(tt[0], x.numpy() + 1) and assert_close(tt[1], x.numpy() + 2)
    (tt[0] * tt[1]).sum().backward()
    assert_close(x.grad, 2 * x.numpy() + 3, rtol=1e-5)


# ---------------------------------------------------------------------------------- bad input
def test_shape_mismatch_names_op_and_shapes(device):
    a = ndl.Tensor(randn(2, 3), device=device)
    b = ndl.Tensor(randn(3, 2), device=device)
    with pytest.raises(ValueError, match=r"EWiseAdd.*\(2, 3\).*\(3, 2\)"):
        a + b
    with pytest.raises(ValueError, match=r"MatMul.*\(2, 3\)"):
        ops.matmul(a, a)
    with pytest.raises(ValueError, match="BroadcastTo"):
        ops.broadcast_to(a, (4, 5))
    with pytest.raises(ValueError, match="Reshape"):
        ops.reshape(a, (4, 2))
    with pytest.raises(ValueError, match="Summation"):
        ops.summation(a, axes=2)
    with pytest.raises(ValueError, match="Transpose"):
        ops.transpose(a, axes=(0, 1, 2))
    with pytest.raises(ValueError, match="Stack"):
        ops.stack([a, b], 0)


def test_bad_input_types(device):
    a = ndl.Tensor(randn(2, 3), device=device)
    with pytest.raises(TypeError, match="EWiseAdd"):
        ops.add(a, 3)
    with pytest.raises(IndexError, match="TupleGetItem"):
        ops.tuple_get_item(ops.split(a, 0), 5)
    with pytest.raises(TypeError, match="TupleGetItem"):
        ops.tuple_get_item(a, 0)


def test_mixed_devices_raise(device):
    other = ndl.cpu_numpy() if device != ndl.cpu_numpy() else ndl.cpu()
    a = ndl.Tensor(randn(2, 3), device=device)
    b = ndl.Tensor(randn(2, 3), device=other)
    with pytest.raises(ValueError, match=r"EWiseMul.*different devices"):
        a * b


# ---------------------------------------------------------------------------------- torch
def _torch_grads(fn, *arrays):
    torch = pytest.importorskip("torch")
    ts = [torch.tensor(a.astype(np.float64), requires_grad=True) for a in arrays]
    out = fn(*ts)
    out.backward(torch.ones_like(out))
    return out.detach().numpy(), [t.grad.numpy() for t in ts]


def _needle_grads(fn, device, *arrays):
    ts = [ndl.Tensor(a, device=device) for a in arrays]
    out = fn(*ts)
    out.backward()
    return out.numpy(), [t.grad.numpy() for t in ts]


@pytest.mark.parametrize("shapes", [((6, 1, 5, 4), (3, 4, 2)), ((5, 4), (2, 3, 4, 3)),
                                    ((3, 2, 1), (3, 3, 1, 2))], ids=["a-bcast", "a-2d", "both"])
def test_matmul_broadcast_grads_match_torch(device, shapes):
    arrays = [randn(*s) for s in shapes]
    t_out, t_grads = _torch_grads(lambda a, b: a @ b, *arrays)
    n_out, n_grads = _needle_grads(lambda a, b: a @ b, device, *arrays)
    assert_close(n_out, t_out, rtol=1e-4, atol=1e-4)
    for i, (n, t) in enumerate(zip(n_grads, t_grads)):
        assert_close(n, t, rtol=1e-4, atol=1e-4, what=f"grad of input {i}")


@pytest.mark.parametrize("axes", [None, (1,), (0, 2)])
def test_logsumexp_matches_torch(device, axes):
    torch = pytest.importorskip("torch")
    x = randn(2, 3, 4) * 5
    dims = tuple(range(3)) if axes is None else axes
    t_out, (t_grad,) = _torch_grads(lambda a: torch.logsumexp(a, dim=dims), x)
    n_out, (n_grad,) = _needle_grads(lambda a: ops.logsumexp(a, axes=axes), device, x)
    assert_close(n_out.reshape(t_out.shape), t_out, rtol=1e-5, atol=1e-5)
    assert_close(n_grad, t_grad, rtol=1e-5, atol=1e-5)


def test_logsoftmax_matches_torch(device):
    torch = pytest.importorskip("torch")
    x = randn(4, 7) * 3
    w = randn(4, 7)
    t_out, (t_grad,) = _torch_grads(
        lambda a: torch.log_softmax(a, dim=1) * torch.tensor(w.astype(np.float64)), x)
    n_out, (n_grad,) = _needle_grads(
        lambda a: ops.logsoftmax(a) * ndl.Tensor(w, device=device), device, x)
    assert_close(n_out, t_out, rtol=1e-5, atol=1e-5)
    assert_close(n_grad, t_grad, rtol=1e-5, atol=1e-5)


def test_many_get_items_of_one_split(device):
    # k get_items of a k-way split: the TensorTuple's grad is summed element by element.
    x = randn(6, 2)
    t = ndl.Tensor(x, device=device)
    parts = ops.split(t, 0)
    total = parts[0]
    for i in range(1, 6):
        total = total + parts[i] * float(i + 1)
    total.sum().backward()
    assert_close(t.grad, np.repeat(np.arange(1.0, 7.0)[:, None], 2, axis=1))
    assert isinstance(parts.grad, ndl.TensorTuple) and len(parts.grad) == 6


def test_rnn_style_unroll_split_then_stack(device):
    xs = ndl.Tensor(randn(4, 2, 3), device=device)
    w = ndl.Tensor(randn(3, 3) * 0.5, device=device)

    def unroll(xs, w):
        h = None
        outs = []
        for x_t in ops.split(xs, 0).tuple():
            h = ops.tanh(x_t @ w if h is None else x_t @ w + h @ w)
            outs.append(h)
        return ops.stack(outs, 0)

    gradient_check(unroll, xs, w, op_name="unroll")
