"""The PyTorch-style Tensor surface against numpy and torch: indexing (forward, gradient,
gradient_check on every device), to/item/T/mean/max/min/argmax/reshape/view, comparisons,
len/bool/__array__, and numpy operands that must not drop the graph."""
import numpy as np
import pytest

import needle as ndl
from needle.testing import gradient_check

torch = pytest.importorskip("torch")

# (index, torch's spelling or None when torch's rules differ from numpy's)
INDICES = [
    (2, 2),
    (-1, -1),
    ((1, -2), (1, -2)),
    (slice(1, 4), slice(1, 4)),
    ((slice(None, None, 2), slice(4, 0, -2)), None),  # torch has no negative steps
    ((slice(None, None, -1), 0), None),
    ((Ellipsis, 1), (Ellipsis, 1)),
    ((None, 1, Ellipsis, None), (None, 1, Ellipsis, None)),
    ((slice(None), None, slice(2, None)), (slice(None), None, slice(2, None))),
    ([0, 3, 3, 1], [0, 3, 3, 1]),
    ((slice(None), [4, 0, 4]), (slice(None), [4, 0, 4])),
    (([0, 1, 2], [1, -1, 1]), ([0, 1, 2], [1, -1, 1])),
    (([[0, 1], [3, 3]], slice(None, 3)), ([[0, 1], [3, 3]], slice(None, 3))),
    ((1, [2, 0], slice(None, None, 3)), (1, [2, 0], slice(None, None, 3))),
    ((slice(None), [1, 1], [0, 5]), (slice(None), [1, 1], [0, 5])),
    ((np.array([2, 0]), Ellipsis, -1), (np.array([2, 0]), Ellipsis, -1)),
    ((slice(5, 2), 0), (slice(5, 2), 0)),  # empty
]
SHAPE = (4, 5, 6)


def _torch_index(index):
    entries = index if isinstance(index, tuple) else (index,)
    out = tuple(torch.tensor(e) if isinstance(e, (list, np.ndarray)) else e for e in entries)
    return out if isinstance(index, tuple) else out[0]


def _reference_grad(index, g):
    """numpy's scatter-add of g into zeros of SHAPE through `index` (repeats add up)."""
    out = np.zeros(int(np.prod(SHAPE)), dtype=np.float64)
    positions = np.arange(out.size).reshape(SHAPE)[index]
    np.add.at(out, positions.reshape(-1), g.reshape(-1))
    return out.reshape(SHAPE)


@pytest.mark.parametrize("k", range(len(INDICES)), ids=[repr(i[0]) for i in INDICES])
def test_getitem_forward_and_gradient(device, k):
    index, torch_index = INDICES[k]
    x = np.random.randn(*SHAPE).astype(np.float32)
    t = ndl.Tensor(x, device=device)
    out = t[index]
    ref = x[index]
    assert tuple(out.shape) == ref.shape
    np.testing.assert_array_equal(out.numpy(), ref)
    g = np.random.randn(*ref.shape).astype(np.float32)
    (out * ndl.Tensor(g, device=device, requires_grad=False)).sum().backward()
    expected = _reference_grad(index, g)
    diff = float(np.max(np.abs(t.grad.numpy() - expected)))
    if torch_index is not None:
        tt = torch.tensor(x, requires_grad=True)
        tout = tt[_torch_index(torch_index)]
        assert tuple(tout.shape) == ref.shape
        (tout * torch.tensor(g)).sum().backward()
        diff = max(diff, float(np.max(np.abs(t.grad.numpy() - tt.grad.numpy()))))
    print(f"getitem {index!r}: max grad difference {diff:.1e}")
    assert diff < 1e-5


@pytest.mark.parametrize("index", [(1, slice(None, None, -2)), ([2, 0, 2], None, slice(1, 3)),
                                   (Ellipsis, [1, 1])], ids=repr)
def test_getitem_gradient_check(device, index):
    x = ndl.Tensor(np.random.randn(3, 4).astype(np.float32), device=device)
    gradient_check(lambda a: a[index], x, op_name=f"getitem{index!r}")


