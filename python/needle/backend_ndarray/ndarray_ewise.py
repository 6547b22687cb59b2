"""Element-wise NDArray arithmetic and comparisons that keep dense layouts.

An array is *dense* when its elements fill its whole buffer from offset 0 in some order of its
axes: its strides are a permutation of a compact layout's (an N x C x H x W view of an NHWC
buffer, a transpose). Element-wise ops keep such layouts, as torch does for channels_last:

* unary and scalar ops on a dense array run the flat kernel over its buffer; the result has the
  input's strides;
* two dense operands with the same strides: the flat kernel again, result with those strides;
* otherwise the result takes the layout of a row-major operand if there is one (as before),
  else of a dense one (the *lead*); the other operand is read through its view, walked in the
  lead's memory order, by `ewise_add_strided` / `ewise_mul_strided` (a per-channel bias), or,
  for the ops without a strided kernel, copied once in that order;
* with no dense operand at all both are made compact and the result is row-major.

Values never depend on the layout: every kernel here is exact per element. `is_compact()`
still means row-major; whoever needs row-major memory calls `.compact()`.
The NDArray operators (ndarray.py) are these functions.
"""
import functools

from . import ndarray as _nd
from .checks import as_scalar as _as_scalar

__all__ = ["memory_order", "is_dense"]


@functools.lru_cache(maxsize=4096)
def memory_order(shape, strides):
    """The axes from outermost to innermost in memory (size-1 axes first, in order) when
    `strides` are a permutation of the compact strides of `shape` permuted the same way,
    else None (gaps, overlaps, broadcasts, negative strides, or no elements)."""
    big = sorted((i for i, n in enumerate(shape) if n != 1), key=lambda i: -strides[i])
    expect = 1
    for i in reversed(big):
        if strides[i] != expect or shape[i] == 0:
            return None
        expect *= shape[i]
    return tuple(i for i, n in enumerate(shape) if n == 1) + tuple(big)


@functools.lru_cache(maxsize=4096)
def _result_strides(shape, strides):
    """Strides for the result of a flat kernel over a dense (shape, strides): None (compact)
    when the layout is row-major up to size-1 dims, else `strides`."""
    order = memory_order(shape, strides)
    big = order[len(order) - sum(n != 1 for n in shape):]
    return None if list(big) == sorted(big) else strides


def is_dense(a):
    """Whether `a` fills its whole buffer from offset 0 in some order of its axes."""
    return (a._offset == 0 and a.size == a._handle.size
            and memory_order(a._shape, a._strides) is not None)


def _order(a):
    """memory_order of a dense `a`, else None."""
    if a._offset or a.size != a._handle.size:
        return None
    return memory_order(a._shape, a._strides)


def _result(lead):
    """A new array shaped and laid out like the dense `lead` (compact if that is row-major)."""
    strides = None if lead.is_compact() else _result_strides(lead._shape, lead._strides)
    if strides is None:
        return _nd.NDArray.make(lead._shape, device=lead._device)
    return _nd.NDArray.make(lead._shape, strides=strides, device=lead._device,
                            handle=lead._device.Array(lead.size))


def _source(a):
    """`a` itself when its buffer can be read flat (compact or dense), else a compact copy."""
    if a.is_compact() or _order(a) is not None:
        return a
    return a._copy()


def _dense_and_view(x, y):
    """Operands of a commutative op, neither dense, split into (one to read compact, one to
    read in place): the broadcast operand (a stride 0: a per-channel vector) is read in place
    when there is one, else whichever is not compact; the other is compacted if it has to be.
    """
    if x.is_compact():
        return x, y
    if y.is_compact() or (0 in x._strides and 0 not in y._strides):
        return y, x
    return x, y


def _map(a, func, *args):
    """func(buffer, *args, out) over a's elements; the result keeps a dense layout."""
    src = _source(a)
    out = _result(src)
    func(src._handle, *args, out._handle)
    return out


