"""Element-wise ops keep dense layouts (ndarray_ewise.py): values equal numpy's on every
backend, result strides follow the documented rules, and the conv -> bias -> ReLU -> pool chain
runs without layout copies. Also the gt kernels (NaN, +-0, inf) and ReLU's two-call gradient."""
import contextlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import needle as ndl
import needle.backend_ndarray as nd
from needle import nn, ops
from needle.ops.ops_conv import permute
from needle.backend_ndarray.ndarray_ewise import is_dense, memory_order
from needle.testing import gradient_check

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
SPECIALS = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 2.5, -2.5], np.float32)

# name -> (needle, numpy); all exact per element, so equality is bitwise
BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
    "maximum": (lambda a, b: a.maximum(b), np.maximum),
    "eq": (lambda a, b: a == b, np.equal),
    "ne": (lambda a, b: a != b, np.not_equal),
    "ge": (lambda a, b: a >= b, np.greater_equal),
    "gt": (lambda a, b: a > b, np.greater),
    "le": (lambda a, b: a <= b, np.less_equal),
    "lt": (lambda a, b: a < b, np.less),
}
UNARY = {
    "neg": (lambda a: -a, np.negative),
    "add_scalar": (lambda a: a + 1.5, lambda x: x + np.float32(1.5)),
    "rsub_scalar": (lambda a: 1.5 - a, lambda x: np.float32(1.5) - x),
    "mul_scalar": (lambda a: a * -3.0, lambda x: x * np.float32(-3.0)),
    "div_scalar": (lambda a: a / 3.0, lambda x: x / np.float32(3.0)),
    "square": (lambda a: a ** 2.0, np.square),
    "maximum_scalar": (lambda a: a.maximum(0.0), lambda x: np.maximum(x, np.float32(0))),
    "gt_scalar": (lambda a: a > 0.5, lambda x: x > np.float32(0.5)),
    "lt_scalar": (lambda a: a < 0.5, lambda x: x < np.float32(0.5)),
    "ge_scalar": (lambda a: a >= 0.0, lambda x: x >= 0),
    "eq_scalar": (lambda a: a == 0.0, lambda x: x == 0),
}
# not exact against numpy: compared bitwise with the same op on a compact copy instead
TRANSCENDENTAL = {"exp": lambda a: a.exp(), "log": lambda a: a.log(), "tanh": lambda a: a.tanh(),
                  "pow": lambda a: abs_pow(a)}


def abs_pow(a):
    return a.maximum(0.0) ** 1.7


def dense_view(x, perm, device):
    """An NDArray equal to x whose memory holds x.transpose(perm) row-major: a dense,
    generally non-compact layout (strides a permutation of the compact ones)."""
    inv = tuple(int(i) for i in np.argsort(perm))
    return nd.array(np.ascontiguousarray(x.transpose(perm)), device=device).permute(inv)


def values(shape, rng, specials=True):
    x = rng.standard_normal(shape).astype(np.float32) * 2
    if specials and x.size:
        flat = x.reshape(-1)
        k = min(flat.size, SPECIALS.size)
        flat[rng.permutation(flat.size)[:k]] = SPECIALS[:k]
    return x


def same(got, want):
    np.testing.assert_array_equal(np.asarray(got.numpy(), np.float32),
                                  np.asarray(want, np.float32))


@st.composite
def layouts(draw):
    """A shape (1-4 dims of 1-5) and a permutation of its axes."""
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
    perm = tuple(draw(st.permutations(range(len(shape)))))
    return shape, perm


def expected_strides(a):
    """What a unary / scalar op on `a` returns: a's strides if a is dense and not row-major,
    else the compact strides."""
    if is_dense(a) and not a._is_row_major():
        return a.strides
    return nd.NDArray.make(a.shape, device=a.device).strides


# ---------------------------------------------------------------- element-wise, any layout
@pytest.mark.parametrize("name", sorted(UNARY))
@SETTINGS
@given(layout=layouts(), seed=st.integers(0, 2**16))
def test_unary_and_scalar_ops_keep_dense_layouts(device, name, layout, seed):
    shape, perm = layout
    x = values(shape, np.random.default_rng(seed))
    a = dense_view(x, perm, device)
    f, ref = UNARY[name]
    with np.errstate(all="ignore"):
        want = ref(x)
    got = f(a)
    same(got, want)
    assert got.strides == expected_strides(a), (a.strides, got.strides)


