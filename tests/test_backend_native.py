"""Native backend modules (cpu, and cuda when a GPU answers) called directly, entry point by
entry point, against the numpy reference module on random data: odd sizes, negative / zero
strides, offsets, overlapping scatter_add, special values, and every validation path."""
import importlib
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import needle.backend_ndarray as nd
from needle.backend_ndarray import ndarray_backend_numpy as REF


def _native_modules():
    params = [pytest.param("ndarray_backend_cpu", id="cpu")]
    cuda = nd.cuda()  # the GPU module, or the emulated one under NEEDLE_CUDA_EMULATOR
    name = cuda.mod.__name__.rsplit(".", 1)[-1] if cuda.enabled() else "ndarray_backend_cuda"
    reason = "no CUDA device (NEEDLE_CUDA_EMULATOR=1 runs these on the CPU emulator)"
    params.append(pytest.param(name, id="cuda", marks=pytest.mark.skipif(not cuda.enabled(), reason=reason)))
    return params


@pytest.fixture(params=_native_modules())
def mod(request):
    """A native backend module."""
    return importlib.import_module(f"needle.backend_ndarray.{request.param}")


RNG = np.random.default_rng(1234)
SPECIALS = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-38, 3e38,
                     -3e38, 88.8, -104.0, 0.625, -0.625, 1e-4, 20.0, -20.0], dtype=np.float32)


def put(m, x):
    """A buffer of module m holding x (flattened, float32)."""
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    a = m.Array(x.size)
    m.from_numpy(x, a)
    return a


def get(m, a):
    return m.to_numpy(a, (a.size,), (1,), 0)


def garbage(m, n, val=7.0):
    a = m.Array(n)
    m.fill(a, val)
    return a


def both(mod, fname, inputs, out_size, *params, scalar=(), fill=7.0):
    """Run fname(*inputs, *scalar, out, *params) on REF and mod; return both out buffers."""
    res = []
    for m in (REF, mod):
        out = garbage(m, out_size, fill)
        with np.errstate(all="ignore"):  # overflow to inf is part of what is compared
            getattr(m, fname)(*[put(m, x) for x in inputs], *scalar, out, *params)
        res.append(get(m, out))
    return res


def same(a, b):
    np.testing.assert_array_equal(a, b)


def close(a, b, rtol=1e-6, atol=1e-6):
    np.testing.assert_allclose(b, a, rtol=rtol, atol=atol, equal_nan=True)


# ---------------------------------------------------------------- buffers and copies
def test_array_basics(mod):
    for n in (0, 1, 17, 1 << 20):
        a = mod.Array(n)
        assert a.size == n and isinstance(a.ptr(), int) and a.ptr() % 64 == 0
    with pytest.raises(ValueError, match="Array"):
        mod.Array(-1)
    with pytest.raises(TypeError):
        mod.Array("3")
    assert mod.is_available() is True and mod.synchronize() is None
    assert mod.__tile_size__ == REF.__tile_size__ == 8


def test_from_numpy_converts_any_array(mod):
    x = np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2]  # float64, non-contiguous
    a = mod.Array(6)
    mod.from_numpy(x, a)
    same(get(mod, a), x.astype(np.float32).reshape(-1))
    mod.from_numpy(np.array([[1, 2], [3, 4], [5, 6]], dtype=np.int64), a)
    same(get(mod, a), np.arange(1, 7, dtype=np.float32))
    mod.from_numpy(np.zeros(0), mod.Array(0))
    with pytest.raises(ValueError, match="from_numpy"):
        mod.from_numpy(np.zeros(5), a)


def test_fill_and_to_numpy_shapes(mod):
    for n in (0, 1, 9, 100_001):
        a = mod.Array(n)
        mod.fill(a, -2.5)
        same(get(mod, a), np.full(n, -2.5, np.float32))
    a = put(mod, np.arange(6))
    r = mod.to_numpy(a, (2, 0, 3), (3, 1, 1), 0)
    assert r.shape == (2, 0, 3) and r.dtype == np.float32
    assert mod.to_numpy(a, (), (), 4).shape == () and mod.to_numpy(a, (), (), 4) == 4.0


# (buffer size, shape, strides, offset): odd sizes, negative and zero strides, offsets, high rank,
# and shapes big enough for the parallel paths (many rows, and few long rows).
VIEWS = [
    (24, (2, 3, 4), (12, 4, 1), 0),
    (24, (4, 3, 2), (1, 4, 12), 0),                  # permuted
    (30, (2, 3), (3, 1), 5),                         # offset
    (24, (3, 4), (-4, -1), 23),                      # flipped both ways
    (13, (13,), (-1,), 12),
    (5, (4, 3), (0, 1), 1),                          # broadcast rows
    (5, (3, 4), (1, 0), 2),                          # broadcast inner dim
    (1, (2, 3, 5), (0, 0, 0), 0),
    (100, (3, 1, 5, 1), (20, 7, 3, 9), 4),           # size-1 dims with odd strides
    (300, (2, 3, 2, 2, 3, 2), (150, 50, 25, 12, 4, 1), 3),
    (360, (5, 7, 9), (1, 45, 5), 10),
    (0, (3, 0, 2), (4, 1, 9), 0),                    # empty view
    (450 * 301, (301, 450), (1, 301), 0),            # transpose, parallel
    (140_003, (2, 70_000), (70_001, 1), 2),          # two long rows, cut into pieces
    (160_000, (400, 400), (-400, 1), 399 * 400),
]


