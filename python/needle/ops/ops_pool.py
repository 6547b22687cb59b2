"""Pooling ops on channels-last tensors: max_pool2d, avg_pool2d, global_avg_pool2d, and the
1-D / 3-D poolings composed from the 2-D ones (max_pool1d/3d, avg_pool1d/3d, pool_nd).

Forward and backward use the native NDArray pooling kernels (`nd.max_pool2d`, ...). Max pooling
sends each output gradient to the FIRST maximum of its window in row-major (kh, kw) order; padding
acts as -inf for max and as counted zeros for avg (divisor kh*kw, torch `count_include_pad=True`).
Padding is limited to half the kernel (as in torch) so that no window is all padding.
The backward ops are needle ops with their own gradients, so double backward works.
"""
import numpy as np

from ..autograd import Tensor, TensorOp
from ..backend_selection import BACKEND, array_api
from .ops_conv_geometry import _expand, _ints, _pair
from .ops_mathematic import divide_scalar, reshape, summation

__all__ = ["MaxPool2d", "max_pool2d", "MaxPool2dGrad", "max_pool2d_grad", "MaxPool2dGather",
           "max_pool2d_gather", "AvgPool2d", "avg_pool2d", "AvgPool2dGrad", "avg_pool2d_grad",
           "global_avg_pool2d", "pool_windows", "max_pool1d", "max_pool3d", "avg_pool1d",
           "avg_pool3d", "pool_nd", "pool_args"]


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
        a: N x H x W x C.
        kernel_size: int or (h, w) pair.
        stride: int or (h, w) pair (default = kernel_size).
        padding: int or (h, w) pair; padding <= kernel_size // 2 and acts as -inf.
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


# ---------------------------------------------------------------- 1-D and 3-D pooling
_POOL_LAYOUT = {1: "N x L x C", 2: "N x H x W x C", 3: "N x D x H x W x C"}


def pool_args(name, nd, kernel_size, stride=None, padding=0):
    """Validated (kernel, stride, padding) nd-tuples of a pooling op named `name`."""
    kernel = _expand(_ints(kernel_size, "kernel_size", name, 1), nd, "kernel_size", name)
    stride = kernel if stride is None else _expand(_ints(stride, "stride", name, 1), nd,
                                                   "stride", name)
    padding = _expand(_ints(padding, "padding", name, 0), nd, "padding", name)
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise ValueError(f"{name}: padding {padding} must be at most half the kernel size "
                         f"{kernel}")
    return kernel, stride, padding


def _pool2d(kind):
    return max_pool2d if kind == "max" else avg_pool2d


def _check_rank(name, a, nd):
    if len(a.shape) != nd + 2:
        raise ValueError(f"{name}: expected an {_POOL_LAYOUT[nd]} input ({nd + 2}-D), got shape "
                         f"{tuple(a.shape)}")


def _pool1d(kind, a, kernel_size, stride, padding):
    """1-D pooling as a 2-D pooling of N x 1 x L x C with a 1 x K window (the same kernels)."""
    name = f"{kind}_pool1d"
    _check_rank(name, a, 1)
    (k,), (s,), (p,) = pool_args(name, 1, kernel_size, stride, padding)
    n, length, c = a.shape
    y = _pool2d(kind)(reshape(a, (n, 1, length, c)), (1, k), (1, s), (0, p))
    return reshape(y, (n, y.shape[2], c))


def _pool3d(kind, a, kernel_size, stride, padding):
    """3-D pooling, separable: a 2-D pooling over (H, W) of every depth slice, then a 1-D pooling
    over D of the results. Both max and the padding-counting average factor this way exactly
    (max of maxes; sums of sums over a KD*KH*KW divisor); the gradient flows through both."""
    name = f"{kind}_pool3d"
    _check_rank(name, a, 3)
    (kd, kh, kw), (sd, sh, sw), (pd, ph, pw) = pool_args(name, 3, kernel_size, stride, padding)
    n, d, h, w, c = a.shape
    planes = _pool2d(kind)(reshape(a, (n * d, h, w, c)), (kh, kw), (sh, sw), (ph, pw))
    ho, wo = planes.shape[1:3]
    y = _pool2d(kind)(reshape(planes, (n, d, ho * wo, c)), (kd, 1), (sd, 1), (pd, 0))
    return reshape(y, (n, y.shape[1], ho, wo, c))


def max_pool1d(a, kernel_size, stride=None, padding=0):
    """1-D max pooling: N x L x C -> N x Lo x C, Lo = (L + 2p - k) // s + 1 (padding -inf)."""
    return _pool1d("max", a, kernel_size, stride, padding)


def avg_pool1d(a, kernel_size, stride=None, padding=0):
    """1-D average pooling (zero padding counted): N x L x C -> N x Lo x C."""
    return _pool1d("avg", a, kernel_size, stride, padding)


def max_pool3d(a, kernel_size, stride=None, padding=0):
    """3-D max pooling: N x D x H x W x C -> N x Do x Ho x Wo x C (each as in max_pool2d).
    kernel_size, stride, padding: int or (d, h, w)."""
    return _pool3d("max", a, kernel_size, stride, padding)


def avg_pool3d(a, kernel_size, stride=None, padding=0):
    """3-D average pooling (zero padding counted in the KD*KH*KW divisor), NDHWC."""
    return _pool3d("avg", a, kernel_size, stride, padding)


def pool_nd(a, kind, kernel_size, stride=None, padding=0):
    """Pooling of kind "max" or "avg" over the 1, 2 or 3 spatial dims of a channels-last `a`."""
    nd = len(a.shape) - 2
    if kind not in ("max", "avg") or nd not in (1, 2, 3):
        raise ValueError(f"pool_nd: kind must be 'max' or 'avg' and the input 3-D to 5-D, got "
                         f"{kind!r} and shape {tuple(a.shape)}")
    if nd == 2:
        return _pool2d(kind)(a, kernel_size, stride, padding)
    return (_pool1d if nd == 1 else _pool3d)(kind, a, kernel_size, stride, padding)
