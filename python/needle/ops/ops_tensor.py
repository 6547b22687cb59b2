"""Ops behind the PyTorch-style Tensor methods: device moves, max reductions, comparisons.

`to_device` and `max_reduce` are differentiable; the comparisons (`eq`, `ne`, `lt`, `le`, `gt`,
`ge`) return constant 0/1 float tensors, as masks to multiply with (torch returns bool tensors;
NDArray is float32 only).
"""
import operator

import numpy

from ..autograd import Tensor, TensorOp
from ..backend_ndarray.ndarray import broadcast_shapes
from ..backend_selection import BACKEND, array_api

__all__ = ["ToDevice", "to_device", "MaxReduce", "max_reduce", "eq", "ne", "lt", "le", "gt",
           "ge"]

_NUMPY_MODE = BACKEND == "np"


def check_dims(owner, dims, ndim):
    """`dims` (None, an int or a sequence of ints) as None or a sorted tuple of non-negative
    axes. IndexError for an axis out of range, TypeError for a non-int, ValueError for repeats."""
    if dims is None:
        return None
    items = (dims,) if isinstance(dims, (int, numpy.integer)) else dims
    try:
        items = tuple(items)
    except TypeError:
        raise TypeError(f"{owner}: dims must be an int or a tuple of ints, got {dims!r}") from None
    out = []
    for d in items:
        if isinstance(d, bool) or not isinstance(d, (int, numpy.integer)):
            raise TypeError(f"{owner}: dims must be ints, got {d!r}")
        rank = max(ndim, 1)
        if not -rank <= d < rank:
            raise IndexError(f"{owner}: dim {d} is out of range for a tensor of rank {ndim}")
        out.append(int(d) % rank)
    if len(set(out)) != len(out):
        raise ValueError(f"{owner}: repeated dim in {items}")
    return tuple(sorted(out))


def _kept_shape(shape, axes):
    return tuple(1 if axes is None or i in axes else n for i, n in enumerate(shape))


def _reduced_shape(shape, axes):
    return tuple(n for i, n in enumerate(shape) if axes is not None and i not in axes)


# ------------------------------------------------------------------------------ device move
class ToDevice(TensorOp):
    """A copy of the input on `device`; the gradient moves back."""

    def __init__(self, device):
        self.device = device

    def compute(self, a):
        return a if _NUMPY_MODE else a.to(self.device)

    def gradient(self, out_grad, node):
        return to_device(out_grad, node.inputs[0].device)


def to_device(a, device):
    """`a` copied to `device` (differentiable)."""
    return ToDevice(device)(a)


# ------------------------------------------------------------------------------ max
class MaxReduce(TensorOp):
    """Max over `axes` (None = all; a sorted tuple of axes), dims dropped unless keepdims.

    The gradient goes to the maximal elements, split evenly between ties (torch's amax)."""

    def __init__(self, axes=None, keepdims=False):
        self.axes = axes
        self.keepdims = keepdims

    def compute(self, a):
        if a.size == 0:
            raise ValueError(f"max: reduction over a zero-size tensor of shape {a.shape}")
        if _NUMPY_MODE:
            return numpy.asarray(numpy.max(a, axis=self.axes, keepdims=self.keepdims))
        out = a.max(axis=self.axes, keepdims=True)
        shape = (_kept_shape(a.shape, self.axes) if self.keepdims
                 else _reduced_shape(a.shape, self.axes))
        return out.compact().reshape(shape)

    def gradient(self, out_grad, node):
        x = node.inputs[0]
        kept = _kept_shape(x.shape, self.axes)
        data = x.realize_cached_data()
        top = node.realize_cached_data()
        if _NUMPY_MODE:
            mask = (data == top.reshape(kept)).astype(data.dtype)
            count = mask.sum(axis=self.axes, keepdims=True)
            weights = mask / count
        else:
            mask = data == top.compact().reshape(kept).broadcast_to(x.shape)
            count = mask.sum(axis=self.axes, keepdims=True).broadcast_to(x.shape)
            weights = mask / count
        g = out_grad.reshape(kept).broadcast_to(x.shape)
        return g * Tensor.make_const(weights)


def max_reduce(a, axes=None, keepdims=False):
    """Max of `a` over `axes` (None = all dims, an int or a tuple); shape () for all dims."""
    return MaxReduce(check_dims("max", axes, a.ndim), keepdims)(a)


# ------------------------------------------------------------------------------ comparisons
def _operands(owner, a, b):
    """Raw arrays of a and b, of one broadcast shape, on a's device."""
    if not isinstance(a, Tensor):
        raise TypeError(f"{owner}: expected a Tensor as first argument, got {type(a).__name__}")
    x = a.realize_cached_data()
    if isinstance(b, Tensor):
        y = b.realize_cached_data()
        if not _NUMPY_MODE and a.device != b.device:
            raise ValueError(f"{owner}: tensors on different devices ({a.device} and "
                             f"{b.device})")
    elif isinstance(b, (int, float, numpy.number)) and not isinstance(b, bool):
        if _NUMPY_MODE:
            return x, b
        return x, array_api.full(x.shape, float(b), device=x.device)
    else:
        raise TypeError(f"{owner}: expected a Tensor or a number to compare with, got "
                        f"{type(b).__name__}")
    if _NUMPY_MODE:
        return x, y
    try:
        shape = broadcast_shapes(x.shape, y.shape)
    except ValueError:
        raise ValueError(f"{owner}: shapes {x.shape} and {y.shape} do not broadcast") from None

    def grow(arr):
        arr = arr.compact().reshape((1,) * (len(shape) - arr.ndim) + arr.shape)
        return arr.broadcast_to(shape)
    return grow(x), grow(y)


# The NDArray operators already give IEEE results for NaN (a < NaN is false), as numpy's do.
_COMPARISONS = {"eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le,
                "gt": operator.gt, "ge": operator.ge}


def _compare(owner, a, b):
    x, y = _operands(owner, a, b)
    out = _COMPARISONS[owner](x, y)
    if _NUMPY_MODE:
        out = numpy.asarray(out, dtype=numpy.float32)
    return Tensor.make_const(out)


def eq(a, b):
    """1.0 where a == b, else 0.0 (a Tensor; b a Tensor or number; broadcast); no gradient."""
    return _compare("eq", a, b)


def ne(a, b):
    """1.0 where a != b (NaN != anything), else 0.0; no gradient."""
    return _compare("ne", a, b)


def lt(a, b):
    """1.0 where a < b, else 0.0; no gradient."""
    return _compare("lt", a, b)


def le(a, b):
    """1.0 where a <= b, else 0.0; no gradient."""
    return _compare("le", a, b)


def gt(a, b):
    """1.0 where a > b, else 0.0; no gradient."""
    return _compare("gt", a, b)


def ge(a, b):
    """1.0 where a >= b, else 0.0; no gradient."""
    return _compare("ge", a, b)
