"""numpy-style functions over NDArrays (needle.backend_ndarray.array, full, stack, ...): thin
wrappers of NDArray's methods and devices, plus stack and split.
"""
from .checks import normalize_axes as _normalize_axes
from .device import _check_dtype, default_device
from .ndarray import NDArray

__all__ = [
    "array", "empty", "full", "zeros", "ones", "broadcast_to", "reshape", "maximum", "log", "exp",
    "tanh", "sum", "max", "flip", "pad", "stack", "split", "transpose", "power", "negative",
]


def array(a, dtype="float32", device=None):
    """An NDArray copy of `a` (float32 only)."""
    _check_dtype(dtype, "array")
    return NDArray(a, device=device)


def empty(shape, dtype="float32", device=None):
    """An uninitialised float32 NDArray of `shape` on `device` (default cpu())."""
    device = device if device is not None else default_device()
    return device.empty(shape, dtype)


def full(shape, fill_value, dtype="float32", device=None):
    """A float32 NDArray of `shape` filled with `fill_value`."""
    device = device if device is not None else default_device()
    return device.full(shape, fill_value, dtype)


def zeros(shape, dtype="float32", device=None):
    """A float32 NDArray of `shape` filled with 0."""
    return full(shape, 0.0, dtype, device)


def ones(shape, dtype="float32", device=None):
    """A float32 NDArray of `shape` filled with 1."""
    return full(shape, 1.0, dtype, device)


def broadcast_to(a, shape):
    """A view of `a` broadcast to `shape` (stride 0 along new or size-1 dims)."""
    return a.broadcast_to(shape)


def reshape(a, shape):
    """`a` as `shape`: a view when `a` is compact, else a compact copy."""
    return a.reshape(shape)


def transpose(a, axes=None):
    """A view of `a` with its axes permuted (default: reversed), as numpy.transpose."""
    return a.permute(tuple(reversed(range(a.ndim))) if axes is None else axes)


def maximum(a, b):
    """max(a, b), element-wise; `b` an NDArray of a's shape or a scalar."""
    return a.maximum(b)


def power(a, b):
    """a ** b, element-wise; `b` an NDArray of a's shape or a scalar."""
    return a ** b


def negative(a):
    """-a, element-wise."""
    return -a


def log(a):
    """Natural logarithm of `a`, element-wise."""
    return a.log()


def exp(a):
    """e ** a, element-wise."""
    return a.exp()


def tanh(a):
    """tanh(a), element-wise."""
    return a.tanh()


def sum(a, axis=None, keepdims=False):  # noqa: A001  (numpy-compatible name)
    """Sum of `a` over `axis` (int, tuple or None: all), as numpy.sum."""
    return a.sum(axis=axis, keepdims=keepdims)


def max(a, axis=None, keepdims=False):  # noqa: A001
    """Maximum of `a` over `axis` (int, tuple or None: all), as numpy.max."""
    return a.max(axis=axis, keepdims=keepdims)


def flip(a, axes):
    """A copy of `a` reversed along `axes`."""
    return a.flip(axes)


def pad(a, axes):
    """`a` zero-padded: `axes` holds one (before, after) pair per dimension."""
    return a.pad(axes)


def stack(arrays, axis=0):
    """Join same-shape arrays along a new axis `axis` (numpy semantics)."""
    arrays = list(arrays)
    if not arrays:
        raise ValueError("stack: need at least one array")
    shape = arrays[0].shape
    if any(a.shape != shape for a in arrays):
        raise ValueError(f"stack: all shapes must match, got {[a.shape for a in arrays]}")
    (axis,) = _normalize_axes(axis, len(shape) + 1, "stack")
    out = empty(shape[:axis] + (len(arrays),) + shape[axis:], device=arrays[0].device)
    for i, a in enumerate(arrays):
        out[(slice(None),) * axis + (i,)] = a
    return out


def split(a, axis=0):
    """Compact arrays a[..., i, ...] for every i along `axis`, with that axis removed."""
    (axis,) = _normalize_axes(axis, a.ndim, "split")
    shape = a.shape[:axis] + a.shape[axis + 1:]
    return [a[(slice(None),) * axis + (i,)].compact().reshape(shape) for i in range(a.shape[axis])]
