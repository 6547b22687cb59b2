"""NDArray against numpy on every device: views, copies, element-wise ops, reductions, matmul."""
import numpy as np
import pytest

import needle.backend_ndarray as nd


def arr(shape, device, low=-1.0, high=1.0):
    x = np.random.uniform(low, high, size=shape).astype(np.float32)
    return x, nd.array(x, device=device)


def close(a, b, tol=1e-5):
    a = a.numpy() if isinstance(a, nd.NDArray) else a
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


# ---------------------------------------------------------------- devices
def test_device_repr_and_equality():
    assert repr(nd.cpu()) == "cpu()" and str(nd.cuda()) == "cuda()"
    assert repr(nd.cpu_numpy()) == "cpu_numpy()"
    assert nd.cpu() == nd.cpu() and nd.cpu() != nd.cpu_numpy()
    assert nd.all_devices() == [nd.cpu(), nd.cuda(), nd.cpu_numpy()]
    assert nd.cpu().enabled() and nd.cpu_numpy().enabled()
    assert nd.default_device().enabled()
    assert isinstance(nd.cpu().__tile_size__, int)


def test_cuda_reports_enabled_consistently():
    import needle.backend_ndarray.ndarray_backend_numpy  # noqa: F401
    dev = nd.cuda()
    try:
        from needle.backend_ndarray import ndarray_backend_cuda as mod
        if dev.emulated:  # NEEDLE_CUDA_EMULATOR: the emulated module, whatever the GPU says
            mod = dev.mod
        assert dev.enabled() == mod.is_available()
    except ImportError:
        assert not dev.enabled()
    if not dev.enabled():
        with pytest.raises(AttributeError, match="not enabled"):  # DeviceNotEnabledError
            dev.Array(4)
        assert getattr(dev, "Array", None) is None and not hasattr(dev, "ewise_add")


def test_device_random_draws_follow_numpy(device):
    np.random.seed(3)
    a = device.rand(2, 3).numpy()
    b = device.randn(4).numpy()
    np.random.seed(3)
    np.testing.assert_array_equal(a, np.random.rand(2, 3).astype(np.float32))
    np.testing.assert_array_equal(b, np.random.randn(4).astype(np.float32))


def test_device_helpers(device):
    close(device.one_hot(4, np.array([1, 3, 0])), np.eye(4)[[1, 3, 0]])
    close(device.full((2, 3), 2.5), np.full((2, 3), 2.5))
    assert device.empty((3, 2)).shape == (3, 2)
    with pytest.raises(TypeError, match="float32"):
        device.empty((2,), dtype="float64")
    with pytest.raises(IndexError, match="one_hot"):
        device.one_hot(3, np.array([3]))


# ---------------------------------------------------------------- construction
def test_construction_and_copy(device):
    x, a = arr((3, 4), device)
    assert a.dtype == "float32" and a.shape == (3, 4) and a.strides == (4, 1) and a.size == 12
    b = nd.NDArray(a)
    assert b._handle is not a._handle
    close(b, x)
    close(nd.array([[1, 2], [3, 4]], device=device), np.array([[1, 2], [3, 4]]))
    close(nd.NDArray(np.arange(6, dtype=np.int64).reshape(2, 3), device=device),
          np.arange(6).reshape(2, 3))
    moved = a.to(nd.cpu_numpy())
    assert moved.device == nd.cpu_numpy()
    close(moved, x)
    np.testing.assert_array_equal(np.asarray(a), x)
    with pytest.raises(TypeError):
        nd.array(x, dtype="float64", device=device)


# ---------------------------------------------------------------- views
@pytest.mark.parametrize("shape,axes", [((2, 3, 4), (2, 0, 1)), ((5, 1, 3), (1, 2, 0)),
                                        ((2, 1, 2, 1, 2, 1, 2, 3, 2), tuple(reversed(range(9))))])
