"""1-D and 3-D convolution, transposed convolution and pooling (ops and modules) against the
numpy N-d references of tests/conv_reference.py on every device, finite differences, and torch's
conv1d/conv3d/conv_transpose{1,3}d/{max,avg}_pool{1,3}d over a random grid of configurations."""
import itertools

import numpy as np
import pytest

import needle as ndl
import needle.nn as nn
from needle.testing import assert_close, gradient_check

from conv_reference import conv_nd_loops, conv_transpose_nd_loops, pool_nd_loops

SIZES = {1: (11,), 3: (5, 6, 4)}  # spatial sizes of the test inputs (3-D: D x H x W)


def T(x, device, requires_grad=True):
    return ndl.Tensor(np.asarray(x, dtype=np.float32), device=device, requires_grad=requires_grad)


def _grid(nd, count, seed):
    """`count` random valid conv configurations with nd spatial dims: per-axis kernel 1..4
    (1-D: 1..7), stride 1..3, padding 0..2, dilation 1..2, groups 1, 2 or depthwise."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        kmax = 7 if nd == 1 else 4
        k = tuple(int(v) for v in rng.integers(1, kmax + 1, nd))
        s = tuple(int(v) for v in rng.integers(1, 4, nd))
        p = tuple(int(v) for v in rng.integers(0, 3, nd))
        d = tuple(int(v) for v in rng.integers(1, 3, nd))
        g = [1, 2, 4][int(rng.integers(0, 3))]
        if any(n + 2 * pp - dd * (kk - 1) - 1 < 0 for n, kk, pp, dd in zip(SIZES[nd], k, p, d)):
            continue
        # an int hyper-parameter now and then, as users write them
        s = s[0] if len(set(s)) == 1 and rng.random() < 0.5 else s
        cases.append((nd, k, s, p, d, g))
    return cases


CASES = _grid(1, 24, 1) + _grid(3, 24, 3)


def _id(c):
    nd, k, s, p, d, g = c
    j = "".join
    return f"{nd}d-k{j(map(str, k))}-s{s}-p{j(map(str, p))}-d{j(map(str, d))}-g{g}"


def _data(case, cin=4):
    nd, k, s, p, d, g = case
    x = np.random.randn(2, *SIZES[nd], cin)
    w = np.random.randn(*k, cin // g, 2 * g)
    return x, w


def test_grid_covers_every_hyper_parameter():
    for nd in (1, 3):
        cs = [c for c in CASES if c[0] == nd]
        assert {c[5] for c in cs} == {1, 2, 4}
        assert {max(np.atleast_1d(c[2])) for c in cs} >= {1, 2, 3}
        assert {v for c in cs for v in c[3]} == {0, 1, 2}
        assert {v for c in cs for v in c[4]} == {1, 2}


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_conv_nd_forward_matches_numpy(case, device):
    nd, k, s, p, d, g = case
    x, w = _data(case)
    out = ndl.conv(T(x, device), T(w, device), stride=s, padding=p, dilation=d, groups=g)
    assert_close(out, conv_nd_loops(x, w, s, p, d, g), rtol=1e-4, atol=1e-4, what=f"conv {case}")


@pytest.mark.parametrize("case", CASES[::4], ids=[_id(c) for c in CASES[::4]])
def test_conv_nd_transpose_forward_matches_numpy(case, device):
    nd, k, s, p, d, g = case
    extra, size = _transpose_geometry(case)
    y = np.random.randn(2, *(3,) * nd, 2 * g)
    wt = np.random.randn(*k, 2 * g, 3)
    if min(size) < 1:
        with pytest.raises(ValueError, match="conv_transpose: .*empty output"):
            ndl.conv_transpose(T(y, device), T(wt, device), s, p, d, g, extra)
        return
    out = ndl.conv_transpose(T(y, device), T(wt, device), s, p, d, g, extra)
    assert_close(out, conv_transpose_nd_loops(y, wt, s, p, d, g, extra), rtol=1e-4, atol=1e-4,
                 what=f"conv_transpose {case}")


@pytest.mark.parametrize("case", CASES[1::6], ids=[_id(c) for c in CASES[1::6]])
def test_conv_nd_gradient_check(case, device):
    nd, k, s, p, d, g = case
    x, w = _data(case)
    x = x[:1]  # one sample keeps finite differences short
    gradient_check(lambda a, b: ndl.conv(a, b, stride=s, padding=p, dilation=d, groups=g),
                   T(x, device), T(w, device), tol=3e-2, op_name=f"conv {case}")


# ---------------------------------------------------------------- torch
def _torch():
    return pytest.importorskip("torch")


def _first(x):
    """channels-last -> channels-first permutation for an array of rank nd + 2."""
    return (0, x.ndim - 1) + tuple(range(1, x.ndim - 1))


def _weight_to_torch(w, transpose=False):
    """needle K.. x A x B -> torch B x A x K.. (conv) or A x B x K.. (conv_transpose)."""
    nd = w.ndim - 2
    return w.permute((nd, nd + 1) + tuple(range(nd))) if transpose else w.permute(
        (nd + 1, nd) + tuple(range(nd)))


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_conv_nd_against_torch(case, device):
    nd, k, s, p, d, g = case
    _conv_against_torch(*_data(case), device, stride=s, padding=p, dilation=d, groups=g)


def _conv_against_torch(x, w, device, **kw):
    """ndl.conv of channels-last x, w against torch's conv{1,2,3}d: forward and both grads."""
    torch = _torch()
    nd = x.ndim - 2
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    f = getattr(torch.nn.functional, f"conv{nd}d")
    ot = f(xt.permute(_first(x)), _weight_to_torch(wt), **kw)
    ot = ot.permute((0,) + tuple(range(2, nd + 2)) + (1,))
    go = np.random.randn(*ot.shape)
    ot.backward(torch.tensor(go))
    xn, wn = T(x, device), T(w, device)
    on = ndl.conv(xn, wn, **kw)
    on.backward(T(go, device, False))
    assert_close(on, ot.detach().numpy(), rtol=1e-4, atol=1e-4, what="forward")
    assert_close(xn.grad, xt.grad.numpy(), rtol=1e-4, atol=1e-4, what="grad of input")
    assert_close(wn.grad, wt.grad.numpy(), rtol=1e-4, atol=1e-3, what="grad of weight")


