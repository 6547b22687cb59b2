"""The eager mode's shortcuts: geometry caches keyed by shapes and strides (bounded, right for
every shape, stride and device they see), internal NDArray constructors, and the argument checks
that stay at the public entry points (bad input still raises, naming the op and the shapes)."""
import numpy as np
import pytest

import needle as ndl
from needle.backend_ndarray import linalg
from needle.backend_ndarray import ndarray as nda
from needle.ops import ops_conv, ops_conv_geometry

GEOMETRY_CACHES = [
    nda._reduction_layout, linalg._merged_dims, ops_conv._expanded_geometry,
    ops_conv._conv_output_shape, ops_conv._transpose_output_shape,
    ops_conv._weight_grad_geometry, ops_conv_geometry._window_layout,
    ops_conv_geometry._plan_parts, ops_conv_geometry._live_kernel,
]


@pytest.mark.parametrize("cache", GEOMETRY_CACHES, ids=lambda c: c.__name__)
def test_geometry_caches_are_bounded(cache):
    maxsize = cache.cache_info().maxsize
    assert maxsize is not None and 0 < maxsize <= 4096


def test_reduction_layout_cache_stays_bounded_over_many_shapes(device):
    for n in range(1, nda._reduction_layout.cache_info().maxsize + 40):
        x = nda.array(np.ones((n, 2), dtype=np.float32), device=device)
        assert x.sum(axis=0).numpy().tolist() == [float(n), float(n)]
    info = nda._reduction_layout.cache_info()
    assert info.currsize <= info.maxsize


@pytest.mark.parametrize("shape, axes", [((2, 3, 4, 5), (0, 2, 3)), ((2, 3, 4, 5), (1,)),
                                          ((4, 5), (0,)), ((4, 5), (1,)), ((3, 1, 4), (0, 2))])
@pytest.mark.parametrize("keepdims", [False, True])
def test_sums_through_the_cached_layout_match_numpy(device, shape, axes, keepdims):
    a = np.random.randn(*shape).astype(np.float32)
    for arr, ref in ((a, a), (a.transpose(), a.transpose())):  # compact, then permuted strides
        x = nda.array(a, device=device)
        if arr is not a:
            x = x.permute(tuple(reversed(range(len(shape)))))
            ax = tuple(len(shape) - 1 - i for i in axes)
        else:
            ax = axes
        got = x.sum(axis=ax, keepdims=keepdims).numpy()
        want = ref.sum(axis=ax, keepdims=keepdims)
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-5, atol=1e-5)


def _windows_numpy(buf, start, kernel, stride, steps):
    n, c = buf.shape[0], buf.shape[-1]
    out = np.empty((n,) + steps + kernel + (c,), dtype=np.float32)
    for o in np.ndindex(*steps):
        for t in np.ndindex(*kernel):
            idx = tuple(s + oi * st + ti for s, oi, st, ti in zip(start, o, stride, t))
            out[(slice(None),) + o + t] = buf[(slice(None),) + idx]
    return out


@pytest.mark.parametrize("permuted", [False, True], ids=["compact", "nchw_view"])
def test_window_view_same_shape_other_strides(device, permuted):
    """The window layout is cached by shape and strides: a compact NHWC buffer and an NCHW
    buffer seen as NHWC (same shape, other strides) each get their own view."""
    nhwc = np.random.randn(2, 6, 5, 3).astype(np.float32)
    if permuted:
        buf = nda.array(nhwc.transpose(0, 3, 1, 2).copy(), device=device).permute((0, 2, 3, 1))
    else:
        buf = nda.array(nhwc, device=device)
    start, kernel, stride, steps = (1, 0), (2, 3), (2, 1), (2, 3)
    view = ops_conv_geometry._window_view(buf, start, kernel, stride, (1, 1), steps, 1)
    np.testing.assert_array_equal(view.numpy(), _windows_numpy(nhwc, start, kernel, stride,
                                                               steps))