def test_permute_is_a_view(device, shape, axes):
    x, a = arr(shape, device)
    b = a.permute(axes)
    assert b._handle.ptr() == a._handle.ptr()
    assert b.strides == tuple(np.array(x.strides)[list(axes)] // 4)
    close(b, x.transpose(axes))
    close(b.compact(), x.transpose(axes))
    assert b.compact().is_compact()


def test_reshape_is_a_view(device):
    x, a = arr((4, 6), device)
    b = a.reshape((2, 3, 4))
    assert b._handle.ptr() == a._handle.ptr() and b.strides == (12, 4, 1)
    close(b, x.reshape(2, 3, 4))
    close(a.reshape((3, -1)), x.reshape(3, -1))
    close(a.reshape((1, 2, 1, 2, 1, 3, 2)), x.reshape(1, 2, 1, 2, 1, 3, 2))
    with pytest.raises(ValueError, match=r"reshape.*\(4, 6\).*\(5, 5\)"):
        a.reshape((5, 5))


def test_broadcast_to_uses_zero_strides(device):
    x, a = arr((3, 1), device)
    b = a.broadcast_to((3, 4))
    assert b.strides == (1, 0) and b._handle.ptr() == a._handle.ptr()
    close(b, np.broadcast_to(x, (3, 4)))
    close(nd.broadcast_to(a, (2, 3, 5)), np.broadcast_to(x, (2, 3, 5)))
    with pytest.raises(ValueError, match="broadcast_to"):
        a.broadcast_to((4, 4))


@pytest.mark.parametrize("idx", [(1, 2), (slice(1, 3), slice(None, None, 2)), (slice(None), 0),
                                 (slice(0, 4, 3), slice(1, None)), (-1, slice(None, -1))])
def test_getitem_keeps_rank(device, idx):
    x, a = arr((4, 5), device)
    b = a[idx]
    assert b.ndim == 2 and b._handle.ptr() == a._handle.ptr()
    np_idx = tuple(slice(i % 4 if d == 0 else i % 5, (i % (4, 5)[d]) + 1) if isinstance(i, int) else i
                   for d, i in enumerate(idx))
    close(b, x[np_idx])


def test_getitem_high_rank_and_composition(device):
    x, a = arr((2, 3, 2, 3, 2, 3), device)
    b = a.permute((5, 4, 3, 2, 1, 0))[1:3, :, ::2, 1, :, 0:2]
    ref = x.transpose(5, 4, 3, 2, 1, 0)[1:3, :, ::2, 1:2, :, 0:2]
    close(b, ref)
    close(b.compact(), ref)


def test_getitem_bad_index(device):
    _, a = arr((3, 4), device)
    with pytest.raises(IndexError, match=r"getitem.*\(3, 4\)"):
        a[3, 0]
    with pytest.raises(IndexError):
        a[0, 0, 0]
    with pytest.raises(ValueError, match="step"):
        a[::-1]
    with pytest.raises(TypeError):
        a["x"]


def test_as_strided_views_and_bounds(device):
    x, a = arr((16,), device)
    win = a.as_strided((5, 4), (3, 1))
    assert win._handle.ptr() == a._handle.ptr()
    close(win, np.lib.stride_tricks.as_strided(x, (5, 4), (12, 4)))
    with pytest.raises(IndexError, match="as_strided"):
        a.as_strided((5, 4), (4, 1))
    with pytest.raises(IndexError, match="as_strided"):
        a.as_strided((2,), (1,), offset=15)
    with pytest.raises(IndexError):
        a.as_strided((3,), (-1,), offset=1)


def test_flip_uses_negative_strides(device):
    x, a = arr((3, 4, 5), device)
    close(a.flip((0, 2)), np.flip(x, (0, 2)))
    close(nd.flip(a, (1,)), np.flip(x, 1))
    close(a, x)  # input unchanged
    assert a.flip((1,)).is_compact()


def test_pad(device):
    x, a = arr((2, 3), device)
    close(a.pad(((1, 2), (0, 1))), np.pad(x, ((1, 2), (0, 1))))
    with pytest.raises(ValueError, match="pad"):
        a.pad(((1, 1),))


# ---------------------------------------------------------------- setitem and fill
def test_setitem_array_and_scalar(device):
    x, a = arr((4, 5), device)
    ptr, strides = a._handle.ptr(), a.strides
    y, b = arr((2, 5), device)
    a[1:3, :] = b
    x[1:3, :] = y
    a[::3, 1::2] = 4.0
    x[::3, 1::2] = 4.0
    close(a, x)
    assert a._handle.ptr() == ptr and a.strides == strides
    z, c = arr((5, 2), device)
    a[0:2, :] = c.permute((1, 0))  # a non-compact right-hand side
    x[0:2, :] = z.T
    close(a, x)
    with pytest.raises(ValueError, match="setitem"):
        a[0:2, :] = nd.array(np.ones((3, 3)), device=device)


def test_flat_writes_through(device):
    x, a = arr((3, 4), device)
    a.flat[5] = a.flat[5] + 1.0
    x.flat[5] += 1.0
    close(a, x)


def test_fill(device):
    _, a = arr((3, 3), device)
    a.fill(1.5)
    close(a, np.full((3, 3), 1.5))


# ---------------------------------------------------------------- element-wise
BINARY = [
    ("add", lambda a, b: a + b, np.add),
    ("sub", lambda a, b: a - b, np.subtract),
    ("mul", lambda a, b: a * b, np.multiply),
    ("div", lambda a, b: a / b, np.divide),
    ("maximum", lambda a, b: a.maximum(b), np.maximum),
    ("eq", lambda a, b: a == b, lambda a, b: (a == b).astype(np.float32)),
    ("ge", lambda a, b: a >= b, lambda a, b: (a >= b).astype(np.float32)),
    ("gt", lambda a, b: a > b, lambda a, b: (a > b).astype(np.float32)),
    ("lt", lambda a, b: a < b, lambda a, b: (a < b).astype(np.float32)),
    ("le", lambda a, b: a <= b, lambda a, b: (a <= b).astype(np.float32)),
    ("ne", lambda a, b: a != b, lambda a, b: (a != b).astype(np.float32)),
]


@pytest.mark.parametrize("name,op,ref", BINARY, ids=[b[0] for b in BINARY])
def test_ewise_and_scalar_ops(device, name, op, ref):
    x, a = arr((5, 7), device)
    y, b = arr((5, 7), device)
    y[0, :3] = x[0, :3]  # make eq/ge ties happen
    b = nd.array(y, device=device)
    close(op(a, b), ref(x, y))
    close(op(a, 0.25), ref(x, np.float32(0.25)))
    # non-compact operands
    close(op(a.permute((1, 0)), b.permute((1, 0))), ref(x.T, y.T))


def test_reflected_and_unary(device):
    x, a = arr((3, 4), device, 0.5, 2.0)
    close(2.0 + a, 2 + x)
    close(2.0 * a, 2 * x)
    close(1.0 - a, 1 - x)
    close(2.0 / a, 2 / x)
    close(-a, -x)
    close(a ** 2.5, x ** 2.5)
    close(a.log(), np.log(x))
    close(a.exp(), np.exp(x))
    close(a.tanh(), np.tanh(x))
    y, b = arr((3, 4), device, 0.5, 1.5)
    close(a ** b, x ** y)


def test_power_nan_for_negative_fractional(device):
    a = nd.array(np.array([-2.0, 4.0]), device=device)
    out = (a ** 0.5).numpy()
    assert np.isnan(out[0]) and out[1] == pytest.approx(2.0)


def test_ewise_shape_mismatch(device):
    _, a = arr((3, 4), device)
    _, b = arr((4, 3), device)
    with pytest.raises(ValueError, match=r"add.*\(3, 4\).*\(4, 3\)"):
        a + b
    with pytest.raises(TypeError):
        a + "x"


def test_mixed_devices_raise():
    a = nd.array(np.ones((2, 2)), device=nd.cpu())
    b = nd.array(np.ones((2, 2)), device=nd.cpu_numpy())
    with pytest.raises(ValueError, match="different devices"):
        a + b
    with pytest.raises(ValueError, match="different devices"):
        a @ b


# ---------------------------------------------------------------- reductions
@pytest.mark.parametrize("shape,axis", [((5,), 0), ((4, 6), 1), ((4, 6), 0), ((3, 4, 5), (0, 2)),
                                        ((3, 4, 5), None), ((2, 3, 4, 5), (1, 2, 3)), ((3, 4, 5), -1)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(device, shape, axis, keepdims):
    x, a = arr(shape, device)
    s, m = a.sum(axis=axis, keepdims=keepdims), a.max(axis=axis, keepdims=keepdims)
    if axis is None and not keepdims:
        close(s, np.array([x.sum()]), 1e-4)
        close(m, np.array([x.max()]))
        assert s.shape == (1,)
    else:
        close(s, x.sum(axis=axis, keepdims=keepdims), 1e-4)
        close(m, x.max(axis=axis, keepdims=keepdims))


def test_reduction_over_non_compact_and_big(device):
    x, a = arr((64, 1000), device)
    close(a.permute((1, 0)).sum(axis=1), x.T.sum(axis=1), 1e-4)
    close(a.max(axis=1), x.max(axis=1))


def test_reduction_bad_axis(device):
    _, a = arr((3, 4), device)
    with pytest.raises(ValueError, match="axis 2 out of range"):
        a.sum(axis=2)
    with pytest.raises(ValueError, match="repeated"):
        a.max(axis=(0, 0))


# ---------------------------------------------------------------- matmul
@pytest.mark.parametrize("m,n,p", [(1, 2, 3), (72, 73, 74), (128, 128, 128), (16, 8, 24), (5, 1, 7)])
def test_matmul_2d(device, m, n, p):
    x, a = arr((m, n), device)
    y, b = arr((n, p), device)
    close(a @ b, x @ y, 1e-4)


@pytest.mark.parametrize("sa,sb", [((6, 6, 5, 4), (4, 3)), ((5, 4), (6, 6, 4, 3)),
                                   ((3, 2, 1), (3, 3, 1, 2)), ((2, 3, 4), (2, 4, 5)),
                                   ((1, 3, 4), (2, 4, 2))])
def test_matmul_batched_broadcast(device, sa, sb):
    x, a = arr(sa, device)
    y, b = arr(sb, device)
    close(a @ b, x @ y, 1e-4)


def test_matmul_transposed_operands_without_copies(device):
    x, a = arr((3, 7, 5), device)
    y, b = arr((3, 6, 5), device)
    close(nd.matmul(a, b, transpose_b=True), x @ y.transpose(0, 2, 1), 1e-4)
    close(nd.matmul(a, a, transpose_a=True), x.transpose(0, 2, 1) @ x, 1e-4)
    close(a.permute((0, 2, 1)) @ a, x.transpose(0, 2, 1) @ x, 1e-4)
    # a sliced (offset, non-compact) operand
    close(a[1:3, 2:6, :] @ b[0:2, 0:5, :].permute((0, 2, 1)),
          x[1:3, 2:6, :] @ y[0:2, 0:5, :].transpose(0, 2, 1), 1e-4)


def test_matmul_tiled_layout(device):
    t = device.__tile_size__
    x, a = arr((2 * t, 3 * t), device)
    y, b = arr((3 * t, t), device)
    close(a.matmul_tiled(b), x @ y, 1e-4)
    out = device.Array(4 * t * t)
    device.fill(out, 123.0)  # matmul_tiled must zero its output first
    tile = lambda z: z.reshape(z.shape[0] // t, t, z.shape[1] // t, t).transpose(0, 2, 1, 3).copy()
    device.matmul_tiled(nd.array(tile(x[:, :2 * t]), device=device)._handle,
                        nd.array(tile(y[:2 * t, :]), device=device)._handle, out, 2 * t, 2 * t, t)
    got = device.to_numpy(out, (2, 1, t, t), (t * t, t * t, t, 1), 0)
    close(got.transpose(0, 2, 1, 3).reshape(2 * t, t), x[:, :2 * t] @ y[:2 * t, :], 1e-4)


def test_matmul_bad_shapes(device):
    _, a = arr((3, 4), device)
    with pytest.raises(ValueError, match=r"matmul.*\(3, 4\).*\(3, 4\)"):
        a @ a
    with pytest.raises(ValueError, match="at least 2-D"):
        a @ nd.array(np.ones(4), device=device)
    _, b = arr((2, 4, 3), device)
    _, c = arr((3, 3, 2), device)
    with pytest.raises(ValueError, match="broadcast"):
        b @ c


def test_flat_matmul_of_an_im2col_view(device):
    """The implicit GEMM of a conv: an N x Ho x Wo x KH x KW x C window view times weights,
    and its transpose times out_grad, against numpy on the materialised windows."""
    x, a = arr((2, 7, 6, 5), device)
    w, b = arr((3 * 3 * 5, 4), device)
    sn, sh, sw, sc = a.strides
    view = a.as_strided((2, 3, 2, 3, 3, 5), (sn, 2 * sh, 2 * sw, sh, sw, sc))  # stride 2
    windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))[:, ::2, ::2]
    cols = windows.transpose(0, 1, 2, 4, 5, 3).reshape(12, 45)
    close(nd.flat_matmul(view, b, 3), cols @ w, 1e-4)
    g, gb = arr((12, 4), device)
    close(nd.flat_matmul(view.permute((3, 4, 5, 0, 1, 2)), gb, 3), cols.T @ g, 1e-4)
    # a compact a is a plain matrix; a column-major b is read in place
    z, c = arr((2, 3, 4), device)
    y = np.random.randn(4, 7).astype(np.float32)
    col_major = nd.array(y.T.copy(), device=device).permute((1, 0))
    close(nd.flat_matmul(c, col_major, 2), z.reshape(6, 4) @ y, 1e-4)


def test_flat_matmul_bad_input(device):
    _, a = arr((2, 3, 4), device)
    _, b = arr((12, 5), device)
    with pytest.raises(TypeError, match="flat_matmul"):
        nd.flat_matmul(a, np.ones((12, 5)), 1)
    with pytest.raises(ValueError, match=r"flat_matmul.*a_row_dims.*\(2, 3, 4\)"):
        nd.flat_matmul(a, b, 3)
    with pytest.raises(ValueError, match="flat_matmul.*a_row_dims"):
        nd.flat_matmul(a, b, 0)
    with pytest.raises(ValueError, match="flat_matmul: b must be 2-D"):
        nd.flat_matmul(a, b.reshape((12, 5, 1)), 1)
    with pytest.raises(ValueError, match=r"flat_matmul.*\(2, 3, 4\).*6 x 4.*\(12, 5\)"):
        nd.flat_matmul(a, b, 2)


# ---------------------------------------------------------------- softmax, stack, split, pooling
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_and_log_softmax(device, axis):
    x, a = arr((4, 5, 6), device, -3, 3)
    x[0, 0, 0] = 1e4
    a = nd.array(x, device=device)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    sm = e / e.sum(axis=axis, keepdims=True)
    close(a.softmax(axis), sm, 1e-5)
    close(a.log_softmax(axis), np.log(np.maximum(sm, 1e-30)) if False else
          (x - x.max(axis=axis, keepdims=True)) - np.log(e.sum(axis=axis, keepdims=True)), 1e-4)


def test_stack_and_split(device):
    xs = [np.random.randn(2, 3).astype(np.float32) for _ in range(4)]
    arrays = [nd.array(x, device=device) for x in xs]
    for axis in (0, 1, 2):
        s = nd.stack(arrays, axis)
        close(s, np.stack(xs, axis))
        parts = nd.split(s, axis)
        assert len(parts) == 4
        for p, x in zip(parts, xs):
            close(p, x)


def _pool_ref(x, k, s, p, fn, pad_value):
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=pad_value)
    N, H, W, C = xp.shape
    Ho, Wo = (H - k) // s + 1, (W - k) // s + 1
    out = np.empty((N, Ho, Wo, C), np.float32)
    for i in range(Ho):
        for j in range(Wo):
            out[:, i, j, :] = fn(xp[:, i * s:i * s + k, j * s:j * s + k, :], axis=(1, 2))
    return out


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1), (3, 1, 1), (1, 1, 0)])
def test_pooling_forward_and_backward(device, k, s, p):
    x, a = arr((2, 7, 6, 3), device)
    close(nd.max_pool2d(a, k, s, p), _pool_ref(x, k, s, p, np.max, -np.inf))
    close(nd.avg_pool2d(a, k, s, p), _pool_ref(x, k, s, p, np.mean, 0.0))
    out = nd.max_pool2d(a, k, s, p)
    g = nd.array(np.ones(out.shape), device=device)
    dmax = nd.max_pool2d_backward(a, g, k, s, p).numpy()
    assert dmax.shape == x.shape and dmax.sum() == pytest.approx(out.size)
    davg = nd.avg_pool2d_backward(g, a.shape, k, s, p).numpy()
    ref = np.zeros((2, 7 + 2 * p, 6 + 2 * p, 3), np.float32)
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            ref[:, i * s:i * s + k, j * s:j * s + k, :] += 1.0 / (k * k)
    close(davg, ref[:, p:p + 7, p:p + 6, :])


