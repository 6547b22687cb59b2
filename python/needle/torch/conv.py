"""needle.torch.Conv2dFunction / Conv2d: see the package docstring and docs/torch_extension.md."""
import math

import numpy as np
import torch

import needle.backend_ndarray as nd
from needle.ops.ops_conv import Conv, ConvTranspose, ConvWeightGrad, _leftover

from . import reference

__all__ = ["Conv2dFunction", "Conv2d"]


def _pair(v, name):
    v = (v, v) if isinstance(v, int) else tuple(v)
    if len(v) != 2 or not all(isinstance(i, int) for i in v):
        raise TypeError(f"needle.torch.Conv2d: {name} must be an int or a pair of ints, got {v!r}")
    return v


def _device(t):
    if t.device.type == "cuda" and nd.cuda().enabled():
        return nd.cuda()
    return nd.cpu()


def _to_needle(t, axes, device):
    """torch tensor -> compact float32 NDArray with its axes permuted (NCHW -> NHWC, ...)."""
    return nd.array(np.ascontiguousarray(t.detach().cpu().numpy().transpose(axes)), device=device)


def _to_torch(a, axes, like):
    """NDArray -> torch tensor with axes permuted back, on `like`'s device and dtype."""
    return torch.from_numpy(np.ascontiguousarray(a.numpy().transpose(axes))).to(like.device,
                                                                               like.dtype)


class _Needle:
    """float32: needle's conv, transposed conv and weight-gradient ops on NHWC NDArrays."""

    @staticmethod
    def forward(x, w, stride, padding):
        dev = _device(x)
        y = Conv(stride, padding).compute(_to_needle(x, (0, 2, 3, 1), dev),
                                          _to_needle(w, (2, 3, 1, 0), dev))
        return _to_torch(y, (0, 3, 1, 2), x)

    @staticmethod
    def input_grad(gy, w, x_shape, stride, padding):
        dev = _device(gy)
        extra = _leftover(x_shape[2:], w.shape[2:], stride, padding, (1, 1))
        dx = ConvTranspose(stride, padding, output_padding=extra).compute(
            _to_needle(gy, (0, 2, 3, 1), dev), _to_needle(w, (2, 3, 0, 1), dev))
        return _to_torch(dx, (0, 3, 1, 2), gy)

    @staticmethod
    def weight_grad(x, gy, kernel, stride, padding):
        dev = _device(x)
        dw = ConvWeightGrad(tuple(kernel), stride, padding).compute(
            _to_needle(x, (0, 2, 3, 1), dev), _to_needle(gy, (0, 2, 3, 1), dev))
        return _to_torch(dw, (3, 2, 0, 1), x)  # KH x KW x Cin x Cout -> Cout x Cin x KH x KW


class _Float64:
    """float64: the numpy reference of the same three maps (needle's NDArray is float32)."""

    @staticmethod
    def forward(x, w, stride, padding):
        return torch.from_numpy(reference.conv2d(x.detach().cpu().numpy(),
                                                 w.detach().cpu().numpy(), stride, padding)
                                ).to(x.device)

    @staticmethod
    def input_grad(gy, w, x_shape, stride, padding):
        return torch.from_numpy(reference.conv2d_input_grad(
            gy.detach().cpu().numpy(), w.detach().cpu().numpy(), x_shape, stride, padding)
        ).to(gy.device)

    @staticmethod
    def weight_grad(x, gy, kernel, stride, padding):
        return torch.from_numpy(reference.conv2d_weight_grad(
            x.detach().cpu().numpy(), gy.detach().cpu().numpy(), kernel, stride, padding)
        ).to(x.device)


def _engine(*tensors):
    dtypes = {t.dtype for t in tensors if t is not None}
    if dtypes == {torch.float32}:
        return _Needle
    if dtypes == {torch.float64}:
        return _Float64
    raise TypeError(f"needle.torch.Conv2dFunction: tensors must all be float32 (needle's "
                    f"kernels) or all float64 (the reference), got {sorted(map(str, dtypes))}")


class Conv2dFunction(torch.autograd.Function):
    """y = conv2d(x, weight, bias, stride, padding) by needle, as F.conv2d (groups 1,
    dilation 1).

    Shapes: x N x Cin x H x W, weight Cout x Cin x KH x KW (torch's layout), bias (Cout,) or
    None -> N x Cout x Ho x Wo, Ho = (H + 2p - KH) // s + 1.
    Backward: dx = the transposed conv of dy (needle's ConvTranspose), dweight = needle's
    ConvWeightGrad (im2col^T @ dy), dbias = dy summed over N, H, W.
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None, stride=1, padding=0):
        if x.dim() != 4 or weight.dim() != 4 or x.shape[1] != weight.shape[1]:
            raise ValueError(f"needle.torch.Conv2dFunction: expected x N x Cin x H x W and "
                             f"weight Cout x Cin x KH x KW, got {tuple(x.shape)} and "
                             f"{tuple(weight.shape)}")
        stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
        engine = _engine(x, weight, bias)
        ctx.save_for_backward(x, weight)
        ctx.engine, ctx.stride, ctx.padding = engine, stride, padding
        ctx.has_bias = bias is not None
        y = engine.forward(x, weight, stride, padding)
        return y if bias is None else y + bias.view(1, -1, 1, 1)

    @staticmethod
    def backward(ctx, gy):
        x, weight = ctx.saved_tensors
        gy = gy.contiguous()
        args = ctx.stride, ctx.padding
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = ctx.engine.input_grad(gy, weight, tuple(x.shape), *args)
        if ctx.needs_input_grad[1]:
            dw = ctx.engine.weight_grad(x, gy, tuple(weight.shape[2:]), *args)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = gy.sum(dim=(0, 2, 3))
        return dx, dw, db, None, None


class Conv2d(torch.nn.Module):
    """torch.nn.Conv2d(in, out, kernel_size, stride, padding, bias) computed by needle.

    Parameters have torch's layout and initialisation (kaiming_uniform(a=sqrt(5)) weight, bias
    U(+-1/sqrt(fan_in))), so `load_state_dict` from a torch Conv2d works both ways.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        kh, kw = _pair(kernel_size, "kernel_size")
        self.stride, self.padding = _pair(stride, "stride"), _pair(padding, "padding")
        self.weight = torch.nn.Parameter(torch.empty(out_channels, in_channels, kh, kw))
        self.bias = torch.nn.Parameter(torch.empty(out_channels)) if bias else None
        torch.nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(in_channels * kh * kw)
            torch.nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self):
        o, i, kh, kw = self.weight.shape
        return (f"{i}, {o}, kernel_size={(kh, kw)}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}")

    def forward(self, x):
        if x.dim() != 4 or x.shape[1] != self.weight.shape[1]:
            raise ValueError(f"needle.torch.Conv2d: expected N x {self.weight.shape[1]} x H x W "
                             f"input, got {tuple(x.shape)}")
        return Conv2dFunction.apply(x, self.weight, self.bias, self.stride, self.padding)
