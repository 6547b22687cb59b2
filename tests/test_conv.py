"""conv / conv_transpose / conv_weight_grad ops and the conv modules, against direct-loop numpy
references (tests/conv_reference.py), finite differences, and torch when installed."""
import itertools

import numpy as np
import pytest

import needle as ndl
import needle.backend_ndarray as nd
import needle.nn as nn
from needle.testing import assert_close, gradient_check

from conv_reference import conv2d_loops, conv_transpose2d_loops, full_conv2d, pair


def T(x, device, requires_grad=True):
    return ndl.Tensor(np.asarray(x, dtype=np.float32), device=device, requires_grad=requires_grad)


def _case(k, s, p, d, groups, square):
    """One grid point -> (x shape, w shape, stride, padding, dilation, groups); non-square makes
    every hyper-parameter and the input differ between H and W."""
    cin = 4
    g = cin if groups == "dw" else groups
    if square:
        kernel, stride, padding, dilation, hw = (k, k), s, p, d, (9, 9)
    else:
        kernel = (k, max(1, k - 2))
        stride, padding, dilation, hw = (s, s % 3 + 1), (p, max(0, 3 - p)), (d, 3 - d), (10, 7)
    return (2,) + hw + (cin,), kernel + (cin // g, 2 * g), stride, padding, dilation, g


def _valid(case):
    xs, ws, s, p, d, g = case
    return all((n + 2 * pp - dd * (kk - 1) - 1) >= 0 for n, kk, pp, dd in
               zip(xs[1:3], ws[:2], pair(p), pair(d)))


_GRID = [c for c in (_case(*x) for x in itertools.product(
    range(1, 8), (1, 2, 3), (0, 1, 2, 3), (1, 2), (1, 2, "dw"), (True, False))) if _valid(c)]
FORWARD_CASES = _GRID[::19]  # deterministic sample over the whole grid (~50 cases)
GRAD_CASES = _GRID[5::97]  # a handful for finite differences


def _id(case):
    xs, ws, s, p, d, g = case
    return f"x{xs[1]}x{xs[2]}-k{ws[0]}x{ws[1]}-s{s}-p{p}-d{d}-g{g}"


def test_grid_covers_the_brief():
    ks = {c[1][0] for c in FORWARD_CASES}
    assert ks == set(range(1, 8))
    assert {pair(c[2])[0] for c in FORWARD_CASES} == {1, 2, 3}
    assert {pair(c[3])[0] for c in FORWARD_CASES} == {0, 1, 2, 3}
    assert {pair(c[4])[0] for c in FORWARD_CASES} == {1, 2}
    assert {c[5] for c in FORWARD_CASES} == {1, 2, 4}
    assert {c[0][1] == c[0][2] for c in FORWARD_CASES} == {True, False}


@pytest.mark.parametrize("case", FORWARD_CASES, ids=[_id(c) for c in FORWARD_CASES])
def test_conv_forward_grid(case, device):
    xs, ws, s, p, d, g = case
    x, w = np.random.randn(*xs), np.random.randn(*ws)
    out = ndl.conv(T(x, device), T(w, device), stride=s, padding=p, dilation=d, groups=g)
    assert_close(out, conv2d_loops(x, w, s, p, d, g), rtol=1e-4, atol=1e-4, what=f"conv {case}")


@pytest.mark.parametrize("case", FORWARD_CASES[::3], ids=[_id(c) for c in FORWARD_CASES[::3]])
def test_conv_transpose_forward_grid(case, device):
    xs, ws, s, p, d, g = case
    # the transposed conv maps the conv's output shape back; reuse the case's hyper-parameters
    y = np.random.randn(2, 4, 3, 2 * g)
    wt = np.random.randn(ws[0], ws[1], 2 * g, 3)
    extra = tuple(min(1, st - 1) for st in pair(s))
    size = [(n - 1) * st - 2 * pp + dd * (kk - 1) + o + 1 for n, st, pp, dd, kk, o in
            zip((4, 3), pair(s), pair(p), pair(d), ws[:2], extra)]
    if min(size) < 1:
        with pytest.raises(ValueError, match="empty output"):
            ndl.conv_transpose(T(y, device), T(wt, device), s, p, d, g, extra)
        return
    out = ndl.conv_transpose(T(y, device), T(wt, device), s, p, d, g, extra)
    expected = conv_transpose2d_loops(y, wt, s, p, d, g, extra)
    assert_close(out, expected, rtol=1e-4, atol=1e-4, what=f"conv_transpose {case}")


@pytest.mark.parametrize("case", GRAD_CASES, ids=[_id(c) for c in GRAD_CASES])
def test_conv_gradient_check(case, device):
    xs, ws, s, p, d, g = case
    x = T(np.random.randn(1, *xs[1:]), device)
    w = T(np.random.randn(*ws), device)
    gradient_check(ndl.conv, x, w, stride=s, padding=p, dilation=d, groups=g)


@pytest.mark.parametrize("s,p,d,g,op", [(2, 1, 1, 1, 1), ((1, 2), (0, 1), (2, 1), 2, (0, 1))])
def test_conv_transpose_gradient_check(device, s, p, d, g, op):
    y = T(np.random.randn(1, 3, 3, 4), device)
    w = T(np.random.randn(2, 3, 4, 6 // g), device)
    gradient_check(ndl.conv_transpose, y, w, stride=s, padding=p, dilation=d, groups=g,
                   output_padding=op)


def test_conv_weight_grad_gradient_check(device):
    """The weight-gradient op is itself differentiable (double backward of conv)."""
    x = T(np.random.randn(1, 5, 6, 4), device)
    g = T(np.random.randn(1, 3, 3, 4), device)
    gradient_check(ndl.conv_weight_grad, x, g, kernel_size=(2, 3), stride=(2, 2), padding=(1, 1),
                   dilation=(1, 1), groups=2)


def test_conv_grads_match_loop_reference(device):
    """dL/dx and dL/dw of L = sum(conv(x, w) * g) by the direct-loop adjoints."""
    x, w, go = np.random.randn(2, 8, 5, 4), np.random.randn(3, 2, 2, 6), np.random.randn(2, 2, 6, 6)
    X, W = T(x, device), T(w, device)
    ndl.conv(X, W, stride=(2, 1), padding=(0, 1), dilation=(2, 1), groups=2).backward(T(go, device))
    # the input gradient is the transposed conv of g; the weight gradient correlates x with g
    dx = conv_transpose2d_loops(go, np.swapaxes(w, 2, 3), (2, 1), (0, 1), (2, 1), 2, (1, 0))
    assert_close(X.grad, dx, rtol=1e-4, atol=1e-4, what="dx")
    dw = np.zeros_like(w)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)))
    for a, b, c, o in itertools.product(*map(range, w.shape)):
        cin = (o // 3) * 2 + c
        dw[a, b, c, o] = np.sum(xp[:, 2 * a:2 * a + 3:2, b:b + 6, cin] * go[:, :, :, o])
    assert_close(W.grad, dw, rtol=1e-4, atol=1e-4, what="dw")


def test_wrapper_and_op_defaults(device):
    x, w = np.random.randn(1, 5, 5, 2), np.random.randn(3, 3, 2, 3)
    assert ndl.conv(T(x, device), T(w, device)).shape == (1, 5, 5, 3)  # wrapper: padding 1
    assert ndl.ops.Conv()(T(x, device), T(w, device)).shape == (1, 3, 3, 3)  # op: padding 0
    out = ndl.conv(T(x, device), T(w, device), padding=2, stride=2)  # contract keywords
    assert_close(out, conv2d_loops(x, w, 2, 2), rtol=1e-4, atol=1e-4, what="keywords")


# ---------------------------------------------------------------- the d2l exercises as tests
def test_two_stacked_convs_equal_one_of_size_k1_plus_k2_minus_1(device):
    x = np.random.randn(1, 9, 10, 1)
    k1, k2 = np.random.randn(2, 3), np.random.randn(3, 2)
    two = ndl.conv(ndl.conv(T(x, device), T(k1[:, :, None, None], device), padding=0),
                   T(k2[:, :, None, None], device), padding=0)
    combined = full_conv2d(k1, k2)
    assert combined.shape == (2 + 3 - 1, 3 + 2 - 1)
    one = ndl.conv(T(x, device), T(combined[:, :, None, None], device), padding=0)
    assert_close(two, one.numpy(), rtol=1e-4, atol=1e-4, what="stacked vs combined")


def test_two_stacked_multichannel_convs_equal_one(device):
    """With channels, the combined kernel sums full convolutions over the middle channel."""
    x = np.random.randn(2, 8, 8, 3)
    w1, w2 = np.random.randn(2, 2, 3, 4), np.random.randn(3, 3, 4, 5)
    combined = np.zeros((4, 4, 3, 5))
    for c, m, o in itertools.product(range(3), range(4), range(5)):
        combined[:, :, c, o] += full_conv2d(w1[:, :, c, m], w2[:, :, m, o])
    two = ndl.conv(ndl.conv(T(x, device), T(w1, device), padding=0), T(w2, device), padding=0)
    one = ndl.conv(T(x, device), T(combined, device), padding=0)
    assert_close(two, one.numpy(), rtol=1e-4, atol=1e-4, what="stacked multichannel")


def test_not_every_3x3_kernel_splits_into_two_2x2():
    """(k1, k2) -> full_conv2d(k1, k2) maps 8 numbers to 9 with a scale symmetry: its Jacobian
    has rank 7 < 9, so the decomposable 3x3 kernels are a measure-zero set."""
    rng = np.random.default_rng(1)
    theta = rng.standard_normal(8)

    def f(t):
        return full_conv2d(t[:4].reshape(2, 2), t[4:].reshape(2, 2)).reshape(-1)

    jac = np.stack([(f(theta + 1e-6 * e) - f(theta - 1e-6 * e)) / 2e-6 for e in np.eye(8)], 1)
    assert np.linalg.matrix_rank(jac, tol=1e-6) == 7


def test_1x1_conv_is_a_matmul(device):
    x, w = np.random.randn(2, 3, 5, 6), np.random.randn(1, 1, 6, 4)
    out = ndl.conv(T(x, device), T(w, device), padding=0)
    mm = ndl.matmul(T(x.reshape(-1, 6), device), T(w.reshape(6, 4), device))
    assert_close(out, mm.numpy().reshape(2, 3, 5, 4), rtol=1e-5, atol=1e-5, what="1x1 conv")


# ---------------------------------------------------------------- native kernels vs composed
def test_im2col_compact_kernel_matches_numpy_as_strided(device):
    x = np.random.randn(2, 6, 5, 3).astype(np.float32)
    a = nd.array(x, device=device)
    shape, strides = (2, 2, 2, 3, 2, 3), (90, 30, 6, 15, 6, 1)  # stride (2, 2), dilation (1, 2)
    got = a.as_strided(shape, strides).compact().numpy()
    want = np.lib.stride_tricks.as_strided(x, shape, tuple(4 * s for s in strides))
    np.testing.assert_array_equal(got, want)


def test_col2im_scatter_add_matches_offset_loop(device):
    """scatter_add_ through the overlapping window view == adding each kernel offset's slab."""
    n, hp, wp, c, kh, kw, ho, wo, s = 2, 7, 6, 3, 3, 2, 3, 5, (2, 1)
    cols = np.random.randn(n, ho, wo, kh, kw, c).astype(np.float32)
    full = nd.array(np.zeros((n, hp, wp, c)), device=device)
    view = full.as_strided((n, ho, wo, kh, kw, c),
                           (hp * wp * c, wp * c * s[0], c * s[1], wp * c, c, 1))
    view.scatter_add_(nd.array(cols, device=device))
    ref = nd.array(np.zeros((n, hp, wp, c)), device=device)
    for a, b in itertools.product(range(kh), range(kw)):
        sl = (slice(None), slice(a, a + s[0] * (ho - 1) + 1, s[0]),
              slice(b, b + s[1] * (wo - 1) + 1, s[1]), slice(None))
        ref[sl] = ref[sl] + nd.array(cols[:, :, :, a, b, :], device=device)
    np.testing.assert_allclose(full.numpy(), ref.numpy(), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("xs,ws,kw,exc,match", [
    ((1, 3, 3, 2), (5, 5, 2, 2), {"padding": 0}, ValueError, "larger than the padded input"),
    ((1, 4, 4, 2), (3, 3, 2, 2), {"padding": 0, "dilation": 2}, ValueError, "larger"),
    ((1, 5, 5, 3), (3, 3, 2, 4), {"groups": 2}, ValueError, "groups"),
    ((1, 5, 5, 4), (3, 3, 2, 3), {"groups": 2}, ValueError, "divisible"),
    ((1, 5, 5, 2), (3, 3, 2, 2), {"stride": 0}, ValueError, "stride must be >= 1"),
    ((1, 5, 5, 2), (3, 3, 2, 2), {"dilation": (1, 0)}, ValueError, "dilation"),
    ((1, 5, 5, 2), (3, 3, 2, 2), {"padding": -1}, ValueError, "padding must be >= 0"),
    ((1, 5, 5, 2), (3, 3, 2, 2), {"stride": 1.5}, TypeError, "stride"),
    ((1, 5, 5, 2), (3, 3, 2, 2), {"groups": 0}, ValueError, "groups"),
    ((5, 5, 2), (3, 3, 2, 2), {}, ValueError, r"N x H x W x C"),
    ((1, 5, 5, 2), (3, 3, 2), {}, ValueError, "weight"),
    ((1, 5, 5, 2), (0, 3, 2, 2), {}, ValueError, "no empty dim"),
    ((1, 5, 5, 3), (3, 3, 2, 2), {}, ValueError, r"\(1, 5, 5, 3\)"),
])
def test_conv_bad_input(device, xs, ws, kw, exc, match):
    with pytest.raises(exc, match=match):
        ndl.conv(T(np.zeros(xs), device), T(np.zeros(ws), device), **kw)


def test_conv_empty_batch(device):
    x = T(np.zeros((0, 5, 5, 2)), device)
    w = T(np.random.randn(3, 3, 2, 4), device)
    y = ndl.conv(x, w)
    assert y.shape == (0, 5, 5, 4)
    y.backward()
    assert x.grad.shape == (0, 5, 5, 2) and np.all(w.grad.numpy() == 0)


def test_conv_transpose_bad_input(device):
    y, w = T(np.zeros((1, 3, 3, 4)), device), T(np.zeros((3, 3, 4, 2)), device)
    with pytest.raises(ValueError, match="output_padding"):
        ndl.conv_transpose(y, w, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="empty output"):
        ndl.conv_transpose(y, w, padding=3)
    with pytest.raises(ValueError, match="Cin"):
        ndl.conv_transpose(y, T(np.zeros((3, 3, 3, 2)), device))
    with pytest.raises(ValueError, match="divisible"):
        ndl.conv_transpose(y, w, groups=3)
    with pytest.raises(ValueError, match="does not match"):
        ndl.conv_weight_grad(y, T(np.zeros((1, 2, 2, 4)), device), kernel_size=3)


# ---------------------------------------------------------------- modules
def test_nn_conv_draw_order_and_init(device):
    np.random.seed(3)
    layer = nn.Conv(3, 5, 3, stride=2, device=device)
    np.random.seed(3)
    bound = np.sqrt(6.0 / (3 * 9))
    w = np.random.rand(3, 3, 3, 5).astype(np.float32) * (2 * bound) - bound
    b_bound = 1.0 / np.sqrt(3 * 9)
    b = np.random.rand(5).astype(np.float32) * (2 * b_bound) - b_bound
    assert_close(layer.weight, w, what="weight draw")
    assert_close(layer.bias, b, what="bias draw")
    assert layer.padding == 1 and layer.weight.shape == (3, 3, 3, 5)
    assert [p.shape for p in layer.parameters()] == [(3, 3, 3, 5), (5,)]
    np.random.seed(3)
    nb = nn.Conv(3, 5, 3, bias=False, device=device)
    after_weight_only = np.random.rand()
    np.random.seed(3)
    np.random.rand(3, 3, 3, 5)
    assert nb.bias is None and len(nb.parameters()) == 1
    assert after_weight_only == np.random.rand()  # bias=False: exactly one draw


def test_nn_conv_forward_backward_numpy(device):
    layer = nn.Conv(3, 4, 3, stride=2, device=device)
    x = np.random.randn(2, 3, 7, 8)
    xt = T(x, device)
    out = layer(xt)
    w, b = layer.weight.numpy(), layer.bias.numpy()
    ref = conv2d_loops(x.transpose(0, 2, 3, 1), w, 2, 1) + b
    assert_close(out, ref.transpose(0, 3, 1, 2), rtol=1e-4, atol=1e-4, what="nn.Conv NCHW")
    out.sum().backward()
    assert layer.weight.grad.shape == w.shape and xt.grad.shape == x.shape
    assert_close(layer.bias.grad, np.full(4, 2 * 4 * 4), what="bias grad")


def test_nn_conv2d_rejects_bad_channels(device):
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2, device=device)
    layer = nn.Conv2d(3, 4, 3, device=device)
    with pytest.raises(ValueError, match=r"Conv2d: expected NCHW input \(N, 3, H, W\)"):
        layer(T(np.zeros((1, 4, 5, 5)), device))


# ---------------------------------------------------------------- torch
def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("case", FORWARD_CASES[::4], ids=[_id(c) for c in FORWARD_CASES[::4]])
def test_conv_against_torch(case, device):
    torch = _torch()
    xs, ws, s, p, d, g = case
    x, w = np.random.randn(*xs), np.random.randn(*ws)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt.permute(0, 3, 1, 2), wt.permute(3, 2, 0, 1), stride=s,
                                    padding=p, dilation=d, groups=g).permute(0, 2, 3, 1)
    go = np.random.randn(*yt.shape)
    yt.backward(torch.tensor(go))
    X, W = T(x, device), T(w, device)
    y = ndl.conv(X, W, stride=s, padding=p, dilation=d, groups=g)
    y.backward(T(go, device))
    assert_close(y, yt.detach().numpy(), rtol=1e-4, atol=1e-4, what="forward")
    assert_close(X.grad, xt.grad.numpy(), rtol=1e-4, atol=1e-3, what="grad of input 0")
    assert_close(W.grad, wt.grad.numpy(), rtol=1e-4, atol=1e-3, what="grad of input 1")


