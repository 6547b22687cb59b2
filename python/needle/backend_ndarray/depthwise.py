"""Depthwise 2-D convolution of NHWC NDArrays (groups == channels), one backend call each way:
the forward, the input gradient and the weight gradient. Weight: KH x KW x C."""
from .ndarray import NDArray

__all__ = ["depthwise_conv2d", "depthwise_conv2d_backward_input",
           "depthwise_conv2d_backward_weight"]


def _args(x_shape, w_shape, stride, padding, dilation, op):
    if len(x_shape) != 4 or len(w_shape) != 3 or w_shape[2] != x_shape[3]:
        raise ValueError(f"{op}: expected an N x H x W x C input and a KH x KW x C weight, got "
                         f"shapes {tuple(x_shape)} and {tuple(w_shape)}")
    n, h, w, c = x_shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = w_shape[:2], stride, padding, dilation
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"{op}: kernel {(kh, kw)} with dilation {(dh, dw)} is larger than the "
                         f"padded input {(h + 2 * ph, w + 2 * pw)}")
    return (n, h, w, c, kh, kw, sh, sw, ph, pw, dh, dw), (n, ho, wo, c)


def depthwise_conv2d(x, w, stride, padding, dilation):
    """x (N x H x W x C) with w (KH x KW x C), every channel its own filter -> N x Ho x Wo x C.
    stride, padding, dilation: (h, w) pairs."""
    args, out_shape = _args(x.shape, w.shape, stride, padding, dilation, "depthwise_conv2d")
    out = NDArray.make(out_shape, device=x.device)
    x.device.depthwise_conv2d(x.compact()._handle, w.compact()._handle, out._handle, *args)
    return out


def depthwise_conv2d_backward_input(dout, w, input_shape, stride, padding, dilation):
    """The input gradient (input_shape, N x H x W x C) of depthwise_conv2d for dout."""
    op = "depthwise_conv2d_backward_input"
    args, out_shape = _args(tuple(input_shape), w.shape, stride, padding, dilation, op)
    if tuple(dout.shape) != out_shape:
        raise ValueError(f"{op}: dout shape {dout.shape}, expected {out_shape}")
    dinp = NDArray.make(tuple(input_shape), device=dout.device)
    dout.device.depthwise_conv2d_backward_input(dout.compact()._handle, w.compact()._handle,
                                                dinp._handle, *args)
    return dinp


def depthwise_conv2d_backward_weight(x, dout, kernel, stride, padding, dilation):
    """The KH x KW x C weight gradient of depthwise_conv2d for input x and dout."""
    op = "depthwise_conv2d_backward_weight"
    w_shape = tuple(kernel) + (x.shape[3],)
    args, out_shape = _args(x.shape, w_shape, stride, padding, dilation, op)
    if tuple(dout.shape) != out_shape:
        raise ValueError(f"{op}: dout shape {dout.shape}, expected {out_shape}")
    dweight = NDArray.make(w_shape, device=x.device)
    x.device.depthwise_conv2d_backward_weight(x.compact()._handle, dout.compact()._handle,
                                              dweight._handle, *args)
    return dweight
