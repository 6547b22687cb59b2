"""The depthwise fast path of the conv ops: groups == Cin == Cout (one K.. filter per channel,
MobileNet's 3x3 layers), 1 or 2 spatial dims, runs the direct backend kernels
(`depthwise_conv2d` and its two gradients) instead of C one-column GEMMs. 1-D convs are run as
2-D ones over an N x 1 x L x C view. The conv ops call these from `compute`, so the autograd
graph (and double backward) is the same as on the GEMM path.
"""
from ..backend_selection import array_api

__all__ = []

# False sends depthwise convs down the grouped-GEMM path (benchmarks/bench_conv_algos.py
# measures both)
USE_DIRECT = True


def is_depthwise(nd, groups, cin, cout, channel_axis_size):
    """True when the direct kernel applies: 1-D or 2-D, groups == Cin == Cout and one channel
    per group on the weight's input-channel axis."""
    return (USE_DIRECT and nd in (1, 2) and groups > 1 and groups == cin == cout
            and channel_axis_size == 1)


def _as_2d(nd, stride, padding, dilation):
    if nd == 2:
        return stride, padding, dilation
    return (1,) + tuple(stride), (0,) + tuple(padding), (1,) + tuple(dilation)


def _lift(x):
    """N x L x C -> N x 1 x L x C (2-D arrays unchanged)."""
    return x if x.ndim == 4 else x.reshape((x.shape[0], 1) + tuple(x.shape[1:]))


def _taps(w):
    """K.. x 1 x C (or K.. x C x 1) weight -> KH x KW x C."""
    kernel, c = w.shape[:-2], max(w.shape[-2:])
    return w.compact().reshape(((1,) * (3 - len(kernel) - 1) + tuple(kernel) + (c,)))


def forward(x, w, stride, padding, dilation):
    """conv(x, w) for a depthwise w (K.. x 1 x C): N x O.. x C."""
    nd = x.ndim - 2
    out = array_api.depthwise_conv2d(_lift(x), _taps(w), *_as_2d(nd, stride, padding, dilation))
    return out if nd == 2 else out.reshape((out.shape[0],) + tuple(out.shape[2:]))


def input_grad(dout, w, out_shape, stride, padding, dilation):
    """conv_transpose(dout, w) for a depthwise w (K.. x C x 1): the conv's input gradient, of
    shape out_shape (N x S.. x C)."""
    nd = dout.ndim - 2
    shape = tuple(out_shape) if nd == 2 else (out_shape[0], 1) + tuple(out_shape[1:])
    dx = array_api.depthwise_conv2d_backward_input(_lift(dout), _taps(w), shape,
                                                   *_as_2d(nd, stride, padding, dilation))
    return dx if nd == 2 else dx.reshape(tuple(out_shape))


def weight_grad(x, dout, kernel, stride, padding, dilation):
    """conv_weight_grad for a depthwise conv: K.. x 1 x C."""
    nd = x.ndim - 2
    kernel2 = tuple(kernel) if nd == 2 else (1,) + tuple(kernel)
    dw = array_api.depthwise_conv2d_backward_weight(_lift(x), _lift(dout), kernel2,
                                                    *_as_2d(nd, stride, padding, dilation))
    return dw.reshape(tuple(kernel) + (1, x.shape[-1]))