@pytest.mark.parametrize("name", sorted(TRANSCENDENTAL))
@SETTINGS
@given(layout=layouts(), seed=st.integers(0, 2**16))
def test_transcendental_ops_do_not_depend_on_layout(device, name, layout, seed):
    shape, perm = layout
    x = values(shape, np.random.default_rng(seed))
    a = dense_view(x, perm, device)
    f = TRANSCENDENTAL[name]
    got, want = f(a), f(nd.array(x, device=device))
    same(got, want.numpy())
    assert got.strides == expected_strides(a)
    with np.errstate(all="ignore"):
        ref = {"exp": np.exp, "log": np.log, "tanh": np.tanh,
               "pow": lambda v: np.maximum(v, 0) ** np.float32(1.7)}[name](x)
    np.testing.assert_allclose(got.numpy(), ref, rtol=2e-6, atol=1e-30)


@pytest.mark.parametrize("name", sorted(BINARY))
@SETTINGS
@given(layout=layouts(), other=st.sampled_from(["same", "compact", "other", "broadcast",
                                                "slice"]),
       swap=st.booleans(), seed=st.integers(0, 2**16), data=st.data())
def test_binary_ops_on_dense_layouts_match_numpy(device, name, layout, other, swap, seed, data):
    """A dense-permuted operand against one of the same layout, a compact one, one of another
    dense layout, a broadcast (stride 0 on every axis but one, e.g. a bias) or a sliced view,
    either side; the result strides follow the rules of ndarray_ewise.py."""
    shape, perm = layout
    rng = np.random.default_rng(seed)
    x = values(shape, rng)
    a = dense_view(x, perm, device)
    if other == "broadcast":
        axis = data.draw(st.integers(0, len(shape) - 1))
        vec = values((shape[axis],), rng)
        keep = [1] * len(shape)
        keep[axis] = shape[axis]
        y = np.broadcast_to(vec.reshape(keep), shape)
        b = nd.array(vec, device=device).reshape(tuple(keep)).broadcast_to(shape)
    elif other == "slice":
        y = values(shape, rng)
        big = np.zeros(tuple(2 * n for n in shape), np.float32)
        big[tuple(slice(None, None, 2) for _ in shape)] = y
        b = nd.array(big, device=device)[tuple(slice(None, None, 2) for _ in shape)]
    else:
        y = values(shape, rng)
        p2 = {"same": perm, "compact": tuple(range(len(shape))),
              "other": tuple(data.draw(st.permutations(range(len(shape)))))}[other]
        b = dense_view(y, p2, device)
    f, ref = BINARY[name]
    lhs, rhs, wl, wr = (b, a, y, x) if swap else (a, b, x, y)
    with np.errstate(all="ignore"):
        want = ref(wl, wr)
    got = f(lhs, rhs)
    same(got, want)
    assert is_dense(got)
    if a.is_compact() or b.is_compact():
        assert got.is_compact()  # a row-major operand: a row-major result, as before
    elif other in ("same", "broadcast", "slice") and name not in ("le", "lt", "ne", "sub"):
        assert got.strides == expected_strides(a)  # the dense operand's layout


def test_result_strides_examples(device):
    """The cases conv nets hit: an NCHW view of an NHWC buffer plus a per-channel bias, ReLU,
    the ReLU mask and the gradient product all stay NHWC in memory."""
    x = np.random.randn(2, 3, 4, 5).astype(np.float32)  # N, C, H, W
    a = dense_view(x, (0, 2, 3, 1), device)  # NHWC memory
    nhwc = (60, 1, 15, 3)
    assert a.strides == nhwc and memory_order(a.shape, a.strides) == (0, 2, 3, 1)
    bias = nd.array(np.arange(3, dtype=np.float32), device=device)
    y = a + bias.reshape((1, 3, 1, 1)).broadcast_to(a.shape)
    r = y.maximum(0.0)
    g = r * (y > 0)
    for t in (y, r, g):
        assert t.strides == nhwc
    want = np.maximum(x + np.arange(3, dtype=np.float32).reshape(1, 3, 1, 1), 0)
    np.testing.assert_array_equal(g.numpy(), want)
    assert r.permute((0, 2, 3, 1)).is_compact()  # what max_pool2d reads: no copy
    assert not r.is_compact() and r.compact().is_compact()
    np.testing.assert_array_equal(r.compact().numpy(), r.numpy())
    # consumers that need row-major memory still get it
    np.testing.assert_array_equal(r.reshape((2, 60)).numpy(), r.numpy().reshape(2, 60))
    np.testing.assert_array_equal(r.flat.numpy(), r.numpy().reshape(-1))


