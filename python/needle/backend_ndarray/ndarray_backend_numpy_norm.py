"""The numpy reference backend's batch norm on strided operands (part of ndarray_backend_numpy's
table).

`batch_norm_forward_strided` / `batch_norm_backward_strided` read their input x through dense
(row, channel, inner) strides, e.g. an N x C x H*W view of an NHWC buffer, so that a
channels-last activation is normalised without a transposing copy first; out, out_grad and dx
are row-major. By definition they give exactly what the row-major kernels give on x's row-major
copy (the native kernels add the same values in the same order), which is how this spec
computes them.
"""
import numpy as np

from . import ndarray_backend_numpy as _spec  # read at call time: it imports us


def _dense_layout(fn, rows, channels, inner, strides):
    """The (rows, C, inner) view shape after the checks the native entry points make: sizes
    >= 1 (checked by the caller), and `strides` a permutation of compact strides over the dims
    longer than 1."""
    strides = tuple(int(s) for s in strides)
    if len(strides) != 3:
        raise ValueError(f"{fn}: strides must be (row, channel, inner), got {strides}")
    shape = (rows, channels, inner)
    expect = 1
    for stride, n in sorted((s, n) for s, n in zip(strides, shape) if n > 1):
        if stride != expect:
            raise ValueError(f"{fn}: strides {strides} for rows x C x inner {shape} are not a "
                             f"dense layout (a permutation of compact strides)")
        expect *= n
    return shape, strides


def _gather(fn, arr, shape, strides):
    """A row-major Array holding the (shape, strides) view of `arr`."""
    out = _spec.Array(int(np.prod(shape)))
    out.array[:] = _spec._view(fn, arr, shape, strides, 0).reshape(-1)
    return out


def batch_norm_forward_strided(x, w, b, out, mean, var, rows, channels, inner, strides, eps):
    """batch_norm_forward with x read through `strides` = (row, channel, inner) element strides,
    a dense layout (an NCHW view of an NHWC buffer: (H*W*C, 1, C)); out row-major."""
    fn = "batch_norm_forward_strided"
    _spec._norm_sizes(fn, rows, channels, inner, [("x", x), ("out", out)],
                      [("weight", w), ("bias", b), ("mean", mean), ("var", var)])
    shape, strides = _dense_layout(fn, rows, channels, inner, strides)
    _spec.batch_norm_forward(_gather(fn, x, shape, strides), w, b, out, mean, var, rows,
                             channels, inner, eps)


def batch_norm_backward_strided(x, g, w, mean, var, dx, dw, db, rows, channels, inner, strides,
                                eps):
    """batch_norm_backward with x read through `strides` (as in batch_norm_forward_strided);
    out_grad and dx row-major."""
    fn = "batch_norm_backward_strided"
    _spec._norm_sizes(fn, rows, channels, inner, [("x", x), ("out_grad", g), ("dx", dx)],
                      [("weight", w), ("mean", mean), ("var", var), ("dw", dw), ("db", db)])
    shape, strides = _dense_layout(fn, rows, channels, inner, strides)
    _spec.batch_norm_backward(_gather(fn, x, shape, strides), g, w, mean, var, dx, dw, db,
                              rows, channels, inner, eps)
