"""TensorTuple plumbing: make_tuple, tuple_get_item, stack and split."""
import numpy

from ..autograd import Tensor, TensorOp, TensorTuple, TensorTupleOp
from ..backend_selection import BACKEND, array_api

__all__ = ["MakeTensorTuple", "make_tuple", "TupleGetItem", "tuple_get_item", "Stack", "stack",
           "Split", "split", "FusedAddScalars", "fused_add_scalars"]

_NUMPY_MODE = BACKEND == "np"


class MakeTensorTuple(TensorTupleOp):
    """Pack Tensors (any shapes) into one TensorTuple node; the gradient unpacks."""
    def compute(self, *args):
        return tuple(args)

    def gradient(self, out_grad, node):
        return tuple(out_grad[i] for i in range(len(out_grad)))


def make_tuple(*args):
    """A TensorTuple node holding the given Tensors."""
    return MakeTensorTuple()(*args)


class TupleGetItem(TensorOp):
    """Item `index` of a TensorTuple, as a Tensor; the gradient is zero elsewhere."""
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
            raise IndexError(f"index {self.index} out of range for a TensorTuple of length "
                             f"{len(a)}")
        return a[self.index]

    def gradient(self, out_grad, node):
        index = self.index % len(node.inputs[0])
        in_grad = []
        for i, value in enumerate(node.inputs[0].realize_cached_data()):
            if i != index:
                zero = Tensor.make_const(_zeros_like(value))
                zero._zero_placeholder = True  # lets sum_tuple_grads skip it
                in_grad.append(zero)
            else:
                in_grad.append(out_grad)
        return make_tuple(*in_grad)


def tuple_get_item(value, index):
    """Element `index` of a TensorTuple, as a Tensor."""
    return TupleGetItem(index)(value)


def sum_tuple_grads(grads):
    """Sum of several make_tuple gradients of one TensorTuple node, element by element.

    The zero placeholders sent by TupleGetItem are skipped, so k get_items of a k-way split
    cost k additions instead of k * k. Returns None when the grads are not all make_tuples of
    one length (the caller then adds them with TensorTuple `+`).
    """
    n = len(grads[0].inputs)
    if any(not isinstance(g.op, MakeTensorTuple) or len(g.inputs) != n for g in grads):
        return None
    out = []
    for i in range(n):
        parts = [g.inputs[i] for g in grads if not getattr(g.inputs[i], "_zero_placeholder", False)]
        if not parts:
            out.append(grads[0].inputs[i])
            continue
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        out.append(total)
    return make_tuple(*out)


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
    """TensorTuple of a.shape[axis] Tensors: a's shape with `axis` removed (inverse of stack)."""
    return Split(axis)(a)


class FusedAddScalars(TensorTupleOp):
    """(a + c0, a + c1) as one TensorTuple node."""

    def __init__(self, c0, c1):
        self.c0 = c0
        self.c1 = c1

    def compute(self, a):
        return a + self.c0, a + self.c1

    def gradient(self, out_grad, node):
        return out_grad[0] + out_grad[1]


def fused_add_scalars(x, c0, c1):
    """TensorTuple (x + c0, x + c1)."""
    return FusedAddScalars(c0, c1)(x)
