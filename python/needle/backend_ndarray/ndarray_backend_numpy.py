"""The numpy reference backend: the executable specification of the backend function table.

Every backend (this one, C++ `ndarray_backend_cpu`, CUDA `ndarray_backend_cuda`) exports exactly
these names. Argument order, always: inputs, then `out`, then sizes. Buffers are flat float32
`Array`s; all shape/stride logic lives in NDArray. See docs/backends.md.
Letters: N batch, H/W spatial, C channels, kh/kw kernel, sh/sw stride, ph/pw padding.
The NHWC image kernels (pooling, depthwise conv, Winograd) are in ndarray_backend_numpy_nhwc.py
and the optimizer updates in ndarray_backend_numpy_optim.py; both are re-exported here.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

from .ndarray_backend_numpy_nhwc import (
    avg_pool2d, avg_pool2d_backward, depthwise_conv2d, depthwise_conv2d_backward_input,
    depthwise_conv2d_backward_weight, max_pool2d, max_pool2d_backward, winograd_input_transform,
    winograd_input_transform_adjoint, winograd_output_transform, winograd_output_transform_adjoint,
)
from .ndarray_backend_numpy_norm import batch_norm_backward_strided, batch_norm_forward_strided
from .ndarray_backend_numpy_optim import adam_update, sgd_torch_update, sgd_update
from .ndarray_backend_numpy_pad import pad

__all__ = [
    "Array", "wrap_pointer", "is_available", "synchronize", "__tile_size__",
    "to_numpy", "from_numpy", "fill", "compact", "pad", "ewise_setitem", "scalar_setitem", "scatter_add",
    "ewise_add", "ewise_mul", "ewise_add_strided", "ewise_mul_strided", "ewise_div", "ewise_pow", "ewise_maximum", "ewise_eq", "ewise_ge",
    "ewise_gt",
    "scalar_add", "scalar_mul", "scalar_div", "scalar_power", "scalar_maximum", "scalar_eq",
    "scalar_ge", "scalar_gt", "ewise_log", "ewise_exp", "ewise_tanh",
    "matmul", "matmul_tiled", "gemm", "gemm_strided_a", "reduce_sum", "reduce_max",
    "softmax_rows", "log_softmax_rows", "softmax_rows_backward", "batch_norm_forward", "batch_norm_backward",
    "batch_norm_running_update", "batch_norm_forward_strided", "batch_norm_backward_strided",
    "sgd_update", "sgd_torch_update", "adam_update",
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "depthwise_conv2d", "depthwise_conv2d_backward_input", "depthwise_conv2d_backward_weight",
    "winograd_input_transform", "winograd_input_transform_adjoint", "winograd_output_transform",
    "winograd_output_transform_adjoint",
]
__tile_size__ = 8
_ITEM = 4  # bytes per float32


class Array:
    """A flat float32 buffer of `size` elements."""

    def __init__(self, size):
        if size < 0:
            raise ValueError(f"Array: size must be >= 0, got {size}")
        self.array = np.empty(size, dtype=np.float32)

    @property
    def size(self):
        return self.array.size

    def ptr(self):
        return self.array.ctypes.data


class _Memory:
    """Exposes `size` float32s at `address` to numpy and keeps their `owner` alive."""

    def __init__(self, address, size, owner):
        self.owner = owner
        self.__array_interface__ = {"shape": (size,), "typestr": "<f4",
                                    "data": (address, False), "version": 3}


def wrap_pointer(address, size, owner):
    """An Array over `size` float32s of host memory at `address`, owned by `owner` (kept alive,
    never freed here): zero-copy DLPack import."""
    if size < 0:
        raise ValueError(f"wrap_pointer: size must be >= 0, got {size}")
    if address % _ITEM:
        raise ValueError("wrap_pointer: address is not float32-aligned")
    arr = Array.__new__(Array)
    arr.array = np.asarray(_Memory(int(address), int(size), owner))  # base keeps owner alive
    return arr


def is_available():
    return True


def synchronize():
    pass


# ---------------------------------------------------------------- validation (same rules as native)
def _check_view(fn, buf_size, shape, strides, offset):
    if len(shape) != len(strides):
        raise ValueError(f"{fn}: shape {tuple(shape)} and strides {tuple(strides)} differ in length")
    if any(s < 0 for s in shape):
        raise ValueError(f"{fn}: negative dimension in shape {tuple(shape)}")
    if any(s == 0 for s in shape):
        return
    lo = offset + sum(min(0, (n - 1) * s) for n, s in zip(shape, strides))
    hi = offset + sum(max(0, (n - 1) * s) for n, s in zip(shape, strides))
    if lo < 0 or hi >= buf_size:
        raise IndexError(
            f"{fn}: view shape {tuple(shape)} strides {tuple(strides)} offset {offset} reaches "
            f"elements [{lo}, {hi}] of a buffer of {buf_size}")


def _check_size(fn, what, arr, need):
    if arr.size < need:
        raise ValueError(f"{fn}: {what} holds {arr.size} elements, needs {need}")


def _view(fn, a, shape, strides, offset):
    _check_view(fn, a.size, shape, strides, offset)
    shape, strides = tuple(shape), tuple(strides)
    if 0 in shape:
        return np.empty(shape, dtype=np.float32)
    base = a.array[offset:] if offset < a.size else a.array
    return as_strided(base, shape, tuple(s * _ITEM for s in strides))


def _flat_indices(shape, strides, offset):
    """Buffer index of every element of a strided view, row-major."""
    idx = np.full((), offset, dtype=np.int64)
    for n, s in zip(shape, strides):
        idx = idx[..., None] + np.arange(n, dtype=np.int64) * s
    return idx.reshape(-1)


# ---------------------------------------------------------------- copies
def to_numpy(a, shape, strides, offset):
    return _view("to_numpy", a, shape, strides, offset).copy()


def from_numpy(a, out):
    a = np.ascontiguousarray(a, dtype=np.float32)
    if a.size != out.size:
        raise ValueError(f"from_numpy: array of {a.size} elements into a buffer of {out.size}")
    out.array[:] = a.reshape(-1)


def fill(out, val):
    out.array[:] = val


def compact(a, out, shape, strides, offset):
    n = int(np.prod(shape))
    _check_size("compact", "out", out, n)
    out.array[:n] = _view("compact", a, shape, strides, offset).reshape(-1)


def ewise_setitem(a, out, shape, strides, offset):
    n = int(np.prod(shape))
    _check_size("ewise_setitem", "a", a, n)
    _view("ewise_setitem", out, shape, strides, offset)[...] = a.array[:n].reshape(shape)


def scalar_setitem(size, val, out, shape, strides, offset):
    if size != int(np.prod(shape)):
        raise ValueError(f"scalar_setitem: size {size} != prod{tuple(shape)}")
    _view("scalar_setitem", out, shape, strides, offset)[...] = val


def scatter_add(a, out, shape, strides, offset):
    n = int(np.prod(shape))
    _check_size("scatter_add", "a", a, n)
    _check_view("scatter_add", out.size, shape, strides, offset)
    np.add.at(out.array, _flat_indices(shape, strides, offset), a.array[:n])


# ---------------------------------------------------------------- element-wise
def _ewise(fn, a, b, out, f):
    _check_size(fn, "a", a, out.size)
    _check_size(fn, "b", b, out.size)
    out.array[:] = f(a.array[: out.size], b.array[: out.size])


def _scalar(fn, a, out, f):
    _check_size(fn, "a", a, out.size)
    out.array[:] = f(a.array[: out.size])


def ewise_add(a, b, out):
    _ewise("ewise_add", a, b, out, np.add)


def ewise_mul(a, b, out):
    _ewise("ewise_mul", a, b, out, np.multiply)


def _ewise_view(fn, a, b, out, shape, strides, offset, f):
    """out[:n] = f(a[:n], view of b), n = prod(shape); a and out compact."""
    n = int(np.prod(shape))
    _check_size(fn, "a", a, n)
    _check_size(fn, "out", out, n)
    view = _view(fn, b, shape, strides, offset).reshape(-1)
    out.array[:n] = f(a.array[:n], view)


def ewise_add_strided(a, b, out, shape, strides, offset):
    _ewise_view("ewise_add_strided", a, b, out, shape, strides, offset, np.add)


def ewise_mul_strided(a, b, out, shape, strides, offset):
    _ewise_view("ewise_mul_strided", a, b, out, shape, strides, offset, np.multiply)


def ewise_div(a, b, out):
    with np.errstate(all="ignore"):
        _ewise("ewise_div", a, b, out, np.divide)


def ewise_pow(a, b, out):
    with np.errstate(all="ignore"):
        _ewise("ewise_pow", a, b, out, np.power)


def ewise_maximum(a, b, out):
    _ewise("ewise_maximum", a, b, out, np.maximum)


def ewise_eq(a, b, out):
    _ewise("ewise_eq", a, b, out, lambda x, y: x == y)


def ewise_ge(a, b, out):
    _ewise("ewise_ge", a, b, out, lambda x, y: x >= y)


def ewise_gt(a, b, out):
    _ewise("ewise_gt", a, b, out, lambda x, y: x > y)


def scalar_add(a, val, out):
    _scalar("scalar_add", a, out, lambda x: x + np.float32(val))


def scalar_mul(a, val, out):
    _scalar("scalar_mul", a, out, lambda x: x * np.float32(val))


def scalar_div(a, val, out):
    with np.errstate(all="ignore"):
        _scalar("scalar_div", a, out, lambda x: x / np.float32(val))


def scalar_power(a, val, out):
    with np.errstate(all="ignore"):
        _scalar("scalar_power", a, out, lambda x: x ** np.float32(val))


def scalar_maximum(a, val, out):
    _scalar("scalar_maximum", a, out, lambda x: np.maximum(x, np.float32(val)))


def scalar_eq(a, val, out):
    _scalar("scalar_eq", a, out, lambda x: x == np.float32(val))


def scalar_ge(a, val, out):
    _scalar("scalar_ge", a, out, lambda x: x >= np.float32(val))


def scalar_gt(a, val, out):
    _scalar("scalar_gt", a, out, lambda x: x > np.float32(val))


def ewise_log(a, out):
    with np.errstate(all="ignore"):
        _scalar("ewise_log", a, out, np.log)


def ewise_exp(a, out):
    with np.errstate(all="ignore"):
        _scalar("ewise_exp", a, out, np.exp)


def ewise_tanh(a, out):
    _scalar("ewise_tanh", a, out, np.tanh)


# ---------------------------------------------------------------- matmul
def _check_mnp(fn, m, n, p):
    if m < 0 or n < 0 or p < 0:
        raise ValueError(f"{fn}: sizes must be >= 0, got m={m} n={n} p={p}")


def matmul(a, b, out, m, n, p):
    _check_mnp("matmul", m, n, p)
    _check_size("matmul", "a", a, m * n)
    _check_size("matmul", "b", b, n * p)
    _check_size("matmul", "out", out, m * p)
    out.array[: m * p] = (a.array[: m * n].reshape(m, n) @ b.array[: n * p].reshape(n, p)).reshape(-1)


def matmul_tiled(a, b, out, m, n, p):
    """Tiled layout: tile [i, j] holds rows i*t.. and columns j*t.., row-major inside the tile."""
    t = __tile_size__
    _check_mnp("matmul_tiled", m, n, p)
    if m % t or n % t or p % t:
        raise ValueError(f"matmul_tiled: m={m} n={n} p={p} must be multiples of the tile size {t}")
    _check_size("matmul_tiled", "a", a, m * n)
    _check_size("matmul_tiled", "b", b, n * p)
    _check_size("matmul_tiled", "out", out, m * p)
    out.array[: m * p] = 0
    at = a.array[: m * n].reshape(m // t, n // t, t, t)
    bt = b.array[: n * p].reshape(n // t, p // t, t, t)
    out.array[: m * p] = np.einsum("ikab,kjbc->ijac", at, bt).reshape(-1)


def gemm(a, b, out, batch, m, n, p, a_offset, a_batch_stride, a_transposed,
         b_offset, b_batch_stride, b_transposed):
    """out[i] (m x p) = opA_i (m x n) @ opB_i (n x p) for i < batch; see docs/backends.md."""
    _check_mnp("gemm", m, n, p)
    if batch < 0:
        raise ValueError(f"gemm: batch must be >= 0, got {batch}")
    _check_size("gemm", "out", out, batch * m * p)
    a_strides = (a_batch_stride, 1, m) if a_transposed else (a_batch_stride, n, 1)
    b_strides = (b_batch_stride, 1, n) if b_transposed else (b_batch_stride, p, 1)
    av = _view("gemm", a, (batch, m, n), a_strides, a_offset)
    bv = _view("gemm", b, (batch, n, p), b_strides, b_offset)
    out.array[: batch * m * p] = np.matmul(av, bv).reshape(-1)


def gemm_strided_a(a, b, out, m, n, p, a_shape, a_strides, a_offset, a_row_dims, b_offset,
                   b_transposed):
    """out (row-major m x p) = A (m x n) @ opB (n x p), A read through a strided view of `a`.

    A is the view (a_shape, a_strides, a_offset) of `a` (1 to 3 row dims, then 1 to 3 column
    dims; any strides, even 0 or negative) with its first `a_row_dims` dims flattened row-major
    into the m rows and the others into the n columns: an im2col view (N, Ho, Wo | KH, KW, C)
    or its permutation (KH, KW, C | N, Ho, Wo), multiplied without being materialised.
    B is stored row-major n x p (p x n when b_transposed) from b[b_offset]. n may be 0."""
    _check_mnp("gemm_strided_a", m, n, p)
    a_shape, a_strides = tuple(a_shape), tuple(a_strides)
    if not (1 <= a_row_dims <= 3 and 1 <= len(a_shape) - a_row_dims <= 3):
        raise ValueError(f"gemm_strided_a: A view shape {a_shape} split after {a_row_dims} dims: "
                         f"need 1 to 3 row dims and 1 to 3 column dims")
    rows, cols = int(np.prod(a_shape[:a_row_dims])), int(np.prod(a_shape[a_row_dims:]))
    if (rows, cols) != (m, n):
        raise ValueError(f"gemm_strided_a: A view shape {a_shape} split after {a_row_dims} dims "
                         f"is {rows} x {cols}, expected m x n = {m} x {n}")
    _check_size("gemm_strided_a", "out", out, m * p)
    av = _view("gemm_strided_a", a, a_shape, a_strides, a_offset).reshape(m, n)
    bv = _view("gemm_strided_a", b, (n, p), (1, n) if b_transposed else (p, 1), b_offset)
    out.array[: m * p] = np.matmul(av, bv).reshape(-1)


# ---------------------------------------------------------------- reductions and softmax
def _rows(fn, a, out, row_size):
    if row_size <= 0:
        raise ValueError(f"{fn}: row size must be > 0, got {row_size}")
    _check_size(fn, "a", a, out.size * row_size)
    return a.array[: out.size * row_size].reshape(out.size, row_size)


def reduce_sum(a, out, reduce_size):
    if reduce_size == 0:
        out.array[:] = 0
        return
    out.array[:] = _rows("reduce_sum", a, out, reduce_size).sum(axis=1)


def _norm_sizes(fn, rows, channels, inner, big, small):
    """Validated element count of a batch-norm call; `big` hold rows*C*inner, `small` C."""
    if min(rows, channels, inner) < 1:
        raise ValueError(f"{fn}: rows, channels and inner must be >= 1, got {rows}, {channels}, "
                         f"{inner}")
    n = rows * channels * inner
    for what, arr in big:
        _check_size(fn, what, arr, n)
    for what, arr in small:
        _check_size(fn, what, arr, channels)
    return n


def batch_norm_forward(x, w, b, out, mean, var, rows, channels, inner, eps):
    """x viewed rows x C x inner: per-channel mean and biased variance (float64 sums), then
    out = (x - mean) * (w / sqrt(var + eps)) + b."""
    n = _norm_sizes("batch_norm_forward", rows, channels, inner, [("x", x), ("out", out)],
                    [("weight", w), ("bias", b), ("mean", mean), ("var", var)])
    xs = x.array[:n].reshape(rows, channels, inner).astype(np.float64)
    mu = xs.mean(axis=(0, 2))
    v = ((xs - mu[:, None]) ** 2).mean(axis=(0, 2))
    mean.array[:channels], var.array[:channels] = mu, v
    mu32 = mu.astype(np.float32)[:, None]
    scale = (w.array[:channels] / np.sqrt(v + eps)).astype(np.float32)[:, None]
    out.array[:n] = ((x.array[:n].reshape(rows, channels, inner) - mu32) * scale
                     + b.array[:channels, None]).reshape(-1)


def batch_norm_running_update(mean, var, running_mean, running_var, momentum, keep):
    """running = running * keep + batch * momentum (keep = 1 - momentum, rounded once) for both
    statistics of C = running_mean.size channels, in place, each operation rounded to float32."""
    c = running_mean.size
    for what, arr in (("mean", mean), ("var", var), ("running_var", running_var)):
        _check_size("batch_norm_running_update", what, arr, c)
    m, k = np.float32(momentum), np.float32(keep)
    for stat, running in ((mean, running_mean), (var, running_var)):
        running.array[:c] = running.array[:c] * k + stat.array[:c] * m


def batch_norm_backward(x, g, w, mean, var, dx, dw, db, rows, channels, inner, eps):
    """Gradients of batch_norm_forward from its mean and var: db = sum g, dw = sum g * xhat,
    dx = w * invstd * g - w * invstd * (db + xhat * dw) / M (M = rows * inner)."""
    n = _norm_sizes("batch_norm_backward", rows, channels, inner,
                    [("x", x), ("out_grad", g), ("dx", dx)],
                    [("weight", w), ("mean", mean), ("var", var), ("dw", dw), ("db", db)])
    m = rows * inner
    mu = mean.array[:channels].astype(np.float64)[:, None]
    invstd = 1.0 / np.sqrt(var.array[:channels].astype(np.float64) + eps)
    gs = g.array[:n].reshape(rows, channels, inner)
    centered = x.array[:n].reshape(rows, channels, inner) - mean.array[:channels, None]
    sum_g = gs.astype(np.float64).sum(axis=(0, 2))
    sum_gxhat = (gs * (x.array[:n].reshape(rows, channels, inner) - mu)).sum(axis=(0, 2)) * invstd
    db.array[:channels], dw.array[:channels] = sum_g, sum_gxhat
    a = w.array[:channels].astype(np.float64) * invstd
    k1 = a.astype(np.float32)[:, None]
    k2 = (-a * invstd * sum_gxhat / m).astype(np.float32)[:, None]
    k3 = (-a * sum_g / m).astype(np.float32)[:, None]
    dx.array[:n] = (gs * k1 + centered * k2 + k3).reshape(-1)


def reduce_max(a, out, reduce_size):
    out.array[:] = _rows("reduce_max", a, out, reduce_size).max(axis=1)


def _row_count(fn, a, out, row_size):
    if row_size <= 0 or a.size % row_size:
        raise ValueError(f"{fn}: buffer of {a.size} is not a whole number of rows of {row_size}")
    _check_size(fn, "out", out, a.size)
    return a.array.reshape(-1, row_size)


def softmax_rows(a, out, row_size):
    x = _row_count("softmax_rows", a, out, row_size)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    out.array[: a.size] = (e / e.sum(axis=1, keepdims=True)).reshape(-1)


def softmax_rows_backward(y, g, out, row_size):
    """Gradient of softmax at output y per row: out = y * (g - sum(g * y)) (sum in float64)."""
    ys = _row_count("softmax_rows_backward", y, out, row_size)
    _check_size("softmax_rows_backward", "out_grad", g, y.size)
    gs = g.array[: y.size].reshape(ys.shape)
    dot = (gs.astype(np.float64) * ys).sum(axis=1, keepdims=True).astype(np.float32)
    out.array[: y.size] = (ys * (gs - dot)).reshape(-1)


def log_softmax_rows(a, out, row_size):
    x = _row_count("log_softmax_rows", a, out, row_size)
    z = x - x.max(axis=1, keepdims=True)
    out.array[: a.size] = (z - np.log(np.exp(z).sum(axis=1, keepdims=True))).reshape(-1)
