"""Zero padding in one backend call (`pad`): every backend against numpy's np.pad of the view,
for compact, transposed (an NCHW tensor padded as NHWC, few and many channels), flipped,
broadcast and offset views; what it leaves alone; its errors; and the convolution paths that use
it (a conv's padded input, the weight gradient of its live taps), gradients included."""
import numpy as np
import pytest

import needle as ndl
import needle.backend_ndarray as nd
from needle import ops
from needle.testing import assert_close, gradient_check


def _buffer(device, values):
    return nd.array(np.asarray(values, np.float32).reshape(-1), device=device)


def _view(values, shape, strides, offset):
    flat = np.asarray(values, np.float32).reshape(-1)
    return np.lib.stride_tricks.as_strided(flat[offset:], shape, [4 * s for s in strides])


CASES = [  # (buffer size, view shape, strides, offset, before, after)
    (24, (2, 3, 4), (12, 4, 1), 0, (1, 0, 2), (0, 2, 1)),                    # compact
    (3 * 5 * 7 * 9, (3, 7, 9, 5), (315, 9, 1, 63), 0, (0, 1, 2, 0), (0, 1, 0, 0)),  # NCHW as NHWC
    (2 * 3 * 6 * 6, (2, 6, 6, 3), (108, 6, 1, 36), 0, (0, 3, 3, 0), (0, 0, 0, 0)),  # 3 channels
    (4 * 32 * 4 * 4, (4, 4, 4, 32), (512, 4, 1, 16), 0, (0, 1, 1, 0), (0, 1, 1, 0)),  # W = 4
    (4 * 6 * 2 * 3, (4, 2, 3, 6), (36, 3, 1, 6), 0, (0, 2, 0, 0), (0, 0, 3, 0)),  # C = 6 < 8
    (30, (5, 6), (6, 1), 0, (2, 0), (1, 3)),
    (30, (5, 6), (-6, -1), 29, (1, 1), (1, 1)),                                 # flipped
    (7, (4, 7), (0, 1), 0, (1, 0), (0, 2)),                                     # broadcast rows
    (40, (3, 4), (10, 2), 5, (0, 1), (2, 0)),                                   # offset, gaps
    (12, (3, 0, 4), (4, 4, 1), 0, (1, 1, 1), (0, 1, 0)),                        # empty view
    (6, (2, 3), (3, 1), 0, (0, 0), (0, 0)),                                     # no padding
    (10, (10,), (1,), 0, (3,), (4,)),
    (2 * 3 * 4 * 5 * 6, (2, 4, 5, 6, 3), (360, 30, 6, 1, 120), 0, (0, 1, 0, 2, 0),
     (0, 1, 1, 0, 0)),                                                          # NCDHW as NDHWC
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_pad_kernel_matches_np_pad(device, case):
    size, shape, strides, offset, before, after = CASES[case]
    values = np.random.randn(size).astype(np.float32)
    want = np.pad(_view(values, shape, strides, offset), tuple(zip(before, after)))
    out = nd.array(np.full(want.size + 3, 7.0, np.float32), device=device)
    device.pad(_buffer(device, values)._handle, out._handle, shape, strides, offset, before,
               after)
    got = out.numpy()
    np.testing.assert_array_equal(got[:want.size].reshape(want.shape), want)
    np.testing.assert_array_equal(got[want.size:], [7.0, 7.0, 7.0])  # nothing past the result


def test_pad_kernel_big_transposes(device):
    """Sizes that take the CPU's parallel paths (an NCHW activation padded as NHWC)."""
    for n, c, h, w in ((64, 16, 8, 8), (32, 3, 32, 32), (8, 64, 17, 5)):
        x = np.random.randn(n, c, h, w).astype(np.float32)
        a = nd.array(x, device=device).permute((0, 2, 3, 1))
        got = a.pad(((0, 0), (1, 2), (3, 0), (0, 0)))
        want = np.pad(x.transpose(0, 2, 3, 1), ((0, 0), (1, 2), (3, 0), (0, 0)))
        np.testing.assert_array_equal(got.numpy(), want)
        assert got.is_compact()


BAD = [  # (error, message, shape, strides, offset, before, after, out size)
    (IndexError, "pad: view", (2, 3), (3, 1), 1, (0, 0), (0, 0), 6),
    (ValueError, "pad: before", (2, 3), (3, 1), 0, (1,), (0, 0), 20),
    (ValueError, "pad: negative padding", (2, 3), (3, 1), 0, (0, -1), (0, 0), 20),
    (ValueError, "pad: out holds 11", (2, 3), (3, 1), 0, (1, 0), (0, 1), 11),
    (ValueError, "pad: shape", (2, 3), (3,), 0, (0, 0), (0, 0), 6),
]


@pytest.mark.parametrize("case", range(len(BAD)))
def test_pad_kernel_errors_name_the_op(device, case):
    error, message, shape, strides, offset, before, after, out_size = BAD[case]
    a, out = nd.empty((6,), device=device), nd.empty((out_size,), device=device)
    with pytest.raises(error, match=message):
        device.pad(a._handle, out._handle, shape, strides, offset, before, after)


def test_ndarray_pad_is_one_call(device):
    x = np.random.randn(2, 5, 4, 3).astype(np.float32)
    a = nd.array(x, device=device).permute((0, 2, 3, 1))
    calls = []
    names = ("pad", "compact", "fill", "ewise_setitem")
    saved = {name: device.__dict__[name] for name in names}
    for name, fn in saved.items():
        device.__dict__[name] = lambda *args, fn=fn, name=name: (calls.append(name), fn(*args))[1]
    try:
        got = a.pad(((0, 0), (1, 1), (2, 0), (0, 0)))
    finally:
        device.__dict__.update(saved)
    assert calls == ["pad"]
    np.testing.assert_array_equal(got.numpy(), np.pad(x.transpose(0, 2, 3, 1),
                                                      ((0, 0), (1, 1), (2, 0), (0, 0))))


@pytest.mark.parametrize("channels", [3, 16])
def test_padded_conv_of_channels_first_input(device, channels):
    """nn.Conv with padding on an NCHW input (read as NHWC by the pad): forward and gradients
    against the numpy spec device, and the numerical gradient; a stride-2 conv whose weight
    gradient has dead taps (padded back by `pad`)."""
    rng = np.random.default_rng(channels)
    x_np = rng.standard_normal((2, channels, 5, 6)).astype(np.float32)
    for stride in (1, 2):
        results = []
        for dev in (nd.cpu_numpy(), device):
            np.random.seed(1)
            conv = ndl.nn.Conv(channels, 4, 3, stride=stride, device=dev)
            x = ndl.Tensor(x_np, device=dev)
            y = conv(x)
            (y * y).sum().backward()
            results.append([y.numpy(), x.grad.numpy(), conv.weight.grad.numpy()])
        for what, got, want in zip(("forward", "grad x", "grad w"), results[1], results[0]):
            assert_close(got, want, rtol=1e-4, atol=1e-4, what=f"stride {stride} {what}")
    x = ndl.Tensor(x_np[:1, :, :3, :4], device=device)
    w = ndl.Tensor(rng.standard_normal((3, 3, channels, 2)).astype(np.float32), device=device)
    gradient_check(lambda x, w: ops.conv(ops.ops_conv.permute(x, (0, 2, 3, 1)), w, stride=2,
                                         padding=1), x, w)
def test_input_gradient_copies_only_the_live_taps_of_the_flipped_weight(device):
    """The stride-1 input gradient (a conv with the flipped kernel) of a 3x3 conv on a 1x1
    image reads only the kernel's centre: the flipped weight is a view, and the one copy the
    GEMM needs holds the live tap (8 x 8 values), not all nine; the gradient is torch's."""
    torch = pytest.importorskip("torch")
    x_np = np.random.randn(4, 1, 1, 8).astype(np.float32)
    w_np = np.random.randn(3, 3, 8, 8).astype(np.float32)
    x = ndl.Tensor(x_np, device=device)
    w = ndl.Tensor(w_np, device=device)
    y = ops.conv(x * 1.0, w, padding=1)
    sizes = []
    saved = device.__dict__["compact"]
    device.__dict__["compact"] = lambda *args: (sizes.append(int(np.prod(args[2]))),
                                                saved(*args))[1]
    try:
        y.backward(ndl.Tensor(np.ones(y.shape, np.float32), device=device))
    finally:
        device.__dict__["compact"] = saved
    assert 3 * 3 * 8 * 8 not in sizes and 8 * 8 in sizes
    tx = torch.tensor(x_np.transpose(0, 3, 1, 2), requires_grad=True)
    tw = torch.tensor(w_np.transpose(3, 2, 0, 1))
    torch.nn.functional.conv2d(tx, tw, padding=1).sum().backward()
    assert_close(x.grad.numpy(), tx.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4,
                 what="grad x")
