"""The conv ops' shortcuts: live-tap trimming (kernel taps that read only padding are skipped),
the weight gradient of a conv against the direct op, the padding and layout paths, and
nn's NCHW <-> NHWC moves. Every case is checked against direct-loop numpy references
(tests/conv_reference.py), finite differences, or the unshortened computation."""
import itertools

import numpy as np
import pytest

import needle as ndl
from needle import nn
from needle.ops import ops_conv
from needle.testing import assert_close, gradient_check

from conv_reference import conv2d_loops, conv_transpose2d_loops, pair


def T(x, device, requires_grad=True):
    return ndl.Tensor(np.asarray(x, dtype=np.float32), device=device, requires_grad=requires_grad)


def conv_weight_grad_loops(x, go, kernel, stride=1, padding=0, dilation=1, groups=1):
    """dW[a, b, c, o] = sum over n, i, j of x_pad[n, i*sh + a*dh, j*sw + b*dw, c'] * go[n, i, j, o]
    (c' the input channel c of o's group), one loop per tap."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = pair(kernel), pair(stride), pair(padding), \
        pair(dilation)
    x, go = np.asarray(x, np.float64), np.asarray(go, np.float64)
    n, h, w, cin = x.shape
    _, ho, wo, cout = go.shape
    cg, og = cin // groups, cout // groups
    xp = np.zeros((n, h + 2 * ph, w + 2 * pw, cin))
    xp[:, ph:ph + h, pw:pw + w, :] = x
    out = np.zeros((kh, kw, cg, cout))
    for a, b, g in itertools.product(range(kh), range(kw), range(groups)):
        pix = xp[:, a * dh:a * dh + sh * (ho - 1) + 1:sh, b * dw:b * dw + sw * (wo - 1) + 1:sw,
                 g * cg:(g + 1) * cg]
        out[a, b, :, g * og:(g + 1) * og] = np.einsum("nijc,nijo->co", pix,
                                                      go[..., g * og:(g + 1) * og])
    return out


def live_taps_brute(size, k, s, p, d, steps):
    """Taps t with some i < steps such that t*d + i*s lands on data ([p, p + size))."""
    return [t for t in range(k) if any(p <= t * d + i * s < p + size for i in range(steps))]


# ---------------------------------------------------------------- the plan itself
def test_axis_plan_matches_brute_force():
    seen_dead, seen_gap, seen_none = False, False, False
    for size, k, s, p, d in itertools.product(range(1, 6), range(1, 6), range(1, 5), range(5),
                                              range(1, 3)):
        steps = (size + 2 * p - d * (k - 1) - 1) // s + 1
        if steps < 1:
            continue
        live = live_taps_brute(size, k, s, p, d, steps)
        plan = ops_conv._axis_plan(size, k, s, p, d, steps)
        if not live:
            assert plan is None
            seen_none = True
            continue
        t0, t1, before, after, start = plan
        assert (t0, t1) == (live[0], live[-1])
        seen_dead |= len(live) < k
        seen_gap |= len(live) < t1 - t0 + 1
        # every position the kept taps meet lies in the shortened line, and its ends are met
        reached = [t * d + i * s - (p - before) for t in range(t0, t1 + 1) for i in range(steps)]
        assert min(reached) == start >= 0
        assert max(reached) <= before + size + after - 1
        assert before == 0 or min(reached) == 0
        assert after == 0 or max(reached) == before + size + after - 1
    assert seen_dead and seen_gap and seen_none


# ---------------------------------------------------------------- conv with dead taps
# (x shape N x H x W x C, w shape, stride, padding, dilation, groups)
DEAD_TAP_CASES = [
    ((2, 1, 1, 4), (3, 3, 4, 3), 1, 1, 1, 1),             # ResNet9's 1 x 1 layers: 8 of 9 dead
    ((2, 2, 2, 4), (3, 3, 4, 6), 2, 1, 1, 1),             # ResNet9's 2 x 2 stride 2: 5 of 9 dead
    ((2, 1, 1, 4), (3, 3, 2, 4), 1, 2, 1, 2),             # padding larger than the input, groups
    ((1, 1, 2, 3), (5, 5, 3, 2), (1, 2), (4, 2), 1, 1),   # padding 4 on H: 5 rows of zeros
    ((2, 1, 1, 2), (5, 5, 2, 3), 4, 4, 1, 1),             # live taps 0 and 4, dead in between
    ((1, 3, 2, 2), (3, 3, 2, 2), 2, 2, 2, 1),             # dilation 2
    ((2, 5, 4, 4), (3, 3, 1, 4), (2, 1), 1, 1, 4),        # depthwise, every tap live
    ((1, 4, 3, 2), (2, 3, 1, 4), 1, 0, (1, 1), 2),        # no padding: every tap live
    ((1, 1, 1, 2), (2, 2, 2, 3), 4, 3, 1, 1),             # every tap reads padding only
    ((2, 3, 1, 2), (3, 2, 2, 2), (1, 3), (0, 2), 1, 1),   # dead taps on W only, no padding on H
]


def _id(case):
    xs, ws, s, p, d, g = case
    return f"x{xs[1]}x{xs[2]}-k{ws[0]}x{ws[1]}-s{s}-p{p}-d{d}-g{g}"


@pytest.mark.parametrize("case", DEAD_TAP_CASES, ids=[_id(c) for c in DEAD_TAP_CASES])
def test_conv_with_dead_taps_matches_loops(case, device):
    xs, ws, s, p, d, g = case
    x, w = np.random.randn(*xs), np.random.randn(*ws)
    X, W = T(x, device), T(w, device)
    y = ndl.conv(X, W, stride=s, padding=p, dilation=d, groups=g)
    assert_close(y, conv2d_loops(x, w, s, p, d, g), rtol=1e-4, atol=1e-4, what="forward")
    go = np.random.randn(*y.shape)
    y.backward(T(go, device))
    extra = tuple((n + 2 * pp - dd * (kk - 1) - 1) % ss for n, kk, ss, pp, dd in
                  zip(xs[1:3], ws[:2], pair(s), pair(p), pair(d)))
    dx = conv_transpose2d_loops(go, np.swapaxes(w, 2, 3), s, p, d, g, extra)
    assert_close(X.grad, dx, rtol=1e-4, atol=1e-4, what="dx")
    assert_close(W.grad, conv_weight_grad_loops(x, go, ws[:2], s, p, d, g), rtol=1e-4,
                 atol=1e-4, what="dw")


@pytest.mark.parametrize("case", DEAD_TAP_CASES, ids=[_id(c) for c in DEAD_TAP_CASES])
def test_conv_with_dead_taps_gradient_check(case, device):
    xs, ws, s, p, d, g = case
    gradient_check(ndl.conv, T(np.random.randn(*xs), device), T(np.random.randn(*ws), device),
                   stride=s, padding=p, dilation=d, groups=g)


@pytest.mark.parametrize("case", DEAD_TAP_CASES, ids=[_id(c) for c in DEAD_TAP_CASES])
def test_conv_weight_grad_with_dead_taps(case, device):
    """The op on its own (no kept columns), and its own gradients (conv's second order)."""
    xs, ws, s, p, d, g = case
    x = np.random.randn(*xs)
    ho, wo = (ops_conv.conv_output_size(n, k, ss, pp, dd) for n, k, ss, pp, dd in
              zip(xs[1:3], ws[:2], pair(s), pair(p), pair(d)))
    go = np.random.randn(xs[0], ho, wo, ws[3])
    dw = ndl.conv_weight_grad(T(x, device), T(go, device), ws[:2], s, p, d, g)
    assert_close(dw, conv_weight_grad_loops(x, go, ws[:2], s, p, d, g), rtol=1e-4, atol=1e-4,
                 what="conv_weight_grad")
    gradient_check(ndl.conv_weight_grad, T(x, device), T(go, device), kernel_size=ws[:2],
                   stride=s, padding=p, dilation=d, groups=g)


# (y shape, w shape KH x KW x Cin x Cout/G, stride, padding, dilation, groups, output_padding)
TRANSPOSE_CASES = [
    ((2, 1, 1, 4), (3, 3, 4, 3), 1, 1, 1, 1, 0),          # one window, one live tap
    ((2, 1, 1, 4), (3, 3, 4, 3), 2, 1, 1, 1, 1),          # output 2 x 2 covered once
    ((1, 2, 2, 4), (3, 3, 4, 1), 2, 1, 1, 2, (1, 0)),     # groups, output_padding
    ((1, 2, 3, 2), (5, 4, 2, 2), (3, 1), (2, 1), (1, 2), 1, (2, 0)),
    ((2, 3, 3, 2), (3, 3, 2, 3), 1, 0, 1, 1, 0),          # every tap live, nothing cropped
    ((1, 1, 2, 2), (5, 3, 2, 2), (2, 1), (2, 1), 1, 1, 0),
]


@pytest.mark.parametrize("case", TRANSPOSE_CASES)
def test_conv_transpose_with_dead_taps(case, device):
    ys, ws, s, p, d, g, op = case
    y, w = np.random.randn(*ys), np.random.randn(*ws)
    out = ndl.conv_transpose(T(y, device), T(w, device), s, p, d, g, op)
    assert_close(out, conv_transpose2d_loops(y, w, s, p, d, g, op), rtol=1e-4, atol=1e-4,
                 what="conv_transpose")
    gradient_check(ndl.conv_transpose, T(y, device), T(w, device), stride=s, padding=p,
                   dilation=d, groups=g, output_padding=op)


def test_all_dead_taps_give_zeros_of_the_right_shape(device):
    x, w = T(np.random.randn(2, 1, 1, 2), device), T(np.random.randn(2, 2, 2, 3), device)
    y = ndl.conv(x, w, stride=4, padding=3)
    assert y.shape == (2, 2, 2, 3) and not y.numpy().any()
    y.backward(T(np.random.randn(2, 2, 2, 3), device))
    assert x.grad.shape == x.shape and not x.grad.numpy().any()
    assert w.grad.shape == w.shape and not w.grad.numpy().any()


def test_second_order_through_dead_taps(device):
    """f(x, w) = <dx, u> + <dw, v> with (dx, dw) the conv's gradients for a fixed out_grad: its
    autograd gradients (through conv_transpose and conv_weight_grad) against finite differences."""
    xs, ws, s, p = (1, 2, 2, 3), (3, 3, 3, 2), 2, 1
    ho = ops_conv.conv_output_size(2, 3, s, p)
    G = T(np.random.randn(1, ho, ho, 2), device, requires_grad=False)
    u = T(np.random.randn(*xs), device, requires_grad=False)
    v = T(np.random.randn(*ws), device, requires_grad=False)

    def f(x, w):
        y = ndl.conv(x, w, stride=s, padding=p)
        dx, dw = y.op.gradient_as_tuple(G, y)
        return (dx * u).sum() + (dw * v).sum()

    gradient_check(f, T(np.random.randn(*xs), device), T(np.random.randn(*ws), device))


# ---------------------------------------------------------------- weight gradients
def test_backward_weight_gradient_equals_the_direct_op(device):
    x, w = np.random.randn(2, 6, 5, 3), np.random.randn(3, 3, 3, 4)
    X, W = T(x, device), T(w, device)
    y = ndl.conv(X, W, stride=2, padding=1)
    go = T(np.random.randn(*y.shape), device)
    y.backward(go)
    direct = ndl.conv_weight_grad(T(x, device), go, 3, 2, 1)
    np.testing.assert_array_equal(W.grad.numpy(), direct.numpy())
    assert_close(W.grad, conv_weight_grad_loops(x, go.numpy(), 3, 2, 1), rtol=1e-4, atol=1e-4,
                 what="dw")


def test_replaced_input_data_is_used_by_the_weight_gradient(device):
    """Assigning x.data between forward and backward makes the weight gradient use the new data:
    gradients are built from the node's inputs as they are at backward time."""
    x0, x1, w = np.random.randn(1, 4, 4, 2), np.random.randn(1, 4, 4, 2), np.random.randn(
        3, 3, 2, 2)
    X, W = T(x0, device), T(w, device)
    y = ndl.conv(X, W)
    X.data = T(x1, device)
    go = np.random.randn(*y.shape)
    y.backward(T(go, device))
    assert_close(W.grad, conv_weight_grad_loops(x1, go, 3, 1, 1), rtol=1e-4, atol=1e-4,
                 what="dw from the replaced data")


def test_grouped_weight_gradient_equals_the_direct_op(device):
    x, w = T(np.random.randn(1, 4, 4, 2), device), T(np.random.randn(3, 3, 1, 2), device)
    y = ndl.conv(x, w, groups=2)
    go = np.random.randn(*y.shape)
    y.backward(T(go, device))
    direct = ndl.conv_weight_grad(T(x.numpy(), device), T(go, device), 3, 1, 1, groups=2)
    np.testing.assert_array_equal(w.grad.numpy(), direct.numpy())
    xs = x.numpy()
    for g in range(2):  # each group is a one-channel conv
        assert_close(w.grad.numpy()[..., g:g + 1], conv_weight_grad_loops(
            xs[..., g:g + 1], go[..., g:g + 1], 3, 1, 1), rtol=1e-4, atol=1e-4,
            what=f"dw of group {g}")


def test_one_op_called_twice_keeps_each_gradient_right(device):
    op = ndl.ops.Conv(padding=1)
    w = T(np.random.randn(3, 3, 2, 2), device)
    xs = [np.random.randn(1, 4, 4, 2) for _ in range(2)]
    ys = [op(T(x, device), w) for x in xs]  # one op object, two nodes
    go = [np.random.randn(*y.shape) for y in ys]
    (ys[0] * T(go[0], device) + ys[1] * T(go[1], device)).sum().backward()
    expected = sum(conv_weight_grad_loops(x, g, 3, 1, 1) for x, g in zip(xs, go))
    assert_close(w.grad, expected, rtol=1e-4, atol=1e-4, what="dw of both calls")


# ---------------------------------------------------------------- layouts
@pytest.mark.parametrize("c", [3, 16])  # few channels take the permuted-write padding path
def test_conv_of_a_permuted_input(device, c):
    """An NHWC view of an NCHW array (what nn.Conv passes), padded and not."""
    x = np.random.randn(2, c, 5, 6)
    w = np.random.randn(3, 3, c, 4)
    X = T(x, device)
    for p, s in [(1, 1), (0, 2), (2, 3)]:
        y = ndl.conv(ndl.ops.ops_conv.permute(X, (0, 2, 3, 1)), T(w, device), stride=s,
                     padding=p)
        assert_close(y, conv2d_loops(x.transpose(0, 2, 3, 1), w, s, p), rtol=1e-4, atol=1e-4,
                      what=f"conv of a permuted input, padding {p} stride {s}")


def test_permute_op(device):
    x = np.random.randn(2, 3, 4, 5)
    out = ops_conv.permute(T(x, device), (0, 2, 3, 1))
    assert_close(out, x.transpose(0, 2, 3, 1), what="permute")
    gradient_check(ops_conv.permute, T(x, device), axes=(3, 0, 2, 1))
    with pytest.raises(ValueError, match="permutation"):
        ops_conv.permute(T(x, device), (0, 1, 1, 2))


@pytest.mark.parametrize("hw,stride", [((1, 1), 1), ((2, 2), 2), ((3, 1), 1)])
def test_nn_conv_on_tiny_inputs(device, hw, stride):
    """nn.Conv where H*W == 1 (the NCHW <-> NHWC moves are reshapes) or small, against loops."""
    layer = nn.Conv(4, 6, 3, stride=stride, device=device)
    x = np.random.randn(2, 4, *hw)
    X = T(x, device)
    y = layer(X)
    w, b = layer.weight.numpy(), layer.bias.numpy()
    ref = (conv2d_loops(x.transpose(0, 2, 3, 1), w, stride, 1) + b).transpose(0, 3, 1, 2)
    assert_close(y, ref, rtol=1e-4, atol=1e-4, what="nn.Conv forward")
    go = np.random.randn(*y.shape)
    y.backward(T(go, device))
    go_nhwc = go.transpose(0, 2, 3, 1)
    extra = tuple((n + 2 - 2 - 1) % stride for n in hw)
    dx = conv_transpose2d_loops(go_nhwc, np.swapaxes(w, 2, 3), stride, 1, 1, 1, extra)
    assert_close(X.grad, dx.transpose(0, 3, 1, 2), rtol=1e-4, atol=1e-4, what="dx")
    assert_close(layer.weight.grad, conv_weight_grad_loops(
        x.transpose(0, 2, 3, 1), go_nhwc, 3, stride, 1), rtol=1e-4, atol=1e-4, what="dw")
    assert_close(layer.bias.grad, go.sum(axis=(0, 2, 3)), rtol=1e-4, atol=1e-4, what="db")


def test_pools_on_a_1x1_input(device):
    x = np.random.randn(2, 3, 1, 1)
    X = T(x, device)
    y = nn.MaxPool2d(1)(X)
    assert_close(y, x, what="max pool 1 x 1")
    y.backward(T(np.ones(y.shape), device))
    assert_close(X.grad, np.ones(x.shape), what="max pool gradient")


def test_conv_transpose_input_gradient_as_a_graph(device):
    """conv_transpose's input gradient is a conv; built as a graph node it has the same values."""
    y, w = np.random.randn(1, 3, 3, 2), np.random.randn(3, 3, 2, 2)
    Y, W = T(y, device), T(w, device)
    out = ndl.conv_transpose(Y, W, padding=1)
    go = np.random.randn(*out.shape)
    out.backward(T(go, device), create_graph=True)  # gradients that are graph nodes
    assert isinstance(Y.grad.op, ops_conv.Conv)
    assert_close(Y.grad, conv2d_loops(go, np.swapaxes(w, 2, 3), 1, 1), rtol=1e-4, atol=1e-4,
                 what="conv_transpose input gradient")