@pytest.mark.parametrize("fname", ["ewise_add_strided", "ewise_mul_strided"])
@pytest.mark.parametrize("size,shape,strides,offset", VIEWS)
def test_ewise_with_strided_operand(mod, fname, size, shape, strides, offset):
    x = RNG.standard_normal(size).astype(np.float32)
    n = int(np.prod(shape))
    dense = RNG.standard_normal(n + 2).astype(np.float32)  # longer than needed: only n are read
    a, b = both(mod, fname, [dense, x], n + 3, shape, strides, offset)
    same(a, b)
    op = np.add if fname == "ewise_add_strided" else np.multiply
    view = np.lib.stride_tricks.as_strided(x[offset:] if size else x, shape,
                                           [s * 4 for s in strides]) if n else np.zeros(0)
    same(b[:n], op(dense[:n], view.reshape(-1)))
    same(b[n:], np.full(3, 7.0, np.float32))  # nothing written past the view's size


@pytest.mark.parametrize("rows,channels,inner", [(4, 3, 5), (1, 5, 3), (7, 1, 1), (300, 7, 1),
                                                (128, 16, 64), (3, 130, 2)])
def test_batch_norm_kernels(mod, rows, channels, inner):
    n = rows * channels * inner
    x = (RNG.standard_normal(n) * 3 + 50).astype(np.float32)  # a large mean: no cancellation
    w, b = RNG.uniform(0.5, 1.5, channels), RNG.standard_normal(channels)
    g = RNG.standard_normal(n).astype(np.float32)
    got = []
    for m in (REF, mod):
        xa, wa, ba, ga = put(m, x), put(m, w), put(m, b), put(m, g)
        out, mean, var = garbage(m, n + 2), garbage(m, channels), garbage(m, channels)
        m.batch_norm_forward(xa, wa, ba, out, mean, var, rows, channels, inner, 1e-5)
        dx, dw, db = garbage(m, n), garbage(m, channels), garbage(m, channels)
        m.batch_norm_backward(xa, ga, wa, mean, var, dx, dw, db, rows, channels, inner, 1e-5)
        got.append([get(m, a) for a in (out, mean, var, dx, dw, db)])
    for a, c in zip(*got):
        close(a, c, rtol=1e-5, atol=1e-5)
    assert got[1][0][n] == 7.0  # nothing written past rows * C * inner
    # against float64 formulas
    xs = x.astype(np.float64).reshape(rows, channels, inner)
    gs = g.astype(np.float64).reshape(rows, channels, inner)
    mu, var = xs.mean(axis=(0, 2)), xs.var(axis=(0, 2))
    xhat = (xs - mu[:, None]) / np.sqrt(var[:, None] + 1e-5)
    db_, dw_ = gs.sum(axis=(0, 2)), (gs * xhat).sum(axis=(0, 2))
    m_ = rows * inner
    dx_ = w[:, None] / np.sqrt(var[:, None] + 1e-5) * (gs - db_[:, None] / m_ - xhat * dw_[:, None] / m_)
    want = [(xhat * w[:, None] + b[:, None]).reshape(-1), mu, var, dx_.reshape(-1), dw_, db_]
    for name, a, c in zip(["out", "mean", "var", "dx", "dw", "db"], got[1], want):
        np.testing.assert_allclose(a[: c.size], c, rtol=1e-4, atol=2e-4, err_msg=name)


@pytest.mark.parametrize("rows,row_size", [(1, 1), (3, 7), (5, 33), (64, 1000), (2000, 10)])
def test_softmax_rows_backward(mod, rows, row_size):
    z = RNG.standard_normal((rows, row_size))
    y = (np.exp(z) / np.exp(z).sum(1, keepdims=True)).astype(np.float32).reshape(-1)
    g = RNG.standard_normal(rows * row_size).astype(np.float32)
    a, b = both(mod, "softmax_rows_backward", [y, g], rows * row_size + 2, row_size)
    close(a, b, rtol=1e-5, atol=1e-6)
    ys, gs = y.reshape(rows, row_size).astype(np.float64), g.reshape(rows, row_size)
    close(b[: y.size], (ys * (gs - (gs * ys).sum(1, keepdims=True))).reshape(-1), 1e-5, 1e-6)
    assert b[y.size] == 7.0  # nothing written past the rows


def test_ewise_strided_out_is_b(mod):
    """out may be b's own buffer: the view is read before it is overwritten."""
    x = np.arange(12, dtype=np.float32)
    for m in (REF, mod):
        b = put(m, x)
        m.ewise_add_strided(put(m, np.ones(12)), b, b, (12,), (-1,), 11)
        same(get(m, b), x[::-1] + 1)


@pytest.mark.parametrize("size,shape,strides,offset", VIEWS)
def test_compact_and_to_numpy(mod, size, shape, strides, offset):
    x = RNG.standard_normal(size).astype(np.float32)
    n = int(np.prod(shape))
    a, b = both(mod, "compact", [x], n + 3, shape, strides, offset)
    same(a, b)
    same(REF.to_numpy(put(REF, x), shape, strides, offset),
         mod.to_numpy(put(mod, x), shape, strides, offset))


@pytest.mark.parametrize("size,shape,strides,offset", VIEWS)
def test_setitems(mod, size, shape, strides, offset):
    n = int(np.prod(shape))
    x = RNG.standard_normal(n).astype(np.float32)
    res = []
    for m in (REF, mod):
        out = put(m, np.arange(size))
        m.ewise_setitem(put(m, x), out, shape, strides, offset)
        res.append(get(m, out))
    same(*res)
    res = []
    for m in (REF, mod):
        out = put(m, np.arange(size))
        m.scalar_setitem(n, -3.25, out, shape, strides, offset)
        res.append(get(m, out))
    same(*res)


