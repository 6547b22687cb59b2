"""Convolution ops (NHWC): conv, conv_transpose and the weight-gradient op that closes them.

Layouts (letters: N batch, H/W spatial, C channels, K kernel, G groups):
  conv            input N x H x W x Cin, weight KH x KW x (Cin/G) x Cout -> N x Ho x Wo x Cout
  conv_transpose  input N x Hi x Wi x Cin, weight KH x KW x Cin x (Cout/G) -> N x Ho x Wo x Cout
                  (torch conv_transpose2d weight = ours.permute(2, 3, 0, 1))
Forward: im2col as an `as_strided` view of the padded input, materialised by the native compact
kernel, then one GEMM (a batched GEMM over the groups). Input gradient: the transposed conv, i.e.
a GEMM into columns and col2im with `scatter_add_`. Weight gradient: im2col^T @ out_grad.
The three ops' gradients are written with each other, so gradients of gradients work.
See docs/conv.md for the derivation and worked strides.
"""
import numpy as np

from ..autograd import TensorOp
from ..backend_selection import BACKEND, array_api
from .ops_mathematic import transpose

__all__ = ["Conv", "conv", "ConvTranspose", "conv_transpose", "ConvWeightGrad", "conv_weight_grad",
           "conv_output_size", "conv_transpose_output_size"]


# ---------------------------------------------------------------- argument checking
def _pair(v, name, op, minimum):
    """(h, w) from an int or a pair, each >= minimum (ValueError / TypeError otherwise)."""
    if isinstance(v, (int, np.integer)):
        v = (v, v)
    if not isinstance(v, (tuple, list)) or len(v) != 2:
        raise TypeError(f"{op}: {name} must be an int or an (h, w) pair, got {v!r}")
    if not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in v):
        raise TypeError(f"{op}: {name} must hold ints, got {v!r}")
    v = (int(v[0]), int(v[1]))
    if min(v) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {v}")
    return v


def _check_groups(groups, op):
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{op}: groups must be an int >= 1, got {groups!r}")
    return int(groups)


def conv_output_size(size, kernel, stride=1, padding=0, dilation=1):
    """Output length of a convolution along one axis: floor((size + 2p - d(k-1) - 1) / s) + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_transpose_output_size(size, kernel, stride=1, padding=0, dilation=1, output_padding=0):
    """Output length of a transposed convolution: (size-1)s - 2p + d(k-1) + output_padding + 1."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def _check_array_mode(op, *arrays):
    if BACKEND != "nd":
        raise TypeError(f"{op}: needs NDArray tensors (NEEDLE_BACKEND=nd), got "
                        f"{type(arrays[0]).__name__}")


def _check_conv_shapes(op, a, b, groups, what_b="KH x KW x Cin/groups x Cout"):
    if a.ndim != 4:
        raise ValueError(f"{op}: input must be N x H x W x C (4-D), got shape {a.shape}")
    if b.ndim != 4 or min(b.shape) < 1:
        raise ValueError(f"{op}: weight must be {what_b} (4-D, no empty dim), got shape "
                         f"{b.shape} (input shape {a.shape})")


# ---------------------------------------------------------------- im2col / col2im on NDArrays
def _pad_hw(a, ph, pw):
    """Compact zero-padded copy (or `a` itself when compact and unpadded) of an NHWC array."""
    if ph == 0 and pw == 0:
        return a.compact()
    return a.pad(((0, 0), (ph, ph), (pw, pw), (0, 0)))