def test_max_pool_tie_rule(device):
    a = nd.array(np.ones((1, 2, 2, 1)), device=device)
    g = nd.array(np.ones((1, 1, 1, 1)), device=device)
    d = nd.max_pool2d_backward(a, g, 2, 2, 0).numpy().reshape(2, 2)
    np.testing.assert_array_equal(d, [[1, 0], [0, 0]])


def test_pooling_bad_input(device):
    _, a = arr((1, 3, 3, 2), device)
    with pytest.raises(ValueError, match="larger than padded input"):
        nd.max_pool2d(a, 4)
    with pytest.raises(ValueError, match="N x H x W x C"):
        nd.avg_pool2d(a.reshape((3, 3, 2)), 2)
    with pytest.raises(ValueError, match="stride"):
        nd.max_pool2d(a, 2, 0)


def test_scatter_add_accumulates_overlaps(device):
    x, a = arr((6,), device)
    buf = nd.array(np.zeros(6), device=device)
    view = buf.as_strided((3, 4), (1, 1))  # overlapping windows
    vals = nd.array(np.ones((3, 4)), device=device)
    view.scatter_add_(vals)
    close(buf, np.array([1, 2, 3, 3, 2, 1], np.float32))
    with pytest.raises(ValueError, match="scatter_add_"):
        view.scatter_add_(nd.array(np.ones(5), device=device))