@pytest.mark.parametrize("shape,axes", [((37, 45), (1, 0)), ((8, 8), (1, 0)), ((3, 29, 41), (0, 2, 1)),
                                        ((5, 17, 9, 16), (0, 3, 1, 2)), ((64, 70), (1, 0)),
                                        ((2, 300, 300), (2, 0, 1)), ((33, 20, 7), (2, 1, 0))])
@pytest.mark.parametrize("flip", ["none", "last", "all"])
def test_compact_transposes(mod, shape, axes, flip):
    """Permuted (and flipped) views: the tiled transpose path, with ragged edge tiles."""
    x = RNG.standard_normal(shape).astype(np.float32)
    v = x.transpose(axes)
    flipped = {"none": (), "last": (v.ndim - 1,), "all": tuple(range(v.ndim))}[flip]
    strides, offset = [s // 4 for s in v.strides], 0
    for ax in flipped:  # a reversed axis: negative stride, offset at its last element
        offset += (v.shape[ax] - 1) * strides[ax]
        strides[ax] = -strides[ax]
    v = np.flip(v, flipped) if flipped else v
    out = mod.Array(x.size)
    mod.compact(put(mod, x), out, v.shape, tuple(strides), offset)
    same(get(mod, out), v.reshape(-1))
    same(mod.to_numpy(put(mod, x), v.shape, tuple(strides), offset), v)


SCATTERS = [
    # col2im: N x Ho x Wo x kh x kw x C windows over an N x H x W x C buffer (overlapping)
    (2 * 7 * 6 * 3, (2, 5, 4, 3, 3, 3), (126, 18, 3, 18, 3, 1), 0),
    (8 * 33 * 33 * 8, (8, 16, 16, 3, 3, 8), (8712, 528, 16, 264, 8, 1), 0),  # stride 2, parallel
    (1, (64, 700), (0, 0), 0),                       # everything into one element, in order
    (50, (10, 7), (0, 1), 3),                        # rows summed onto one row
    (40, (6, 5), (-5, 1), 30),                       # injective, negative stride
    (160_000, (400, 400), (1, 400), 0),              # injective transpose, parallel
    (300, (3, 40, 9), (100, 2, 1), 5),               # overlapping inner dims, disjoint outer
]


@pytest.mark.parametrize("size,shape,strides,offset", SCATTERS)
def test_scatter_add_overlapping(mod, size, shape, strides, offset):
    n = int(np.prod(shape))
    vals = RNG.standard_normal(n).astype(np.float32)
    base = RNG.standard_normal(size).astype(np.float32)
    res = []
    for m in (REF, mod):
        out = put(m, base)
        m.scatter_add(put(m, vals), out, shape, strides, offset)
        res.append(get(m, out))
    # float32 sums in another order (CUDA atomics): the error grows with the number of terms
    terms = np.zeros(size)
    np.add.at(terms, _flat(shape, strides, offset).reshape(-1), 1)
    err = np.abs(res[1].astype(np.float64) - res[0])
    assert np.all(err <= 1e-4 * np.sqrt(terms + 1) + 1e-5 * np.abs(res[0])), err.max()


def test_scatter_add_counts_every_contribution(mod):
    """Integer-valued data: exact sums whatever the order, no contribution lost to a race."""
    out = mod.Array(8 * 14 * 14 * 16)
    mod.fill(out, 0.0)
    shape, strides = (8, 12, 12, 3, 3, 16), (3136, 224, 16, 224, 16, 1)
    mod.scatter_add(put(mod, np.ones(int(np.prod(shape)))), out, shape, strides, 0)
    cover = np.zeros((8, 14, 14, 16), np.float32)
    for i in range(3):
        for j in range(3):
            cover[:, i:i + 12, j:j + 12, :] += 1
    same(get(mod, out), cover.reshape(-1))


# ---------------------------------------------------------------- element-wise
SIZES = [0, 1, 7, 8, 9, 33, 140_001]
EWISE = ["ewise_add", "ewise_mul", "ewise_div", "ewise_pow", "ewise_maximum", "ewise_eq",
         "ewise_ge", "ewise_gt"]
SCALAR = ["scalar_add", "scalar_mul", "scalar_div", "scalar_power", "scalar_maximum", "scalar_eq",
          "scalar_ge", "scalar_gt"]


def _operands(n):
    x = (RNG.standard_normal(n) * 3).astype(np.float32)
    y = RNG.standard_normal(n).astype(np.float32)
    if n >= 8:
        x[:4], y[:4] = [np.nan, 1.0, np.inf, 2.0], [1.0, np.nan, np.inf, 2.0]
    return x, y


@pytest.mark.parametrize("fname", EWISE)
@pytest.mark.parametrize("n", SIZES)
def test_ewise(mod, fname, n):
    x, y = _operands(n)
    a, b = both(mod, fname, [x, y], n)
    (close if fname == "ewise_pow" else same)(a, b)


@pytest.mark.parametrize("fname", SCALAR)
@pytest.mark.parametrize("val", [2.0, 0.5, -1.0, 1.0, -1.3, 0.0, 3.0])
def test_scalar(mod, fname, val):
    x, _ = _operands(1001)
    x = np.concatenate([x, SPECIALS])
    a, b = both(mod, fname, [x], x.size, scalar=(val,))
    (close if fname == "scalar_power" else same)(a, b)


def test_power_of_negative_base_is_nan(mod):
    a, b = both(mod, "scalar_power", [[-8.0, -2.0, 4.0]], 3, scalar=(1.0 / 3.0,))
    assert np.isnan(b[:2]).all() and np.isnan(a[:2]).all()
    close(a, b)


def test_ewise_reads_prefix_of_bigger_inputs(mod):
    a, b = both(mod, "ewise_add", [np.arange(10), np.ones(12)], 9)
    same(a, b)


@pytest.mark.parametrize("fname,fn", [("ewise_exp", np.exp), ("ewise_log", np.log),
                                      ("ewise_tanh", np.tanh)])
def test_transcendental_accuracy(mod, fname, fn):
    x = np.concatenate([RNG.standard_normal(5000) * 30, RNG.uniform(-1e-3, 1e-3, 500),
                        np.exp(RNG.uniform(-100, 88, 3000)), SPECIALS]).astype(np.float32)
    out = mod.Array(x.size)
    getattr(mod, fname)(put(mod, x), out)
    with np.errstate(all="ignore"):
        ref = fn(x)
    got = get(mod, out)
    # a few ulp; denormal results compared absolutely
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-44, equal_nan=True)
    np.testing.assert_array_equal(np.signbit(got[ref == 0]), np.signbit(ref[ref == 0]))


