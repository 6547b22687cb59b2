"""Flip, dilate and undilate: the re-indexing ops of a strided convolution written by hand
(reverse a kernel; spread a gradient out by the stride, and back). One class per op, then its
functional wrapper, as in ops_mathematic.
"""
import numpy

from ..autograd import TensorOp
from ..backend_ndarray.checks import as_size
from .ops_mathematic import _NUMPY_MODE, _as_axes_arg, _zeros

__all__ = ["Flip", "flip", "Dilate", "dilate", "Undilate", "undilate"]


class Flip(TensorOp):
    """Reverse the order of elements along `axes`; shape unchanged."""
    def __init__(self, axes=None):
        self.axes = _as_axes_arg(axes, "Flip")

    def compute(self, a):
        if _NUMPY_MODE:
            return numpy.flip(a, self.axes).copy()
        return a.flip(self.axes)

    def gradient(self, out_grad, node):
        return flip(out_grad, self.axes)


def flip(a, axes):
    """Reverse `a` along each axis in `axes` (a tuple); the input is unchanged."""
    return Flip(axes)(a)


def _dilation_slices(shape, axes, dilation):
    return tuple(slice(None, None, dilation + 1) if i in axes else slice(None)
                 for i in range(len(shape)))


class _Dilation(TensorOp):
    """The arguments of Dilate and Undilate: axes (ints) and a dilation >= 0."""

    def __init__(self, axes, dilation):
        name = type(self).__name__
        self.axes = _as_axes_arg(axes, name)
        self.dilation = as_size(dilation, name, "dilation")
        if self.dilation < 0:
            raise ValueError(f"{name}: dilation must be >= 0, got {dilation}")

    def _axes(self, ndim):
        """The axes that exist in an ndim array, made non-negative (others are ignored)."""
        return tuple(a % ndim for a in self.axes if -ndim <= a < ndim)


class Dilate(_Dilation):
    """Insert `dilation` zeros after every element along `axes` (trailing zeros included)."""

    def compute(self, a):
        axes = self._axes(a.ndim)
        if self.dilation == 0 or not axes:
            return a
        shape = tuple(n * (self.dilation + 1) if i in axes else n for i, n in enumerate(a.shape))
        out = _zeros(shape, a)
        out[_dilation_slices(shape, axes, self.dilation)] = a
        return out

    def gradient(self, out_grad, node):
        return undilate(out_grad, self.axes, self.dilation)


def dilate(a, axes, dilation):
    """Dilate along `axes`: size n -> n * (dilation + 1), element k at k * (dilation + 1).

    Example: [1, 2] with dilation 1 -> [1, 0, 2, 0]. Axes >= a.ndim are ignored.
    """
    return Dilate(axes, dilation)(a)


class Undilate(_Dilation):
    """Keep every (dilation + 1)-th entry along `axes`, starting at 0 (inverse of Dilate)."""

    def compute(self, a):
        axes = self._axes(a.ndim)
        if self.dilation == 0 or not axes:
            return a
        out = a[_dilation_slices(a.shape, axes, self.dilation)]
        return out if _NUMPY_MODE else out.compact()

    def gradient(self, out_grad, node):
        return dilate(out_grad, self.axes, self.dilation)


def undilate(a, axes, dilation):
    """Inverse of `dilate`: every (dilation + 1)-th entry along `axes`."""
    return Undilate(axes, dilation)(a)