def _window_view(xp, kernel, stride, dilation, out_hw, groups):
    """im2col view of a compact padded NHWC array, no copy.

    Shape G x N x Ho x Wo x KH x KW x Cg; entry [g, n, i, j, a, b, c] is
    xp[n, i*sh + a*dh, j*sw + b*dw, g*Cg + c]. The G axis is dropped when G == 1.
    """
    n, _, _, c = xp.shape
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    s_n, s_h, s_w, s_c = xp.strides
    shape = (n, ho, wo, kh, kw, c // groups)
    strides = (s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c)
    if groups > 1:
        shape, strides = (groups,) + shape, ((c // groups) * s_c,) + strides
    return xp.as_strided(shape, strides)


def _im2col(a, kernel, stride, padding, dilation, out_hw, groups):
    """Columns of an NHWC input: (M, KH*KW*C), or (G, M, KH*KW*Cg) with groups (M = N*Ho*Wo)."""
    view = _window_view(_pad_hw(a, *padding), kernel, stride, dilation, out_hw, groups)
    m = a.shape[0] * out_hw[0] * out_hw[1]
    k = kernel[0] * kernel[1] * (a.shape[3] // groups)
    cols = view.compact()  # the native compact kernel does the im2col gather here
    return cols.reshape((m, k)) if groups == 1 else cols.reshape((groups, m, k))


def _split_groups(x, groups):
    """(M, G*Cg) -> compact (G, M, Cg)."""
    m, c = x.shape
    return x.reshape((m, groups, c // groups)).permute((1, 0, 2)).compact()


def _merge_groups(x):
    """(G, M, Cg) -> compact (M, G*Cg)."""
    g, m, c = x.shape
    return x.permute((1, 0, 2)).compact().reshape((m, g * c))


# ---------------------------------------------------------------- conv
class Conv(TensorOp):
    """2-D cross-correlation (no kernel flip) of NHWC input with a KH x KW x Cin/G x Cout weight."""

    def __init__(self, stride=1, padding=0, dilation=1, groups=1):
        self.stride = _pair(stride, "stride", "conv", 1)
        self.padding = _pair(padding, "padding", "conv", 0)
        self.dilation = _pair(dilation, "dilation", "conv", 1)
        self.groups = _check_groups(groups, "conv")

    def _shapes(self, a_shape, b_shape):
        (n, h, w, cin), (kh, kw, cg, cout) = a_shape, b_shape
        g = self.groups
        if cin % g or cout % g or cg * g != cin:
            raise ValueError(f"conv: input {a_shape} and weight {b_shape} with groups={g}: need "
                             f"Cin ({cin}) = weight dim 2 ({cg}) x groups and Cout ({cout}) "
                             f"divisible by groups")
        ho = conv_output_size(h, kh, self.stride[0], self.padding[0], self.dilation[0])
        wo = conv_output_size(w, kw, self.stride[1], self.padding[1], self.dilation[1])
        if ho < 1 or wo < 1:
            padded = (h + 2 * self.padding[0], w + 2 * self.padding[1])
            raise ValueError(f"conv: kernel {(kh, kw)} with dilation {self.dilation} is larger "
                             f"than the padded input {padded} (input {a_shape}, weight {b_shape})")
        return (n, ho, wo, cout)

    def compute(self, a, b):
        _check_array_mode("conv", a, b)
        _check_conv_shapes("conv", a, b, self.groups)
        out_shape = self._shapes(a.shape, b.shape)
        n, ho, wo, cout = out_shape
        kh, kw, cg, _ = b.shape
        g = self.groups
        cols = _im2col(a, (kh, kw), self.stride, self.padding, self.dilation, (ho, wo), g)
        if g == 1:
            out = cols @ b.compact().reshape((kh * kw * cg, cout))
        else:
            wg = b.compact().reshape((kh * kw * cg, g, cout // g)).permute((1, 0, 2)).compact()
            out = _merge_groups(array_api.matmul(cols, wg))
        return out.reshape(out_shape)

    def gradient(self, out_grad, node):
        a, b = node.inputs
        kernel = b.shape[:2]
        extra = _leftover(a.shape[1:3], kernel, self.stride, self.padding, self.dilation)
        da = conv_transpose(out_grad, transpose(b, (2, 3)), self.stride, self.padding,
                            self.dilation, self.groups, extra)
        db = conv_weight_grad(a, out_grad, kernel, self.stride, self.padding, self.dilation,
                              self.groups)
        return da, db


def _leftover(hw, kernel, stride, padding, dilation):
    """Rows/cols at the bottom/right of the padded input that no window reaches (< stride):
    the output_padding that makes conv_transpose give back the input size."""
    return tuple((x + 2 * p - d * (k - 1) - 1) % s
                 for x, k, s, p, d in zip(hw, kernel, stride, padding, dilation))


def conv(a, b, stride=1, padding=1, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as torch conv2d), NHWC.

    Args:
        a: input Tensor, N x H x W x Cin.
        b: weight Tensor, KH x KW x (Cin / groups) x Cout.
        stride, padding, dilation: int or (h, w) pair; stride, dilation >= 1, padding >= 0
            (zeros on both sides). Note the wrapper's default padding is 1 (the op class's is 0).
        groups: Cin and Cout split into `groups` independent blocks (groups == Cin: depthwise).
    Returns:
        N x Ho x Wo x Cout, Ho = (H + 2*ph - dh*(KH-1) - 1) // sh + 1 (likewise Wo).

    Example: conv(x (2x8x8x3), w (3x3x3x16), padding=1) -> 2x8x8x16.
    """
    return Conv(stride, padding, dilation, groups)(a, b)


# ---------------------------------------------------------------- conv_transpose
class ConvTranspose(TensorOp):
    """Transposed convolution (the adjoint of `Conv` w.r.t. its input), NHWC, weight
    KH x KW x Cin x Cout/G. `output_padding` (< stride) adds rows/cols at the bottom/right."""

    def __init__(self, stride=1, padding=0, dilation=1, groups=1, output_padding=0):
        self.stride = _pair(stride, "stride", "conv_transpose", 1)
        self.padding = _pair(padding, "padding", "conv_transpose", 0)
        self.dilation = _pair(dilation, "dilation", "conv_transpose", 1)
        self.groups = _check_groups(groups, "conv_transpose")
        self.output_padding = _pair(output_padding, "output_padding", "conv_transpose", 0)
        if any(o >= s for o, s in zip(self.output_padding, self.stride)):
            raise ValueError(f"conv_transpose: output_padding {self.output_padding} must be "
                             f"smaller than stride {self.stride}")

    def _shapes(self, y_shape, w_shape):
        (n, hi, wi, cin), (kh, kw, cin2, og) = y_shape, w_shape
        g = self.groups
        if cin2 != cin or cin % g:
            raise ValueError(f"conv_transpose: input {y_shape} and weight {w_shape} with "
                             f"groups={g}: need weight dim 2 = Cin ({cin}) divisible by groups")
        ho, wo = (conv_transpose_output_size(x, k, s, p, d, o) for x, k, s, p, d, o in zip(
            (hi, wi), (kh, kw), self.stride, self.padding, self.dilation, self.output_padding))
        if ho < 1 or wo < 1:
            raise ValueError(f"conv_transpose: padding {self.padding} leaves an empty output "
                             f"{(ho, wo)} (input {y_shape}, weight {w_shape})")
        return (n, ho, wo, og * g)

    def compute(self, y, w):
        _check_array_mode("conv_transpose", y, w)
        _check_conv_shapes("conv_transpose", y, w, self.groups, "KH x KW x Cin x Cout/groups")
        out_shape = self._shapes(y.shape, w.shape)
        n, ho, wo, cout = out_shape
        _, hi, wi, cin = y.shape
        kh, kw, _, og = w.shape
        g, (ph, pw) = self.groups, self.padding
        m = n * hi * wi
        # columns = y @ W^T: one row of KH*KW*Cout/G values per input pixel (and group)
        w_rows = w.compact().reshape((kh * kw, g, cin // g, og)).permute((1, 2, 0, 3)).compact()
        w_rows = w_rows.reshape((g, cin // g, kh * kw * og))
        y2 = y.compact().reshape((m, cin))
        if g == 1:
            cols = y2 @ w_rows.reshape((cin, kh * kw * og))
        else:
            cols = array_api.matmul(_split_groups(y2, g), w_rows)
        # col2im: add every column entry at its place in the padded output
        full = array_api.zeros((n, ho + 2 * ph, wo + 2 * pw, cout), device=y.device)
        view = _window_view(full, (kh, kw), self.stride, self.dilation, (hi, wi), g)
        view.scatter_add_(cols)
        if ph == 0 and pw == 0:
            return full
        return full[:, ph:ph + ho, pw:pw + wo, :].compact()

    def gradient(self, out_grad, node):
        y, w = node.inputs
        wc = transpose(w, (2, 3))  # the conv-layout weight KH x KW x Cout/G x Cin
        dy = conv(out_grad, wc, self.stride, self.padding, self.dilation, self.groups)
        dwc = conv_weight_grad(out_grad, y, w.shape[:2], self.stride, self.padding,
                               self.dilation, self.groups)
        return dy, transpose(dwc, (2, 3))


def conv_transpose(a, b, stride=1, padding=0, dilation=1, groups=1, output_padding=0):
    """Transposed 2-D convolution, NHWC (torch conv_transpose2d on permuted tensors).

    Args:
        a: input Tensor, N x Hi x Wi x Cin.
        b: weight Tensor, KH x KW x Cin x (Cout / groups) (torch weight = b.permute(2, 3, 0, 1)).
        stride, padding, dilation, output_padding: int or (h, w) pair; output_padding < stride.
        groups: as in conv.
    Returns:
        N x Ho x Wo x Cout, Ho = (Hi-1)*sh - 2*ph + dh*(KH-1) + output_padding_h + 1.

    It is the gradient of conv w.r.t. its input: conv_transpose(g, transpose(w, (2, 3)), ...)
    equals d<conv(x, w), g>/dx.
    """
    return ConvTranspose(stride, padding, dilation, groups, output_padding)(a, b)


# ---------------------------------------------------------------- weight gradient
class ConvWeightGrad(TensorOp):
    """dW of conv: W_grad[a, b, c, o] = sum over n, i, j of x_pad[n, i*sh + a*dh, j*sw + b*dw, c]
    * g[n, i, j, o] (within groups). Inputs: x (N x H x W x Cin), g (N x Ho x Wo x Cout)."""

    def __init__(self, kernel_size, stride=1, padding=0, dilation=1, groups=1):
        self.kernel_size = _pair(kernel_size, "kernel_size", "conv_weight_grad", 1)
        self.stride = _pair(stride, "stride", "conv_weight_grad", 1)
        self.padding = _pair(padding, "padding", "conv_weight_grad", 0)
        self.dilation = _pair(dilation, "dilation", "conv_weight_grad", 1)
        self.groups = _check_groups(groups, "conv_weight_grad")

    def compute(self, x, g):
        _check_array_mode("conv_weight_grad", x, g)
        if x.ndim != 4 or g.ndim != 4:
            raise ValueError(f"conv_weight_grad: input and out_grad must be NHWC (4-D), got shapes "
                             f"{x.shape} and {g.shape}")
        (n, h, w, cin), (kh, kw), grp = x.shape, self.kernel_size, self.groups
        ho, wo = (conv_output_size(s, k, st, p, d) for s, k, st, p, d in zip(
            (h, w), self.kernel_size, self.stride, self.padding, self.dilation))
        cout = g.shape[3]
        if g.shape[:3] != (n, ho, wo) or cin % grp or cout % grp or ho < 1 or wo < 1:
            raise ValueError(f"conv_weight_grad: out_grad {g.shape} does not match input {x.shape} "
                             f"with kernel {self.kernel_size} stride {self.stride} padding "
                             f"{self.padding} dilation {self.dilation} groups {grp} "
                             f"(expected {(n, ho, wo)} x Cout divisible by groups)")
        cols = _im2col(x, self.kernel_size, self.stride, self.padding, self.dilation, (ho, wo), grp)
        g2 = g.compact().reshape((n * ho * wo, cout))
        if grp == 1:
            dw = array_api.matmul(cols, g2, transpose_a=True)
        else:
            dw = _merge_groups(array_api.matmul(cols, _split_groups(g2, grp), transpose_a=True))
        return dw.reshape((kh, kw, cin // grp, cout))

    def gradient(self, out_grad, node):
        # conv_weight_grad(x, g) is bilinear with <conv_weight_grad(x, g), G> = <conv(x, G), g>
        x, g = node.inputs
        extra = _leftover(x.shape[1:3], self.kernel_size, self.stride, self.padding, self.dilation)
        dx = conv_transpose(g, transpose(out_grad, (2, 3)), self.stride, self.padding,
                            self.dilation, self.groups, extra)
        dg = conv(x, out_grad, self.stride, self.padding, self.dilation, self.groups)
        return dx, dg


def conv_weight_grad(x, out_grad, kernel_size, stride=1, padding=0, dilation=1, groups=1):
    """Gradient of conv w.r.t. its weight: KH x KW x (Cin / groups) x Cout.

    Args:
        x: the conv input, N x H x W x Cin.
        out_grad: the gradient of the conv output, N x Ho x Wo x Cout.
        kernel_size: (KH, KW) or an int; the other arguments as in conv.
    """
    return ConvWeightGrad(kernel_size, stride, padding, dilation, groups)(x, out_grad)