# ---------------------------------------------------------------- matmul
@pytest.mark.parametrize("m,n,p", [(1, 2, 3), (72, 73, 74), (5, 0, 3), (0, 4, 2), (128, 64, 33)])
def test_matmul(mod, m, n, p):
    x, y = RNG.standard_normal(m * n), RNG.standard_normal(n * p)
    a, b = both(mod, "matmul", [x, y], m * p + 2, m, n, p, fill=np.nan)
    close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("m,n,p", [(8, 8, 8), (16, 24, 8), (64, 64, 72), (128, 128, 72),
                                   (264, 256, 256), (0, 8, 8)])
def test_matmul_tiled_zeroes_output(mod, m, n, p):
    if not hasattr(mod, "matmul_tiled"):
        pytest.fail("matmul_tiled missing")
    x, y = RNG.standard_normal(m * n), RNG.standard_normal(n * p)
    a, b = both(mod, "matmul_tiled", [x, y], m * p, m, n, p, fill=np.nan)
    close(a, b, rtol=1e-4, atol=1e-4)


GEMMS = [
    # batch, m, n, p, a_offset, a_batch_stride, a_t, b_offset, b_batch_stride, b_t
    (3, 4, 5, 6, 0, 20, False, 0, 30, False),
    (3, 4, 5, 6, 2, 20, True, 1, 30, True),
    (4, 7, 3, 5, 0, 0, False, 3, 15, False),       # a broadcast over the batch
    (2, 9, 11, 2, 5, 99, True, 0, 0, True),        # b broadcast, gaps between matrices
    (2, 3, 0, 4, 0, 0, False, 0, 0, False),        # n = 0: zeros
    (0, 3, 3, 3, 0, 9, False, 0, 9, False),
    (2, 65, 70, 66, 0, 65 * 70, False, 0, 70 * 66, True),
]


@pytest.mark.parametrize("batch,m,n,p,ao,abs_,at,bo,bbs,bt", GEMMS)
def test_gemm(mod, batch, m, n, p, ao, abs_, at, bo, bbs, bt):
    asize = ao + max(0, (batch - 1) * abs_) + m * n + 1
    bsize = bo + max(0, (batch - 1) * bbs) + n * p
    x, y = RNG.standard_normal(asize), RNG.standard_normal(bsize)
    a, b = both(mod, "gemm", [x, y], batch * m * p + 1, batch, m, n, p, ao, abs_, at, bo, bbs, bt,
                fill=np.nan)
    close(a, b, rtol=1e-4, atol=1e-4)


def _im2col_view(n, h, w, c, k, stride, dilation=1):
    """(shape, strides) of the N x Ho x Wo x KH x KW x C windows of an NHWC buffer."""
    ho, wo = (h - dilation * (k - 1) - 1) // stride + 1, (w - dilation * (k - 1) - 1) // stride + 1
    return ((n, ho, wo, k, k, c),
            (h * w * c, stride * w * c, stride * c, dilation * w * c, dilation * c, 1))


def _transposed_view(view):
    """The same view with its three row dims and three column dims swapped (im2col^T)."""
    shape, strides = view
    return shape[3:] + shape[:3], strides[3:] + strides[:3]


STRIDED_A = [
    # (buffer size, view shape, strides, offset, row dims)
    (2 * 9 * 9 * 3, *_im2col_view(2, 9, 9, 3, 3, 1), 0, 3),      # forward im2col, RGB stem
    (3 * 8 * 8 * 16, *_im2col_view(3, 8, 8, 16, 3, 2), 0, 3),    # stride 2
    (2 * 9 * 9 * 7, *_im2col_view(2, 9, 9, 7, 3, 1, 2), 0, 3),   # dilation 2, odd channels
    (2 * 6 * 6 * 33, *_im2col_view(2, 6, 6, 33, 1, 1), 0, 3),    # 1 x 1 taps
    (2 * 9 * 9 * 3, *_transposed_view(_im2col_view(2, 9, 9, 3, 3, 1)), 0, 3),   # weight grad
    (2 * 7 * 7 * 16, *_transposed_view(_im2col_view(2, 7, 7, 16, 3, 1)), 0, 3),
    (2 * 7 * 7 * 20, *_transposed_view(_im2col_view(2, 7, 7, 20, 2, 2)), 0, 3),
    (4 * 20 * 20 * 48, *_im2col_view(4, 20, 20, 48, 3, 1), 0, 3),  # threads, two k blocks
    (4 * 20 * 20 * 48, *_transposed_view(_im2col_view(4, 20, 20, 48, 3, 1)), 0, 3),
    (40, (5, 8), (1, 5), 0, 1),                                   # a column-major matrix
    (60, (3, 4, 5), (-20, 5, 1), 40, 1),                          # negative stride, 1 + 2 dims
    (60, (4, 3, 5), (5, 0, 1), 0, 2),                             # a broadcast (zero stride)
    (13, (13, 1), (1, 0), 0, 1),                                  # 13 x 1
    (40, (5, 0), (1, 5), 0, 1),                                   # n = 0: out = 0
]