def ewise_or_scalar(self, other, ewise_func, scalar_func, op, strided_func=None):
    """self op other for an NDArray `other` of self's shape (no broadcasting) or a scalar.

    `strided_func` (commutative ops only) reads its second operand through a view.
    """
    if not isinstance(other, _nd.NDArray):
        return _map(self, scalar_func, _as_scalar(other, op))
    self._check_device(other, op)
    if other._shape != self._shape:
        raise ValueError(f"{op}: shapes {self._shape} and {other._shape} differ "
                         f"(NDArray ops do not broadcast; use broadcast_to)")
    if self.is_compact() and other.is_compact():
        out = _nd.NDArray.make(self._shape, device=self._device)
        ewise_func(self._handle, other._handle, out._handle)
        return out
    ox, oy = _order(self), _order(other)
    if ox is not None and ox == oy:  # one dense layout: the flat kernel
        out = _result(self)
        ewise_func(self._handle, other._handle, out._handle)
        return out
    if self.is_compact() or (ox is not None and not other.is_compact()):
        lead, rest, order = self, other, ox
    elif other.is_compact() or oy is not None:
        lead, rest, order = other, self, oy
    elif strided_func is not None:  # nothing dense: as before, a row-major result
        dense, view = _dense_and_view(self, other)
        out = _nd.NDArray.make(self._shape, device=self._device)
        strided_func(dense.compact()._handle, view._handle, out._handle, view._shape,
                     view._strides, view._offset)
        return out
    else:
        out = _nd.NDArray.make(self._shape, device=self._device)
        ewise_func(self.compact()._handle, other.compact()._handle, out._handle)
        return out
    # `rest` walked in lead's memory order (row-major when lead is compact), so that the
    # kernels' row-major index i is lead's buffer index i.
    view = rest if lead.is_compact() else rest.permute(order)
    out = _result(lead)
    if strided_func is not None:
        strided_func(lead._handle, view._handle, out._handle, view._shape, view._strides,
                     view._offset)
    else:
        rest_h = view.compact()._handle
        a, b = (lead._handle, rest_h) if lead is self else (rest_h, lead._handle)
        ewise_func(a, b, out._handle)
    return out


def add(self, other):
    """self + other (an NDArray of self's shape or a scalar); dense layouts are kept."""
    return ewise_or_scalar(self, other, self._device.ewise_add, self._device.scalar_add, "add",
                           self._device.ewise_add_strided)


def sub(self, other):
    return self + (-other)


def rsub(self, other):
    return other + (-self)


def mul(self, other):
    """self * other (an NDArray of self's shape or a scalar); dense layouts are kept."""
    return ewise_or_scalar(self, other, self._device.ewise_mul, self._device.scalar_mul, "mul",
                           self._device.ewise_mul_strided)


def truediv(self, other):
    return ewise_or_scalar(self, other, self._device.ewise_div, self._device.scalar_div, "div")


def rtruediv(self, other):
    return (self ** -1.0) * other


def neg(self):
    return self * (-1.0)


def pow_(self, other):
    return ewise_or_scalar(self, other, self._device.ewise_pow, self._device.scalar_power,
                           "pow")


def maximum(self, other):
    """max(self, other) element-wise, numpy.maximum semantics (NaN wins)."""
    return ewise_or_scalar(self, other, self._device.ewise_maximum,
                           self._device.scalar_maximum, "maximum")


# Comparisons give 1.0 / 0.0; every one compares false against NaN, as IEEE and numpy say
# (so not 1 - (a >= b)), except != which is true.
def eq(self, other):
    return ewise_or_scalar(self, other, self._device.ewise_eq, self._device.scalar_eq, "eq")


def ge(self, other):
    return ewise_or_scalar(self, other, self._device.ewise_ge, self._device.scalar_ge, "ge")


def gt(self, other):
    return ewise_or_scalar(self, other, self._device.ewise_gt, self._device.scalar_gt, "gt")


def ne(self, other):
    return 1 - (self == other)


def le(self, other):
    if isinstance(other, _nd.NDArray):
        return other >= self
    return (-self) >= (-_as_scalar(other, "le"))  # negation is exact: a <= s iff -a >= -s


def lt(self, other):
    if isinstance(other, _nd.NDArray):
        return other > self
    return (-self) > (-_as_scalar(other, "lt"))


def log(self):
    return _map(self, self._device.ewise_log)


def exp(self):
    return _map(self, self._device.ewise_exp)


def tanh(self):
    return _map(self, self._device.ewise_tanh)