def test_conv_on_every_device_after_the_cache_is_warm(device):
    """Geometry cached from a cpu call serves another device's call of the same shapes."""
    x = np.random.randn(2, 5, 5, 3).astype(np.float32)
    w = np.random.randn(3, 3, 3, 4).astype(np.float32)
    results = []
    for dev in (ndl.cpu(), device):
        out = ops_conv.conv(ndl.Tensor(x, device=dev), ndl.Tensor(w, device=dev), stride=2,
                            padding=1)
        results.append(out.numpy())
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("repeat", range(2))  # errors are raised again, never cached
def test_conv_shape_errors_are_not_cached(device, repeat):
    x = ndl.Tensor(np.zeros((1, 4, 4, 3), dtype=np.float32), device=device)
    w = ndl.Tensor(np.zeros((3, 3, 2, 4), dtype=np.float32), device=device)
    with pytest.raises(ValueError, match=r"conv.*\(1, 4, 4, 3\).*\(3, 3, 2, 4\)"):
        ops_conv.conv(x, w)
    g = ndl.Tensor(np.zeros((1, 3, 3, 4), dtype=np.float32), device=device)
    with pytest.raises(ValueError, match=r"conv_weight_grad.*\(1, 3, 3, 4\).*\(1, 4, 4, 3\)"):
        ops_conv.conv_weight_grad(x, g, (3, 3), padding=1)
    wt = ndl.Tensor(np.zeros((3, 3, 2, 2), dtype=np.float32), device=device)
    with pytest.raises(ValueError, match=r"conv_transpose: input \(1, 4, 4, 3\) and weight "
                                         r"\(3, 3, 2, 2\)"):
        ops_conv.conv_transpose(x, wt, stride=2, output_padding=1)


@pytest.mark.parametrize("bad, error, pattern", [
    ((5, 7), ValueError, r"reshape.*\(2, 3, 4\).*\(5, 7\)"),
    ((-1, -1), ValueError, "reshape: only one -1"),
    ((2, -3), ValueError, "reshape: negative dimension"),
    ((2.0, 12), TypeError, "reshape"),
])
def test_reshape_still_checks_its_argument(device, bad, error, pattern):
    x = nda.array(np.zeros((2, 3, 4), dtype=np.float32), device=device)
    with pytest.raises(error, match=pattern):
        x.reshape(bad)


@pytest.mark.parametrize("bad, error, pattern", [
    ((0, 1), ValueError, r"permute.*\(2, 3, 4\)"),
    ((0, 1, 1), ValueError, "permute: repeated axis"),
    ((0, 1, 3), ValueError, "permute: axis 3 out of range"),
])
def test_permute_still_checks_its_argument(device, bad, error, pattern):
    x = nda.array(np.zeros((2, 3, 4), dtype=np.float32), device=device)
    with pytest.raises(error, match=pattern):
        x.permute(bad)


@pytest.mark.parametrize("index, error, pattern", [
    ((0, 0, 0, 0), IndexError, r"getitem: 4 indices.*\(2, 3, 4\)"),
    ((0, 3), IndexError, r"getitem: index 3 out of range for axis 1 of shape \(2, 3, 4\)"),
    ((True,), TypeError, "getitem: boolean index"),
    ((slice(None, None, -1),), ValueError, "getitem: only positive slice steps"),
    (([0, 1],), TypeError, "getitem: indices must be ints or slices"),
])
def test_indexing_still_checks_its_argument(device, index, error, pattern):
    x = nda.array(np.zeros((2, 3, 4), dtype=np.float32), device=device)
    with pytest.raises(error, match=pattern):
        x[index]


def test_indexing_views_match_numpy(device):
    a = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6)
    x = nda.array(a, device=device)
    for index in [(1,), (slice(1, 4), 2), (slice(None), slice(1, None, 2), slice(0, 6, 4)),
                  (-1, slice(4, 1)), (np.int64(1), slice(None, None, np.int64(2)))]:
        want = a[tuple(slice(int(i) % n, int(i) % n + 1) if isinstance(i, (int, np.integer))
                       else i for i, n in zip(index, a.shape))]
        np.testing.assert_array_equal(x[index].numpy(), want)


def test_as_strided_still_checks_the_buffer_bounds(device):
    x = nda.array(np.zeros((4, 4), dtype=np.float32), device=device)
    with pytest.raises(IndexError, match=r"as_strided: shape \(3, 3\) strides \(4, 4\)"):
        x.as_strided((3, 3), (4, 4))
    with pytest.raises(TypeError, match="as_strided"):
        x.as_strided((2, 2), (4, True))
    assert x.as_strided((3, 2), (4, 2), 1).shape == (3, 2)


def test_sgd_reads_a_gradient_from_another_device():
    """The optimizer's same-device shortcut falls back to a copy for a grad held elsewhere."""
    results = []
    for grad_device in (ndl.cpu(), ndl.cpu_numpy()):
        p = ndl.nn.Parameter(ndl.Tensor(np.ones((3, 2), dtype=np.float32), device=ndl.cpu()))
        p.grad = ndl.Tensor(np.full((3, 2), 0.5, dtype=np.float32), device=grad_device,
                            requires_grad=False)
        ndl.optim.SGD([p], lr=0.1, momentum=0.9).step()
        assert p.device == ndl.cpu()
        results.append(p.numpy())
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_allclose(results[0], np.full((3, 2), 1 - 0.1 * 0.1 * 0.5), rtol=1e-6)
