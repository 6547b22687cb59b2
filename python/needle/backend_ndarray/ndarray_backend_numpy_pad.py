"""The numpy reference backend's zero padding (part of ndarray_backend_numpy's table)."""
import numpy as np

from . import ndarray_backend_numpy as _spec  # read at call time: it imports us


def pad(a, out, shape, strides, offset, before, after):
    """out (compact, dims shape[i] + before[i] + after[i]) = the view (shape, strides, offset)
    of `a` with before[i] zeros ahead of it and after[i] behind it along dim i; elements of
    `out` past that size are left alone."""
    shape, before, after = tuple(shape), tuple(before), tuple(after)
    view = _spec._view("pad", a, shape, strides, offset)
    if len(before) != len(shape) or len(after) != len(shape):
        raise ValueError(f"pad: before {before} and after {after} need one entry per dim of "
                         f"shape {shape}")
    if min(before + after, default=0) < 0:
        raise ValueError(f"pad: negative padding, before {before} after {after}")
    padded = tuple(n + b + e for n, b, e in zip(shape, before, after))
    total = int(np.prod(padded))
    _spec._check_size("pad", "out", out, total)
    result = np.zeros(padded, dtype=np.float32)
    result[tuple(slice(b, b + n) for b, n in zip(before, shape))] = view
    out.array[:total] = result.reshape(-1)