@pytest.mark.parametrize("size,shape,strides,offset,row_dims", STRIDED_A)
@pytest.mark.parametrize("p,bt", [(17, False), (1, True), (40, True)])
def test_gemm_strided_a(mod, size, shape, strides, offset, row_dims, p, bt):
    m, n = int(np.prod(shape[:row_dims])), int(np.prod(shape[row_dims:]))
    x, y = RNG.standard_normal(size), RNG.standard_normal(n * p + 3)
    a, b = both(mod, "gemm_strided_a", [x, y], m * p + 1, m, n, p, shape, strides, offset,
                row_dims, 3, bt, fill=np.nan)
    atol = 1e-4 + 1e-6 * n  # sums of n products in another order: cancellation near 0
    close(a, b, rtol=1e-4, atol=atol)
    view = x.astype(np.float32)[_flat(shape, strides, offset)]  # independent of the spec
    bm = y[3:3 + n * p].reshape((p, n)).T if bt else y[3:3 + n * p].reshape((n, p))
    close(view.reshape(m, n).astype(np.float64) @ bm, b[:m * p].reshape(m, p), rtol=1e-4,
          atol=atol)


def _flat(shape, strides, offset):
    idx = np.full((), offset, dtype=np.int64)
    for n, s in zip(shape, strides):
        idx = idx[..., None] + np.arange(n, dtype=np.int64) * s
    return idx


# ---------------------------------------------------------------- reductions and softmax
@pytest.mark.parametrize("rows,size", [(1, 1), (7, 3), (5, 9), (10_000, 17), (1, 150_003),
                                       (3, 50_000), (0, 5)])
@pytest.mark.parametrize("fname", ["reduce_sum", "reduce_max"])
def test_reduce(mod, fname, rows, size):
    x = RNG.standard_normal(rows * size).astype(np.float32)
    a, b = both(mod, fname, [x], rows, size)
    close(a, b, rtol=1e-5, atol=1e-4)


def test_reduce_special_cases(mod):
    a, b = both(mod, "reduce_sum", [[]], 4, 0)
    same(a, b)
    x = np.array([1, np.nan, 3, -np.inf, -np.inf, -np.inf, 5, np.inf, 2] + [0] * 9, np.float32)
    a, b = both(mod, "reduce_max", [x], 6, 3)
    same(a, b)
    x = RNG.standard_normal((4, 100)).astype(np.float32)  # NaN / inf inside the vector loop
    x[0, 50], x[1, 99], x[2, :] = np.nan, np.inf, -np.inf
    for fname in ("reduce_max", "reduce_sum"):
        a, b = both(mod, fname, [x], 4, 100)
        close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fname", ["softmax_rows", "log_softmax_rows"])
@pytest.mark.parametrize("rows,size", [(1, 1), (3, 7), (4, 8), (5, 13), (4000, 10), (2, 5003)])
def test_softmax_rows(mod, fname, rows, size):
    x = (RNG.standard_normal((rows, size)) * 20).astype(np.float32)
    if size > 2:
        x[0, 1], x[-1, 0] = -np.inf, 1e4
    a, b = both(mod, fname, [x], x.size + 1, size)
    close(a, b, rtol=1e-5, atol=1e-6)


def test_softmax_all_minus_inf_row_is_nan(mod):
    x = np.array([[-np.inf] * 3, [0.0, 1.0, 2.0]], np.float32)
    for fname in ("softmax_rows", "log_softmax_rows"):
        with np.errstate(all="ignore"):
            a, b = both(mod, fname, [x], 6, 3)
        close(a, b)


# ---------------------------------------------------------------- pooling
POOLS = [  # N, H, W, C, kh, kw, sh, sw, ph, pw
    (2, 5, 6, 3, 2, 2, 2, 2, 0, 0),
    (1, 7, 7, 1, 3, 3, 1, 1, 1, 1),
    (3, 9, 8, 17, 3, 2, 2, 3, 1, 1),
    (2, 4, 4, 8, 4, 4, 1, 1, 0, 0),
    (8, 16, 16, 32, 3, 3, 2, 2, 1, 1),
]


