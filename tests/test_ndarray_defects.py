"""Issue 12 defects in the NDArray layer: overlapping in-place writes, IEEE comparisons with NaN,
and logsumexp on infinite rows, checked on every backend against numpy."""
import needle as ndl
import needle.backend_ndarray as nd
import numpy as np
import pytest


# ---------------------------------------------------------------- overlapping in-place writes
def test_setitem_from_own_transpose(device):
    a = np.arange(16, dtype=np.float32).reshape(4, 4)
    x = nd.array(a, device=device)
    xt = x.permute((1, 0))
    xt[:, :] = x
    expect = a.copy()
    expect.T[:, :] = a.copy()  # numpy copies an overlapping source first
    np.testing.assert_array_equal(x.numpy(), expect)


def test_setitem_through_reversed_as_strided_view(device):
    a = np.arange(8, dtype=np.float32)
    x = nd.array(a, device=device)
    rev = x.as_strided((8,), (-1,), offset=7)
    rev[:] = x
    np.testing.assert_array_equal(x.numpy(), a[::-1])


def test_setitem_shifted_overlap(device):
    a = np.arange(10, dtype=np.float32)
    x = nd.array(a, device=device)
    x[1:10] = x.as_strided((9,), (1,), offset=0)  # x[1:] = x[:-1]
    expect = a.copy()
    expect[1:] = a[:-1]
    np.testing.assert_array_equal(x.numpy(), expect)


def test_scatter_add_from_own_buffer(device):
    a = np.arange(6, dtype=np.float32)
    x = nd.array(a, device=device)
    x.as_strided((6,), (-1,), offset=5).scatter_add_(x)
    np.testing.assert_array_equal(x.numpy(), a + a[::-1])


def test_raw_compact_output_aliasing_input(device):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    x = nd.array(a, device=device)
    # the transpose of x, gathered straight back into x's own buffer
    device.compact(x._handle, x._handle, (4, 3), (1, 4), 0)
    np.testing.assert_array_equal(x.numpy().reshape(4, 3), a.T)


def test_disjoint_views_of_one_buffer_still_write_in_place(device):
    a = np.arange(8, dtype=np.float32)
    x = nd.array(a, device=device)
    x[4:8] = x.as_strided((4,), (1,), offset=0)
    np.testing.assert_array_equal(x.numpy(), np.concatenate([a[:4], a[:4]]))


# ---------------------------------------------------------------- comparisons
_NAN_A = np.array([np.nan, 1.0, np.nan, 2.0, -np.inf, np.inf, 0.0], dtype=np.float32)
_NAN_B = np.array([1.0, np.nan, np.nan, 2.0, -np.inf, 3.0, -0.0], dtype=np.float32)
_COMPARISONS = {
    "lt": lambda p, q: p < q, "le": lambda p, q: p <= q, "gt": lambda p, q: p > q,
    "ge": lambda p, q: p >= q, "eq": lambda p, q: p == q, "ne": lambda p, q: p != q,
}


@pytest.mark.parametrize("name", sorted(_COMPARISONS))
def test_comparisons_follow_ieee_with_nan(device, name):
    cmp = _COMPARISONS[name]
    a, b = nd.array(_NAN_A, device=device), nd.array(_NAN_B, device=device)
    np.testing.assert_array_equal(cmp(a, b).numpy(), cmp(_NAN_A, _NAN_B).astype(np.float32),
                                  err_msg=f"{name} array-array")
    for s in (1.0, float("nan"), float("inf")):
        np.testing.assert_array_equal(cmp(a, s).numpy(), cmp(_NAN_A, np.float32(s)).astype(np.float32),
                                      err_msg=f"{name} array-scalar {s}")


# ---------------------------------------------------------------- logsumexp with infinities
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # inf - inf, as in torch
def test_logsumexp_infinite_rows_match_torch(device):
    torch = pytest.importorskip("torch")
    inf = np.inf
    z = np.array([[1.0, inf, 2.0], [-inf, -inf, -inf], [0.0, -inf, 1.0], [inf, inf, -inf]],
                 dtype=np.float32)
    x = ndl.Tensor(z, device=device, requires_grad=True)
    y = ndl.logsumexp(x, axes=(1,))
    expect = torch.logsumexp(torch.tensor(z), dim=1).numpy()
    np.testing.assert_allclose(y.numpy(), expect, rtol=1e-6)
    y.sum().backward()
    zt = torch.tensor(z, requires_grad=True)
    torch.logsumexp(zt, dim=1).sum().backward()
    # the gradient is torch's: softmax on finite rows, 0 at the finite entries of +inf rows,
    # NaN only where torch has NaN (inf - inf)
    np.testing.assert_allclose(x.grad.numpy(), zt.grad.numpy(), rtol=1e-6, equal_nan=True)


def test_logsumexp_all_axes_with_inf(device):
    x = ndl.Tensor(np.array([[-np.inf, -np.inf]], dtype=np.float32), device=device)
    assert ndl.logsumexp(x).numpy().reshape(-1)[0] == -np.inf
    x = ndl.Tensor(np.array([[np.inf, 0.0]], dtype=np.float32), device=device)
    assert ndl.logsumexp(x).numpy().reshape(-1)[0] == np.inf
