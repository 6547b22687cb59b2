"""Matrix products of NDArrays: batched, broadcast `matmul` and `flat_matmul` (a strided view
read as a matrix: the implicit GEMM of convolutions). Operands stored row- or column-major are
handed to the backend's GEMM in place; others are compacted first."""
import functools

import numpy as np

from .ndarray import NDArray, broadcast_shapes, prod

__all__ = ["matmul", "flat_matmul"]


def _stored_transposed(r, c, s_r, s_c):
    """How the GEMM reads an r x c matrix with strides (s_r, s_c) in place: False when it is
    row-major, True when column-major (stored transposed), None when it needs a copy first."""
    if s_c == 1 and (s_r == c or r == 1):
        return False
    if s_r == 1 and (s_c == r or c == 1):
        return True
    return None


def _gemm_operand(x, batch_shape):
    """(handle, offset, batch_stride, transposed) describing x broadcast to batch_shape + (r, c)."""
    r, c = x.shape[-2:]
    xb = x.broadcast_to(batch_shape + (r, c))
    transposed = _stored_transposed(r, c, *xb.strides[-2:])
    if transposed is None:
        return _gemm_operand(xb.compact(), batch_shape)
    bstrides = [s for n, s in zip(batch_shape, xb.strides[:-2]) if n > 1]
    if all(s == 0 for s in bstrides):
        return xb._handle, xb._offset, 0, transposed
    expect, ok = r * c, True
    for n, s in reversed([(n, s) for n, s in zip(batch_shape, xb.strides[:-2]) if n > 1]):
        ok &= s == expect
        expect *= n
    if not ok:
        return _gemm_operand(xb.compact(), batch_shape)
    return xb._handle, xb._offset, r * c, transposed


def _gemm_operand_2d(x, transpose):
    """(handle, offset, transposed) of a 2-D operand, read in place when row- or column-major."""
    stored = _stored_transposed(*x._shape, *x._strides)
    if stored is None:
        x, stored = x.compact(), False
    return x._handle, x._offset, stored != transpose


def matmul(a, b, transpose_a=False, transpose_b=False):
    """Batched matmul with numpy broadcasting: (..., m, n) @ (..., n, p) -> (..., m, p).

    `transpose_a` / `transpose_b` swap the last two axes of an operand first, without a copy.
    """
    if not isinstance(a, NDArray) or not isinstance(b, NDArray):
        raise TypeError(f"matmul: both operands must be NDArrays, got {type(a).__name__} and "
                        f"{type(b).__name__}")
    if type(transpose_a) is not bool or type(transpose_b) is not bool:  # "yes" is not True
        raise TypeError(f"matmul: transpose_a and transpose_b must be True or False, got "
                        f"{transpose_a!r} and {transpose_b!r}")
    a._check_device(b, "matmul")
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"matmul: operands must be at least 2-D, got shapes {a.shape} and {b.shape}")
    if a.ndim == 2 and b.ndim == 2:  # the common case, without the batch bookkeeping
        ah, aoff, at = _gemm_operand_2d(a, transpose_a)
        bh, boff, bt = _gemm_operand_2d(b, transpose_b)
        m, n = a._shape[::-1] if transpose_a else a._shape
        n2, p = b._shape[::-1] if transpose_b else b._shape
        if n != n2:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} (transpose_a={transpose_a}, "
                             f"transpose_b={transpose_b}) are not aligned ({n} != {n2})")
        out = NDArray.make((m, p), device=a.device)
        if out.size:
            a.device.gemm(ah, bh, out._handle, 1, m, n, p, aoff, 0, at, boff, 0, bt)
        return out
    if transpose_a:
        a = a.permute(tuple(range(a.ndim - 2)) + (a.ndim - 1, a.ndim - 2))
    if transpose_b:
        b = b.permute(tuple(range(b.ndim - 2)) + (b.ndim - 1, b.ndim - 2))
    (m, n), (n2, p) = a.shape[-2:], b.shape[-2:]
    if n != n2:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned ({n} != {n2})")
    try:
        batch_shape = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dims of shapes {a.shape} and {b.shape} do not "
                         f"broadcast") from None
    batch = prod(batch_shape)
    out = NDArray.make(batch_shape + (m, p), device=a.device)
    if out.size == 0:
        return out
    ah, aoff, abs_, at = _gemm_operand(a, batch_shape)
    bh, boff, bbs, bt = _gemm_operand(b, batch_shape)
    a.device.gemm(ah, bh, out._handle, batch, m, n, p, aoff, abs_, at, boff, bbs, bt)
    return out


