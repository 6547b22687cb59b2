"""NDArray: a strided float32 array over a flat device buffer.

All shape/stride/offset logic lives here; a device is a thin handle over a backend module that
exports the function table of docs/backends.md. Views (reshape, permute, broadcast_to, getitem,
as_strided) only edit (shape, strides, offset) and share the buffer.
"""
import builtins
import functools
import operator
from functools import reduce

import numpy as np

from . import ndarray_ewise as _ew
from . import ndarray_fused as _fused
from .checks import as_scalar as _as_scalar
from .checks import as_shape, as_size, broadcast_shapes, overlaps
from .checks import normalize_axes as _normalize_axes
from .device import _check_dtype, default_device

__all__ = [
    "NDArray", "array", "empty", "full", "zeros", "ones",
    "broadcast_to", "broadcast_shapes", "reshape", "maximum", "log", "exp", "tanh", "sum", "max",
    "flip", "pad", "stack", "split", "transpose", "power", "negative",
]  # the functions: ndarray_functions.py

_FLOAT32_NAMES = ("float32",)
_ALL = slice(None)


def prod(x):
    return reduce(operator.mul, x, 1)


_size_of = functools.lru_cache(maxsize=4096)(prod)


@functools.lru_cache(maxsize=4096)
def _compact_strides(shape):
    stride, out = 1, []
    for n in reversed(shape):
        out.append(stride)
        stride *= n
    return tuple(reversed(out))


