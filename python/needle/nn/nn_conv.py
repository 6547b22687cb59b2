"""Convolutional modules. Inputs and outputs are channels-first (NCL / NCHW / NCDHW, as in
PyTorch); the ops underneath are channels-last (NLC / NHWC / NDHWC), so every module moves the
channel axis last, calls the op, and moves it back.

Weights: Conv / Conv{1,2,3}d keep K.. x Cin/groups x Cout (torch weight = ours with the two
channel axes first and swapped, e.g. permute(3, 2, 0, 1) in 2-D); ConvTranspose{1,2,3}d keep
K.. x Cin x Cout/groups (torch weight = ours with its channel axes first, permute(2, 3, 0, 1)).
Draws (RNG contract §11): weight `rand(*weight_shape)` first, then bias `rand(out)` if bias=True.
"""
import math

import numpy as np

from .. import init, ops
from ..autograd import Tensor
from ..ops.ops_conv import _pair as _checked_pair, permute
from ..ops.ops_conv_geometry import _expand, _ints
from .nn_basic import Module, Parameter
from .nn_norm import BatchNorm1d

__all__ = ["Conv", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
           "ConvTranspose3d", "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d",
           "AvgPool3d", "AdaptiveAvgPool2d", "GlobalAvgPool2d", "BatchNorm2d", "Softmax",
           "LogSoftmax"]


def _ntuple(v, nd):
    return (int(v),) * nd if isinstance(v, (int, np.integer)) else tuple(int(x) for x in v)


def _pair(v):
    return _ntuple(v, 2)


def _check_conv_args(name, in_channels, out_channels, kernel_size, stride, padding, dilation,
                     nd=2):
    """ValueError / TypeError naming the module for sizes a convolution over `nd` spatial dims
    cannot have (each size an int or a tuple of nd ints)."""
    for what, n in (("in_channels", in_channels), ("out_channels", out_channels)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"{name}: {what} must be a positive int, got {n!r}")
    for what, v, least in (("kernel_size", kernel_size, 1), ("stride", stride, 1),
                           ("padding", padding, 0), ("dilation", dilation, 1)):
        if nd == 2:
            _checked_pair(v, what, name, least)  # the 2-D messages: "an (h, w) pair"
        else:
            _expand(_ints(v, what, name, least), nd, what, name)


def _to_nhwc(x):
    """N x C x S.. -> N x S.. x C (NCL -> NLC, NCHW -> NHWC, NCDHW -> NDHWC): a view (one graph
    node); with every spatial size 1 a reshape, so that the result stays compact."""
    n, c, *sizes = x.shape
    if math.prod(sizes) == 1:
        return ops.reshape(x, (n, *sizes, c))
    return permute(x, (0,) + tuple(range(2, len(sizes) + 2)) + (1,))


def _to_nchw(x):
    """N x S.. x C -> N x C x S.. (as _to_nhwc)."""
    n, *sizes, c = x.shape
    if math.prod(sizes) == 1:
        return ops.reshape(x, (n, c, *sizes))
    return permute(x, (0, len(sizes) + 1) + tuple(range(1, len(sizes) + 1)))


_CHANNELS_FIRST = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}


def _check_nchw(module, x, channels, nd=2):
    """x must be channels-first with `nd` spatial dims (and `channels` channels when given)."""
    shape = tuple(x.shape)
    if len(shape) != nd + 2 or (channels is not None and shape[1] != channels):
        want = _CHANNELS_FIRST[nd]
        layout = "".join(c for c in want if c.isalpha())
        if channels is not None:
            want = want.replace("C", str(channels), 1)
        raise ValueError(f"{type(module).__name__}: expected {layout} input {want} "
                         f"({nd + 2}-D), got shape {shape}")


def _add_bias(y, bias):
    """y (N x C x S..) + bias (C,) broadcast over N and S...

    Added after the move back to channels-first: the sum of a transposed view and the bias is
    a compact NCHW array, so the next layer (usually BatchNorm2d) reads it without copies.
    """
    shape = (1, y.shape[1]) + (1,) * (len(y.shape) - 2)
    return y + ops.broadcast_to(ops.reshape(bias, shape), y.shape)