def _pool_out(N, H, W, C, kh, kw, sh, sw, ph, pw):
    return N * ((H + 2 * ph - kh) // sh + 1) * ((W + 2 * pw - kw) // sw + 1) * C


@pytest.mark.parametrize("dims", POOLS)
@pytest.mark.parametrize("ties", [False, True])
def test_pool_forward_backward(mod, dims, ties):
    N, H, W, C = dims[:4]
    x = (RNG.integers(0, 3, N * H * W * C) if ties else RNG.standard_normal(N * H * W * C))
    nout = _pool_out(*dims)
    g = RNG.standard_normal(nout)
    for fname in ("max_pool2d", "avg_pool2d"):
        a, b = both(mod, fname, [x], nout, *dims)
        close(a, b, rtol=1e-5, atol=1e-6)
    a, b = both(mod, "max_pool2d_backward", [x, g], N * H * W * C, *dims, fill=np.nan)
    close(a, b, rtol=1e-5, atol=1e-6)
    a, b = both(mod, "avg_pool2d_backward", [g], N * H * W * C, *dims, fill=np.nan)
    close(a, b, rtol=1e-5, atol=1e-6)


def test_max_pool_nan_and_first_max_rule(mod):
    x = np.array([1, 5, 5, 2, np.nan, 3, 0, np.nan, 9], np.float32)  # 1 x 3 x 3 x 1
    dims = (1, 3, 3, 1, 2, 2, 1, 1, 0, 0)
    a, b = both(mod, "max_pool2d", [x], 4, *dims)
    same(a, b)
    a, b = both(mod, "max_pool2d_backward", [x, [1, 10, 100, 1000]], 9, *dims)
    same(a, b)


# ---------------------------------------------------------------- validation
def _a(mod, n):
    return mod.Array(n)


BAD_CALLS = [
    # (expected exception, function, argument builder)
    (IndexError, "compact", lambda m: (_a(m, 6), _a(m, 6), (2, 3), (3, 1), 1)),
    (IndexError, "compact", lambda m: (_a(m, 6), _a(m, 6), (2, 3), (-3, 1), 2)),
    (IndexError, "compact", lambda m: (_a(m, 6), _a(m, 6), (2,), (1,), -1)),
    (ValueError, "compact", lambda m: (_a(m, 6), _a(m, 6), (2, 3), (3,), 0)),
    (ValueError, "compact", lambda m: (_a(m, 6), _a(m, 5), (2, 3), (3, 1), 0)),
    (ValueError, "compact", lambda m: (_a(m, 6), _a(m, 6), (-2, 3), (3, 1), 0)),
    (IndexError, "to_numpy", lambda m: (_a(m, 6), (7,), (1,), 0)),
    (IndexError, "to_numpy", lambda m: (_a(m, 0), (1,), (1,), 0)),
    (IndexError, "ewise_setitem", lambda m: (_a(m, 6), _a(m, 6), (2, 3), (4, 1), 0)),
    (ValueError, "ewise_setitem", lambda m: (_a(m, 5), _a(m, 6), (2, 3), (3, 1), 0)),
    (IndexError, "scalar_setitem", lambda m: (6, 1.0, _a(m, 6), (2, 3), (3, 1), 2)),
    (ValueError, "scalar_setitem", lambda m: (5, 1.0, _a(m, 6), (2, 3), (3, 1), 0)),
    (IndexError, "scatter_add", lambda m: (_a(m, 6), _a(m, 6), (2, 3), (3, 2), 0)),
    (ValueError, "scatter_add", lambda m: (_a(m, 2), _a(m, 6), (2, 3), (3, 1), 0)),
    (IndexError, "ewise_add_strided", lambda m: (_a(m, 6), _a(m, 6), _a(m, 6), (2, 3), (3, 1), 1)),
    (IndexError, "ewise_mul_strided", lambda m: (_a(m, 6), _a(m, 6), _a(m, 6), (2, 3), (-3, 1), 0)),
    (ValueError, "ewise_add_strided", lambda m: (_a(m, 5), _a(m, 6), _a(m, 6), (2, 3), (3, 1), 0)),
    (ValueError, "ewise_mul_strided", lambda m: (_a(m, 6), _a(m, 6), _a(m, 5), (2, 3), (0, 1), 0)),
    (ValueError, "batch_norm_forward", lambda m: (_a(m, 11), _a(m, 3), _a(m, 3), _a(m, 12),
                                                  _a(m, 3), _a(m, 3), 2, 3, 2, 1e-5)),
    (ValueError, "batch_norm_forward", lambda m: (_a(m, 12), _a(m, 2), _a(m, 3), _a(m, 12),
                                                  _a(m, 3), _a(m, 3), 2, 3, 2, 1e-5)),
    (ValueError, "batch_norm_forward", lambda m: (_a(m, 12), _a(m, 3), _a(m, 3), _a(m, 12),
                                                  _a(m, 3), _a(m, 3), 0, 3, 2, 1e-5)),
    (ValueError, "batch_norm_backward", lambda m: (_a(m, 12), _a(m, 11), _a(m, 3), _a(m, 3),
                                                   _a(m, 3), _a(m, 12), _a(m, 3), _a(m, 3), 2, 3,
                                                   2, 1e-5)),
    (ValueError, "batch_norm_backward", lambda m: (_a(m, 12), _a(m, 12), _a(m, 3), _a(m, 3),
                                                   _a(m, 3), _a(m, 12), _a(m, 3), _a(m, 2), 2, 3,
                                                   2, 1e-5)),
    (ValueError, "softmax_rows_backward", lambda m: (_a(m, 6), _a(m, 6), _a(m, 6), 4)),
    (ValueError, "softmax_rows_backward", lambda m: (_a(m, 6), _a(m, 5), _a(m, 6), 3)),
    (ValueError, "softmax_rows_backward", lambda m: (_a(m, 6), _a(m, 6), _a(m, 5), 3)),
    (ValueError, "ewise_add", lambda m: (_a(m, 4), _a(m, 5), _a(m, 5))),
    (ValueError, "ewise_pow", lambda m: (_a(m, 5), _a(m, 4), _a(m, 5))),
    (ValueError, "scalar_mul", lambda m: (_a(m, 4), 2.0, _a(m, 5))),
    (ValueError, "ewise_exp", lambda m: (_a(m, 4), _a(m, 5))),
    (ValueError, "matmul", lambda m: (_a(m, 6), _a(m, 6), _a(m, 4), 2, 3, -2)),
    (ValueError, "matmul", lambda m: (_a(m, 5), _a(m, 6), _a(m, 4), 2, 3, 2)),
    (ValueError, "matmul", lambda m: (_a(m, 6), _a(m, 6), _a(m, 3), 2, 3, 2)),
    (ValueError, "matmul_tiled", lambda m: (_a(m, 64), _a(m, 64), _a(m, 64), 8, 8, 4)),
    (ValueError, "matmul_tiled", lambda m: (_a(m, 64), _a(m, 63), _a(m, 64), 8, 8, 8)),
    (ValueError, "gemm", lambda m: (_a(m, 6), _a(m, 6), _a(m, 4), -1, 2, 3, 2, 0, 6, False, 0,
                                    6, False)),
    (ValueError, "gemm", lambda m: (_a(m, 12), _a(m, 12), _a(m, 7), 2, 2, 3, 2, 0, 6, False, 0,
                                    6, False)),
    (IndexError, "gemm", lambda m: (_a(m, 11), _a(m, 12), _a(m, 8), 2, 2, 3, 2, 0, 6, False, 0,
                                    6, False)),
    (IndexError, "gemm", lambda m: (_a(m, 12), _a(m, 12), _a(m, 8), 2, 2, 3, 2, 0, 6, True, 1,
                                    6, True)),
    (IndexError, "gemm", lambda m: (_a(m, 12), _a(m, 12), _a(m, 8), 2, 2, 3, 2, 0, -6, False, 0,
                                    6, False)),
    (IndexError, "gemm_strided_a", lambda m: (_a(m, 11), _a(m, 6), _a(m, 8), 4, 3, 2, (4, 3),
                                              (3, 1), 0, 1, 0, False)),
    (IndexError, "gemm_strided_a", lambda m: (_a(m, 12), _a(m, 6), _a(m, 8), 4, 3, 2, (4, 3),
                                              (-3, 1), 0, 1, 0, False)),
    (IndexError, "gemm_strided_a", lambda m: (_a(m, 12), _a(m, 5), _a(m, 8), 4, 3, 2, (4, 3),
                                              (3, 1), 0, 1, 0, True)),
    (ValueError, "gemm_strided_a", lambda m: (_a(m, 12), _a(m, 6), _a(m, 8), 4, 3, 2, (4, 3),
                                              (3, 1), 0, 0, 0, False)),
    (ValueError, "gemm_strided_a", lambda m: (_a(m, 64), _a(m, 6), _a(m, 8), 4, 3, 2,
                                              (1, 1, 1, 1, 4, 3), (0, 0, 0, 0, 3, 1), 0, 4, 0,
                                              False)),
    (ValueError, "gemm_strided_a", lambda m: (_a(m, 12), _a(m, 6), _a(m, 8), 4, 2, 2, (4, 3),
                                              (3, 1), 0, 1, 0, False)),
    (ValueError, "gemm_strided_a", lambda m: (_a(m, 12), _a(m, 6), _a(m, 7), 4, 3, 2, (4, 3),
                                              (3, 1), 0, 1, 0, False)),
    (ValueError, "gemm_strided_a", lambda m: (_a(m, 12), _a(m, 6), _a(m, 8), 4, 3, 2, (4, 3),
                                              (3,), 0, 1, 0, False)),
    (ValueError, "reduce_sum", lambda m: (_a(m, 5), _a(m, 2), 3)),
    (ValueError, "reduce_sum", lambda m: (_a(m, 5), _a(m, 2), -1)),
    (ValueError, "reduce_max", lambda m: (_a(m, 5), _a(m, 2), 0)),
    (ValueError, "softmax_rows", lambda m: (_a(m, 10), _a(m, 10), 3)),
    (ValueError, "log_softmax_rows", lambda m: (_a(m, 9), _a(m, 8), 3)),
    (ValueError, "log_softmax_rows", lambda m: (_a(m, 9), _a(m, 9), 0)),
    (ValueError, "max_pool2d", lambda m: (_a(m, 16), _a(m, 4), 1, 4, 4, 1, 2, 2, 0, 2, 0, 0)),
    (ValueError, "max_pool2d", lambda m: (_a(m, 16), _a(m, 4), 1, 4, 4, 1, 5, 2, 2, 2, 0, 0)),
    (ValueError, "max_pool2d", lambda m: (_a(m, 15), _a(m, 4), 1, 4, 4, 1, 2, 2, 2, 2, 0, 0)),
    (ValueError, "avg_pool2d", lambda m: (_a(m, 16), _a(m, 3), 1, 4, 4, 1, 2, 2, 2, 2, 0, 0)),
    (ValueError, "max_pool2d_backward", lambda m: (_a(m, 16), _a(m, 3), _a(m, 16), 1, 4, 4, 1,
                                                   2, 2, 2, 2, 0, 0)),
    (ValueError, "avg_pool2d_backward", lambda m: (_a(m, 4), _a(m, 15), 1, 4, 4, 1, 2, 2, 2, 2,
                                                   0, 0)),
    (ValueError, "avg_pool2d_backward", lambda m: (_a(m, 4), _a(m, 16), 1, 4, 4, -1, 2, 2, 2, 2,
                                                   0, 0)),
]


@pytest.mark.parametrize("exc,fname,build", BAD_CALLS,
                         ids=[f"{c[1]}-{i}" for i, c in enumerate(BAD_CALLS)])
def test_bad_arguments_raise(mod, exc, fname, build):
    for m in (REF, mod):  # the reference raises the same exception type
        with pytest.raises(exc, match=fname):
            getattr(m, fname)(*build(m))


def test_view_error_names_the_numbers(mod):
    """Same wording as the numpy reference: shape, strides, offset, reach and buffer size."""
    with pytest.raises(IndexError) as err:
        mod.compact(_a(mod, 6), _a(mod, 6), (2, 3), (3, 1), 5)
    msg = str(err.value)
    for part in ("compact", "(2, 3)", "(3, 1)", "offset 5", "10", "buffer of 6"):
        assert part in msg, msg
    with pytest.raises(ValueError) as err:
        mod.ewise_add(_a(mod, 4), _a(mod, 5), _a(mod, 5))
    assert "ewise_add" in str(err.value) and "4" in str(err.value) and "5" in str(err.value)


def test_wrong_buffer_type_is_a_type_error(mod):
    with pytest.raises(TypeError):
        mod.ewise_add(REF.Array(3), mod.Array(3), mod.Array(3))
    with pytest.raises(TypeError):
        mod.fill(None, 1.0)


def test_huge_and_overflowing_views_do_not_crash(mod):
    a = _a(mod, 4)
    with pytest.raises(IndexError):
        mod.compact(a, a, (2, 2), (2**62, 1), 0)
    with pytest.raises(ValueError):
        mod.compact(a, a, (2**40, 2**40), (0, 0), 0)
    with pytest.raises((MemoryError, ValueError, RuntimeError)):
        mod.Array(2**62)


def test_generic_isa_build_matches_numpy():
    """The portable (non-AVX2) build of the vector kernels, forced through NEEDLE_CPU_ISA."""
    script = """
import numpy as np
from needle.backend_ndarray import ndarray_backend_cpu as C, ndarray_backend_numpy as R
x = np.concatenate([np.random.default_rng(0).standard_normal(1003) * 20,
                    [0, -0.0, np.inf, -np.inf, np.nan, 1e-40]]).astype(np.float32)
def run(m, f, *args):
    a = m.Array(x.size); m.from_numpy(x, a); o = m.Array(x.size); f(m)(a, *args, o) if args else f(m)(a, o)
    return m.to_numpy(o, (x.size,), (1,), 0)
for name in ["ewise_exp", "ewise_log", "ewise_tanh"]:
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(run(C, lambda m: getattr(m, name)), run(R, lambda m: getattr(m, name)),
                                   rtol=1e-6, atol=1e-44, equal_nan=True)
for name in ["scalar_maximum", "scalar_ge", "scalar_div"]:
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(run(C, lambda m: getattr(m, name), 0.5), run(R, lambda m: getattr(m, name), 0.5))
y = x[:1000]
for name in ["softmax_rows", "log_softmax_rows"]:
    o = []
    for m in (C, R):
        a = m.Array(y.size); m.from_numpy(np.nan_to_num(y), a); out = m.Array(y.size)
        getattr(m, name)(a, out, 10); o.append(m.to_numpy(out, (y.size,), (1,), 0))
    np.testing.assert_allclose(o[0], o[1], rtol=1e-5, atol=1e-6)
"""
    env = dict(os.environ, NEEDLE_CPU_ISA="generic")
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]