class NDArray:
    """A strided float32 array on a device.

    Construct from a numpy array (any dtype, copied as float32), another NDArray (copied, moved to
    `device` if given) or anything `np.array` accepts. `strides` and `_offset` are in elements.
    """

    # slots: an array is made per op and per view, so creating one and reading its fields
    # should be cheap (no per-instance dict)
    __slots__ = ("_shape", "_strides", "_offset", "_device", "_handle", "_compact", "__weakref__")

    def __init__(self, other, device=None):
        if isinstance(other, NDArray):
            if device is None or device == other.device:
                self._init(other._copy())
            else:
                self._init(other.to(device))
        elif isinstance(other, np.ndarray):
            device = device if device is not None else default_device()
            arr = NDArray.make(other.shape, device=device)
            device.from_numpy(np.ascontiguousarray(other, dtype=np.float32), arr._handle)
            self._init(arr)
        else:
            if other is None:  # np.array(None, float32) is a silent NaN
                raise TypeError("NDArray: cannot build an array from None")
            try:
                data = np.array(other, dtype=np.float32)
            except (TypeError, ValueError) as e:
                raise TypeError(f"NDArray: cannot build an array from {type(other).__name__}: {e}")
            self._init(NDArray(data, device=device))

    def _init(self, other):
        self._shape = other._shape
        self._strides = other._strides
        self._offset = other._offset
        self._device = other._device
        self._handle = other._handle
        self._compact = other._compact

    @staticmethod
    def make(shape, strides=None, device=None, handle=None, offset=0):
        """A new NDArray with the given layout; allocates an uninitialised buffer if no handle."""
        arr = NDArray.__new__(NDArray)
        arr._shape = shape = tuple(shape) if type(shape) is tuple else tuple(int(s) for s in shape)
        arr._strides = _compact_strides(shape) if strides is None else tuple(strides)
        arr._offset = offset
        arr._device = device = device if device is not None else default_device()
        arr._handle = device.Array(_size_of(shape)) if handle is None else handle
        arr._compact = True if handle is None and strides is None else None  # None: not known yet
        return arr

    @staticmethod
    def _new(shape, device):
        """A new compact array; `shape` is a tuple of ints the package derived from checked
        shapes (internal: `make` without its conversions)."""
        arr = NDArray.__new__(NDArray)
        arr._shape = shape
        arr._strides = _compact_strides(shape)
        arr._offset = 0
        arr._device = device
        arr._handle = device.Array(_size_of(shape))
        arr._compact = True
        return arr

    def _view(self, shape, strides, offset):
        """A view of this array's buffer; `shape` and `strides` are tuples of ints derived from
        checked values (internal: no re-validation)."""
        arr = NDArray.__new__(NDArray)
        arr._shape = shape
        arr._strides = strides
        arr._offset = offset
        arr._device = self._device
        arr._handle = self._handle
        arr._compact = None
        return arr

    # ------------------------------------------------------------ attributes
    @property
    def shape(self):
        return self._shape

    @property
    def strides(self):
        return self._strides

    @property
    def device(self):
        return self._device

    @property
    def dtype(self):
        return "float32"

    @property
    def ndim(self):
        return len(self._shape)

    @property
    def size(self):
        return _size_of(self._shape)

    def __len__(self):
        if not self._shape:
            raise TypeError("len() of a 0-d NDArray")
        return self._shape[0]

    def __repr__(self):
        return "NDArray(" + self.numpy().__str__() + f", device={self.device})"

    def __str__(self):
        return self.numpy().__str__()

    def __array__(self, dtype=None, copy=None):
        out = self.numpy()
        return out if dtype is None else out.astype(dtype)

    def numpy(self):
        """A numpy float32 copy honouring strides and offset."""
        return self.device.to_numpy(self._handle, self._shape, self._strides, self._offset)

    def astype(self, dtype):
        _check_dtype(dtype, "astype")
        return self._copy()

    def fill(self, value):
        """Fill this array's buffer with `value` in place."""
        self.device.fill(self._handle, float(value))

    def to(self, device):
        if device == self.device:
            return self
        return NDArray(self.numpy(), device=device)

    # ------------------------------------------------------------ layout
    def is_compact(self):
        if self._compact is None:  # layouts never change: decide once
            shape = self._shape
            self._compact = (self._strides == _compact_strides(shape)
                             and _size_of(shape) == self._handle.size)
        return self._compact

    def _is_row_major(self):
        """Contiguous row-major strides (dims of size 1 ignored), whatever the offset."""
        expect = 1
        for n, s in zip(reversed(self._shape), reversed(self._strides)):
            if n != 1 and s != expect:
                return False
            expect *= n
        return True

    def _copy(self):
        out = NDArray._new(self._shape, self._device)
        self._device.compact(self._handle, out._handle, self._shape, self._strides, self._offset)
        return out

    def compact(self):
        """`self` if compact, else a compact copy (or, when only the strides of size-1 dims
        differ, e.g. NCHW with C = 1 viewed as NHWC, the same buffer relabelled: no copy)."""
        if self.is_compact():
            return self
        if (self._offset == 0 and _size_of(self._shape) == self._handle.size
                and self._is_row_major()):
            return self._view(self._shape, _compact_strides(self._shape), 0)
        return self._copy()

    def as_strided(self, shape, strides, offset=None):
        """A view of the same buffer with the given layout (validated against the buffer)."""
        shape = as_shape(shape, "as_strided")
        if type(strides) is not tuple or not all(type(s) is int for s in strides):
            strides = tuple(as_size(s, "as_strided", f"every stride in {tuple(strides)}")
                            for s in strides)
        offset = self._offset if offset is None else as_size(offset, "as_strided", "offset")
        if len(shape) != len(strides):
            raise ValueError(f"as_strided: shape {shape} and strides {strides} differ in length")
        if _size_of(shape):  # (as_shape rejected negative sizes)
            lo = hi = offset
            for n, s in zip(shape, strides):
                if s < 0:
                    lo += (n - 1) * s
                else:
                    hi += (n - 1) * s
            if lo < 0 or hi >= self._handle.size:
                raise IndexError(f"as_strided: shape {shape} strides {strides} offset {offset} reaches "
                                 f"elements [{lo}, {hi}] of a buffer of {self._handle.size}")
        return self._view(shape, strides, offset)

    @property
    def flat(self):
        """A 1-D view sharing memory (the array must be compact)."""
        return self.reshape((self.size,))

    def reshape(self, new_shape):
        """Row-major reshape: a view when the layout allows (-1 infers one size), else a copy."""
        new_shape = as_shape(new_shape, "reshape", allow_minus_one=True)
        size = _size_of(self._shape)
        if -1 in new_shape:
            if new_shape.count(-1) > 1:
                raise ValueError(f"reshape: only one -1 allowed, got {new_shape}")
            known = prod(s for s in new_shape if s != -1)
            if known == 0 or size % known:
                raise ValueError(f"reshape: cannot reshape array of shape {self._shape} into {new_shape}")
            new_shape = tuple(size // known if s == -1 else s for s in new_shape)
        if _size_of(new_shape) != size:  # (as_shape rejected other negative sizes)
            raise ValueError(f"reshape: cannot reshape array of shape {self._shape} into {new_shape}")
        src = self if self.is_compact() or self._is_row_major() else self._copy()
        return src._view(new_shape, _compact_strides(new_shape), src._offset)

    def permute(self, new_axes):
        """Reorder axes (a view): result axis i is input axis new_axes[i]."""
        shape, strides = self._shape, self._strides
        axes = _normalize_axes(tuple(new_axes), len(shape), "permute")  # in range, no repeats
        if len(axes) != len(shape):
            raise ValueError(f"permute: {tuple(new_axes)} is not a permutation of the axes of shape {shape}")
        return self._view(tuple([shape[a] for a in axes]), tuple([strides[a] for a in axes]),
                          self._offset)

    transpose = permute

    def broadcast_to(self, new_shape):
        """Broadcast (a view with stride 0 on grown dims); leading dims may be added."""
        new_shape = as_shape(new_shape, "broadcast_to")
        if len(new_shape) < self.ndim:
            raise ValueError(f"broadcast_to: cannot broadcast shape {self._shape} to {new_shape}")
        pad = len(new_shape) - self.ndim
        shape, strides = (1,) * pad + self._shape, (0,) * pad + self._strides
        out_strides = []
        for old, new, st in zip(shape, new_shape, strides):
            if old == new:
                out_strides.append(st)
            elif old == 1 and new >= 0:
                out_strides.append(0)
            else:
                raise ValueError(f"broadcast_to: cannot broadcast shape {self._shape} to {new_shape}")
        return self._view(new_shape, tuple(out_strides), self._offset)

    # ------------------------------------------------------------ indexing
    def process_slice(self, sl, dim, op="getitem"):
        """Explicit (start, stop, step) for a slice along `dim`."""
        start, stop, step = sl.start, sl.stop, sl.step
        n = self._shape[dim]
        step = 1 if step is None else step
        if step <= 0:
            raise ValueError(f"{op}: only positive slice steps are supported, got {step} "
                             f"(use flip for reversal)")
        start, stop, step = slice(start, stop, step).indices(n)
        return slice(start, builtins.max(stop, start), step)

    def _view_of(self, idxs, op="getitem"):
        if not isinstance(idxs, tuple):
            idxs = (idxs,)
        ndim = len(self._shape)
        if len(idxs) > ndim:
            raise IndexError(f"{op}: {len(idxs)} indices for an array of shape {self._shape}")
        shape, strides, offset = [], [], self._offset
        for dim, stride in enumerate(self._strides):
            idx = idxs[dim] if dim < len(idxs) else _ALL
            n = self._shape[dim]
            step = idx.step if type(idx) is slice else None
            if step is None or (type(step) is int and step > 0):
                if type(idx) is not slice:  # an int or something else: the general checks
                    idx = self._index_slice(idx, dim, op)
                start, stop, step = idx.indices(n)  # a positive step: what process_slice gives
                stop = builtins.max(stop, start)
            else:
                sl = self.process_slice(idx, dim, op)
                start, stop, step = sl.start, sl.stop, sl.step
            size = builtins.max(0, -(-(stop - start) // step))
            shape.append(size)
            strides.append(stride * step)
            if size:
                offset += start * stride
        return self._view(tuple(shape), tuple(strides), offset)

    def _index_slice(self, idx, dim, op):
        """An int index as the slice of its one position (rank never drops), else the errors."""
        if isinstance(idx, (bool, np.bool_)):  # an int subclass, but numpy reads it as a mask
            raise TypeError(f"{op}: boolean index {idx!r} is not supported (shape "
                            f"{self._shape}); use ints and slices")
        if isinstance(idx, (int, np.integer)):
            n = self._shape[dim]
            if not -n <= idx < n:
                raise IndexError(f"{op}: index {idx} out of range for axis {dim} of shape "
                                 f"{self._shape}")
            return slice(int(idx) % n, int(idx) % n + 1, 1)
        raise TypeError(f"{op}: indices must be ints or slices, got {type(idx).__name__}")

    def __getitem__(self, idxs):
        """Ints and positive-step slices, one per dim; ints keep their dim (rank never drops)."""
        return self._view_of(idxs)

    def __setitem__(self, idxs, other):
        """In-place write of an NDArray (same element count, or broadcastable) or a scalar."""
        view = self._view_of(idxs, "setitem")
        if isinstance(other, NDArray):
            self._check_device(other, "setitem")
            if other.size != view.size:
                try:
                    fits = broadcast_shapes(other.shape, view.shape) == view.shape
                except ValueError:
                    fits = False
                if not fits:
                    raise ValueError(f"setitem: value of shape {other.shape} does not fit the "
                                     f"selected region of shape {view.shape}")
                other = other.broadcast_to(view.shape)
            src = other.compact()
            if overlaps(src, view):  # e.g. xt[:, :] = x with xt = x.T: read from a copy
                src = src._copy()
            self.device.ewise_setitem(src._handle, self._handle, view.shape, view.strides,
                                      view._offset)
        else:
            self.device.scalar_setitem(view.size, _as_scalar(other, "setitem"), self._handle, view.shape,
                                       view.strides, view._offset)

    def scatter_add_(self, values):
        """Add `values` into this (possibly self-overlapping) view's buffer, in place (col2im)."""
        if not isinstance(values, NDArray):
            raise TypeError(f"scatter_add_: values must be an NDArray, got {type(values).__name__}")
        self._check_device(values, "scatter_add_")
        if values.size != self.size:
            raise ValueError(f"scatter_add_: values of shape {values.shape} into a view of shape "
                             f"{self._shape}")
        src = values.compact()
        if overlaps(src, self):
            src = src._copy()
        self.device.scatter_add(src._handle, self._handle, self._shape, self._strides,
                                self._offset)

    # ------------------------------------------------------------ element-wise
    def _check_device(self, other, op):
        if other._device is not self._device and other._device != self._device:
            raise ValueError(f"{op}: arrays on different devices ({self.device} and {other.device})")

    # The operators live in ndarray_ewise.py (dense layouts kept; see its docstring).
    __add__ = __radd__ = _ew.add
    __sub__, __rsub__ = _ew.sub, _ew.rsub
    __mul__ = __rmul__ = _ew.mul
    __truediv__, __rtruediv__ = _ew.truediv, _ew.rtruediv
    __neg__, __pow__, maximum = _ew.neg, _ew.pow_, _ew.maximum
    __eq__, __ne__, __ge__, __gt__, __le__, __lt__ = _ew.eq, _ew.ne, _ew.ge, _ew.gt, _ew.le, _ew.lt
    __hash__ = None
    log, exp, tanh = _ew.log, _ew.exp, _ew.tanh

    # ------------------------------------------------------------ matmul
    def __matmul__(self, other):
        return linalg.matmul(self, other)

    def matmul_tiled(self, other):
        """The contract's tiled path (both 2-D, sizes multiples of `device.__tile_size__`)."""
        t = self.device.__tile_size__
        (m, n), (n2, p) = self._shape, other._shape
        if n != n2 or m % t or n % t or p % t:
            raise ValueError(f"matmul_tiled: shapes {self._shape} @ {other._shape} need matching inner "
                             f"sizes, all multiples of {t}")

        def tile(a, rows, cols):
            return a.compact().as_strided((rows // t, cols // t, t, t), (cols * t, t, cols, 1)).compact()

        out = NDArray.make((m // t, p // t, t, t), device=self.device)
        self.device.matmul_tiled(tile(self, m, n)._handle, tile(other, n, p)._handle, out._handle, m, n, p)
        return out.permute((0, 2, 1, 3)).compact().reshape((m, p))

    # ------------------------------------------------------------ reductions
    def _reduce(self, axis, keepdims, func, op):
        shape = self._shape
        if axis is None:
            view = self.compact().reshape((1, _size_of(shape)))
            out_shape = (1,) * len(shape) if keepdims else (1,)
        else:
            axes = _normalize_axes(axis, len(shape), op)
            tail, order, matrix, out_shape = _reduction_layout(shape, axes, bool(keepdims))
            # trailing axes first: no copy for them, and the permuting copy below (NCHW summed
            # over N, H, W) then runs on the smaller result. A dense array in another layout
            # (an element-wise result kept channels-last) is made row-major first, so that the
            # sum's rounding order does not depend on its layout.
            if tail is not None and _size_of(shape) and (self.is_compact() or _ew.is_dense(self)):
                inner = self.compact()._reduce(tuple(range(tail, len(shape))), True, func, op)
                return inner._reduce(axes, keepdims, func, op)
            view = self.permute(order).compact().reshape(matrix)
        if view._shape[1] == 0 and op == "max":
            raise ValueError(f"max: zero-size reduction over axis {axis} of shape {shape}")
        out = NDArray._new(out_shape, self._device)
        func(view._handle, out._handle, view._shape[1])
        return out

    def sum(self, axis=None, keepdims=False):
        """Sum over `axis` (None, int or tuple of ints)."""
        return self._reduce(axis, keepdims, self.device.reduce_sum, "sum")

    def max(self, axis=None, keepdims=False):
        """Max over `axis` (None, int or tuple of ints)."""
        return self._reduce(axis, keepdims, self.device.reduce_max, "max")

    # ------------------------------------------------------------ optimizer
    def sgd_step(self, grad, velocity, momentum, neg_lr, weight_decay=0.0, in_place=False):
        """One SGD step from weights `self` (any shape), in one backend call.

        Returns (new weights, new velocity) shaped like self: new arrays, or with `in_place`
        self and velocity themselves (when compact), overwritten (optimizer state that keeps
        its buffers, which a captured step, ndl.jit, can replay):
        g = grad + weight_decay * self; v = momentum * velocity + (1 - momentum) * g (or
        (1 - momentum) * g when `velocity` is None); weights = self + neg_lr * v. Every product
        and sum is rounded to float32 as the separate array ops would round it. (The optimizer
        keeps its numbers on the device instead: optim_update.sgd_update.)
        """
        from .optim_update import hyper_array, sgd_update  # it builds on NDArray
        values = [_as_scalar(v, "sgd_step") for v in (momentum, 1 - momentum, neg_lr, weight_decay)]
        return sgd_update(self, grad, velocity, hyper_array(values, self.device),
                          weight_decay != 0, in_place)

    # ------------------------------------------------------------ fused kernels (ndarray_fused.py)
    batch_norm, batch_norm_backward = _fused.batch_norm, _fused.batch_norm_backward
    batch_norm_running_update = _fused.batch_norm_running_update
    softmax, log_softmax, softmax_backward = (_fused.softmax, _fused.log_softmax,
                                              _fused.softmax_backward)

    # ------------------------------------------------------------ flip and pad
    def flip(self, axes):
        """Reverse along `axes` (compact result; the input is unchanged)."""
        if axes is None:
            axes = tuple(range(self.ndim))
        axes = _normalize_axes(axes, self.ndim, "flip")
        strides, offset = list(self._strides), self._offset
        for a in axes:
            if self._shape[a] > 0:
                offset += (self._shape[a] - 1) * strides[a]
            strides[a] = -strides[a]
        view = self._view(self._shape, tuple(strides), offset)
        out = NDArray._new(self._shape, self._device)
        self.device.compact(view._handle, out._handle, view._shape, view._strides, view._offset)
        return out

    def pad(self, axes):
        """Zero padding, `axes` = one (left, right) pair per dimension, like np.pad (one backend
        call: the border zeroed and this array's view gathered into the interior)."""
        axes = tuple(tuple(p) for p in axes)
        if len(axes) != self.ndim or any(len(p) != 2 or min(p) < 0 for p in axes):
            raise ValueError(f"pad: need one non-negative (left, right) pair per dim of shape "
                             f"{self._shape}, got {axes}")
        before, after = tuple(int(p[0]) for p in axes), tuple(int(p[1]) for p in axes)
        out = NDArray._new(tuple(n + l + r for n, l, r in zip(self._shape, before, after)),
                           self._device)
        self.device.pad(self._handle, out._handle, self._shape, self._strides, self._offset,
                        before, after)
        return out


# ---------------------------------------------------------------- module-level helpers
@functools.lru_cache(maxsize=1024)
def _reduction_layout(shape, axes, keepdims):
    """How `_reduce` walks `shape` summed over the normalized `axes` (a pure function of the
    shapes, cached: every reduction asks it). Returns (tail, order, matrix, out_shape): the
    kept axes then the reduced ones (`order`) as a rows x reduced `matrix`; `tail` is where a
    run of reduced trailing axes starts when reducing those first is worth it, else None."""
    ndim = len(shape)
    tail = ndim
    while tail - 1 in axes:
        tail -= 1
    split = ndim - tail < len(axes) and prod(shape[tail:]) > 1
    keep = tuple(a for a in range(ndim) if a not in axes)
    matrix = (prod(shape[a] for a in keep), prod(shape[a] for a in axes))
    out_shape = (tuple(1 if a in axes else n for a, n in enumerate(shape)) if keepdims
                 else tuple(shape[a] for a in keep))
    return (tail if split else None), keep + axes, matrix, out_shape


# The numpy-style functions over NDArrays live in ndarray_functions.py (they build on NDArray);
# importable from here too, as the course layout has them.
from .ndarray_functions import (array, broadcast_to, empty, exp, flip, full, log, max,  # noqa: E402,A004
                                maximum, negative, ones, pad, power, reshape, split, stack, sum,
                                tanh, transpose, zeros)
# NDArray.__matmul__ calls linalg.matmul; linalg builds on NDArray, hence the import at the end.
from . import linalg  # noqa: E402
