"""Convolutional modules. Inputs and outputs are NCHW (as in PyTorch); the ops underneath are NHWC,
so every module moves the channel axis last, calls the op, and moves it back.

Weights: Conv / Conv2d keep KH x KW x Cin/groups x Cout (torch weight = ours.permute(3, 2, 0, 1));
ConvTranspose2d keeps KH x KW x Cin x Cout/groups (torch weight = ours.permute(2, 3, 0, 1)).
Draws (RNG contract §11): weight `rand(*weight_shape)` first, then bias `rand(out)` if bias=True.
"""
import numpy as np

from .. import init, ops
from ..autograd import Tensor
from ..ops.ops_conv import _pair as _checked_pair, permute
from .nn_basic import BatchNorm1d, Module, Parameter

__all__ = ["Conv", "Conv2d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
           "GlobalAvgPool2d", "BatchNorm2d", "Softmax", "LogSoftmax"]


def _pair(v):
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else tuple(int(x) for x in v)


def _check_conv_args(name, in_channels, out_channels, kernel_size, stride, padding, dilation):
    """ValueError / TypeError naming the module for sizes a convolution cannot have."""
    for what, n in (("in_channels", in_channels), ("out_channels", out_channels)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"{name}: {what} must be a positive int, got {n!r}")
    for what, v, least in (("kernel_size", kernel_size, 1), ("stride", stride, 1),
                           ("padding", padding, 0), ("dilation", dilation, 1)):
        _checked_pair(v, what, name, least)


def _to_nhwc(x):
    """N x C x H x W -> N x H x W x C: a view (one graph node); with H = W = 1 a reshape, so that
    the result stays compact (same memory order)."""
    n, c, h, w = x.shape
    return ops.reshape(x, (n, h, w, c)) if h * w == 1 else permute(x, (0, 2, 3, 1))


def _to_nchw(x):
    """N x H x W x C -> N x C x H x W (as _to_nhwc)."""
    n, h, w, c = x.shape
    return ops.reshape(x, (n, c, h, w)) if h * w == 1 else permute(x, (0, 3, 1, 2))


def _check_nchw(module, x, channels):
    shape = tuple(x.shape)
    if len(shape) != 4 or (channels is not None and shape[1] != channels):
        want = f"(N, {channels}, H, W)" if channels is not None else "(N, C, H, W)"
        raise ValueError(f"{type(module).__name__}: expected NCHW input {want}, got {shape}")


def _add_bias(y, bias):
    """y (N x C x H x W) + bias (C,) broadcast over N, H, W.

    Added after the move back to NCHW: the sum of a transposed view and the bias is a compact
    NCHW array, so the next layer (usually BatchNorm2d) reads it without further copies.
    """
    return y + ops.broadcast_to(ops.reshape(bias, (1, y.shape[1], 1, 1)), y.shape)