def test_getitem_second_order(device):
    """The gradient of getitem is itself differentiable (scatter <-> gather)."""
    x = ndl.Tensor(np.random.randn(4, 3).astype(np.float32), device=device)
    y = (x[[0, 0, 2]] ** 2).sum()
    y.backward(create_graph=True)
    gx = x.grad
    np.testing.assert_allclose(gx.numpy()[0], 4 * x.numpy()[0], rtol=1e-5)
    (gx * gx).sum().backward()
    expected = np.zeros((4, 3), np.float32)
    expected[0] = 32 * x.numpy()[0]
    expected[2] = 8 * x.numpy()[2]
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-4)


def test_getitem_tensor_index_and_iteration(device):
    x = np.random.randn(5, 2).astype(np.float32)
    t = ndl.Tensor(x, device=device)
    idx = ndl.Tensor([4, 1], device=device, requires_grad=False)  # float32 in NDArray mode
    np.testing.assert_array_equal(t[idx].numpy(), x[[4, 1]])
    rows = [r.numpy() for r in t]  # the sequence protocol: len() and t[i]
    np.testing.assert_array_equal(np.stack(rows), x)


@pytest.mark.parametrize("index,err,pattern", [
    (5, IndexError, r"Tensor.__getitem__: index 5 is out of range for dim 0 of size 4"),
    ((0, 0, 0, 0), IndexError, r"too many indices \(4\)"),
    ((Ellipsis, Ellipsis), IndexError, r"only have one ellipsis"),
    ([0, 9], IndexError, r"index 9 is out of range for dim 0"),
    (True, TypeError, r"bool indices are not supported"),
    (np.array([True, False, True, True]), IndexError, r"boolean masks are not supported"),
    (1.5, TypeError, r"unsupported index type float"),
    (slice(0, 2, 0), ValueError, r"slice step cannot be zero"),
    (slice(0.5, 2), TypeError, r"slice bounds must be ints"),
    ([0.5], IndexError, r"index arrays must hold integers"),
])
def test_getitem_errors(index, err, pattern):
    t = ndl.Tensor(np.zeros(SHAPE, np.float32))
    with pytest.raises(err, match=pattern):
        t[index]


def test_to_and_item(device):
    x = np.random.randn(2, 3).astype(np.float32)
    t = ndl.Tensor(x, device=device)
    assert t.to(device) is t and t.to(str(device)[:-2]) is t
    other = ndl.cpu_numpy() if device != ndl.cpu_numpy() else ndl.cpu()
    moved = t.to(other)
    assert moved.device == other
    np.testing.assert_array_equal(moved.numpy(), x)
    (moved * 3).sum().backward()  # the move is differentiable
    np.testing.assert_array_equal(t.grad.numpy(), np.full((2, 3), 3.0))
    assert t.grad.device == device
    assert t[1, 2].item() == pytest.approx(float(x[1, 2]))
    assert isinstance(t.sum().item(), float) and float(t[0, 0]) == t[0, 0].item()
    with pytest.raises(ValueError, match=r"Tensor.item: only one-element tensors .* shape \(2, 3\)"):
        t.item()
    with pytest.raises(ValueError, match=r"Tensor.to: unknown device 'tpu'"):
        t.to("tpu")
    with pytest.raises(TypeError, match=r"Tensor.to: expected a device"):
        t.to(3)
    with pytest.raises(TypeError, match=r"Tensor.to: cannot convert float32 to int64"):
        t.to(dtype="int64")


def _pair(device, shape=(3, 4, 5)):
    x = np.random.randn(*shape).astype(np.float32)
    return x, ndl.Tensor(x, device=device), torch.tensor(x, requires_grad=True)


def _check(out, tout, t, tt, what):
    assert tuple(out.shape) == tuple(tout.shape), what
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-6, atol=1e-6,
                               err_msg=what)
    g = np.asarray(np.random.randn(*tout.shape), dtype=np.float32)
    t.grad = None
    tt.grad = None
    (out * ndl.Tensor(g, device=t.device, requires_grad=False)).sum().backward()
    (tout * torch.tensor(g)).sum().backward()
    diff = float(np.max(np.abs(t.grad.numpy() - tt.grad.numpy())))
    print(f"{what}: max grad difference {diff:.1e}")
    assert diff < 1e-5, what


@pytest.mark.parametrize("kw,tkw", [({}, {}), ({"dim": 1}, {"dim": 1}),
                                    ({"dim": (0, 2), "keepdim": True}, {"dim": (0, 2),
                                                                        "keepdim": True}),
                                    ({"axes": -1, "keepdims": True}, {"dim": -1, "keepdim": True})])