def _transpose_geometry(case):
    """(output_padding, output sizes) of the transposed conv of a 3^nd input for a grid case."""
    nd, k, s, p, d, g = case
    st = (s,) * nd if isinstance(s, int) else s
    extra = tuple(min(1, v - 1) for v in st)
    return extra, [(3 - 1) * a - 2 * b + c * (kk - 1) + o + 1
                   for a, b, c, kk, o in zip(st, p, d, k, extra)]


# the grid points whose transposed conv has a non-empty output (the others raise: numpy test)
T_CASES = [c for c in CASES if min(_transpose_geometry(c)[1]) >= 1][::2]


@pytest.mark.parametrize("case", T_CASES, ids=[_id(c) for c in T_CASES])
def test_conv_transpose_nd_against_torch(case, device):
    torch = _torch()
    nd, k, s, p, d, g = case
    extra = _transpose_geometry(case)[0]
    y, w = np.random.randn(2, *(3,) * nd, 2 * g), np.random.randn(*k, 2 * g, 3)
    yt, wt = torch.tensor(y, requires_grad=True), torch.tensor(w, requires_grad=True)
    f = torch.nn.functional.conv_transpose1d if nd == 1 else torch.nn.functional.conv_transpose3d
    ot = f(yt.permute(_first(y)), _weight_to_torch(wt, True), stride=s, padding=p,
           output_padding=extra, groups=g, dilation=d)
    ot = ot.permute((0,) + tuple(range(2, nd + 2)) + (1,))
    go = np.random.randn(*ot.shape)
    ot.backward(torch.tensor(go))
    yn, wn = T(y, device), T(w, device)
    on = ndl.conv_transpose(yn, wn, s, p, d, g, extra)
    on.backward(T(go, device, False))
    assert_close(on, ot.detach().numpy(), rtol=1e-4, atol=1e-4, what="forward")
    assert_close(yn.grad, yt.grad.numpy(), rtol=1e-4, atol=1e-4, what="grad of input")
    assert_close(wn.grad, wt.grad.numpy(), rtol=1e-4, atol=1e-3, what="grad of weight")


POOL_CASES = [(nd, mode, k, s, p) for nd, mode, (k, s, p) in itertools.product(
    (1, 3), ("max", "avg"), [(2, None, 0), (3, 2, 1), (3, 1, 1), ((2, 3, 2), (1, 2, 2), (1, 1, 0))])
    if not (nd == 1 and isinstance(k, tuple))]


