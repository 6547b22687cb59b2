"""Softmax family over any axis: softmax, log_softmax, and the fused softmax_cross_entropy.

Forward passes use the native stable row kernels (NDArray `.softmax(axis)` / `.log_softmax(axis)`:
subtract the row max, exponentiate, normalise), so logits of 1e4, 1e5 and beyond are fine.
Backward passes use the closed forms, differentiable again:
  softmax      y = softmax(x):      dx = y * (g - sum(g * y))   (SoftmaxBackward: one native call)
  log_softmax  y = log_softmax(x):  dx = g - exp(y) * sum(g)
  cross entropy over N rows:        dx = (softmax(x) - onehot(labels)) * g / N
(sums along the softmax axis, broadcast back). numpy mode (NEEDLE_BACKEND=np) is supported too.
"""
import numpy as np

from ..autograd import Tensor, TensorOp, is_grad_enabled
from ..backend_selection import BACKEND
from .ops_mathematic import LogSoftmax, broadcast_to, reshape, summation

__all__ = ["Softmax", "SoftmaxBackward", "softmax", "log_softmax", "SoftmaxCrossEntropy",
           "softmax_cross_entropy"]


def _axis(axis, ndim, op):
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"{op}: axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{op}: axis {axis} out of range for an input of {ndim} dims")
    return int(axis) % ndim


def _sum_keep(t, axis):
    """Sum of t along axis, broadcast back to t's shape (needle ops)."""
    kept = list(t.shape)
    kept[axis] = 1
    return broadcast_to(reshape(summation(t, axes=(axis,)), tuple(kept)), t.shape)


def _raw_softmax(a, axis, log):
    if isinstance(a, np.ndarray):  # numpy mode
        z = a - a.max(axis=axis, keepdims=True)
        if log:
            return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))
        e = np.exp(z)
        return e / e.sum(axis=axis, keepdims=True)
    return a.log_softmax(axis) if log else a.softmax(axis)


class Softmax(TensorOp):
    """Numerically stable softmax along `axis` (any rank)."""

    def __init__(self, axis=-1):
        self.axis = axis

    def compute(self, a):
        return _raw_softmax(a, _axis(self.axis, a.ndim, "softmax"), log=False)

    def gradient(self, out_grad, node):
        return SoftmaxBackward(_axis(self.axis, len(node.shape), "softmax"))(node, out_grad)


class SoftmaxBackward(TensorOp):
    """dx = y * (g - sum(g * y)) along `axis` for y = softmax(x): one backend call on NDArrays.

    Inputs y (the softmax output) and g (its gradient), same shape. Its own gradient, in needle
    ops: d/dg (with G) = y * (G - sum(G * y)), which is this op again; d/dy = G * (g - sum(g * y))
    - g * sum(G * y).
    """

    def __init__(self, axis):
        self.axis = axis

    def compute(self, y, g):
        if hasattr(y, "softmax_backward"):
            return y.softmax_backward(g, self.axis)
        return y * (g - (g * y).sum(axis=self.axis, keepdims=True))

    def gradient(self, out_grad, node):
        y, g = node.inputs
        dy = out_grad * (g - _sum_keep(g * y, self.axis)) - g * _sum_keep(out_grad * y, self.axis)
        return dy, SoftmaxBackward(self.axis)(y, out_grad)


def softmax(a, axis=-1):
    """Softmax of a Tensor of any shape along `axis`: exp(a - max) / sum(exp(a - max)).

    Args: a (any shape, e.g. N x K), axis (int, default the last). Returns the same shape.
    """
    return Softmax(axis)(a)


def log_softmax(a, axis=-1):
    """log(softmax(a)) along `axis`, computed stably as (a - max) - log(sum(exp(a - max))).

    Args: a (any shape), axis (int, default the last). Returns the same shape. This is
    ops_mathematic's LogSoftmax op (its gradient g - exp(y) * sum(g) is the closed form above).
    """
    return LogSoftmax(axis)(a)


class SoftmaxCrossEntropy(TensorOp):
    """Mean over rows of -log softmax(logits)[label]; logits N x K, labels fixed at construction
    (an N x K one-hot array on the logits' device)."""

    def __init__(self, onehot):
        self.onehot = onehot

    def compute(self, logits):
        if logits.ndim != 2 or tuple(logits.shape) != tuple(self.onehot.shape):
            raise ValueError(f"softmax_cross_entropy: logits must be N x K matching labels "
                             f"{self.onehot.shape[:1]}, got shape {logits.shape}")
        n = logits.shape[0]
        picked = _raw_softmax(logits, 1, log=True) * self.onehot
        if isinstance(picked, np.ndarray):
            return np.array(-picked.sum() / n, dtype=logits.dtype)
        return picked.sum() * (-1.0 / n)

    def gradient(self, out_grad, node):
        logits = node.inputs[0]
        n = logits.shape[0]
        if not is_grad_enabled():  # a constant gradient (plain backward): arrays, no graph nodes
            return Tensor.make_const(self._gradient_arrays(out_grad, logits, n))
        scale = broadcast_to(reshape(out_grad, (1, 1)), logits.shape) / n
        return (softmax(logits, axis=1) - Tensor.make_const(self.onehot)) * scale

    def _gradient_arrays(self, out_grad, logits, n):
        """The lines above on raw arrays, with the same arithmetic (so the same numbers)."""
        x = logits.realize_cached_data()
        scale = out_grad.realize_cached_data().reshape((1, 1)) / n
        if isinstance(x, np.ndarray):  # numpy mode
            scale = np.broadcast_to(scale, x.shape)
        else:
            scale = scale.broadcast_to(x.shape)  # read in place: no copy of the N x K scale
        return (_raw_softmax(x, 1, log=False) - self.onehot) * scale


def softmax_cross_entropy(logits, labels):
    """Fused mean softmax cross-entropy.

    Args:
        logits: Tensor N x K.
        labels: N integer class ids in [0, K) (Tensor of any float/int dtype, numpy array or list).
    Returns:
        A scalar Tensor (shape (1,) in NDArray mode, () in numpy mode): mean of
        logsumexp(row) - row[label]. Its gradient is (softmax(logits) - onehot(labels)) / N.
    """
    shape = logits.shape
    if len(shape) != 2:
        raise ValueError(f"softmax_cross_entropy: logits must be N x K, got shape {shape}")
    y = labels.numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    y = y.reshape(-1)
    if y.shape[0] != shape[0]:
        raise ValueError(f"softmax_cross_entropy: {y.shape[0]} labels for logits of shape {shape}")
    yi = y.astype(np.int64)
    if np.any(yi != y) or np.any(yi < 0) or np.any(yi >= shape[1]):
        raise ValueError(f"softmax_cross_entropy: labels must be integers in [0, {shape[1]}), "
                         f"got {y[:8]} for logits of shape {shape}")
    if BACKEND == "nd":
        onehot = logits.device.one_hot(shape[1], yi)
    else:
        onehot = np.eye(shape[1], dtype=logits.dtype)[yi]
    return SoftmaxCrossEntropy(onehot)(logits)