def test_mean_matches_torch(device, kw, tkw):
    _, t, tt = _pair(device)
    _check(t.mean(**kw), tt.mean(**tkw), t, tt, f"mean {kw}")


def test_max_min_argmax_match_torch(device):
    x, t, tt = _pair(device)
    _check(t.max(), tt.max(), t, tt, "max()")
    _check(t.min(), tt.min(), t, tt, "min()")
    for dim, keep in ((1, False), (-1, True), (0, False)):
        for name in ("max", "min"):
            res, tres = getattr(t, name)(dim, keepdim=keep), getattr(tt, name)(dim, keepdim=keep)
            _check(res.values, tres.values, t, tt, f"{name}({dim}, keepdim={keep})")
            np.testing.assert_array_equal(res.indices.numpy(), tres.indices.numpy())
        np.testing.assert_array_equal(t.argmax(dim, keepdim=keep).numpy(),
                                      tt.argmax(dim, keepdim=keep).numpy())
        np.testing.assert_array_equal(t.argmin(dim=dim).numpy(), tt.argmin(dim=dim).numpy())
    assert t.argmax().item() == tt.argmax().item() and t.argmax().shape == ()
    _check(t.max(axes=(0, 2)), tt.amax(dim=(0, 2)), t, tt, "max(axes=(0, 2))")
    _check(t.min(axes=1, keepdims=True), tt.amin(dim=1, keepdim=True), t, tt, "min(axes=1)")


def test_max_ties_share_the_gradient(device):
    t = ndl.Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]], np.float32), device=device)
    t.max(axes=1).sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), [[0, 0.5, 0.5], [0.5, 0, 0.5]])


def test_T_reshape_view_match_torch(device):
    _, t, tt = _pair(device)
    _check(t.T, tt.permute(2, 1, 0), t, tt, ".T (3-D: dims reversed)")
    m, tm = ndl.Tensor(np.ones((2, 3), np.float32), device=device), torch.ones(2, 3)
    assert m.T.shape == tm.T.shape == (3, 2)
    _check(t.reshape(4, -1), tt.reshape(4, -1), t, tt, "reshape(4, -1)")
    _check(t.reshape((60,)), tt.reshape((60,)), t, tt, "reshape((60,))")
    _check(t.view(5, 3, 4), tt.view(5, 3, 4), t, tt, "view(5, 3, 4)")
    with pytest.raises(ValueError, match=r"Tensor.reshape: cannot reshape \(3, 4, 5\) into"):
        t.reshape(7, -1)
    with pytest.raises(TypeError, match=r"Tensor.reshape: sizes must be ints"):
        t.reshape(2.5, 24)


def test_reduction_argument_errors():
    t = ndl.Tensor(np.zeros((2, 3), np.float32))
    with pytest.raises(IndexError, match=r"Tensor.mean: dim 2 is out of range for a tensor of "
                                         r"rank 2"):
        t.mean(dim=2)
    with pytest.raises(TypeError, match=r"Tensor.mean: give axes= or dim=, not both"):
        t.mean(axes=0, dim=0)
    with pytest.raises(TypeError, match=r"Tensor.max: dim must be an int"):
        t.max(dim=(0, 1))
    with pytest.raises(TypeError, match=r"Tensor.argmax: keepdim must be a bool"):
        t.argmax(0, keepdim="yes")
    with pytest.raises(ValueError, match=r"max: reduction over a zero-size tensor"):
        ndl.Tensor(np.zeros((0, 3), np.float32)).max()


COMPARISONS = ["eq", "ne", "lt", "le", "gt", "ge"]


@pytest.mark.parametrize("name", COMPARISONS)
def test_comparisons_match_torch(device, name):
    a = np.array([[1.0, 2.0, np.nan], [0.0, -1.0, 3.0]], np.float32)
    b = np.array([[1.0, 3.0, np.nan], [np.nan, -2.0, 3.0]], np.float32)
    ta, tb = ndl.Tensor(a, device=device), ndl.Tensor(b, device=device)
    expected = getattr(torch, name)(torch.tensor(a), torch.tensor(b)).numpy().astype(np.float32)
    for out in (getattr(ndl, name)(ta, tb), getattr(ta, name)(tb)):
        assert out.op is None and not out.requires_grad
        np.testing.assert_array_equal(out.numpy(), expected, err_msg=name)
    row = ndl.Tensor(b[1], device=device)  # broadcast (3,) against (2, 3)
    np.testing.assert_array_equal(getattr(ndl, name)(ta, row).numpy(),
                                  getattr(torch, name)(torch.tensor(a), torch.tensor(b[1]))
                                  .numpy().astype(np.float32))
    np.testing.assert_array_equal(getattr(ta, name)(1.0).numpy(),
                                  getattr(torch, name)(torch.tensor(a), 1.0).numpy())