@pytest.mark.parametrize("case", POOL_CASES, ids=[f"{c[0]}d-{c[1]}-k{c[2]}-s{c[3]}-p{c[4]}"
                                                  for c in POOL_CASES])
def test_pool_nd_against_numpy_and_torch(case, device):
    nd, mode, k, s, p = case
    x = np.random.randn(2, *SIZES[nd], 3)
    fn = {("max", 1): ndl.ops.max_pool1d, ("max", 3): ndl.ops.max_pool3d,
          ("avg", 1): ndl.ops.avg_pool1d, ("avg", 3): ndl.ops.avg_pool3d}[mode, nd]
    xn = T(x, device)
    out = fn(xn, k, s, p)
    ref = pool_nd_loops(x, k, s, p, mode)
    assert_close(out, ref, rtol=1e-5, atol=1e-5, what=f"{mode}_pool{nd}d forward")
    go = np.random.randn(*ref.shape)
    out.backward(T(go, device, False))
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x, requires_grad=True)
    name = f"{mode}_pool{nd}d"
    ot = getattr(torch.nn.functional, name)(xt.permute(_first(x)), k, s, p)
    ot.permute((0,) + tuple(range(2, nd + 2)) + (1,)).backward(torch.tensor(go))
    assert_close(xn.grad, xt.grad.numpy(), rtol=1e-5, atol=1e-5, what=f"{name} grad of input")


@pytest.mark.parametrize("nd", [1, 3])
def test_modules_match_torch(nd, device):
    torch = _torch()
    shape = (2, 4) + SIZES[nd]
    x = np.random.randn(*shape).astype(np.float32)
    conv = (nn.Conv1d if nd == 1 else nn.Conv3d)(4, 6, 3, stride=2, padding=1, groups=2,
                                                   device=device)
    conv_t = (nn.ConvTranspose1d if nd == 1 else nn.ConvTranspose3d)(6, 4, 3, stride=2,
                                                                     padding=1, output_padding=1,
                                                                     device=device)
    pools = [getattr(nn, f"{m}Pool{nd}d")(2, 1) for m in ("Max", "Avg")]
    tconv = getattr(torch.nn, f"Conv{nd}d")(4, 6, 3, stride=2, padding=1, groups=2).double()
    tconv_t = getattr(torch.nn, f"ConvTranspose{nd}d")(6, 4, 3, stride=2, padding=1,
                                                       output_padding=1).double()
    with torch.no_grad():
        tconv.weight.copy_(_weight_to_torch(torch.tensor(conv.weight.numpy())))
        tconv.bias.copy_(torch.tensor(conv.bias.numpy()))
        tconv_t.weight.copy_(_weight_to_torch(torch.tensor(conv_t.weight.numpy()), True))
        tconv_t.bias.copy_(torch.tensor(conv_t.bias.numpy()))
    y = conv_t(conv(T(x, device)))
    yt = tconv_t(tconv(torch.tensor(x, dtype=torch.float64)))
    assert_close(y, yt.detach().numpy(), rtol=1e-4, atol=1e-4, what=f"Conv{nd}d -> ConvT{nd}d")
    for pool in pools:
        tpool = getattr(torch.nn, type(pool).__name__)(2, 1)
        assert_close(pool(y), tpool(yt).detach().numpy(), rtol=1e-4, atol=1e-4,
                     what=type(pool).__name__)
    assert "Conv" in repr(conv) and conv.weight.shape == (3,) * nd + (2, 6)


