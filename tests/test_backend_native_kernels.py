"""Native backend modules (cpu, and cuda when a GPU answers) against the numpy reference module:
matmul / GEMM (tiled, batched, transposed, implicit strided A), reductions, softmax, batch norm,
pooling, and every validation path of the function table (the exception type and a message
naming the numbers). Buffers, views and element-wise kernels are in test_backend_native.py."""
import importlib

import numpy as np
import pytest

from needle.backend_ndarray import ndarray_backend_numpy as REF

from test_backend_native import _flat, _native_modules, both, close, garbage, get, put, same


@pytest.fixture(params=_native_modules())
def mod(request):
    """A native backend module."""
    return importlib.import_module(f"needle.backend_ndarray.{request.param}")


RNG = np.random.default_rng(1234)


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
