"""Pooling ops and modules: native kernels vs the composed im2col-view reference vs numpy loops
vs torch; the first-maximum tie rule; double backward; bad input."""
import itertools

import numpy as np
import pytest

import needle as ndl
import needle.backend_ndarray as nd
import needle.nn as nn
from needle.ops.ops_pool import pool_windows
from needle.testing import assert_close, gradient_check

from conv_reference import avg_pool2d_backward_loops, max_pool2d_backward_loops, pool2d_loops


def T(x, device, requires_grad=True):
    return ndl.Tensor(np.asarray(x, dtype=np.float32), device=device, requires_grad=requires_grad)


def _cases():
    out = []
    for k, s, p, hw in itertools.product((1, 2, 3, (3, 2)), (None, 1, 2, (1, 3)), (0, 1, (1, 0)),
                                         ((7, 7), (6, 9))):
        kh, kw = (k, k) if isinstance(k, int) else k
        ph, pw = (p, p) if isinstance(p, int) else p
        if 2 * ph <= kh and 2 * pw <= kw:
            out.append((k, s, p, hw))
    return out[::3]


CASES = _cases()


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("k,s,p,hw", CASES, ids=[f"k{k}-s{s}-p{p}-{hw[0]}x{hw[1]}"
                                                 for k, s, p, hw in CASES])
def test_pool_forward_backward_vs_loops(device, mode, k, s, p, hw):
    x = np.random.randn(2, *hw, 3)
    f = ndl.max_pool2d if mode == "max" else ndl.avg_pool2d
    X = T(x, device)
    y = f(X, k, s, p)
    assert_close(y, pool2d_loops(x, k, s, p, mode), rtol=1e-5, atol=1e-5, what=f"{mode} forward")
    go = np.random.randn(*y.shape)
    y.backward(T(go, device))
    if mode == "max":
        ref = max_pool2d_backward_loops(x, go, k, s, p)
    else:
        ref = avg_pool2d_backward_loops(x.shape, go, k, s, p)
    assert_close(X.grad, ref, rtol=1e-5, atol=1e-5, what=f"{mode} backward")


# Channel counts around the kernels' 8-lane vectors (C = 6 is LeNet's first pool), tiling
# windows (2 x 2 stride 2 on even sizes: no zero fill) and not (odd sizes, overlap, padding).
SMALL_C_CASES = [(c, hw, k, s, p) for c in (1, 6, 8, 13)
                 for hw, k, s, p in [((8, 10), 2, 2, 0), ((7, 9), 2, 2, 0), ((6, 7), 3, 2, 1),
                                     ((5, 6), 2, 1, 0), ((6, 6), (2, 3), (2, 1), (1, 0))]]


