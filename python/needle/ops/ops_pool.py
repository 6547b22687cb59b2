"""Pooling ops on NHWC tensors: max_pool2d, avg_pool2d, global_avg_pool2d.

Forward and backward use the native NDArray pooling kernels (`nd.max_pool2d`, ...). Max pooling
sends each output gradient to the FIRST maximum of its window in row-major (kh, kw) order; padding
acts as -inf for max and as counted zeros for avg (divisor kh*kw, torch `count_include_pad=True`).
Padding is limited to half the kernel (as in torch) so that no window is all padding.
The backward ops are needle ops with their own gradients, so double backward works.
"""
import numpy as np

from ..autograd import Tensor, TensorOp
from ..backend_selection import BACKEND, array_api
from .ops_conv_geometry import _pair
from .ops_mathematic import divide_scalar, summation

__all__ = ["MaxPool2d", "max_pool2d", "MaxPool2dGrad", "max_pool2d_grad", "MaxPool2dGather",
           "max_pool2d_gather", "AvgPool2d", "avg_pool2d", "AvgPool2dGrad", "avg_pool2d_grad",
           "global_avg_pool2d", "pool_windows"]


class _PoolOp(TensorOp):
    name = "pool"

    def __init__(self, kernel_size, stride=None, padding=0):
        self.kernel_size = _pair(kernel_size, "kernel_size", self.name, 1)
        self.stride = _pair(self.kernel_size if stride is None else stride, "stride", self.name, 1)
        self.padding = _pair(padding, "padding", self.name, 0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{self.name}: padding {self.padding} must be at most half the kernel "
                             f"size {self.kernel_size}")

    @property
    def params(self):
        return dict(kernel=self.kernel_size, stride=self.stride, padding=self.padding)

    def _check(self, a):
        if BACKEND != "nd":
            raise TypeError(f"{self.name}: needs NDArray tensors (NEEDLE_BACKEND=nd)")
        if a.ndim != 4:
            raise ValueError(f"{self.name}: expected an N x H x W x C input, got shape {a.shape}")

    def _out_shape(self, shape):
        n, h, w, c = shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return (n, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1, c)


