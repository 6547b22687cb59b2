"""Element-wise, scalar, matmul, reduction and shape ops (flip and dilation: ops_dilate.py).

Each op is one class (`compute` on raw arrays, `gradient` built from needle ops so that it is
differentiable again) followed by its lowercase functional wrapper. One code path serves both
array modes: NDArray mode calls NDArray methods / `needle.backend_ndarray` helpers, numpy mode
calls numpy (which broadcasts implicitly and keeps dtypes).
"""
import numpy

from ..autograd import Tensor, TensorOp
from ..backend_ndarray.checks import as_shape, as_size
from ..backend_selection import BACKEND, array_api

__all__ = [
    "EWiseAdd", "add", "AddScalar", "add_scalar", "EWiseMul", "multiply", "MulScalar",
    "mul_scalar", "EWisePow", "power", "PowerScalar", "power_scalar", "EWiseDiv", "divide",
    "DivScalar", "divide_scalar", "Negate", "negate", "Log", "log", "Exp", "exp", "ReLU", "relu",
    "Tanh", "tanh", "Sigmoid", "sigmoid", "MatMul", "matmul", "Summation", "summation",
    "BroadcastTo", "broadcast_to", "Reshape", "reshape", "Transpose", "transpose", "LogSumExp",
    "logsumexp", "LogSoftmax", "logsoftmax",
]

_NUMPY_MODE = BACKEND == "np"


