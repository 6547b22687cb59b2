"""Hypothesis: random chains of views, compact and setitem agree with numpy element by element."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import needle.backend_ndarray as nd
from needle.backend_ndarray.ndarray_ewise import is_dense

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
DEVICES = ["cpu_numpy", "cpu"] + (["cuda"] if nd.cuda().enabled() else [])
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=5).map(tuple)


@st.composite
def view_chains(draw):
    """A shape plus a list of view operations valid for the running shape."""
    shape = draw(shapes)
    steps, cur = [], shape
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["permute", "slice", "broadcast", "reshape", "flip"]))
        if kind == "permute":
            axes = tuple(draw(st.permutations(range(len(cur)))))
            steps.append(("permute", axes))
            cur = tuple(cur[a] for a in axes)
        elif kind == "slice":
            idx = []
            for n in cur:
                start = draw(st.integers(0, n - 1))
                stop = draw(st.integers(start + 1, n))
                step = draw(st.integers(1, 3))
                idx.append(slice(start, stop, step))
            steps.append(("slice", tuple(idx)))
            cur = tuple(len(range(s.start, s.stop, s.step)) for s in idx)
        elif kind == "broadcast":
            new = tuple(draw(st.integers(1, 3)) if n == 1 else n for n in cur)
            steps.append(("broadcast", new))
            cur = new
        elif kind == "flip":
            axes = tuple(sorted(draw(st.sets(st.integers(0, len(cur) - 1), min_size=1))))
            steps.append(("flip", axes))
        else:
            steps.append(("reshape", (int(np.prod(cur)),)))
            cur = (int(np.prod(cur)),)
    return shape, steps


def apply(x, steps, is_numpy):
    for kind, arg in steps:
        if kind == "permute":
            x = x.transpose(arg) if is_numpy else x.permute(arg)
        elif kind == "slice":
            x = x[arg]
        elif kind == "broadcast":
            x = np.broadcast_to(x, arg) if is_numpy else x.broadcast_to(arg)
        elif kind == "flip":
            x = np.flip(x, arg) if is_numpy else x.flip(arg)
        else:
            x = x.reshape(arg)
    return x


@pytest.mark.parametrize("dev", DEVICES)
@SETTINGS
@given(chain=view_chains())
def test_view_chains_match_numpy(dev, chain):
    device = getattr(nd, dev)()
    shape, steps = chain
    x = np.random.randn(*shape).astype(np.float32)
    a = nd.array(x, device=device)
    got, want = apply(a, steps, False), apply(x, steps, True)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got.numpy(), want)
    np.testing.assert_array_equal(got.compact().numpy(), want)
    np.testing.assert_array_equal((got + 1.0).numpy(), want + 1)


@pytest.mark.parametrize("dev", DEVICES)
@SETTINGS
@given(left=view_chains(), right_steps=st.data())
def test_binary_ops_on_two_views_match_numpy(dev, left, right_steps):
    """add / mul read a strided (broadcast, permuted, flipped) operand in place: either side."""
    device = getattr(nd, dev)()
    shape, steps = left
    x = np.random.randn(*shape).astype(np.float32)
    want_x = apply(x, steps, True)
    y = np.random.randn(*want_x.shape).astype(np.float32)
    # the other operand: the same shape reached through a permute-and-back or a broadcast
    kind = right_steps.draw(st.sampled_from(["compact", "permuted", "broadcast"]))
    if kind == "compact":
        b, want_y = nd.array(y, device=device), y
    elif kind == "permuted":
        b, want_y = nd.array(y.T.copy(), device=device).permute(
            tuple(reversed(range(y.ndim)))), y
    else:
        row = y.reshape(-1)[: want_x.shape[-1]].copy()
        b = nd.array(row, device=device).reshape((1,) * (y.ndim - 1) + row.shape)
        b, want_y = b.broadcast_to(want_x.shape), np.broadcast_to(row, want_x.shape)
    a = apply(nd.array(x, device=device), steps, False)
    for got, want in ((a + b, want_x + want_y), (b + a, want_y + want_x),
                      (a * b, want_x * want_y), (b * a, want_y * want_x)):
        # dense always; row-major when an operand is (the layout rules of ndarray_ewise.py)
        assert got.shape == want.shape and is_dense(got)
        assert got.is_compact() or not (a.is_compact() or b.is_compact())
        np.testing.assert_array_equal(got.numpy(), want)


@pytest.mark.parametrize("dev", DEVICES)
@SETTINGS
@given(shape=shapes, data=st.data())
def test_setitem_through_views_matches_numpy(dev, shape, data):
    device = getattr(nd, dev)()
    x = np.random.randn(*shape).astype(np.float32)
    a = nd.array(x, device=device)
    idx = []
    for n in shape:
        start = data.draw(st.integers(0, n - 1))
        stop = data.draw(st.integers(start + 1, n))
        idx.append(slice(start, stop, data.draw(st.integers(1, 2))))
    idx = tuple(idx)
    region = x[idx].shape
    if data.draw(st.booleans()):
        val = np.random.randn(*region).astype(np.float32)
        a[idx] = nd.array(val, device=device)
        x[idx] = val
    else:
        v = data.draw(st.floats(-5, 5, width=32))
        a[idx] = v
        x[idx] = v
    np.testing.assert_array_equal(a.numpy(), x)


@pytest.mark.parametrize("dev", DEVICES)
@SETTINGS
@given(shape=shapes, data=st.data())
def test_reductions_match_numpy(dev, shape, data):
    device = getattr(nd, dev)()
    x = np.random.randn(*shape).astype(np.float32)
    a = nd.array(x, device=device)
    axes = tuple(sorted(data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))))
    keep = data.draw(st.booleans())
    np.testing.assert_allclose(a.sum(axes, keep).numpy(), x.sum(axes, keepdims=keep), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_array_equal(a.max(axes, keep).numpy(), x.max(axes, keepdims=keep))


@pytest.mark.parametrize("dev", DEVICES)
@SETTINGS
@given(chain=view_chains(), data=st.data())
def test_flat_matmul_of_any_view_matches_numpy(dev, chain, data):
    """flat_matmul reads a strided view as a matrix in place (gemm_strided_a): any view chain,
    split anywhere, against numpy on the materialised view."""
    device = getattr(nd, dev)()
    shape, steps = chain
    x = np.random.randn(*shape).astype(np.float32)
    want = apply(x, steps, True)
    a = apply(nd.array(x, device=device), steps, False)
    if a.ndim < 2:
        a, want = a.reshape(a.shape + (1,)), want.reshape(want.shape + (1,))
    row_dims = data.draw(st.integers(1, a.ndim - 1))
    m, n = int(np.prod(want.shape[:row_dims])), int(np.prod(want.shape[row_dims:]))
    y = np.random.randn(n, data.draw(st.integers(1, 9))).astype(np.float32)
    b = nd.array(y, device=device)
    if data.draw(st.booleans()):  # a column-major right operand is read in place too
        b = nd.array(y.T.copy(), device=device).permute((1, 0))
    got = nd.flat_matmul(a, b, row_dims)
    assert got.shape == (m, y.shape[1]) and got.is_compact()
    np.testing.assert_allclose(got.numpy(), want.reshape(m, n) @ y, rtol=1e-4, atol=1e-4)