def test_reductions_of_dense_layouts_match_row_major_bitwise(device):
    """A sum does not depend on its input's layout (so a kept NHWC layout changes no loss)."""
    x = np.random.randn(8, 6, 7, 9).astype(np.float32) * 100
    a, c = dense_view(x, (0, 2, 3, 1), device), nd.array(x, device=device)
    for axes in [(0, 2, 3), (2, 3), (0,), (1, 3), None, (0, 1, 2, 3)]:
        same(a.sum(axes), c.sum(axes).numpy())
        same(a.max(axes), c.max(axes).numpy())


def test_setitem_into_and_from_dense_layouts(device):
    x = np.random.randn(3, 4, 5).astype(np.float32)
    a = dense_view(x, (2, 0, 1), device)
    b = a * 1.0  # a new buffer, same layout
    b[1:, :, 2] = 7.0
    b[0] = a[2]
    want = x.copy()
    want[1:, :, 2] = 7.0
    want[0] = x[2]
    same(b, want)


# ---------------------------------------------------------------- gt kernels
def test_gt_and_lt_with_specials_match_numpy(device):
    x = np.array(np.meshgrid(SPECIALS, SPECIALS)).reshape(2, -1)
    a, b = nd.array(x[0], device=device), nd.array(x[1], device=device)
    same(a > b, x[0] > x[1])
    same(a < b, x[0] < x[1])
    for s in [0.0, -0.0, np.inf, -np.inf, np.nan, 2.5, 1e-46]:
        same(a > s, x[0] > np.float32(s))
        same(a < s, x[0] < np.float32(s))


def test_gt_on_non_compact_inputs(device):
    x = np.random.randn(6, 8).astype(np.float32)
    a = nd.array(x, device=device)
    v = a[1:5:2, ::3]
    same(v > 0.1, x[1:5:2, ::3] > np.float32(0.1))
    same(a.permute((1, 0)) > a.permute((1, 0)).flip((0,)), x.T > np.flip(x.T, 0))
    row = nd.array(x[0], device=device).reshape((1, 8)).broadcast_to((6, 8))
    same(a > row, x > x[0])
    same(row < a, x[0] < x)


def test_gt_kernels_on_the_backend_table(device):
    x = np.concatenate([SPECIALS, np.random.randn(37).astype(np.float32)])
    y = np.concatenate([SPECIALS[::-1], np.random.randn(37).astype(np.float32)])
    a, b = nd.array(x, device=device), nd.array(y, device=device)
    out = nd.NDArray.make(a.shape, device=device)
    device.ewise_gt(a._handle, b._handle, out._handle)
    same(out, x > y)
    device.scalar_gt(a._handle, -0.0, out._handle)
    same(out, x > 0)


@pytest.mark.parametrize("bad", ["x", None, [1.0, 2.0]])
def test_comparisons_reject_bad_operands(device, bad):
    a = nd.array(np.ones((2, 3), np.float32), device=device)
    for f in (lambda: a > bad, lambda: a < bad):
        with pytest.raises(TypeError, match="gt|lt"):
            f()
    with pytest.raises(ValueError, match=r"gt: shapes \(2, 3\) and \(3, 2\)"):
        a > nd.array(np.ones((3, 2), np.float32), device=device)


# ---------------------------------------------------------------- backend calls
@contextlib.contextmanager
def backend_calls(device):
    """Names of the backend functions `device` runs inside the block."""
    names, saved = [], {}
    for name, fn in list(device.__dict__.items()):
        if callable(fn) and not isinstance(fn, type) and not name.startswith("_"):
            saved[name] = fn
            device.__dict__[name] = (lambda *a, _fn=fn, _n=name: names.append(_n) or _fn(*a))
    try:
        yield names
    finally:
        device.__dict__.update(saved)


def test_relu_gradient_is_two_backend_calls(device):
    x = ndl.Tensor(np.random.randn(4, 6, 5, 5).astype(np.float32), device=device)
    y = ops.relu(x)
    g = ndl.Tensor(np.random.randn(*y.shape).astype(np.float32), device=device)
    with backend_calls(device) as calls:
        (grad,) = y.op.gradient_as_tuple(g, y)
        grad.realize_cached_data()
    assert calls == ["scalar_gt", "ewise_mul"]
    xn = x.numpy()
    np.testing.assert_array_equal(grad.numpy(), g.numpy() * (xn > 0))


def test_relu_double_backward_mask_is_constant(device):
    x = ndl.Tensor(np.random.randn(3, 4).astype(np.float32), device=device, requires_grad=True)
    g = ndl.Tensor(np.random.randn(3, 4).astype(np.float32), device=device, requires_grad=True)
    y = ops.relu(x)
    (gx,) = y.op.gradient_as_tuple(g, y)
    ops.summation(gx * gx).backward()
    assert x.grad is None  # the mask is a constant: nothing flows back to x
    np.testing.assert_array_equal(g.grad.numpy(), 2 * g.numpy() * (x.numpy() > 0))


