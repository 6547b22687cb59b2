"""Pooling of NHWC NDArrays, one backend call each way."""
import numpy as np

from .ndarray import NDArray

__all__ = ["max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward"]


def _pair(v, name, op):
    v = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(v) != 2:
        raise ValueError(f"{op}: {name} must be an int or a pair, got {v}")
    return int(v[0]), int(v[1])


def _pool_args(a, kernel, stride, padding, op):
    if a.ndim != 4:
        raise ValueError(f"{op}: expected an N x H x W x C array, got shape {a.shape}")
    kh, kw = _pair(kernel, "kernel", op)
    sh, sw = _pair(kernel if stride is None else stride, "stride", op)
    ph, pw = _pair(padding, "padding", op)
    N, H, W, C = a.shape
    if min(kh, kw, sh, sw) < 1 or min(ph, pw) < 0:
        raise ValueError(f"{op}: kernel/stride must be >= 1 and padding >= 0, got kernel=({kh},{kw}) "
                         f"stride=({sh},{sw}) padding=({ph},{pw})")
    if 2 * ph > kh or 2 * pw > kw:  # as torch: every window then holds a real element
        raise ValueError(f"{op}: padding ({ph},{pw}) must be at most half the kernel ({kh},{kw})")
    if kh > H + 2 * ph or kw > W + 2 * pw:
        raise ValueError(f"{op}: kernel ({kh},{kw}) larger than padded input "
                         f"({H + 2 * ph},{W + 2 * pw}) for input shape {a.shape}")
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    return (N, H, W, C, kh, kw, sh, sw, ph, pw), (N, Ho, Wo, C)


def _pool_forward(a, kernel, stride, padding, op):
    args, out_shape = _pool_args(a, kernel, stride, padding, op)
    out = NDArray.make(out_shape, device=a.device)
    getattr(a.device, op)(a.compact()._handle, out._handle, *args)
    return out


def max_pool2d(a, kernel, stride=None, padding=0):
    """Max pooling of an N x H x W x C array -> N x Ho x Wo x C (padding never wins)."""
    return _pool_forward(a, kernel, stride, padding, "max_pool2d")


def max_pool2d_backward(a, dout, kernel, stride=None, padding=0):
    """Gradient of max_pool2d w.r.t. its N x H x W x C input; ties go to the first max."""
    args, out_shape = _pool_args(a, kernel, stride, padding, "max_pool2d_backward")
    if dout.shape != out_shape:
        raise ValueError(f"max_pool2d_backward: dout shape {dout.shape}, expected {out_shape}")
    dinp = NDArray.make(a.shape, device=a.device)
    a.device.max_pool2d_backward(a.compact()._handle, dout.compact()._handle, dinp._handle, *args)
    return dinp


def avg_pool2d(a, kernel, stride=None, padding=0):
    """Average pooling (zero padding counted in the window) of N x H x W x C -> N x Ho x Wo x C."""
    return _pool_forward(a, kernel, stride, padding, "avg_pool2d")


def avg_pool2d_backward(dout, input_shape, kernel, stride=None, padding=0):
    """Gradient of avg_pool2d w.r.t. its input of shape `input_shape` (N x H x W x C)."""
    probe = NDArray.make(tuple(input_shape), device=dout.device, handle=dout._handle)
    args, out_shape = _pool_args(probe, kernel, stride, padding, "avg_pool2d_backward")
    if dout.shape != out_shape:
        raise ValueError(f"avg_pool2d_backward: dout shape {dout.shape}, expected {out_shape}")
    dinp = NDArray.make(tuple(input_shape), device=dout.device)
    dout.device.avg_pool2d_backward(dout.compact()._handle, dinp._handle, *args)
    return dinp
