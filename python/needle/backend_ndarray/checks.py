"""Argument checks and aliasing tests shared by NDArray and the ops built on it.

Each check runs once per call on Python values (shapes, axes, flags), never per element, so
it stays off the kernels' hot path. Errors name the op and the offending value.
"""
import numbers

import numpy as np

__all__ = ["as_size", "as_shape", "as_flag", "span", "overlaps"]


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
    if type(shape) is tuple and all(type(n) is int and n >= 0 for n in shape):
        return shape  # the common case, checked without the slower isinstance tests
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


def as_flag(value, op, what):
    """`value` as a bool: only True / False (a string such as "yes" is an error, not truthy)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{op}: {what} must be True or False, got {value!r}")
    return bool(value)


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