# ---------------------------------------------------------------------------------- helpers
def _normalize_axes(axes, ndim, op):
    """None stays None; an int or a sequence becomes a tuple of non-negative axes."""
    if axes is None:
        return None
    if isinstance(axes, (int, numpy.integer)):
        axes = (axes,)
    out = []
    for ax in axes:
        if not -ndim <= ax < max(ndim, 1):
            raise ValueError(f"{op}: axis {ax} out of range for a tensor of rank {ndim}")
        out.append(int(ax) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {tuple(axes)}")
    return tuple(out)


def _as_axes_arg(axes, op):
    """Hyper-parameter normalisation at construction: int / list -> tuple, None stays."""
    if axes is None:
        return None
    if isinstance(axes, (int, numpy.integer)):
        axes = (axes,)
    if not isinstance(axes, (tuple, list)):
        raise TypeError(f"{op}: axes must be None, an int or a tuple of ints, got {axes!r}")
    return tuple(as_size(a, op, f"every axis in {axes!r}") for a in axes)


def _keepdims_shape(shape, axes):
    """`shape` with the reduced `axes` (None = all) set to 1."""
    if axes is None:
        return (1,) * len(shape)
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _unbroadcast(grad, node, i):
    """Gradient for input i of an element-wise node; only numpy mode broadcasts implicitly."""
    if not _NUMPY_MODE:
        return grad
    return _sum_to_shape(grad, node.inputs[i].shape)


def _sum_to_shape(grad, shape):
    """Sum a broadcast gradient back to `shape` (undoes numpy broadcasting)."""
    gshape = tuple(grad.shape)
    shape = tuple(shape)
    if gshape == shape:
        return grad
    lead = len(gshape) - len(shape)
    if lead >= 0:
        axes = tuple(range(lead)) + tuple(
            i + lead for i, n in enumerate(shape) if n == 1 and gshape[i + lead] != 1)
        if axes:
            grad = summation(grad, axes)
    return reshape(grad, shape)


def _zeros(shape, like):
    """A zero-filled raw array of `shape` with the dtype/device of the raw array `like`."""
    if _NUMPY_MODE:
        return numpy.zeros(shape, dtype=like.dtype)
    return array_api.full(shape, 0.0, device=like.device)


# ---------------------------------------------------------------------------------- element-wise
class EWiseAdd(TensorOp):
    """a + b, element-wise; a and b have one shape (broadcast first)."""
    def compute(self, a, b):
        return a + b

    def gradient(self, out_grad, node):
        return _unbroadcast(out_grad, node, 0), _unbroadcast(out_grad, node, 1)


def add(a, b):
    """a + b element-wise (same shapes; numpy mode also broadcasts)."""
    return EWiseAdd()(a, b)


class AddScalar(TensorOp):
    """a + scalar, element-wise; any shape."""
    def __init__(self, scalar):
        self.scalar = scalar

    def compute(self, a):
        return a + self.scalar

    def gradient(self, out_grad, node):
        return out_grad


def add_scalar(a, scalar):
    """a + scalar."""
    return AddScalar(scalar)(a)


class EWiseMul(TensorOp):
    """a * b, element-wise; a and b have one shape (broadcast first)."""
    def compute(self, a, b):
        return a * b

    def gradient(self, out_grad, node):
        a, b = node.inputs
        return _unbroadcast(out_grad * b, node, 0), _unbroadcast(out_grad * a, node, 1)


def multiply(a, b):
    """a * b element-wise."""
    return EWiseMul()(a, b)


class MulScalar(TensorOp):
    """a * scalar, element-wise; any shape."""
    def __init__(self, scalar):
        self.scalar = scalar

    def compute(self, a):
        return a * self.scalar

    def gradient(self, out_grad, node):
        return out_grad * self.scalar


def mul_scalar(a, scalar):
    """a * scalar."""
    return MulScalar(scalar)(a)


class EWisePow(TensorOp):
    """a ** b element-wise; b may be an integer tensor (numpy mode)."""

    def compute(self, a, b):
        return a ** b

    def gradient(self, out_grad, node):
        a, b = node.inputs
        grad_a = out_grad * b * power(a, b - 1)
        grad_b = out_grad * node * log(a)
        return _unbroadcast(grad_a, node, 0), _unbroadcast(grad_b, node, 1)


def power(a, b):
    """a ** b element-wise (both Tensors)."""
    return EWisePow()(a, b)


class PowerScalar(TensorOp):
    """a ** scalar; the scalar may be 0, negative or fractional."""

    def __init__(self, scalar):
        self.scalar = scalar

    def compute(self, a):
        return a ** self.scalar

    def gradient(self, out_grad, node):
        if self.scalar == 0:
            return out_grad * 0
        a = node.inputs[0]
        return out_grad * (power_scalar(a, self.scalar - 1) * self.scalar)


def power_scalar(a, scalar):
    """a ** scalar element-wise."""
    return PowerScalar(scalar)(a)


class EWiseDiv(TensorOp):
    """a / b, element-wise; a and b have one shape (broadcast first)."""
    def compute(self, a, b):
        return a / b

    def gradient(self, out_grad, node):
        a, b = node.inputs
        grad_a = out_grad / b
        grad_b = -(out_grad * a) / power_scalar(b, 2)
        return _unbroadcast(grad_a, node, 0), _unbroadcast(grad_b, node, 1)


def divide(a, b):
    """a / b element-wise."""
    return EWiseDiv()(a, b)


class DivScalar(TensorOp):
    """a / scalar; in numpy mode the scalar may be a 1-element numpy array."""

    def __init__(self, scalar):
        self.scalar = scalar

    def compute(self, a):
        return a / self.scalar

    def gradient(self, out_grad, node):
        return out_grad / self.scalar


def divide_scalar(a, scalar):
    """a / scalar."""
    return DivScalar(scalar)(a)


class Negate(TensorOp):
    """-a, element-wise; any shape."""
    def compute(self, a):
        return -a

    def gradient(self, out_grad, node):
        return negate(out_grad)


def negate(a):
    """-a."""
    return Negate()(a)


class Log(TensorOp):
    """Natural logarithm, element-wise; any shape."""
    def compute(self, a):
        return array_api.log(a)

    def gradient(self, out_grad, node):
        return out_grad / node.inputs[0]


def log(a):
    """Natural logarithm, element-wise."""
    return Log()(a)


class Exp(TensorOp):
    """e ** a, element-wise; any shape."""
    def compute(self, a):
        return array_api.exp(a)

    def gradient(self, out_grad, node):
        return out_grad * node


def exp(a):
    """e ** a, element-wise."""
    return Exp()(a)


class ReLU(TensorOp):
    """max(a, 0), element-wise; any shape (gradient 0 at 0)."""
    def compute(self, a):
        return array_api.maximum(a, 0)

    def gradient(self, out_grad, node):
        # The mask is a constant: relu's second derivative is 0 almost everywhere.
        x = node.inputs[0].realize_cached_data()
        mask = x > 0
        if _NUMPY_MODE:
            mask = mask.astype(out_grad.dtype)
        return out_grad * Tensor.make_const(mask)


def relu(a):
    """max(a, 0) element-wise (derivative 0 at 0)."""
    return ReLU()(a)


class Tanh(TensorOp):
    """tanh(a), element-wise; any shape."""
    def compute(self, a):
        return array_api.tanh(a)

    def gradient(self, out_grad, node):
        return out_grad * (1 - node ** 2)


def tanh(a):
    """Hyperbolic tangent, element-wise."""
    return Tanh()(a)


class Sigmoid(TensorOp):
    """1 / (1 + e ** -a), element-wise; any shape."""
    def compute(self, a):
        # 1/(1+e^-a) = (1 + tanh(a/2)) / 2: no overflow for large |a|.
        return (array_api.tanh(a * 0.5) + 1) * 0.5

    def gradient(self, out_grad, node):
        return out_grad * node * (1 - node)


def sigmoid(a):
    """1 / (1 + exp(-a)), element-wise."""
    return Sigmoid()(a)


# ---------------------------------------------------------------------------------- matmul
class MatMul(TensorOp):
    """numpy-style matmul with batch broadcasting: (..., m, n) @ (..., n, p) -> (..., m, p)."""

    def compute(self, a, b):
        return a @ b

    def gradient(self, out_grad, node):
        a, b = node.inputs
        a_shape, b_shape = tuple(a.shape), tuple(b.shape)
        g = out_grad
        # 1-D operands (numpy mode): promote to matrices as numpy does, then drop the axis again.
        if len(a_shape) == 1 and len(b_shape) == 1:
            g = reshape(g, (1, 1))
        elif len(a_shape) == 1:
            g = reshape(g, g.shape[:-1] + (1,) + g.shape[-1:])
        elif len(b_shape) == 1:
            g = reshape(g, g.shape + (1,))
        A = reshape(a, (1,) + a_shape) if len(a_shape) == 1 else a
        B = reshape(b, b_shape + (1,)) if len(b_shape) == 1 else b
        grad_a = matmul(g, transpose(B))
        if len(B.shape) == 2 and len(A.shape) > 2:
            # (..., m, n) @ (n, p): one big GEMM over the flattened batch instead of a batched sum.
            n, p = B.shape
            grad_b = matmul(transpose(reshape(A, (-1, n))), reshape(g, (-1, p)))
        else:
            grad_b = matmul(transpose(A), g)
        grad_a = _sum_to_shape(grad_a, A.shape)
        grad_b = _sum_to_shape(grad_b, B.shape)
        if A is not a:
            grad_a = reshape(grad_a, a_shape)
        if B is not b:
            grad_b = reshape(grad_b, b_shape)
        return grad_a, grad_b


def matmul(a, b):
    """Matrix product with numpy batch broadcasting.

    Args:
        a: ... x M x N, b: ... x N x P (batch dims broadcast; 2-D operands allowed on either side).
    Returns:
        ... x M x P. Example: (6, 6, 5, 4) @ (4, 3) -> (6, 6, 5, 3).
    """
    return MatMul()(a, b)


# ---------------------------------------------------------------------------------- reductions
class Summation(TensorOp):
    """Sum over `axes` (None: all), dropping them: shape (2, 3, 4), axes (1,) -> (2, 4)."""
    def __init__(self, axes=None):
        self.axes = _as_axes_arg(axes, "Summation")

    def compute(self, a):
        if _NUMPY_MODE:
            return numpy.asarray(numpy.sum(a, axis=self.axes))
        return a.sum(axis=self.axes)

    def gradient(self, out_grad, node):
        shape = node.inputs[0].shape
        axes = _normalize_axes(self.axes, len(shape), "Summation")
        return broadcast_to(reshape(out_grad, _keepdims_shape(shape, axes)), shape)


def summation(a, axes=None):
    """Sum over `axes` (None = all, an int, or a tuple); reduced axes are removed.

    Example: (2, 3, 4) with axes=(0, 2) -> (3,). axes=None gives shape () in numpy mode and
    (1,) in NDArray mode.
    """
    return Summation(axes)(a)


class LogSumExp(TensorOp):
    """Numerically stable log(sum(exp(a))) over `axes`; reduced axes are removed."""

    def __init__(self, axes=None):
        self.axes = _as_axes_arg(axes, "LogSumExp")

    def compute(self, Z):
        if _NUMPY_MODE:
            axes = self.axes
            m = numpy.max(Z, axis=axes, keepdims=True)
            m = numpy.where(numpy.isfinite(m), m, 0)  # rows of all -inf stay -inf, not NaN
            out = numpy.log(numpy.sum(numpy.exp(Z - m), axis=axes, keepdims=True)) + m
            return numpy.asarray(out.reshape(()) if axes is None else numpy.squeeze(out, axis=axes))
        # Clamp the shift to finite values: a row holding +inf or only -inf would give
        # inf - inf = NaN; with the clamp it gives +inf / -inf, as torch does.
        big = float(numpy.finfo(numpy.float32).max)
        m = Z.max(axis=self.axes, keepdims=True).maximum(-big)
        m = -((-m).maximum(-big))
        s = (Z - m.broadcast_to(Z.shape)).exp().sum(axis=self.axes)
        return s.log() + m.reshape(s.shape)

    def gradient(self, out_grad, node):
        z = node.inputs[0]
        shape = z.shape
        kshape = _keepdims_shape(shape, _normalize_axes(self.axes, len(shape), "LogSumExp"))
        lse = broadcast_to(reshape(node, kshape), shape)
        return broadcast_to(reshape(out_grad, kshape), shape) * exp(z - lse)


def logsumexp(a, axes=None):
    """log(sum(exp(a), axes)), stable for large magnitudes.

    Args:
        a: any shape; axes: None (all), an int, or a tuple such as (1, 2).
    Returns:
        a's shape with `axes` removed (None: () in numpy mode, (1,) in NDArray mode).
    """
    return LogSumExp(axes)(a)


class LogSoftmax(TensorOp):
    """log(softmax(a)) along `axis` (the contract's use: 2-D input, axis 1)."""

    def __init__(self, axis=-1):
        self.axis = axis

    def compute(self, Z):
        if _NUMPY_MODE:
            shifted = Z - numpy.max(Z, axis=self.axis, keepdims=True)
            return shifted - numpy.log(numpy.sum(numpy.exp(shifted), axis=self.axis, keepdims=True))
        return Z.log_softmax(axis=self.axis)

    def gradient(self, out_grad, node):
        shape = node.shape
        kshape = _keepdims_shape(shape, _normalize_axes(self.axis, len(shape), "LogSoftmax"))
        row_sum = broadcast_to(reshape(summation(out_grad, self.axis), kshape), shape)
        return out_grad - exp(node) * row_sum


def logsoftmax(a, axis=-1):
    """Log-softmax of an N x K tensor over its rows (axis 1; `axis` picks another)."""
    return LogSoftmax(axis)(a)


# ---------------------------------------------------------------------------------- shape ops
class BroadcastTo(TensorOp):
    """Broadcast to `shape` by numpy's rules: (3, 1) -> (2, 3, 4); the gradient sums back."""
    def __init__(self, shape):
        self.shape = as_shape(shape, "BroadcastTo")

    def compute(self, a):
        if _NUMPY_MODE:
            return numpy.broadcast_to(a, self.shape)
        return a.broadcast_to(self.shape)

    def gradient(self, out_grad, node):
        return _sum_to_shape(out_grad, node.inputs[0].shape)


def broadcast_to(a, shape):
    """numpy broadcasting, rank increase included: (3, 1) -> (3, 3), () -> (3, 3, 3)."""
    return BroadcastTo(shape)(a)


class Reshape(TensorOp):
    """The same elements in `shape` (one entry may be -1); the gradient reshapes back."""
    def __init__(self, shape):
        self.shape = as_shape(shape, "Reshape", allow_minus_one=True)

    def compute(self, a):
        if _NUMPY_MODE:
            return numpy.reshape(a, self.shape)
        return a.reshape(self.shape)

    def gradient(self, out_grad, node):
        return reshape(out_grad, node.inputs[0].shape)


def reshape(a, shape):
    """Row-major reshape to `shape` (one -1 allowed)."""
    return Reshape(shape)(a)


class Transpose(TensorOp):
    """Swap exactly two axes; axes=None swaps the last two."""

    def __init__(self, axes=None):
        if axes is not None:
            axes = tuple(int(a) for a in axes)
            if len(axes) != 2:
                raise ValueError(f"Transpose: axes must name exactly two axes, got {axes}")
        self.axes = axes

    def _perm(self, ndim):
        if self.axes is None:
            if ndim < 2:
                raise ValueError(f"Transpose: needs at least 2 dims, got rank {ndim}")
            i, j = ndim - 2, ndim - 1
        else:
            i, j = (_normalize_axes(ax, ndim, "Transpose")[0] for ax in self.axes)
        perm = list(range(ndim))
        perm[i], perm[j] = perm[j], perm[i]
        return tuple(perm)

    def compute(self, a):
        perm = self._perm(a.ndim)
        if _NUMPY_MODE:
            return numpy.transpose(a, perm)
        return a.permute(perm)

    def gradient(self, out_grad, node):
        return transpose(out_grad, self.axes)


def transpose(a, axes=None):
    """Swap two axes: `axes=(i, j)`; None swaps the last two (M x N -> N x M)."""
    return Transpose(axes)(a)