def test_comparison_operators_and_identity_equality(device):
    a = ndl.Tensor(np.array([1.0, 2.0, 3.0], np.float32), device=device)
    b = ndl.Tensor(np.array([2.0, 2.0, 2.0], np.float32), device=device)
    np.testing.assert_array_equal((a < b).numpy(), [1, 0, 0])
    np.testing.assert_array_equal((a <= b).numpy(), [1, 1, 0])
    np.testing.assert_array_equal((a > 2).numpy(), [0, 0, 1])
    np.testing.assert_array_equal((a >= b).numpy(), [0, 1, 1])
    c = ndl.Tensor(a.numpy(), device=device)
    # == / != / hash stay identity (contract §4.1): equal values, different tensors
    assert (a == a) is True and (a == c) is False and (a != c) is True
    assert len({a, c, a}) == 2 and {a: 1}[a] == 1
    with pytest.raises(TypeError, match=r"eq: expected a Tensor or a number"):
        ndl.eq(a, "x")
    with pytest.raises(ValueError, match=r"lt: shapes \(3,\) and \(2,\) do not broadcast"):
        ndl.lt(a, ndl.Tensor(np.ones(2, np.float32), device=device))


def test_len_bool_array(device):
    x = np.random.randn(3, 2).astype(np.float32)
    t = ndl.Tensor(x, device=device)
    assert len(t) == 3
    np.testing.assert_array_equal(np.asarray(t), x)
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    assert bool(ndl.Tensor([2.0], device=device)) and not bool(ndl.Tensor([[0.0]], device=device))
    with pytest.raises(ValueError, match=r"bool\(Tensor\): the truth value of a tensor of shape "
                                         r"\(3, 2\) is ambiguous"):
        bool(t)
    with pytest.raises(TypeError, match=r"len\(\) of a 0-d tensor"):
        len(t[0, 0])
    with pytest.raises(TypeError, match=r"len\(\) of a 0-d tensor"):
        list(t[0, 0])
    assert [r.shape for r in t] == [(2,)] * 3


def test_numpy_operands_keep_the_graph(device):
    """np.float32(2) * t and array + t go through needle's operators, never into numpy."""
    x = np.random.randn(2, 3).astype(np.float32)
    arr = np.random.randn(2, 3).astype(np.float32)
    t = ndl.Tensor(x, device=device)
    results = {
        "np.float32(2) * t": (np.float32(2) * t, 2 * np.ones_like(x)),
        "t * np.float32(2)": (t * np.float32(2), 2 * np.ones_like(x)),
        "arr + t": (arr + t, np.ones_like(x)),
        "arr - t": (arr - t, -np.ones_like(x)),
        "arr * t": (arr * t, arr),
        "arr / t": (arr / t, -arr / x ** 2),
        "np.float64(3) - t": (np.float64(3) - t, -np.ones_like(x)),
    }
    for what, (out, grad) in results.items():
        assert isinstance(out, ndl.Tensor), what
        assert out.op is not None, f"{what} dropped the graph"
        t.grad = None
        out.sum().backward()
        np.testing.assert_allclose(t.grad.numpy(), grad, rtol=1e-5, err_msg=what)
    if ndl.BACKEND == "np":  # numpy mode: t + array broadcasts, in the graph
        assert (t + arr).op is not None
    else:  # NDArray mode refuses an array where a scalar goes: an error, not a dropped graph
        with pytest.raises(TypeError, match=r"AddScalar: add: expected an NDArray or a scalar"):
            t + arr
    np.testing.assert_allclose((arr - t).numpy(), arr - x, rtol=1e-6)
    np.testing.assert_allclose((arr @ t.T).numpy(), arr @ x.T, rtol=1e-5)
    with pytest.raises(ValueError):  # NDArray ops do not broadcast: raise, never drop the graph
        if ndl.BACKEND != "np":
            np.ones((4, 3), np.float32) + t
        else:
            raise ValueError("numpy mode broadcasts")
