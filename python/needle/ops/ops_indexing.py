"""Tensor indexing with numpy / torch semantics, as a differentiable op.

`t[index]` accepts ints (which drop their dim), slices (any step, negative too), `None` (a new
dim of 1), `...`, and integer arrays (lists, numpy arrays, Tensors) with numpy's advanced-indexing
rules. Unlike the contract's NDArray getitem (which keeps every dim), the Tensor result has
numpy's shape.

Basic indices (no arrays) are a strided view of the input's buffer, compacted on its device; the
gradient adds the output gradient into a zero array through the same view (`scatter_add_`).
Integer arrays gather and scatter through host memory (numpy's `add.at` sums repeated indices),
a device round trip that is fine for labels and small lookups, not for large tensors on a GPU.
"""
import builtins
from numbers import Integral

import numpy

from ..autograd import Tensor, TensorOp
from ..backend_selection import BACKEND, array_api

__all__ = ["GetItem", "GetItemBackward", "getitem"]

_NUMPY_MODE = BACKEND == "np"


def _as_index_array(entry):
    """An int64 numpy array for an integer-array index entry; IndexError for anything else."""
    if isinstance(entry, Tensor):
        values = entry.numpy()
        if values.dtype.kind == "f":  # NDArray mode keeps integers as float32
            if not numpy.all(numpy.isfinite(values)) or numpy.any(values != numpy.round(values)):
                raise IndexError("Tensor.__getitem__: a float index tensor must hold integers")
            values = values.astype(numpy.int64)
    else:
        values = numpy.asarray(entry)
        if values.size == 0 and values.dtype.kind == "f":
            values = values.astype(numpy.int64)  # [] is an empty integer index
    if values.dtype.kind == "b":
        raise IndexError("Tensor.__getitem__: boolean masks are not supported; use integer "
                         "indices (numpy.nonzero(mask))")
    if values.dtype.kind not in "iu":
        raise IndexError(f"Tensor.__getitem__: index arrays must hold integers, got dtype "
                         f"{values.dtype}")
    return values.astype(numpy.int64)


def normalize_index(index, shape):
    """`index` as a tuple of ints, explicit slices, None and int64 arrays, one entry per input
    dim (plus the Nones), with `...` expanded; negative ints and array entries are made
    non-negative. Returns (entries, has_arrays).

    Raises:
        IndexError: too many indices, an index out of range, two ellipses, a boolean mask.
        TypeError: an entry of an unsupported type (bool, float, str, ...).
        ValueError: a slice step of 0.
    """
    shape = tuple(shape)
    entries = index if isinstance(index, tuple) else (index,)
    parsed = []
    for e in entries:
        if e is None or e is Ellipsis or isinstance(e, slice):
            if isinstance(e, slice):
                for part in (e.start, e.stop, e.step):
                    if part is not None and (isinstance(part, bool)
                                             or not isinstance(part, Integral)):
                        raise TypeError(f"Tensor.__getitem__: slice bounds must be ints or None, "
                                        f"got {e}")
                if e.step == 0:
                    raise ValueError("Tensor.__getitem__: slice step cannot be zero")
            parsed.append(e)
        elif isinstance(e, (bool, numpy.bool_)):
            raise TypeError("Tensor.__getitem__: bool indices are not supported")
        elif isinstance(e, Integral):
            parsed.append(int(e))
        elif isinstance(e, (list, tuple, numpy.ndarray, Tensor)):
            parsed.append(_as_index_array(e))
        else:
            raise TypeError(f"Tensor.__getitem__: unsupported index type {type(e).__name__}")
    if builtins.sum(e is Ellipsis for e in parsed) > 1:
        raise IndexError("Tensor.__getitem__: an index can only have one ellipsis ('...')")
    used = builtins.sum(e is not None and e is not Ellipsis for e in parsed)
    if used > len(shape):
        raise IndexError(f"Tensor.__getitem__: too many indices ({used}) for a tensor of shape "
                         f"{shape}")
    if Ellipsis in [e for e in parsed if not isinstance(e, numpy.ndarray)]:
        at = next(i for i, e in enumerate(parsed) if e is Ellipsis)
        parsed[at:at + 1] = [slice(None)] * (len(shape) - used)
    else:
        parsed += [slice(None)] * (len(shape) - used)
    out, dim, has_arrays = [], 0, False
    for e in parsed:
        if e is None:
            out.append(None)
            continue
        n = shape[dim]
        if isinstance(e, int):
            if not -n <= e < n:
                raise IndexError(f"Tensor.__getitem__: index {e} is out of range for dim {dim} "
                                 f"of size {n} (shape {shape})")
            e %= n
        elif isinstance(e, slice):
            start, stop, step = e.indices(n)
            # a reversed slice that runs past element 0 has stop -1, which numpy would read as
            # n - 1: spell it None
            e = slice(start, None if stop < 0 else stop, step)
        else:
            if e.size and (e.min() < -n or e.max() >= n):
                bad = e[(e < -n) | (e >= n)].flat[0]
                raise IndexError(f"Tensor.__getitem__: index {bad} is out of range for dim {dim} "
                                 f"of size {n} (shape {shape})")
            e = numpy.where(e < 0, e + n, e)
            has_arrays = True
        out.append(e)
        dim += 1
    return tuple(out), has_arrays