class _ConvNd(Module):
    """Convolution over `nd` spatial dims (set by the subclass), PyTorch-style arguments,
    channels-first in / out; the op underneath is channels-last."""

    nd = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, device=None, dtype="float32"):
        super().__init__()
        _check_conv_args(type(self).__name__, in_channels, out_channels, kernel_size, stride,
                         padding, dilation, self.nd)
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{type(self).__name__}: in_channels {in_channels} and out_channels "
                             f"{out_channels} must be divisible by groups {groups}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        self.padding, self.dilation, self.groups = padding, dilation, groups
        kernel = _ntuple(kernel_size, self.nd)
        if len(kernel) != self.nd:
            raise ValueError(f"{type(self).__name__}: kernel_size {kernel_size} needs "
                             f"{self.nd} entries")
        taps = int(np.prod(kernel))
        fan_in = in_channels // groups * taps
        self.weight = Parameter(init.kaiming_uniform(
            fan_in, out_channels // groups * taps, shape=kernel + (in_channels // groups,
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
        _check_nchw(self, x, self.in_channels, self.nd)
        y = ops.conv(_to_nhwc(x), self.weight, stride=self.stride, padding=self.padding,
                     dilation=self.dilation, groups=self.groups)
        y = _to_nchw(y)
        return y if self.bias is None else _add_bias(y, self.bias)


class Conv1d(_ConvNd):
    """1-D convolution, NCL in / out (torch.nn.Conv1d arguments).

    Parameters: weight K x (in/groups) x out (torch weight = ours.permute(2, 1, 0)); init and
    bias as Conv2d with fan_in = (in/groups)*K.
    Shapes: x (N, in, L) -> (N, out, Lo), Lo = (L + 2p - d(K-1) - 1) // s + 1.

    Example:
        >>> nn.Conv1d(3, 8, 5, padding=2)(ndl.Tensor(np.zeros((2, 3, 16)))).shape
        (2, 8, 16)
    """

    nd = 1


class Conv2d(_ConvNd):
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

    nd = 2


class Conv3d(_ConvNd):
    """3-D convolution, NCDHW in / out (torch.nn.Conv3d arguments).

    Parameters: weight KD x KH x KW x (in/groups) x out (torch weight = ours.permute(4, 3, 0, 1,
    2)); init and bias as Conv2d with fan_in = (in/groups)*KD*KH*KW.
    Shapes: x (N, in, D, H, W) -> (N, out, Do, Ho, Wo), each as in Conv2d.

    Example:
        >>> nn.Conv3d(2, 4, 3, padding=1)(ndl.Tensor(np.zeros((1, 2, 4, 6, 6)))).shape
        (1, 4, 4, 6, 6)
    """

    nd = 3


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


class _ConvTransposeNd(Module):
    """Transposed convolution over `nd` spatial dims, torch argument order, channels-first."""

    nd = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, device=None, dtype="float32"):
        super().__init__()
        name = type(self).__name__
        _check_conv_args(name, in_channels, out_channels, kernel_size, stride, padding, dilation,
                         self.nd)
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels {in_channels} and out_channels "
                             f"{out_channels} must be divisible by groups {groups}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.output_padding, self.groups, self.dilation = output_padding, groups, dilation
        kernel = _ntuple(kernel_size, self.nd)
        if len(kernel) != self.nd:
            raise ValueError(f"{name}: kernel_size {kernel_size} needs {self.nd} entries")
        taps = int(np.prod(kernel))
        fan_in = out_channels // groups * taps
        self.weight = Parameter(init.kaiming_uniform(
            fan_in, in_channels * taps, shape=kernel + (in_channels, out_channels // groups),
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
        _check_nchw(self, x, self.in_channels, self.nd)
        y = ops.conv_transpose(_to_nhwc(x), self.weight, stride=self.stride, padding=self.padding,
                               dilation=self.dilation, groups=self.groups,
                               output_padding=self.output_padding)
        y = _to_nchw(y)
        return y if self.bias is None else _add_bias(y, self.bias)


class ConvTranspose1d(_ConvTransposeNd):
    """Transposed 1-D convolution, NCL in / out. Weight K x in x (out/groups) (torch weight =
    ours.permute(1, 2, 0)). Shapes: (N, in, L) -> (N, out, (L-1)s - 2p + d(K-1) + op + 1)."""

    nd = 1


class ConvTranspose2d(_ConvTransposeNd):
    """Transposed 2-D convolution, PyTorch-style arguments (same order as torch), NCHW in / out.

    Parameters: weight KH x KW x in x (out/groups) (torch weight = ours.permute(2, 3, 0, 1)),
    kaiming_uniform with fan_in = (out/groups)*KH*KW (torch's convention for this layer); bias
    (out,) ~ U(+-1/sqrt(fan_in)). Draws: weight, then bias.
    Shapes: (N, in, H, W) -> (N, out, Ho, Wo), Ho = (H-1)s - 2p + d(KH-1) + output_padding + 1.
    """

    nd = 2


class ConvTranspose3d(_ConvTransposeNd):
    """Transposed 3-D convolution, NCDHW in / out. Weight KD x KH x KW x in x (out/groups)
    (torch weight = ours.permute(3, 4, 0, 1, 2)). Shapes as ConvTranspose2d, per axis."""

    nd = 3


class _PoolNd(Module):
    """Pooling over `nd` spatial dims, channels-first in / out. stride defaults to kernel_size;
    padding (<= kernel_size // 2 per axis) acts as -inf for max, as counted zeros for avg."""

    nd = 2
    op = "max"

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        ops.pool_args(type(self).__name__, self.nd, kernel_size, stride, padding)  # validate now

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def forward(self, x):
        _check_nchw(self, x, None, self.nd)
        y = ops.pool_nd(_to_nhwc(x), self.op, self.kernel_size, self.stride, self.padding)
        return _to_nchw(y)


class MaxPool1d(_PoolNd):
    """Max pooling, NCL: (N, C, L) -> (N, C, Lo); gradient to the window's maximum."""

    nd = 1


class MaxPool2d(_PoolNd):
    """Max pooling, NCHW: (N, C, H, W) -> (N, C, Ho, Wo). stride defaults to kernel_size;
    padding (<= kernel_size // 2) acts as -inf; gradient to the first max of each window."""

    nd = 2


class MaxPool3d(_PoolNd):
    """Max pooling, NCDHW: (N, C, D, H, W) -> (N, C, Do, Ho, Wo) (separable: see
    ops.max_pool3d)."""

    nd = 3


class AvgPool1d(_PoolNd):
    """Average pooling, NCL; zero padding counts in the divisor (torch default)."""

    nd, op = 1, "avg"


class AvgPool2d(_PoolNd):
    """Average pooling, NCHW; zero padding counts in the kernel_size divisor (torch default)."""

    nd, op = 2, "avg"


class AvgPool3d(_PoolNd):
    """Average pooling, NCDHW; zero padding counts in the KD*KH*KW divisor (torch default)."""

    nd, op = 3, "avg"


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