@functools.lru_cache(maxsize=1024)  # a pure function of the layout, asked by every conv
def _merged_dims(shape, strides):
    """(shape, strides) walking the same elements in the same row-major order with fewer dims:
    size-1 dims dropped, a dim merged into the one before it when the two are contiguous (the
    KW x C taps of an NHWC window with dilation 1 are one run of KW*C)."""
    dims = [(n, s) for n, s in zip(shape, strides) if n != 1]
    merged = []
    for n, s in dims:
        if merged and merged[-1][1] == n * s:
            merged[-1] = (merged[-1][0] * n, s)
        else:
            merged.append((n, s))
    merged = merged or [(1, 0)]
    return tuple(n for n, _ in merged), tuple(s for _, s in merged)


def flat_matmul(a, b, a_row_dims):
    """A @ b where A is `a` (any strided view) seen as a matrix: its first `a_row_dims` dims
    flattened into rows, the others into columns. No copy of `a` is made: with a the im2col view
    N x Ho x Wo x KH x KW x C of an NHWC input, this is a convolution as an implicit GEMM (the
    backend gathers the windows straight into its packed GEMM panels).

    Args:
        a: NDArray of any shape and strides.
        b: 2-D NDArray, prod(a.shape[a_row_dims:]) x P.
        a_row_dims: 1 <= a_row_dims < a.ndim.
    Returns:
        compact NDArray, prod(a.shape[:a_row_dims]) x P.
    """
    if not isinstance(a, NDArray) or not isinstance(b, NDArray):
        raise TypeError("flat_matmul: both operands must be NDArrays")
    a._check_device(b, "flat_matmul")
    if not isinstance(a_row_dims, (int, np.integer)) or not 1 <= a_row_dims < a.ndim:
        raise ValueError(f"flat_matmul: a_row_dims must be an int in [1, {a.ndim - 1}] for shape "
                         f"{a.shape}, got {a_row_dims!r}")
    if b.ndim != 2:
        raise ValueError(f"flat_matmul: b must be 2-D, got shape {b.shape}")
    rows, cols = prod(a.shape[:a_row_dims]), prod(a.shape[a_row_dims:])
    if cols != b.shape[0]:
        raise ValueError(f"flat_matmul: a of shape {a.shape} flattened after {a_row_dims} dims is "
                         f"{rows} x {cols}, not aligned with b of shape {b.shape}")
    if a._is_row_major():  # already a plain matrix
        return matmul(a.reshape((rows, cols)), b)
    row_shape, row_strides = _merged_dims(a.shape[:a_row_dims], a.strides[:a_row_dims])
    col_shape, col_strides = _merged_dims(a.shape[a_row_dims:], a.strides[a_row_dims:])
    if (len(row_shape) > 3 or len(col_shape) > 3  # beyond what the backend takes
            or (row_strides[-1] != 1 and col_strides[-1] != 1)):
        # neither rows nor columns run through memory: the packing would gather single floats,
        # while compact's tiled transposing copy moves whole cache lines
        return matmul(a.compact().reshape((rows, cols)), b)
    bh, boff, bt = _gemm_operand_2d(b, False)
    p = b.shape[1]
    out = NDArray.make((rows, p), device=a.device)
    if out.size:
        a.device.gemm_strided_a(a._handle, bh, out._handle, rows, cols, p,
                                row_shape + col_shape, row_strides + col_strides, a._offset,
                                len(row_shape), boff, bt)
    return out