def _basic_view(index, shape, strides, offset):
    """(shape, strides, offset) of the view `index` (no arrays) selects from a strided layout."""
    out_shape, out_strides, dim = [], [], 0
    for e in index:
        if e is None:
            out_shape.append(1)
            out_strides.append(0)
            continue
        if isinstance(e, int):
            offset += e * strides[dim]
        else:
            n = len(range(*e.indices(shape[dim])))
            out_shape.append(n)
            out_strides.append(strides[dim] * e.step)
            if n:
                offset += e.start * strides[dim]
        dim += 1
    return tuple(out_shape), tuple(out_strides), offset


def _compact_strides(shape):
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


class GetItem(TensorOp):
    """out = a[index] (numpy semantics); `index` is a `normalize_index` result for a's shape."""

    def __init__(self, index, has_arrays):
        self.index = index
        self.has_arrays = has_arrays

    def compute(self, a):
        if _NUMPY_MODE:
            return numpy.array(a[self.index])
        if self.has_arrays:  # gather on the host
            return array_api.array(a.numpy()[self.index], device=a.device)
        shape, strides, offset = _basic_view(self.index, a.shape, a.strides, a._offset)
        return a.as_strided(shape, strides, offset).compact()

    def gradient(self, out_grad, node):
        return GetItemBackward(self.index, self.has_arrays, node.inputs[0].shape)(out_grad)


class GetItemBackward(TensorOp):
    """The adjoint of GetItem: zeros of `shape` with `g` added at the indexed positions
    (repeated array indices add up)."""

    def __init__(self, index, has_arrays, shape):
        self.index = index
        self.has_arrays = has_arrays
        self.shape = tuple(shape)

    def compute(self, g):
        if _NUMPY_MODE:
            out = numpy.zeros(self.shape, dtype=g.dtype)
            numpy.add.at(out, self._host_index(), numpy.asarray(g))
            return out
        if self.has_arrays:
            out = numpy.zeros(self.shape, dtype=numpy.float32)
            numpy.add.at(out, self._host_index(), g.numpy())
            return array_api.array(out, device=g.device)
        out = array_api.full(self.shape, 0.0, device=g.device)
        shape, strides, offset = _basic_view(self.index, self.shape,
                                             _compact_strides(self.shape), 0)
        out.as_strided(shape, strides, offset).scatter_add_(g.compact().reshape(shape))
        return out

    def _host_index(self):
        # numpy.add.at takes ints, slices and arrays but not None: drop the new dims (their
        # size-1 axes in g line up once the Nones are gone only for basic indices, so map
        # through flat positions instead)
        if all(e is not None for e in self.index):
            return self.index
        flat = numpy.arange(int(numpy.prod(self.shape))).reshape(self.shape)
        return numpy.unravel_index(flat[self.index], self.shape)

    def gradient(self, out_grad, node):
        return GetItem(self.index, self.has_arrays)(out_grad)


def getitem(a, index):
    """`a[index]` with numpy / torch semantics, differentiable (see the module docstring).

    Args:
        a: Tensor of any shape.
        index: int, slice, None, Ellipsis, integer array (list, numpy array, Tensor), or a tuple
            of them.

    Returns:
        Tensor of numpy's result shape, e.g. (4, 5, 6)[1, ::-2, None] -> (3, 1, 6).
    """
    if not isinstance(a, Tensor):
        raise TypeError(f"getitem: expected a Tensor, got {type(a).__name__}")
    index, has_arrays = normalize_index(index, a.shape)
    return GetItem(index, has_arrays)(a)
