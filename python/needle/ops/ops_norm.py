"""Fused batch normalisation (training statistics) as one autograd op.

Composed from elementary ops, a BatchNorm layer costs ~15 graph nodes forward and ~30 backward,
each with a broadcast copy. `batch_norm` computes the forward in one pass over array calls and
writes its gradient in closed form, still built from needle ops so it can be differentiated again:

    xhat = (x - mean) * invstd,  invstd = (var + eps)^-1/2  (biased var over the M values per channel)
    y    = w * xhat + b
    dx   = w * invstd / M * (M*g - sum(g) - xhat * sum(g * xhat))
    dw   = sum(g * xhat),  db = sum(g)

Sums run over every axis but the channel axis 1, so (N, C) and NCHW inputs both work.

On NDArrays the forward is one backend call (`NDArray.batch_norm`: statistics in double, two
passes). Inside `no_grad` (a `backward(create_graph=False)`), nothing will differentiate the
gradient, so it is one more call (`NDArray.batch_norm_backward`) from the forward's mean and
var, instead of ~30 graph nodes; numpy mode computes the same on arrays.
"""
from ..autograd import Tensor, TensorOp, is_grad_enabled
from ..backend_selection import array_api
from .ops_mathematic import broadcast_to, power_scalar, reshape, summation

__all__ = ["BatchNormTrain", "batch_norm"]


def _layout(shape, op):
    if len(shape) < 2:
        raise ValueError(f"{op}: input must be N x C x ..., got shape {tuple(shape)}")
    axes = (0,) + tuple(range(2, len(shape)))
    channel_shape = (1, shape[1]) + (1,) * (len(shape) - 2)
    count = 1
    for a in axes:
        count *= shape[a]
    return axes, channel_shape, count


class BatchNormTrain(TensorOp):
    """Batch norm with batch statistics over all axes but axis 1.

    Inputs x (N x C x ...), weight (C,), bias (C,); output like x. After the call, the op holds
    `batch_mean` and `batch_var` (biased), arrays of shape (C,), for the running statistics.
    """

    def __init__(self, eps=1e-5):
        self.eps = eps
        self.batch_mean = self.batch_var = None

    def compute(self, x, w, b):
        axes, cshape, m = _layout(x.shape, "batch_norm")
        if w.size != x.shape[1] or b.size != x.shape[1]:
            raise ValueError(f"batch_norm: weight {w.shape} and bias {b.shape} must hold "
                             f"{x.shape[1]} values for input {x.shape}")
        if hasattr(x, "batch_norm"):  # NDArray: one fused backend call
            # an x kept channels-last (conv + bias) is read in place; out is row-major
            out, self.batch_mean, self.batch_var = x.batch_norm(w, b, self.eps)
            self._saved = (x, None, None)  # (x, centered, var) below
            return out
        mean = x.sum(axis=axes, keepdims=True) / m
        # a + (-b) is exactly a - b; negating the (C,) side saves a full-size pass
        centered = x + array_api.broadcast_to(-mean, x.shape)
        var = (centered * centered).sum(axis=axes, keepdims=True) / m
        scale = (var + self.eps) ** -0.5 * w.reshape(cshape)
        self.batch_mean, self.batch_var = mean.reshape((x.shape[1],)), var.reshape((x.shape[1],))
        self._saved = (x, centered, var)  # for the gradient without a graph
        return (centered * array_api.broadcast_to(scale, x.shape)
                + array_api.broadcast_to(b.reshape(cshape), x.shape))

    def gradient(self, out_grad, node):
        x, w, _ = node.inputs
        saved = self.__dict__.pop("_saved", None)
        if not is_grad_enabled() and saved is not None and saved[0] is x.realize_cached_data():
            return self._gradient_arrays(out_grad, node, saved)
        axes, cshape, m = _layout(x.shape, "batch_norm")
        shape = x.shape

        def per_channel(t):
            return broadcast_to(reshape(t, cshape), shape)

        mean = summation(x, axes=axes) / m
        centered = x + per_channel(-mean)  # == x - mean; the negation runs on (C,) only
        invstd = power_scalar(summation(centered * centered, axes=axes) / m + self.eps, -0.5)
        xhat = centered * per_channel(invstd)
        grad_bias = summation(out_grad, axes=axes)
        grad_weight = summation(out_grad * xhat, axes=axes)
        grad_x = per_channel(reshape(w, (shape[1],)) * invstd / m) * (
            out_grad * m + per_channel(-grad_bias) + xhat * per_channel(-grad_weight))
        return grad_x, reshape(grad_weight, w.shape), reshape(grad_bias, node.inputs[2].shape)

    def _gradient_arrays(self, out_grad, node, saved):
        """The same gradient as constants, from the forward's statistics."""
        x_arr, centered, var = saved
        x, w, b = node.inputs
        if centered is None:  # NDArray: one fused backend call
            dx, dw, db = x_arr.batch_norm_backward(
                out_grad.realize_cached_data(), w.realize_cached_data(), self.batch_mean,
                self.batch_var, self.eps)
            return (Tensor.make_const(dx), Tensor.make_const(dw.reshape(w.shape)),
                    Tensor.make_const(db.reshape(b.shape)))
        axes, cshape, m = _layout(centered.shape, "batch_norm")
        shape = centered.shape

        def per_channel(t):
            return array_api.broadcast_to(t.reshape(cshape), shape)

        g = out_grad.realize_cached_data()
        invstd = (var + self.eps) ** -0.5
        xhat = centered * per_channel(invstd)
        grad_bias = g.sum(axis=axes, keepdims=True)
        grad_weight = (g * xhat).sum(axis=axes, keepdims=True)
        k1 = w.realize_cached_data().reshape(cshape) * invstd
        k2 = k1 * grad_weight * (-1.0 / m)
        k3 = k1 * grad_bias * (-1.0 / m)
        grad_x = xhat * per_channel(k2) + (g * per_channel(k1) + per_channel(k3))
        wshape, bshape = w.realize_cached_data().shape, b.realize_cached_data().shape
        return (Tensor.make_const(grad_x), Tensor.make_const(grad_weight.reshape(wshape)),
                Tensor.make_const(grad_bias.reshape(bshape)))


def batch_norm(x, weight, bias, eps=1e-5):
    """Training-mode batch norm of x (N x C or N x C x H x W) with batch statistics.

    Returns (y, op): y has x's shape; `op.batch_mean`, `op.batch_var` are the (C,) statistics.
    """
    op = BatchNormTrain(eps)
    return op(x, weight, bias), op
