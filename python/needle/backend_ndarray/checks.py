"""Argument checks and aliasing tests shared by NDArray and the ops built on it.

Each check runs once per call on Python values (shapes, axes, flags), never per element, so
it stays off the kernels' hot path. Errors name the op and the offending value.
"""
import numbers

import numpy as np

from ..jit_live import LiveScalar

__all__ = ["as_size", "as_shape", "as_scalar", "normalize_axes", "broadcast_shapes",
           "span", "overlaps"]


def as_size(value, op, what="size"):
    """`value` as a Python int: an int or numpy integer, never a bool, float or string."""
    if type(value) is int:
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{op}: {what} must be an int, got {value!r} ({type(value).__name__})")
    return int(value)


def as_shape(shape, op, allow_minus_one=False):
    """`shape` (an int or a sequence of ints) as a tuple of non-negative ints.

    `allow_minus_one` lets one entry be -1 (reshape infers it); the caller checks the count.
    """
    if type(shape) is tuple:  # the common case, checked without the slower isinstance tests
        for n in shape:
            if type(n) is not int or n < 0:
                break
        else:
            return shape
    if isinstance(shape, numbers.Integral) and not isinstance(shape, (bool, np.bool_)):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"{op}: shape must be a tuple of ints, got {shape!r}") from None
    out = tuple(as_size(n, op, f"every size in shape {dims}") for n in dims)
    for n in out:
        if n < 0 and not (allow_minus_one and n == -1):
            raise ValueError(f"{op}: negative dimension {n} in shape {out}")
    return out


_AXES = {}  # (axes, ndim) -> normalized axes: permute / sum are on every op's hot path


def normalize_axes(axes, ndim, op):
    # only plain ints are cached: (1.0,) == (1,) as a key, but a float axis is an error
    plain = type(axes) is int or (type(axes) is tuple and all(type(a) is int for a in axes))
    if plain:
        out = _AXES.get((axes, ndim))
        if out is not None:
            return out
    out = _check_axes(axes, ndim, op)
    if plain and len(_AXES) < 4096:
        _AXES[axes, ndim] = out
    return out


def _check_axes(axes, ndim, op):
    if isinstance(axes, (int, np.integer)):
        axes = (axes,)
    out = []
    if isinstance(axes, (bool, np.bool_)):
        axes = (axes,)
    if not isinstance(axes, (tuple, list)):
        raise TypeError(f"{op}: axes must be an int or a tuple of ints, got {axes!r}")
    for ax in axes:
        if not isinstance(ax, (int, np.integer)) or isinstance(ax, (bool, np.bool_)):
            raise TypeError(f"{op}: axes must be ints, got {axes!r}")
        if not -ndim <= ax < max(ndim, 1):
            raise ValueError(f"{op}: axis {ax} out of range for an array of rank {ndim}")
        out.append(int(ax) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {tuple(axes)}")
    return tuple(out)


def broadcast_shapes(*shapes):
    """numpy broadcasting of shapes; ValueError naming the shapes when incompatible."""
    ndim = max(len(s) for s in shapes)
    out = []
    for dims in zip(*[(1,) * (ndim - len(s)) + tuple(s) for s in shapes]):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            raise ValueError(f"broadcast: shapes {' and '.join(map(str, shapes))} are incompatible")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def as_scalar(value, op):
    if isinstance(value, LiveScalar):  # kept: a jit replay re-reads it (jit_live.py)
        return value
    if isinstance(value, (int, float, np.integer, np.floating, bool)):
        return float(value)
    if isinstance(value, np.ndarray) and value.size == 1:
        return float(value.reshape(-1)[0])
    raise TypeError(f"{op}: expected an NDArray or a scalar, got {type(value).__name__}")


def span(arr):
    """The [first, last] buffer elements a view can touch (None when it is empty)."""
    if arr.size == 0:
        return None
    lo = hi = arr._offset
    for n, s in zip(arr._shape, arr._strides):
        if s < 0:
            lo += (n - 1) * s
        else:
            hi += (n - 1) * s
    return lo, hi


def overlaps(a, b):
    """Whether views `a` and `b` may touch the same memory (same buffer, overlapping spans).

    Conservative: interleaved but disjoint views count as overlapping; that only costs a copy.
    """
    if a._handle is not b._handle:
        return False
    sa, sb = span(a), span(b)
    return sa is not None and sb is not None and sa[0] <= sb[1] and sb[0] <= sa[1]
