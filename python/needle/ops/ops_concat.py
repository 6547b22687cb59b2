"""Concatenation along an existing axis and its adjoint, narrowing (Inception blocks join
their branches along the channels with these).

concat(tensors, axis): shapes equal except along `axis` -> their sizes summed along it.
narrow(a, axis, start, length): a[..., start:start+length, ...] along `axis`, compact.
Each op's gradient is written with the other, so gradients of gradients work.
"""
from ..autograd import Tensor, TensorOp
from ..backend_selection import BACKEND, array_api

__all__ = ["Concat", "concat", "Narrow", "narrow"]


def _axis(axis, ndim, op):
    if not -ndim <= axis < ndim:
        raise ValueError(f"{op}: axis {axis} out of range for rank {ndim}")
    return axis % ndim


def _at(axis, ndim, start, stop):
    return tuple(slice(start, stop) if i == axis else slice(None) for i in range(ndim))


def _zeros(shape, like):
    data = like.realize_cached_data()
    if BACKEND != "nd":
        return array_api.zeros(shape, dtype=data.dtype)
    return array_api.zeros(shape, device=data.device)


class Concat(TensorOp):
    """Join Tensors along `axis` (torch.cat)."""

    def __init__(self, axis):
        self.axis = int(axis)

    def compute(self, *arrays):
        if not arrays:
            raise ValueError("concat: needs at least one tensor")
        first = arrays[0].shape
        axis = _axis(self.axis, len(first), "concat")
        if any(len(a.shape) != len(first) or any(x != y for i, (x, y) in
               enumerate(zip(a.shape, first)) if i != axis) for a in arrays):
            raise ValueError(f"concat: shapes {[tuple(a.shape) for a in arrays]} must agree "
                             f"except along axis {axis}")
        if BACKEND != "nd":
            return array_api.concatenate(arrays, axis=axis)
        size = sum(a.shape[axis] for a in arrays)
        out = array_api.empty(first[:axis] + (size,) + first[axis + 1:], device=arrays[0].device)
        start = 0
        for a in arrays:
            out[_at(axis, len(first), start, start + a.shape[axis])] = a
            start += a.shape[axis]
        return out

    def gradient(self, out_grad, node):
        axis = self.axis % len(out_grad.shape)
        grads, start = [], 0
        for t in node.inputs:
            grads.append(narrow(out_grad, axis, start, t.shape[axis]))
            start += t.shape[axis]
        return tuple(grads)


def concat(tensors, axis=1):
    """Concatenate Tensors whose shapes agree except along `axis` (default 1: the channels of
    N x C x H x W). Example: concat([x (2x3x4x4), y (2x5x4x4)]) -> 2x8x4x4."""
    return Concat(axis)(*tensors)


class Narrow(TensorOp):
    """a[..., start:start+length, ...] along `axis` (a compact copy)."""

    def __init__(self, axis, start, length):
        self.axis, self.start, self.length = int(axis), int(start), int(length)

    def compute(self, a):
        axis = _axis(self.axis, len(a.shape), "narrow")
        if self.start < 0 or self.length < 0 or self.start + self.length > a.shape[axis]:
            raise ValueError(f"narrow: [{self.start}, {self.start + self.length}) is outside "
                             f"axis {axis} of shape {tuple(a.shape)}")
        view = a[_at(axis, len(a.shape), self.start, self.start + self.length)]
        return view.copy() if BACKEND != "nd" else view.compact()

    def gradient(self, out_grad, node):
        a = node.inputs[0]
        axis = self.axis % len(a.shape)
        shape = tuple(a.shape)
        parts = []
        for size in (self.start, None, shape[axis] - self.start - self.length):
            if size is None:
                parts.append(out_grad)
            elif size:
                zeros_shape = shape[:axis] + (size,) + shape[axis + 1:]
                parts.append(Tensor.make_const(_zeros(zeros_shape, out_grad)))
        return concat(parts, axis) if len(parts) > 1 else out_grad


def narrow(a, axis, start, length):
    """The `length` entries of `a` from `start` along `axis` (torch.narrow, copied)."""
    return Narrow(axis, start, length)(a)