def _conv_block(x_nhwc, bias):
    """The LeNet pattern from an NHWC conv result: NCHW view + bias, ReLU, 2x2 max pool."""
    y = permute(x_nhwc, (0, 3, 1, 2))
    y = y + ops.broadcast_to(ops.reshape(bias, (1, bias.shape[0], 1, 1)), y.shape)
    return nn.MaxPool2d(2)(ops.relu(y))


def test_bias_relu_pool_forward_copies_nothing(device):
    x = ndl.Tensor(np.random.randn(2, 6, 6, 5).astype(np.float32), device=device,
                   requires_grad=True)
    b = ndl.Tensor(np.random.randn(5).astype(np.float32), device=device, requires_grad=True)
    with backend_calls(device) as calls:
        out = _conv_block(x, b)
        out.realize_cached_data()
    assert "compact" not in calls, calls
    ref = np.maximum(x.numpy().transpose(0, 3, 1, 2) + b.numpy().reshape(1, 5, 1, 1), 0)
    np.testing.assert_array_equal(out.numpy(), ref.reshape(2, 5, 3, 2, 3, 2).max(axis=(3, 5)))
    g = ndl.Tensor(np.random.randn(*out.shape).astype(np.float32), device=device)
    with backend_calls(device) as calls:
        out.backward(g)
    # dout (a row-major N x C x Ho x Wo) is copied to NHWC once; the pool's input, the ReLU
    # mask and product stay NHWC; the bias gradient sums a row-major copy (bitwise as before)
    assert calls == ["compact", "max_pool2d_backward", "scalar_gt", "ewise_mul",
                     "compact", "reduce_sum", "compact", "reduce_sum"], calls
    assert x.grad.realize_cached_data().is_compact()  # NHWC, as the conv backward reads it


@pytest.mark.parametrize("layout", ["nhwc_memory", "nchw_memory"])
def test_max_pool_on_permuted_views_gradient_check(device, layout):
    """nn.MaxPool2d on an NCHW view of NHWC memory (read in place) and on NCHW memory."""
    rng = np.random.default_rng(3)
    # distinct values 0.1 apart (> the finite-difference step): no near-ties in a window
    spaced = (rng.permutation(180).astype(np.float32) - 90) / 10
    if layout == "nhwc_memory":
        x = ndl.Tensor(spaced.reshape(2, 6, 5, 3), device=device, requires_grad=True)

        def f(t):
            return nn.MaxPool2d(2, 1)(permute(t, (0, 3, 1, 2)) * 1.0)
    else:
        x = ndl.Tensor(spaced.reshape(2, 3, 6, 5), device=device, requires_grad=True)

        def f(t):
            return nn.MaxPool2d(2, 1)(t * 1.0)
    gradient_check(f, x, op_name=f"max_pool2d on {layout}")


def test_lenet_parameter_grads_are_compact(device):
    if device.name == "cpu_numpy":
        pytest.skip("LeNet step on the numpy spec backend is slow; cpu and cuda cover it")
    from apps.models import LeNet
    np.random.seed(0)
    model = LeNet(device=device)
    x = ndl.Tensor(np.random.randn(4, 1, 28, 28).astype(np.float32), device=device)
    y = ndl.Tensor(np.array([1, 2, 3, 4], np.float32), device=device)
    nn.SoftmaxLoss()(model(x), y).backward()
    for p in model.parameters():
        assert p.grad.realize_cached_data().is_compact(), p.shape


def test_compact_relabels_size_one_axes_without_a_copy(device):
    """NCHW with C = 1 permuted to NHWC is already row-major memory: compact() relabels the
    strides (no backend call, the same buffer) instead of copying."""
    x = nd.array(np.arange(24, dtype=np.float32).reshape(2, 1, 3, 4), device=device)
    nhwc = x.permute((0, 2, 3, 1))
    assert not nhwc.is_compact()
    out = nhwc.compact()
    assert out.is_compact() and out._handle is x._handle
    np.testing.assert_array_equal(out.numpy(), x.numpy().transpose(0, 2, 3, 1))
    sliced = nd.array(np.arange(48, dtype=np.float32).reshape(2, 2, 3, 4), device=device)[:, :1]
    copied = sliced.permute((0, 2, 3, 1)).compact()  # an offset view of a bigger buffer: copied
    assert copied._handle is not sliced._handle
    np.testing.assert_array_equal(copied.numpy(), sliced.numpy().transpose(0, 2, 3, 1))
