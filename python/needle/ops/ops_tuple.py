"""TensorTuple plumbing: make_tuple, tuple_get_item, stack and split."""
import numpy

from ..autograd import Tensor, TensorOp, TensorTuple, TensorTupleOp
from ..backend_selection import BACKEND, array_api

__all__ = ["MakeTensorTuple", "make_tuple", "TupleGetItem", "tuple_get_item", "Stack", "stack",
           "Split", "split"]

_NUMPY_MODE = BACKEND == "np"


class MakeTensorTuple(TensorTupleOp):
    def compute(self, *args):
        return tuple(args)

    def gradient(self, out_grad, node):
        return tuple(out_grad[i] for i in range(len(out_grad)))


def make_tuple(*args):
    """A TensorTuple node holding the given Tensors."""
    return MakeTensorTuple()(*args)


class TupleGetItem(TensorOp):
    def __init__(self, index):
        self.index = index

    def __call__(self, a, fold_const=True):
        if not isinstance(a, TensorTuple):
            raise TypeError(f"TupleGetItem: expected a TensorTuple, got {type(a).__name__}")
        # get_item(make_tuple(x0, x1, ...), i) is just x_i: no node needed.
        if fold_const and isinstance(a.op, MakeTensorTuple):
            return a.inputs[self.index]
        return Tensor.make_from_op(self, [a])

    def compute(self, a):
        if not -len(a) <= self.index < len(a):
            raise IndexError(f"index {self.index} out of range for a TensorTuple of length {len(a)}")
        return a[self.index]

    def gradient(self, out_grad, node):
        index = self.index % len(node.inputs[0])
        in_grad = []
        for i, value in enumerate(node.inputs[0].realize_cached_data()):
            if i != index:
                in_grad.append(Tensor.make_const(_zeros_like(value)))
            else:
                in_grad.append(out_grad)
        return make_tuple(*in_grad)


def tuple_get_item(value, index):
    """Element `index` of a TensorTuple, as a Tensor."""
    return TupleGetItem(index)(value)


def _zeros_like(array):
    if _NUMPY_MODE:
        return numpy.zeros(array.shape, dtype=array.dtype)
    return array_api.full(array.shape, 0.0, device=array.device)


class Stack(TensorOp):
    """Stack the Tensors of a TensorTuple along a new axis `axis` (0..ndim)."""

    def __init__(self, axis):
        self.axis = int(axis)

    def compute(self, args):
        if not args:
            raise ValueError("need at least one tensor to stack")
        shape = args[0].shape
        if any(a.shape != shape for a in args):
            raise ValueError(f"all tensors must have the same shape, got {[a.shape for a in args]}")
        if not -len(shape) - 1 <= self.axis <= len(shape):
            raise ValueError(f"axis {self.axis} out of range for stacking tensors of rank "
                             f"{len(shape)}")
        return array_api.stack(args, axis=self.axis)

    def gradient(self, out_grad, node):
        return split(out_grad, self.axis)


def stack(args, axis):
    """Stack same-shape Tensors along a new axis, as torch.stack.

    Args:
        args: a list/tuple of Tensors of one shape S (a TensorTuple or a single Tensor also work).
        axis: position of the new axis in the result, 0..len(S).
    Returns:
        S with len(args) inserted at `axis`, e.g. 3 tensors (4, 5), axis=1 -> (4, 3, 5).
    """
    if isinstance(args, Tensor):
        args = [args]
    if not isinstance(args, TensorTuple):
        args = make_tuple(*args)
    return Stack(axis)(args)


class Split(TensorTupleOp):
    """Split along `axis` into a.shape[axis] Tensors with that axis removed."""

    def __init__(self, axis):
        self.axis = int(axis)

    def compute(self, A):
        if not -A.ndim <= self.axis < A.ndim:
            raise ValueError(f"axis {self.axis} out of range for a tensor of rank {A.ndim}")
        if _NUMPY_MODE:
            return tuple(numpy.moveaxis(A, self.axis, 0))
        return tuple(array_api.split(A, axis=self.axis))

    def gradient(self, out_grad, node):
        return stack(out_grad, self.axis)


def split(a, axis):
    """TensorTuple of a.shape[axis] Tensors, each a's shape with `axis` removed (inverse of stack)."""
    return Split(axis)(a)
