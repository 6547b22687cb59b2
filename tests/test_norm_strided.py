"""Batch norm reading its input in place through strides (batch_norm_forward_strided /
batch_norm_backward_strided): bit for bit what the row-major kernels give on the row-major copy,
on every backend, for channels-last and other dense layouts; the numpy spec's values; the op's
gradients on a channels-last input; and the copy it saves."""
import numpy as np
import pytest

import needle as ndl
import needle.backend_ndarray as nd
from needle import ops
from needle.testing import assert_close, gradient_check

# (N, C, H, W) and the memory order of the buffer the NCHW view is taken from
LAYOUTS = [
    ((4, 3, 5, 2), (0, 2, 3, 1)),     # NHWC: the conv output layout
    ((16, 32, 16, 16), (0, 2, 3, 1)),  # big enough for the parallel sums and tiles
    ((3, 7, 5, 7), (0, 2, 3, 1)),     # H*W = 35: a partial tile of pixels
    ((1, 5, 3, 3), (0, 2, 3, 1)),     # N = 1
    ((6, 1, 4, 4), (0, 2, 3, 1)),     # C = 1
    ((5, 4, 1, 1), (0, 2, 3, 1)),     # H*W = 1
    ((4, 6, 3, 2), (1, 0, 2, 3)),     # CNHW: channels outermost
    ((3, 4, 2, 5), (2, 3, 1, 0)),     # HWCN: the batch innermost
]


def _strided_input(device, shape, order):
    """An N x C x H x W view (not row-major) of a buffer laid out in `order`, and its values."""
    values = (np.random.randn(*shape) * 3 + 20).astype(np.float32)  # a large mean
    buf = nd.array(values.transpose(order).copy(), device=device)
    view = buf.permute(tuple(order.index(i) for i in range(4)))
    assert view.shape == shape and (shape[1] == 1 or not view.is_compact())
    return view, values


def _norm_strides(view):
    n, c, h, w = view.shape
    s = view.strides
    return (s[0], s[1], s[3] if w > 1 else s[2] if h > 1 else 1)


@pytest.mark.parametrize("shape,order", LAYOUTS, ids=lambda v: "x".join(map(str, v)))
def test_strided_kernels_equal_row_major_bit_for_bit(device, shape, order):
    view, values = _strided_input(device, shape, order)
    n, c = shape[:2]
    rows, inner, size = n, shape[2] * shape[3], int(np.prod(shape))
    w, b = (nd.array(np.random.rand(c).astype(np.float32) + 0.5, device=device) for _ in "wb")
    g = nd.array(np.random.randn(*shape).astype(np.float32), device=device)
    dev = device

    def run(x_handle, strides):
        out, mean, var = (nd.empty(s, device=dev) for s in (shape, (c,), (c,)))
        dx, dw, db = (nd.empty(s, device=dev) for s in (shape, (c,), (c,)))
        if strides is None:
            dev.batch_norm_forward(x_handle, w._handle, b._handle, out._handle, mean._handle,
                                   var._handle, rows, c, inner, 1e-5)
            dev.batch_norm_backward(x_handle, g._handle, w._handle, mean._handle, var._handle,
                                    dx._handle, dw._handle, db._handle, rows, c, inner, 1e-5)
        else:
            dev.batch_norm_forward_strided(x_handle, w._handle, b._handle, out._handle,
                                           mean._handle, var._handle, rows, c, inner, strides,
                                           1e-5)
            dev.batch_norm_backward_strided(x_handle, g._handle, w._handle, mean._handle,
                                            var._handle, dx._handle, dw._handle, db._handle,
                                            rows, c, inner, strides, 1e-5)
        return [a.numpy() for a in (out, mean, var, dx, dw, db)]

    got = run(view._handle, _norm_strides(view))
    want = run(view.compact()._handle, None)
    for what, a, e in zip(("out", "mean", "var", "dx", "dw", "db"), got, want):
        np.testing.assert_array_equal(a, e, err_msg=what)
    assert view.compact().size == size
    # and the values, against float64 formulas
    x64 = values.astype(np.float64)
    mean = x64.mean(axis=(0, 2, 3))
    var = x64.var(axis=(0, 2, 3))
    cs = (1, c, 1, 1)
    xhat = (x64 - mean.reshape(cs)) / np.sqrt(var.reshape(cs) + 1e-5)
    assert_close(got[0], xhat * w.numpy().reshape(cs) + b.numpy().reshape(cs), rtol=1e-4,
                 atol=1e-4, what="forward")
    assert_close(got[1], mean, rtol=1e-5, atol=1e-5, what="mean")
    assert_close(got[5], g.numpy().astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-4, atol=1e-3,
                 what="db")