def pool_windows(a, kernel, stride, padding, fill):
    """Composed im2col view for pooling: N x Ho x Wo x KH*KW x C (compact) of an NHWC NDArray
    padded with `fill` (-inf for max, 0 for avg). The reference the native kernels are tested
    against, and the gather of MaxPool2dGather."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, h, w, c = a.shape
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    xp = array_api.full((n, h + 2 * ph, w + 2 * pw, c), fill, device=a.device)
    xp[:, ph:ph + h, pw:pw + w, :] = a
    s_n, s_h, s_w, s_c = xp.strides
    view = xp.as_strided((n, ho, wo, kh, kw, c), (s_n, s_h * sh, s_w * sw, s_h, s_w, s_c))
    return view.compact().reshape((n, ho, wo, kh * kw, c))


def _first_max_mask(a, kernel, stride, padding):
    """1.0 at the first maximum (row-major window order) of every window, else 0.0."""
    win = pool_windows(a, kernel, stride, padding, -np.inf)
    kk = win.shape[3]
    is_max = win == win.max(axis=3, keepdims=True).broadcast_to(win.shape)
    # rank kk for the first window slot down to 1 for the last: the first max has the top score
    rank = array_api.array(np.arange(kk, 0, -1, dtype=np.float32).reshape(1, 1, 1, kk, 1),
                           device=a.device).broadcast_to(win.shape)
    score = is_max * rank
    return score == score.max(axis=3, keepdims=True).broadcast_to(win.shape)


def _zeros_like(t):
    return Tensor.make_const(array_api.zeros(t.shape, device=t.device))


# ---------------------------------------------------------------- max pooling
class MaxPool2d(_PoolOp):
    """Max pooling, N x H x W x C -> N x Ho x Wo x C."""

    name = "max_pool2d"

    def compute(self, a):
        self._check(a)
        return array_api.max_pool2d(a, **self.params)

    def gradient(self, out_grad, node):
        return max_pool2d_grad(node.inputs[0], out_grad, self.kernel_size, self.stride,
                               self.padding)


def max_pool2d(a, kernel_size, stride=None, padding=0):
    """2-D max pooling of an NHWC tensor.

    Args:
        a: N x H x W x C. kernel_size, stride (default = kernel_size), padding: int or (h, w)
        pair; padding <= kernel_size // 2 and acts as -inf.
    Returns:
        N x Ho x Wo x C with Ho = (H + 2*ph - kh) // sh + 1.
    Gradient: each output gradient goes to the first maximum of its window (row-major order).
    """
    return MaxPool2d(kernel_size, stride, padding)(a)


class MaxPool2dGrad(_PoolOp):
    """Inputs (a, dout): the gradient of max_pool2d(a) for output gradient dout (N x H x W x C).
    Linear in dout; its derivative w.r.t. a is zero almost everywhere."""

    name = "max_pool2d_grad"

    def compute(self, a, dout):
        self._check(a)
        return array_api.max_pool2d_backward(a, dout, **self.params)

    def gradient(self, out_grad, node):
        a, _ = node.inputs
        return _zeros_like(a), max_pool2d_gather(a, out_grad, self.kernel_size, self.stride,
                                                 self.padding)


def max_pool2d_grad(a, dout, kernel_size, stride=None, padding=0):
    """Gradient of max_pool2d w.r.t. its input a (N x H x W x C), given dout (N x Ho x Wo x C)."""
    return MaxPool2dGrad(kernel_size, stride, padding)(a, dout)


class MaxPool2dGather(_PoolOp):
    """Inputs (a, x), both N x H x W x C: x read at the first arg-max of every pooling window of
    a (N x Ho x Wo x C). The adjoint of MaxPool2dGrad w.r.t. dout."""

    name = "max_pool2d_gather"

    def compute(self, a, x):
        self._check(a)
        if x.shape != a.shape:
            raise ValueError(f"{self.name}: x shape {x.shape} must equal a shape {a.shape}")
        args = (self.kernel_size, self.stride, self.padding)
        picked = _first_max_mask(a, *args) * pool_windows(x, *args, 0.0)
        return picked.sum(axis=3)

    def gradient(self, out_grad, node):
        a, _ = node.inputs
        return _zeros_like(a), max_pool2d_grad(a, out_grad, self.kernel_size, self.stride,
                                               self.padding)


def max_pool2d_gather(a, x, kernel_size, stride=None, padding=0):
    """x (N x H x W x C) read at the arg-max of each max_pool2d window of a -> N x Ho x Wo x C."""
    return MaxPool2dGather(kernel_size, stride, padding)(a, x)


# ---------------------------------------------------------------- average pooling
class AvgPool2d(_PoolOp):
    """Average pooling (zero padding counted), N x H x W x C -> N x Ho x Wo x C."""

    name = "avg_pool2d"

    def compute(self, a):
        self._check(a)
        return array_api.avg_pool2d(a, **self.params)

    def gradient(self, out_grad, node):
        return avg_pool2d_grad(out_grad, node.inputs[0].shape, self.kernel_size, self.stride,
                               self.padding)


def avg_pool2d(a, kernel_size, stride=None, padding=0):
    """2-D average pooling of an NHWC tensor (zero padding counted in the kh*kw divisor).

    Args and shapes as max_pool2d.
    """
    return AvgPool2d(kernel_size, stride, padding)(a)


class AvgPool2dGrad(_PoolOp):
    """dout (N x Ho x Wo x C) -> the avg_pool2d input gradient (input_shape). Linear; its adjoint
    is avg_pool2d itself."""

    name = "avg_pool2d_grad"

    def __init__(self, input_shape, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride, padding)
        self.input_shape = tuple(input_shape)

    def compute(self, dout):
        self._check(dout)
        return array_api.avg_pool2d_backward(dout, self.input_shape, **self.params)

    def gradient(self, out_grad, node):
        return avg_pool2d(out_grad, self.kernel_size, self.stride, self.padding)


def avg_pool2d_grad(dout, input_shape, kernel_size, stride=None, padding=0):
    """Gradient of avg_pool2d w.r.t. its input (shape input_shape, N x H x W x C)."""
    return AvgPool2dGrad(input_shape, kernel_size, stride, padding)(dout)


def global_avg_pool2d(a):
    """Mean over H and W: N x H x W x C -> N x C (composed from summation and divide_scalar)."""
    if len(a.shape) != 4:
        raise ValueError(f"global_avg_pool2d: expected an N x H x W x C input, got shape {a.shape}")
    n, h, w, c = a.shape
    return divide_scalar(summation(a, axes=(1, 2)), float(h * w))