@pytest.mark.parametrize("c,hw,k,s,p", SMALL_C_CASES)
def test_max_pool_channels_and_windows_vs_loops(device, c, hw, k, s, p):
    x = np.random.randn(3, *hw, c).round(1)  # rounded: ties within windows are common
    x[0, 1, 1, 0] = np.nan  # a NaN wins its windows: the loops see it as +inf
    as_inf = np.where(np.isnan(x), np.inf, x)
    a = nd.array(x.astype(np.float32), device=device)
    y = nd.max_pool2d(a, k, s, p).numpy()
    want = pool2d_loops(as_inf, k, s, p, "max")
    np.testing.assert_allclose(y, np.where(np.isinf(want), np.nan, want), rtol=1e-6)
    go = np.random.randn(*y.shape)
    dx = nd.max_pool2d_backward(a, nd.array(go.astype(np.float32), device=device), k, s, p)
    np.testing.assert_allclose(dx.numpy(), max_pool2d_backward_loops(as_inf, go, k, s, p),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k,s,p", [(3, 2, 1), ((2, 3), (1, 2), (1, 0))])
def test_native_pool_matches_composed_im2col_reduce(device, k, s, p):
    x = np.random.randn(2, 7, 8, 3).astype(np.float32)
    a = nd.array(x, device=device)
    kk, ss, pp = [(v, v) if isinstance(v, int) else v for v in (k, s, p)]
    mx = pool_windows(a, kk, ss, pp, -np.inf).max(axis=3)
    av = pool_windows(a, kk, ss, pp, 0.0).sum(axis=3) / (kk[0] * kk[1])
    np.testing.assert_allclose(nd.max_pool2d(a, k, s, p).numpy(), mx.numpy(), rtol=1e-6)
    np.testing.assert_allclose(nd.avg_pool2d(a, k, s, p).numpy(), av.numpy(), rtol=1e-5,
                               atol=1e-6)


def test_max_pool_tie_rule_first_maximum(device):
    """All-equal windows: every output gradient lands on the window's top-left element."""
    x = np.ones((1, 4, 4, 1))
    X = T(x, device)
    ndl.max_pool2d(X, 2, 2).backward(T(np.arange(1, 5).reshape(1, 2, 2, 1), device))
    want = np.zeros((4, 4))
    want[0, 0], want[0, 2], want[2, 0], want[2, 2] = 1, 2, 3, 4
    assert_close(X.grad.numpy()[0, :, :, 0], want, what="tie rule")
    # overlapping windows (stride 1): each window picks its own first maximum
    x2 = np.array([[5.0, 5.0, 1.0], [0.0, 0.0, 0.0]]).reshape(1, 2, 3, 1)
    X2 = T(x2, device)
    ndl.max_pool2d(X2, (2, 2), 1).backward(T(np.ones((1, 1, 2, 1)), device))
    assert_close(X2.grad.numpy().reshape(2, 3), [[1, 1, 0], [0, 0, 0]], what="overlap tie")


def test_max_pool_padding_never_wins(device):
    x = -np.abs(np.random.randn(1, 3, 3, 2)) - 1  # all negative: zero padding would win
    y = ndl.max_pool2d(T(x, device), 3, 1, 1)
    assert (y.numpy() < 0).all()
    assert_close(y, pool2d_loops(x, 3, 1, 1, "max"), what="negative input with padding")


def test_avg_pool_counts_padding(device):
    y = ndl.avg_pool2d(T(np.ones((1, 2, 2, 1)), device), 2, 1, 1)
    assert_close(y.numpy()[0, :, :, 0], [[0.25, 0.5, 0.25], [0.5, 1, 0.5], [0.25, 0.5, 0.25]],
                 what="count_include_pad")


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool_double_backward(device, mode):
    """The backward ops are needle ops: check their own gradients by finite differences."""
    # distinct values 0.1 apart: finite-difference steps (1e-2) never change the arg-max
    x = T(np.random.permutation(60).reshape(1, 5, 6, 2) * 0.1, device)
    g = T(np.random.randn(1, 3, 3, 2), device)
    if mode == "max":
        grads = gradient_check(lambda a, d: ndl.ops.max_pool2d_grad(a, d, 3, 2, 1), x, g)
        assert np.all(grads[0] == 0)  # piecewise linear in x: zero second derivative
        gradient_check(lambda xx, a: ndl.ops.max_pool2d_gather(a, xx, 3, 2, 1), T(
            np.random.randn(1, 5, 6, 2), device), x)
    else:
        gradient_check(lambda d: ndl.ops.avg_pool2d_grad(d, (1, 5, 6, 2), 3, 2, 1), g)


def test_max_pool_gather_is_the_adjoint_of_the_native_backward(device):
    """<S(a) dout, x> == <dout, S^T x>: native scatter vs composed first-max gather."""
    a = T(np.random.randn(2, 6, 7, 3).round(1), device)  # rounding makes ties likely
    dout = np.random.randn(2, 4, 4, 3)
    x = np.random.randn(2, 6, 7, 3)
    s = ndl.ops.max_pool2d_grad(a, T(dout, device), 2, 2, (1, 1)).numpy()
    st = ndl.ops.max_pool2d_gather(a, T(x, device), 2, 2, (1, 1)).numpy()
    np.testing.assert_allclose((s * x).sum(), (dout * st).sum(), rtol=1e-4)


def test_global_avg_pool(device):
    x = np.random.randn(2, 3, 5, 4)
    X = T(x, device)
    y = ndl.global_avg_pool2d(X)
    assert_close(y, x.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6, what="global_avg_pool2d")
    gradient_check(ndl.global_avg_pool2d, T(x, device))


@pytest.mark.parametrize("call,exc,match", [
    (lambda X: ndl.max_pool2d(X, 2, 2, 2), ValueError, "at most half"),
    (lambda X: ndl.max_pool2d(X, 0), ValueError, "kernel_size must be >= 1"),
    (lambda X: ndl.avg_pool2d(X, 2, 0), ValueError, "stride must be >= 1"),
    (lambda X: ndl.avg_pool2d(X, 2, 1, -1), ValueError, "padding must be >= 0"),
    (lambda X: ndl.max_pool2d(X, 6), ValueError, "larger than padded input"),
    (lambda X: ndl.max_pool2d(ndl.reshape(X, (5, 5, 2)), 2), ValueError, "N x H x W x C"),
    (lambda X: ndl.max_pool2d(X, 2.0), TypeError, "kernel_size"),
    (lambda X: ndl.global_avg_pool2d(ndl.reshape(X, (25, 2))), ValueError, "N x H x W x C"),
])
def test_pool_bad_input(device, call, exc, match):
    with pytest.raises(exc, match=match):
        call(T(np.zeros((1, 5, 5, 2)), device))


# ---------------------------------------------------------------- modules (NCHW)
def test_pool_modules(device):
    x = np.random.randn(2, 3, 6, 5)
    X = T(x, device)
    nhwc = x.transpose(0, 2, 3, 1)
    y = nn.MaxPool2d(2)(X)
    assert_close(y, pool2d_loops(nhwc, 2, 2, 0, "max").transpose(0, 3, 1, 2), what="MaxPool2d")
    y = nn.AvgPool2d(3, 2, 1)(X)
    assert_close(y, pool2d_loops(nhwc, 3, 2, 1, "avg").transpose(0, 3, 1, 2), rtol=1e-5,
                 atol=1e-6, what="AvgPool2d")
    assert_close(nn.AdaptiveAvgPool2d((1, 1))(X), x.mean(axis=(2, 3), keepdims=True), rtol=1e-5,
                 atol=1e-6, what="AdaptiveAvgPool2d")
    assert_close(nn.GlobalAvgPool2d()(X), x.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6,
                 what="GlobalAvgPool2d")
    with pytest.raises(ValueError, match=r"only output_size \(1, 1\)"):
        nn.AdaptiveAvgPool2d((2, 2))
    with pytest.raises(ValueError, match="at most half"):
        nn.MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match="MaxPool2d: expected NCHW"):
        nn.MaxPool2d(2)(T(np.zeros((2, 3, 4)), device))


def test_pools_against_torch(device):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.randn(2, 3, 7, 6).round(1)  # ties included
    for mod, tf in [(nn.MaxPool2d((3, 2), (2, 1), (1, 1)), F.max_pool2d),
                    (nn.AvgPool2d((3, 2), (2, 1), (1, 1)), F.avg_pool2d),
                    (nn.AdaptiveAvgPool2d((1, 1)), None)]:
        xt = torch.tensor(x, requires_grad=True)
        yt = tf(xt, (3, 2), (2, 1), (1, 1)) if tf else F.adaptive_avg_pool2d(xt, (1, 1))
        X = T(x, device)
        y = mod(X)
        assert_close(y, yt.detach().numpy(), rtol=1e-5, atol=1e-5, what=f"{mod} forward")
        go = np.random.randn(*yt.shape)
        yt.backward(torch.tensor(go))
        y.backward(T(go, device))
        assert_close(X.grad, xt.grad.numpy(), rtol=1e-5, atol=1e-5, what=f"{mod} backward")