# ---------------------------------------------------------------- memory and threads
def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_arrays_are_freed(mod):
    if os.environ.get("NEEDLE_CUDA_EMULATOR", "").lower() == "asan":
        pytest.skip("AddressSanitizer keeps freed blocks in its quarantine (256 MB), so RSS "
                    "cannot show a leak here; the emulated pass without ASan checks it")
    mod.fill(mod.Array(1 << 20), 1.0)  # warm-up allocations
    before = _rss_bytes()
    for _ in range(200):
        a = mod.Array(1 << 20)  # 4 MB, touched so that it is resident
        mod.fill(a, 1.0)
        del a
    assert _rss_bytes() - before < 64 << 20


def test_reused_buffers_are_never_shared(mod):
    """Buffers recycled by the allocator cache: live arrays never overlap."""
    rng = np.random.default_rng(7)
    live = {}
    for step in range(400):
        if live and rng.random() < 0.45:
            del live[rng.choice(list(live))]
        else:
            n = int(rng.choice([1 << 14, 1 << 16, 40_000, 1 << 20]))
            live[step] = mod.Array(n)
            mod.fill(live[step], float(step))
    for key, a in live.items():
        got = get(mod, a)
        assert got.min() == got.max() == key


def test_freed_memory_stays_bounded_across_many_sizes(mod):
    before = _rss_bytes()
    for k in range(60):  # ~370 MB of distinct sizes: more than the cpu allocator cache keeps
        a = mod.Array((3 << 20) + k * 4096)
        mod.fill(a, 1.0)
        del a
    assert _rss_bytes() - before < 320 << 20


def test_concurrent_calls_from_python_threads(mod):
    x = RNG.standard_normal(200_000).astype(np.float32)
    expect = np.exp(x)
    errors = []

    def work():
        a, out = put(mod, x), mod.Array(x.size)
        for _ in range(5):
            mod.ewise_exp(a, out)
            if not np.allclose(get(mod, out), expect, rtol=1e-6):
                errors.append("mismatch")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