class Conv2d(Module):
    """2-D convolution, PyTorch-style arguments, NCHW in / out.

    Args:
        in_channels, out_channels: channel counts (both divisible by groups).
        kernel_size, stride, padding, dilation: int or (h, w) pair.
        groups: channel groups (groups == in_channels: depthwise).
        bias: add a learned (out_channels,) bias.
    Parameters: weight KH x KW x (in/groups) x out = kaiming_uniform(fan_in, fan_out, shape=...)
    with fan_in = (in/groups)*KH*KW; bias (out,) ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    Shapes: x (N, in, H, W) -> (N, out, Ho, Wo), Ho = (H + 2p - d(KH-1) - 1) // s + 1.

    Example:
        >>> conv = nn.Conv2d(3, 16, 3, padding=1)
        >>> conv(ndl.Tensor(np.zeros((2, 3, 8, 8)))).shape
        (2, 16, 8, 8)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, device=None, dtype="float32"):
        super().__init__()
        _check_conv_args(type(self).__name__, in_channels, out_channels, kernel_size, stride,
                         padding, dilation)
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{type(self).__name__}: in_channels {in_channels} and out_channels "
                             f"{out_channels} must be divisible by groups {groups}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        self.padding, self.dilation, self.groups = padding, dilation, groups
        kh, kw = _pair(kernel_size)
        fan_in = in_channels // groups * kh * kw
        self.weight = Parameter(init.kaiming_uniform(
            fan_in, out_channels // groups * kh * kw, shape=(kh, kw, in_channels // groups,
                                                             out_channels),
            device=device, dtype=dtype, requires_grad=True))
        self.bias = None
        if bias:
            bound = 1.0 / np.sqrt(fan_in)
            self.bias = Parameter(init.rand(out_channels, low=-bound, high=bound, device=device,
                                            dtype=dtype, requires_grad=True))

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"groups={self.groups}, bias={self.bias is not None}")

    def forward(self, x: Tensor) -> Tensor:
        _check_nchw(self, x, self.in_channels)
        y = ops.conv(_to_nhwc(x), self.weight, stride=self.stride, padding=self.padding,
                     dilation=self.dilation, groups=self.groups)
        y = _to_nchw(y)
        return y if self.bias is None else _add_bias(y, self.bias)


class Conv(Conv2d):
    """The contract's needle Conv: square kernel, 'same' padding k//2, NCHW in / out.

    Equivalent to torch.nn.Conv2d(in, out, k, stride, padding=k//2) with torch weight =
    self.weight permuted (3, 2, 0, 1). Draws: weight rand(k, k, in, out) scaled as
    kaiming_uniform(in*k*k, out*k*k), then bias rand(out) scaled to U(+-1/sqrt(in*k*k)).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, bias=True, device=None,
                 dtype="float32"):
        kh, kw = _pair(kernel_size)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=(kh // 2, kw // 2), bias=bias, device=device, dtype=dtype)
        self.padding = kh // 2 if kh == kw else (kh // 2, kw // 2)


class ConvTranspose2d(Module):
    """Transposed 2-D convolution, PyTorch-style arguments (same order as torch), NCHW in / out.

    Parameters: weight KH x KW x in x (out/groups) (torch weight = ours.permute(2, 3, 0, 1)),
    kaiming_uniform with fan_in = (out/groups)*KH*KW (torch's convention for this layer); bias
    (out,) ~ U(+-1/sqrt(fan_in)). Draws: weight, then bias.
    Shapes: (N, in, H, W) -> (N, out, Ho, Wo), Ho = (H-1)s - 2p + d(KH-1) + output_padding + 1.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, device=None, dtype="float32"):
        super().__init__()
        _check_conv_args(type(self).__name__, in_channels, out_channels, kernel_size, stride,
                         padding, dilation)
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"ConvTranspose2d: in_channels {in_channels} and out_channels "
                             f"{out_channels} must be divisible by groups {groups}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.output_padding, self.groups, self.dilation = output_padding, groups, dilation
        kh, kw = _pair(kernel_size)
        fan_in = out_channels // groups * kh * kw
        self.weight = Parameter(init.kaiming_uniform(
            fan_in, in_channels * kh * kw, shape=(kh, kw, in_channels, out_channels // groups),
            device=device, dtype=dtype, requires_grad=True))
        self.bias = None
        if bias:
            bound = 1.0 / np.sqrt(fan_in)
            self.bias = Parameter(init.rand(out_channels, low=-bound, high=bound, device=device,
                                            dtype=dtype, requires_grad=True))

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, "
                f"output_padding={self.output_padding}, groups={self.groups}, "
                f"dilation={self.dilation}, bias={self.bias is not None}")

    def forward(self, x: Tensor) -> Tensor:
        _check_nchw(self, x, self.in_channels)
        y = ops.conv_transpose(_to_nhwc(x), self.weight, stride=self.stride, padding=self.padding,
                               dilation=self.dilation, groups=self.groups,
                               output_padding=self.output_padding)
        y = _to_nchw(y)
        return y if self.bias is None else _add_bias(y, self.bias)


class MaxPool2d(Module):
    """Max pooling, NCHW: (N, C, H, W) -> (N, C, Ho, Wo). stride defaults to kernel_size;
    padding (<= kernel_size // 2) acts as -inf; gradient to the first max of each window."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        ops.MaxPool2d(kernel_size, stride, padding)  # validate the arguments now

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def forward(self, x):
        _check_nchw(self, x, None)
        return _to_nchw(ops.max_pool2d(_to_nhwc(x), self.kernel_size, self.stride, self.padding))


class AvgPool2d(MaxPool2d):
    """Average pooling, NCHW; zero padding counts in the kernel_size divisor (torch default)."""

    def forward(self, x):
        _check_nchw(self, x, None)
        return _to_nchw(ops.avg_pool2d(_to_nhwc(x), self.kernel_size, self.stride, self.padding))


class GlobalAvgPool2d(Module):
    """Mean over H and W: (N, C, H, W) -> (N, C)."""

    def forward(self, x):
        _check_nchw(self, x, None)
        n, c, h, w = x.shape
        return ops.summation(x, axes=(2, 3)) / float(h * w)


class AdaptiveAvgPool2d(Module):
    """torch.nn.AdaptiveAvgPool2d for output size (1, 1) only: (N, C, H, W) -> (N, C, 1, 1)."""

    def __init__(self, output_size=(1, 1)):
        super().__init__()
        if _pair(output_size) != (1, 1):
            raise ValueError(f"AdaptiveAvgPool2d: only output_size (1, 1) is supported, "
                             f"got {output_size}")
        self.output_size = (1, 1)

    def extra_repr(self):
        return f"output_size={self.output_size}"

    def forward(self, x):
        _check_nchw(self, x, None)
        n, c, h, w = x.shape
        return ops.reshape(ops.summation(x, axes=(2, 3)) / float(h * w), (n, c, 1, 1))


class BatchNorm2d(BatchNorm1d):
    """BatchNorm over the channels of an NCHW input: statistics over N, H, W per channel.

    Equivalent to NCHW -> (N*H*W, C) -> BatchNorm1d -> back to NCHW (the contract's definition),
    computed on NCHW directly. Same parameters and running statistics as BatchNorm1d(dim); no
    random draws.
    """

    def forward(self, x: Tensor) -> Tensor:
        _check_nchw(self, x, self.dim)
        return self._normalize(x)  # statistics over N, H, W straight on NCHW: no transposes


class Softmax(Module):
    """softmax along `axis` (default the last); any input shape."""

    def __init__(self, axis=-1):
        super().__init__()
        self.axis = axis

    def extra_repr(self):
        return f"axis={self.axis}"

    def forward(self, x):
        return ops.softmax(x, axis=self.axis)


class LogSoftmax(Softmax):
    """log_softmax along `axis` (default the last); any input shape."""

    def forward(self, x):
        return ops.log_softmax(x, axis=self.axis)