@pytest.mark.parametrize("s,p,d,g,op", [(2, 1, 1, 1, 1), (1, 0, 2, 2, 0),
                                        ((2, 3), (1, 0), (1, 2), 4, (1, 2))])
def test_conv_transpose_against_torch(device, s, p, d, g, op):
    torch = _torch()
    y, w = np.random.randn(2, 4, 5, 4), np.random.randn(3, 2, 4, 8 // g)
    yt, wt = torch.tensor(y, requires_grad=True), torch.tensor(w, requires_grad=True)
    ot = torch.nn.functional.conv_transpose2d(
        yt.permute(0, 3, 1, 2), wt.permute(2, 3, 0, 1), stride=s, padding=p, dilation=d,
        groups=g, output_padding=op).permute(0, 2, 3, 1)
    go = np.random.randn(*ot.shape)
    ot.backward(torch.tensor(go))
    Y, W = T(y, device), T(w, device)
    out = ndl.conv_transpose(Y, W, stride=s, padding=p, dilation=d, groups=g, output_padding=op)
    out.backward(T(go, device))
    assert_close(out, ot.detach().numpy(), rtol=1e-4, atol=1e-4, what="forward")
    assert_close(Y.grad, yt.grad.numpy(), rtol=1e-4, atol=1e-3, what="grad of input 0")
    assert_close(W.grad, wt.grad.numpy(), rtol=1e-4, atol=1e-3, what="grad of input 1")


def test_conv_double_backward_against_torch(device):
    torch = _torch()
    x, w = np.random.randn(2, 6, 5, 4), np.random.randn(3, 2, 2, 6)
    go, u, v = np.random.randn(2, 3, 5, 6), np.random.randn(2, 6, 5, 4), np.random.randn(3, 2, 2, 6)
    kw = dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    xt, wt, gt = (torch.tensor(a, requires_grad=True) for a in (x, w, go))
    yt = torch.nn.functional.conv2d(xt.permute(0, 3, 1, 2), wt.permute(3, 2, 0, 1),
                                    **kw).permute(0, 2, 3, 1)
    dx, dw = torch.autograd.grad(yt, (xt, wt), gt, create_graph=True)
    ((dx * torch.tensor(u)).sum() + (dw * torch.tensor(v)).sum()).backward()
    X, W, G = T(x, device), T(w, device), T(go, device)
    ndl.conv(X, W, **kw).backward(G, create_graph=True)
    ((X.grad * T(u, device)).sum() + (W.grad * T(v, device)).sum()).backward()
    for name, ours, ref in [("x", X, xt), ("w", W, wt), ("out_grad", G, gt)]:
        assert_close(ours.grad, ref.grad.numpy(), rtol=1e-4, atol=1e-3, what=f"d2/d{name}")


def test_nn_conv_matches_torch_conv2d(device):
    torch = _torch()
    layer = nn.Conv(4, 6, 5, stride=2, device=device)
    tl = torch.nn.Conv2d(4, 6, 5, stride=2, padding=2)
    with torch.no_grad():
        tl.weight.copy_(torch.tensor(layer.weight.numpy()).permute(3, 2, 0, 1))
        tl.bias.copy_(torch.tensor(layer.bias.numpy()))
    x = np.random.randn(2, 4, 9, 8).astype(np.float32)
    assert_close(layer(T(x, device)), tl(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-4,
                 what="nn.Conv vs torch")


@pytest.mark.parametrize("cls", ["Conv2d", "ConvTranspose2d"])
def test_pytorch_style_modules_match_torch(device, cls):
    torch = _torch()
    kw = dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    if cls == "Conv2d":
        ours, ref, perm = nn.Conv2d(4, 6, (3, 2), **kw, device=device), \
            torch.nn.Conv2d(4, 6, (3, 2), **kw), (3, 2, 0, 1)
    else:
        ours, ref, perm = nn.ConvTranspose2d(4, 6, (3, 2), output_padding=(1, 0), **kw,
                                             device=device), \
            torch.nn.ConvTranspose2d(4, 6, (3, 2), output_padding=(1, 0), **kw), (2, 3, 0, 1)
    assert tuple(ref.weight.permute(*[perm.index(i) for i in range(4)]).shape) == \
        ours.weight.shape
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(ours.weight.numpy()).permute(*perm))
        ref.bias.copy_(torch.tensor(ours.bias.numpy()))
    x = np.random.randn(2, 4, 7, 6).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    X = T(x, device)
    y = ours(X)
    assert_close(y, yt.detach().numpy(), rtol=1e-4, atol=1e-4, what=f"{cls} forward")
    go = np.random.randn(*yt.shape).astype(np.float32)
    yt.backward(torch.tensor(go))
    y.backward(T(go, device))
    assert_close(X.grad, xt.grad.numpy(), rtol=1e-4, atol=1e-3, what=f"{cls} grad x")
    assert_close(ours.weight.grad, ref.weight.grad.permute(*[perm.index(i) for i in range(4)])
                 .numpy(), rtol=1e-4, atol=1e-3, what=f"{cls} grad weight")
    assert_close(ours.bias.grad, ref.bias.grad.numpy(), rtol=1e-4, atol=1e-3, what="grad bias")


def test_batchnorm2d_matches_torch(device):
    torch = _torch()
    bn = nn.BatchNorm2d(3, device=device)
    tbn = torch.nn.BatchNorm2d(3)
    x = (np.random.randn(4, 3, 5, 6) * 2 + 1).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    X = T(x, device)
    y, yt = bn(X), tbn(xt)
    assert_close(y, yt.detach().numpy(), rtol=1e-4, atol=1e-4, what="BatchNorm2d train")
    go = np.random.randn(*x.shape).astype(np.float32)
    y.backward(T(go, device))
    yt.backward(torch.tensor(go))
    assert_close(X.grad, xt.grad.numpy(), rtol=1e-3, atol=1e-4, what="BatchNorm2d grad")
    assert_close(bn.running_mean, tbn.running_mean.numpy(), rtol=1e-5, atol=1e-6,
                 what="running_mean")
    # torch keeps the unbiased variance; needle's contract keeps the biased one
    n = 4 * 5 * 6
    biased = 0.9 + 0.1 * x.transpose(1, 0, 2, 3).reshape(3, -1).var(axis=1)
    assert_close(bn.running_var, biased, rtol=1e-5, atol=1e-5, what="running_var (biased)")
    assert n > 1 and bn.running_var.shape == (3,)
    bn.eval()
    e = bn(T(x, device)).numpy()
    ref = (x - bn.running_mean.numpy().reshape(1, 3, 1, 1)) / np.sqrt(
        bn.running_var.numpy().reshape(1, 3, 1, 1) + 1e-5)
    assert_close(e, ref, rtol=1e-4, atol=1e-4, what="BatchNorm2d eval")