# ---------------------------------------------------------------- bad input
def test_bad_input_names_the_op_and_shapes():
    with pytest.raises(ValueError, match=r"Conv3d: expected NCDHW input \(N, 4, D, H, W\)"):
        nn.Conv3d(4, 2, 3)(T(np.zeros((1, 4, 6, 6)), None))
    with pytest.raises(ValueError, match=r"Conv1d: expected NCL input"):
        nn.Conv1d(4, 2, 3)(T(np.zeros((1, 4, 6, 6)), None))
    with pytest.raises(ValueError, match=r"conv: weight .*\(3, 3, 4, 2\).*N x D x H x W x C"):
        ndl.conv(T(np.zeros((1, 4, 5, 6, 4)), None), T(np.zeros((3, 3, 4, 2)), None))
    with pytest.raises(ValueError, match=r"conv: stride \(1, 2\) has 2 entries but the input has "
                                         r"3 spatial dims"):
        ndl.conv(T(np.zeros((1, 4, 5, 6, 4)), None), T(np.zeros((3, 3, 3, 4, 2)), None),
                 stride=(1, 2))
    with pytest.raises(ValueError, match=r"conv: kernel \(9,\) .* larger than the padded input"):
        ndl.conv(T(np.zeros((1, 5, 2)), None), T(np.zeros((9, 2, 2)), None), padding=1)
    with pytest.raises(ValueError, match=r"conv: kernel \(3, 7, 3\) .* larger than the padded"):
        ndl.conv(T(np.zeros((1, 4, 4, 4, 2)), None), T(np.zeros((3, 7, 3, 2, 2)), None))
    with pytest.raises(ValueError, match=r"max_pool3d: expected an N x D x H x W x C input"):
        ndl.ops.max_pool3d(T(np.zeros((1, 4, 4, 2)), None), 2)
    with pytest.raises(ValueError, match=r"MaxPool3d: padding \(2, 2, 2\) must be at most half"):
        nn.MaxPool3d(2, padding=2)


# ---------------------------------------------------------------- depthwise direct kernel
DW_CASES = [(2, 3, 1, 1, 1), (2, 3, 2, 1, 1), (2, 3, 1, 2, 2), (2, (3, 5), (2, 1), (0, 2), (1, 2)),
            (1, 3, 1, 1, 1), (1, 5, 2, 2, 2), (2, 7, 3, 3, 1)]


@pytest.mark.parametrize("case", DW_CASES, ids=[str(c) for c in DW_CASES])
def test_depthwise_direct_kernel_against_torch(case, device):
    """groups == Cin == Cout takes the direct kernels (forward, input and weight gradients)."""
    nd, k, s, p, d = case
    c = 6
    k = (k,) * nd if isinstance(k, int) else k
    x = np.random.randn(2, *((9, 8) if nd == 2 else (13,)), c)
    w = np.random.randn(*k, 1, c)
    _conv_against_torch(x, w, device, stride=s, padding=p, dilation=d, groups=c)


def test_depthwise_gradient_check_and_double_backward(device):
    x, w = np.random.randn(1, 6, 5, 3), np.random.randn(3, 3, 1, 3)
    gradient_check(lambda a, b: ndl.conv(a, b, stride=2, padding=1, groups=3), T(x, device),
                   T(w, device), tol=3e-2, op_name="depthwise conv")
    # second order: the gradient graph goes through the depthwise conv_transpose path too
    gradient_check(lambda a, b: ndl.conv_transpose(a, b, stride=1, padding=1, groups=3),
                   T(np.random.randn(1, 4, 4, 3), device), T(np.random.randn(3, 3, 3, 1), device),
                   tol=3e-2, op_name="depthwise conv_transpose")


def test_depthwise_backend_functions_match_the_numpy_spec():
    """The C++ (and CUDA, when built) kernels against the numpy backend, called directly."""
    import needle.backend_ndarray as nd
    x = np.random.randn(2, 7, 6, 5).astype(np.float32)
    w = np.random.randn(3, 3, 5).astype(np.float32)
    args = ((2, 1), (1, 1), (1, 2))
    outs = {}
    devices = [nd.cpu_numpy(), nd.cpu()] + ([nd.cuda()] if nd.cuda().enabled() else [])
    for dev in devices:
        xa, wa = nd.array(x, device=dev), nd.array(w, device=dev)
        y = nd.depthwise_conv2d(xa, wa, *args)
        dx = nd.depthwise_conv2d_backward_input(y, wa, x.shape, *args)
        dw = nd.depthwise_conv2d_backward_weight(xa, y, (3, 3), *args)
        outs[str(dev)] = [y.numpy(), dx.numpy(), dw.numpy()]
    ref = outs.pop(str(devices[0]))
    for name, got in outs.items():
        for what, a, b in zip(("forward", "input grad", "weight grad"), got, ref):
            assert_close(a, b, rtol=1e-4, atol=1e-4, what=f"{name} {what}")
    with pytest.raises(ValueError, match="depthwise_conv2d: expected an N x H x W x C input"):
        nd.depthwise_conv2d(nd.array(x), nd.array(w[..., :4]), *args)