def test_ndarray_batch_norm_reads_channels_last_in_place(device):
    """x.batch_norm on an NCHW view of an NHWC buffer: no compact call, same bits as on the
    row-major copy, row-major results; its backward likewise."""
    view, _ = _strided_input(device, (4, 8, 3, 5), (0, 2, 3, 1))
    w = nd.array(np.random.rand(8).astype(np.float32) + 0.5, device=device)
    b = nd.array(np.random.randn(8).astype(np.float32), device=device)
    g = nd.array(np.random.randn(4, 8, 3, 5).astype(np.float32), device=device)
    want = view.compact().batch_norm(w, b)
    want_grads = view.compact().batch_norm_backward(g, w, want[1], want[2])
    calls = []
    compact = device.__dict__["compact"]
    device.__dict__["compact"] = lambda *args: (calls.append(args[2]), compact(*args))[1]
    try:
        got = view.batch_norm(w, b)
        got_grads = view.batch_norm_backward(g, w, got[1], got[2])
    finally:
        device.__dict__["compact"] = compact
    assert calls == []
    assert got[0].is_compact() and got_grads[0].is_compact()
    for a, e in zip(got + got_grads, want + want_grads):
        np.testing.assert_array_equal(a.numpy(), e.numpy())


def test_ndarray_batch_norm_copies_other_layouts(device):
    """A view that is not dense (a slice) or whose spatial dims are not in row-major order
    among themselves is read from its row-major copy: same values as numpy."""
    base = nd.array(np.random.randn(4, 3, 6, 5).astype(np.float32), device=device)
    w = nd.array(np.ones(3, np.float32), device=device)
    b = nd.array(np.zeros(3, np.float32), device=device)
    for x in (base[:, :, 1:5, :], base.permute((0, 1, 3, 2))):
        xs = x.numpy().astype(np.float64)
        out, mean, var = x.batch_norm(w, b)
        want = (xs - xs.mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(
            xs.var(axis=(0, 2, 3), keepdims=True) + 1e-5)
        assert_close(out.numpy(), want, rtol=1e-4, atol=1e-4, what=f"strides {x.strides}")


def _channels_last(t):
    """An N x C x H x W tensor whose data is an NHWC buffer (a view, as nn.Conv returns)."""
    n, c, h, w = t.shape
    nhwc = ndl.Tensor(t.numpy().transpose(0, 2, 3, 1).copy(), device=t.device)
    return ops.ops_conv.permute(nhwc, (0, 3, 1, 2))


def test_batch_norm_op_on_channels_last_input(device):
    """ops.batch_norm of a channels-last view: forward and gradients (array path and graph
    path) as on the same values row-major, on every device against the numpy spec; and the
    numerical gradient."""
    x_np = (np.random.randn(3, 4, 5, 3) * 2 + 1).astype(np.float32)
    w_np = np.random.rand(4).astype(np.float32) + 0.5
    b_np = np.random.randn(4).astype(np.float32)
    g_np = np.random.randn(3, 4, 5, 3).astype(np.float32)

    def run(dev, channels_last, create_graph):
        x = ndl.Tensor(x_np, device=dev)
        inp = _channels_last(x) if channels_last else x
        w, b = ndl.Tensor(w_np, device=dev), ndl.Tensor(b_np, device=dev)
        y, _ = ops.batch_norm(inp, w, b)
        y.backward(ndl.Tensor(g_np, device=dev), create_graph=create_graph)
        grad_x = inp.grad if channels_last else x.grad
        return [y.numpy(), grad_x.numpy(), w.grad.numpy(), b.grad.numpy()]

    spec = run(nd.cpu_numpy(), False, False)
    for create_graph in (False, True):
        got, row_major = run(device, True, create_graph), run(device, False, create_graph)
        for what, a, r, s in zip(("forward", "grad x", "grad w", "grad b"), got, row_major,
                                 spec):
            np.testing.assert_array_equal(a, r, err_msg=what)
            assert_close(a, s, rtol=1e-4, atol=1e-4, what=what)
    x = _channels_last(ndl.Tensor(x_np[:2, :, :3, :2], device=device))
    w, b = ndl.Tensor(w_np, device=device), ndl.Tensor(b_np, device=device)
    gradient_check(lambda x, w, b: ops.batch_norm(x, w, b)[0], x, w, b)


def test_conv_batch_norm_step_copies_less(device):
    """A Conv -> BatchNorm2d training step: BatchNorm reads the conv's channels-last output in
    place (no compact of the whole activation), and the step's results are unchanged from
    reading a row-major copy."""
    def step(force_copy):
        np.random.seed(3)
        conv = ndl.nn.Conv(3, 8, 3, device=device)
        bn = ndl.nn.BatchNorm2d(8, device=device)
        x = ndl.Tensor(np.random.randn(4, 3, 6, 6).astype(np.float32), device=device)
        h = conv(x)
        if force_copy:
            h = ops.ops_conv.compact(h)
        y = bn(h)
        (y * y).sum().backward()
        return [t.numpy() for t in (y, conv.weight.grad, conv.bias.grad, bn.weight.grad)]

    compacts = []
    compact = device.__dict__["compact"]
    device.__dict__["compact"] = lambda *args: (compacts.append(args[2]), compact(*args))[1]
    try:
        got = step(False)
    finally:
        device.__dict__["compact"] = compact
    assert (4, 8, 6, 6) not in compacts  # the conv output was not made row-major
    for a, e in zip(got, step(True)):
        np.testing.assert_array_equal(a, e)


BAD = [
    ((4, 3, 2), (6, 2), "strides must be"),          # no inner stride
    ((4, 3, 2), (6, 1, 2), "not a dense layout"),    # channel and inner strides overlap
    ((4, 3, 2), (6, 3, 2), "not a dense layout"),    # a gap
    ((4, 3, 2), (-6, 2, 1), "not a dense layout"),   # negative
]


@pytest.mark.parametrize("case", range(len(BAD)))
def test_strided_kernels_reject_bad_layouts(device, case):
    (rows, c, inner), strides, message = BAD[case]
    n = rows * c * inner
    a = [nd.empty((k,), device=device)._handle for k in (n, c, c, n, c, c, n, n, c, c)]
    with pytest.raises(ValueError, match=rf"batch_norm_forward_strided: .*{message}"):
        device.batch_norm_forward_strided(a[0], a[1], a[2], a[3], a[4], a[5], rows, c, inner,
                                          strides, 1e-5)
    with pytest.raises(ValueError, match=rf"batch_norm_backward_strided: .*{message}"):
        device.batch_norm_backward_strided(a[0], a[6], a[1], a[4], a[5], a[7], a[8], a[9],
                                           rows, c, inner, strides, 1e-5)


def test_strided_kernels_reject_bad_sizes(device):
    rows, c, inner, strides = 4, 3, 2, (6, 1, 3)  # an NHWC-like layout, valid
    ok = {k: nd.empty((k,), device=device)._handle for k in (24, 3)}
    short = nd.empty((23,), device=device)._handle
    with pytest.raises(ValueError, match=r"batch_norm_forward_strided: x holds 23"):
        device.batch_norm_forward_strided(short, ok[3], ok[3], ok[24], ok[3], ok[3], rows, c,
                                          inner, strides, 1e-5)
    with pytest.raises(ValueError, match=r"batch_norm_backward_strided: dx holds 23"):
        device.batch_norm_backward_strided(ok[24], ok[24], ok[3], ok[3], ok[3], short, ok[3],
                                           ok[3], rows, c, inner, strides, 1e-5)
    with pytest.raises(ValueError, match=r"batch_norm_forward_strided: rows, channels"):
        device.batch_norm_forward_strided(ok[24], ok[3], ok[3], ok[24], ok[3], ok[3], 0, c,
                                          inner, strides, 1e-5)
