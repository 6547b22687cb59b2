"""Convolution ops (NHWC): conv, conv_transpose and the weight-gradient op that closes them.

Layouts (letters: N batch, H/W spatial, C channels, K kernel, G groups):
  conv            input N x H x W x Cin, weight KH x KW x (Cin/G) x Cout -> N x Ho x Wo x Cout
  conv_transpose  input N x Hi x Wi x Cin, weight KH x KW x Cin x (Cout/G) -> N x Ho x Wo x Cout
                  (torch conv_transpose2d weight = ours.permute(2, 3, 0, 1))
Forward: im2col as an `as_strided` view of the padded input, multiplied by the weight without
being materialised (`flat_matmul`: an implicit GEMM that packs its panels from the view); grouped
convs gather the columns and run a batched GEMM. Input gradient: the transposed conv; at stride 1
that is a conv with the flipped kernel (implicit GEMM again), otherwise a GEMM into columns and
col2im with `scatter_add_`. Weight gradient: im2col^T @ out_grad, the view read transposed.
The three ops' gradients are written with each other, so gradients of gradients work.

Shortcuts, none of which changes a value: kernel taps that read only padding are left out of
im2col and the GEMMs (with as much padding as the kept taps still need, often none); a Conv node
whose weight needs a gradient keeps its im2col matrix for it (Conv docstring); both gradients of a
conv share one row layout of out_grad. See docs/conv.md for the derivation and worked strides.
"""
import functools

import numpy as np

from ..autograd import Tensor, TensorOp, is_grad_enabled
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


# ---------------------------------------------------------------- live kernel taps
def _axis_plan(size, kernel, stride, padding, dilation, steps):
    """Which kernel taps matter along one axis, and the zero margins they need.

    Tap t meets positions t*dilation + i*stride (i < steps) of a line whose data sits at
    [padding, padding + size) with zeros around it (conv: the padded input, `steps` output
    positions; conv_transpose: the padded output, `steps` input positions). A tap that meets only
    zeros contributes nothing, so the work is restricted to the taps t0..t1 between the first and
    the last live one (the ones in between may be dead too: they multiply zeros).

    Returns (t0, t1, before, after, start), or None when every tap meets only zeros: the positions
    taps t0..t1 meet fit in the data plus `before` zeros in front and `after` behind, and tap t0's
    first position is `start` in that shorter line.
    """
    live = []
    for t in range(kernel):
        first = max(0, -(-(padding - t * dilation) // stride))  # first i at or past the data
        if first < steps and t * dilation + first * stride < padding + size:
            live.append(t)
    if not live:
        return None
    t0, t1 = live[0], live[-1]
    lo, hi = t0 * dilation, t1 * dilation + (steps - 1) * stride
    before, after = max(0, padding - lo), max(0, hi - (padding + size - 1))
    return t0, t1, before, after, lo - padding + before


@functools.lru_cache(maxsize=256)
def _plan(hw, kernel, stride, padding, dilation, steps):
    """_axis_plan for H and W: a pair of 5-tuples, or None when some axis has no live tap."""
    ph = _axis_plan(hw[0], kernel[0], stride[0], padding[0], dilation[0], steps[0])
    pw = _axis_plan(hw[1], kernel[1], stride[1], padding[1], dilation[1], steps[1])
    return None if ph is None or pw is None else (ph, pw)


def _live(w, plan):
    """The live taps of a KH x KW x ... weight: a view KH' x KW' x ..."""
    (h0, h1, *_), (w0, w1, *_) = plan
    if (h0, h1 + 1, w0, w1 + 1) == (0, w.shape[0], 0, w.shape[1]):
        return w
    return w[h0:h1 + 1, w0:w1 + 1]


def _embed(live, plan, kernel):
    """KH' x KW' x C x O weight gradient of the live taps -> KH x KW x C x O (dead taps: 0)."""
    if tuple(live.shape[:2]) == tuple(kernel):
        return live.compact()
    (h0, h1, *_), (w0, w1, *_) = plan
    full = array_api.zeros(tuple(kernel) + tuple(live.shape[2:]), device=live.device)
    full[h0:h1 + 1, w0:w1 + 1] = live
    return full


# ---------------------------------------------------------------- im2col / col2im on NDArrays
def _pad_hw(a, before_h, after_h, before_w, after_w):
    """Compact NHWC copy of `a` zero-padded along H and W (`a` itself when already compact and
    nothing is padded)."""
    if not (before_h or after_h or before_w or after_w):
        return a.compact()
    n, h, w, c = a.shape
    out = array_api.zeros((n, h + before_h + after_h, w + before_w + after_w, c), device=a.device)
    inner = (slice(None), slice(before_h, before_h + h), slice(before_w, before_w + w), slice(None))
    if c < 8 and a.strides[3] != 1:
        # few channels, not innermost in memory (an NCHW tensor seen as NHWC): writing a's
        # memory-order rows through a permuted view of `out` beats the transposing copy, whose
        # rows would be only C floats long
        order = tuple(sorted(range(4), key=lambda i: -a.strides[i]))
        base = a.permute(order)
        if base.is_compact():
            out.permute(order)[tuple(inner[i] for i in order)] = base
            return out
    out[inner] = a
    return out


def _window_view(buf, start, kernel, stride, dilation, steps, groups):
    """im2col view of an NHWC array (any strides), no copy.

    Shape G x N x Ho x Wo x KH x KW x Cg; entry [g, n, i, j, a, b, c] is
    buf[n, start_h + i*sh + a*dh, start_w + j*sw + b*dw, g*Cg + c]. G is dropped when G == 1.
    """
    if start != (0, 0):
        buf = buf[:, start[0]:, start[1]:, :]
    n, _, _, c = buf.shape
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, steps
    s_n, s_h, s_w, s_c = buf.strides
    shape = (n, ho, wo, kh, kw, c // groups)
    strides = (s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c)
    if groups > 1:
        shape, strides = (groups,) + shape, ((c // groups) * s_c,) + strides
    return buf.as_strided(shape, strides)


def _im2col(a, plan, stride, dilation, steps, groups):
    """im2col of the live taps of an NHWC input (any strides), as a view: nothing is copied
    but the padded input, when the live taps reach padding.

    Returns (cols, order): cols is the view (G x) N x Ho x Wo x T0 x T1 x T2 whose last three
    axes are (tap row, tap col, channel) in the order `order` (a permutation of (0, 1, 2)). That
    is (0, 1, 2) except when the windows need no padding and lie in memory in another axis order
    (an NCHW input): then the taps follow memory order, so that more views are plain matrices and
    the gathers read longer runs.
    """
    (h0, h1, bh, ah, sth), (w0, w1, bw, aw, stw) = plan
    kernel = (h1 - h0 + 1, w1 - w0 + 1)
    lead = 0 if groups == 1 else 1  # the G axis
    if not (bh or ah or bw or aw):
        view = _window_view(a, (sth, stw), kernel, stride, dilation, steps, groups)
        order = tuple(sorted(range(3), key=lambda i: -view.strides[lead + 3 + i]))
        return view.permute(tuple(range(lead + 3)) + tuple(lead + 3 + i for i in order)), order
    # an NHWC copy first (for an NCHW-ordered input a transposing copy, faster than gathering
    # single channels), so that the windows read runs of KW*C adjacent floats
    return _window_view(_pad_hw(a, bh, ah, bw, aw), (sth, stw), kernel, stride, dilation, steps,
                        groups), (0, 1, 2)


def _group_cols(cols):
    """G x N x Ho x Wo x T0 x T1 x T2 im2col view -> compact (G, M, K) matrices (the native
    im2col gather), for the batched GEMM of grouped convs."""
    g, n, ho, wo, t0, t1, t2 = cols.shape
    return cols.compact().reshape((g, n * ho * wo, t0 * t1 * t2))


def _weight_rows(w_live, order):
    """KH' x KW' x Cg x Cout live weight -> (K, Cout) rows in the columns' axis order."""
    kh, kw, cg, cout = w_live.shape
    return w_live.permute(order + (3,)).reshape((kh * kw * cg, cout))


def _split_groups(x, groups):
    """(M, G*Cg) -> compact (G, M, Cg)."""
    m, c = x.shape
    return x.reshape((m, groups, c // groups)).permute((1, 0, 2)).compact()


def _merge_groups(x):
    """(G, M, Cg) -> compact (M, G*Cg)."""
    g, m, c = x.shape
    return x.permute((1, 0, 2)).compact().reshape((m, g * c))


def _rows(x, hint):
    """N x H x W x C array as (N*H*W, C) rows: `hint[1]` when hint[0] is x (the same rows, made
    once for two ops), else a reshape (a copy only when x is not laid out row by row)."""
    if hint is not None and hint[0] is x:
        return hint[1]
    n, h, w, c = x.shape
    return x.reshape((n * h * w, c))


# Largest im2col matrix (in floats) a grouped Conv node keeps for its weight gradient: small
# layers gain most from the reuse, while big ones would hold K*K copies of their input until
# backward. Without groups, the kept columns are a view of the (padded) input: always kept.
_KEEP_COLS_MAX = 1 << 22


# ---------------------------------------------------------------- conv
class Conv(TensorOp):
    """2-D cross-correlation (no kernel flip) of NHWC input with a KH x KW x Cin/G x Cout weight.

    When the weight needs a gradient, the node keeps its im2col columns (up to _KEEP_COLS_MAX
    floats) and hands them to the ConvWeightGrad its `gradient` builds, which then skips the
    padding and the gather; they are dropped at that point.
    """

    def __init__(self, stride=1, padding=0, dilation=1, groups=1):
        self.stride = _pair(stride, "stride", "conv", 1)
        self.padding = _pair(padding, "padding", "conv", 0)
        self.dilation = _pair(dilation, "dilation", "conv", 1)
        self.groups = _check_groups(groups, "conv")
        self._may_keep = True  # False for the convs that gradients build (see _grad_conv)
        self._keep_cols = False
        self._saved = None  # (input array, cols, order) for the weight gradient

    def __call__(self, *args):
        self._keep_cols = (self._may_keep and is_grad_enabled() and len(args) == 2
                           and getattr(args[1], "requires_grad", False))
        return super().__call__(*args)

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
        _, ho, wo, cout = out_shape
        g = self.groups
        plan = _plan(a.shape[1:3], b.shape[:2], self.stride, self.padding, self.dilation,
                     (ho, wo))
        if plan is None:  # every tap reads padding only
            return array_api.zeros(out_shape, device=a.device)
        cols, order = _im2col(a, plan, self.stride, self.dilation, (ho, wo), g)
        w_rows = _weight_rows(_live(b, plan), order)
        if g == 1:
            out = array_api.flat_matmul(cols, w_rows, 3)  # implicit GEMM: no im2col matrix
        else:
            cols = _group_cols(cols)
            k = w_rows.shape[0]
            wg = w_rows.reshape((k, g, cout // g)).permute((1, 0, 2)).compact()
            out = _merge_groups(array_api.matmul(cols, wg))
        if self._keep_cols and (g == 1 or cols.size <= _KEEP_COLS_MAX):
            self._saved = (a, cols, order)
        return out.reshape(out_shape)

    def gradient(self, out_grad, node):
        a, b = node.inputs
        kernel = b.shape[:2]
        saved, self._saved = self._saved, None
        g_arr = out_grad.realize_cached_data()
        # both gradients read out_grad as (M, Cout) rows: gather them once
        g_rows = (g_arr, _rows(g_arr, None)) if getattr(g_arr, "ndim", 0) == 4 else None
        extra = _leftover(a.shape[1:3], kernel, self.stride, self.padding, self.dilation)
        da_op = ConvTranspose(self.stride, self.padding, self.dilation, self.groups, extra)
        da_op._rows_hint = g_rows
        if a.op is None and not a.requires_grad:
            # a data batch: its .grad (every node gets one) is computed only if it is read
            da = Tensor.make_deferred(da_op, [out_grad, transpose(b, (2, 3))])
        else:
            da = da_op(out_grad, transpose(b, (2, 3)))
        db_op = ConvWeightGrad(kernel, self.stride, self.padding, self.dilation, self.groups)
        db_op._cols_hint, db_op._rows_hint = saved, g_rows
        db = db_op(a, out_grad)
        return da, db


def _leftover(hw, kernel, stride, padding, dilation):
    """Rows/cols at the bottom/right of the padded input that no window reaches (< stride):
    the output_padding that makes conv_transpose give back the input size."""
    return tuple((x + 2 * p - d * (k - 1) - 1) % s
                 for x, k, s, p, d in zip(hw, kernel, stride, padding, dilation))


def _grad_conv(a, b, stride, padding, dilation, groups):
    """conv inside a gradient: its columns are not kept, since its own gradient (a third order
    for the model) is rarely taken while the gradient graph can live until the next step."""
    op = Conv(stride, padding, dilation, groups)
    op._may_keep = False
    return op(a, b)


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
        self._rows_hint = None  # (input array, its (M, Cin) rows) from Conv.gradient

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
        hint, self._rows_hint = self._rows_hint, None
        n, ho, wo, cout = out_shape
        _, hi, wi, cin = y.shape
        g = self.groups
        kernel = w.shape[:2]
        full_pad = tuple(d * (k - 1) - p for d, k, p in zip(self.dilation, kernel, self.padding))
        if self.stride == (1, 1) and min(full_pad) >= 0:
            # stride 1: a conv of y, padded by d(K-1) - p, with the flipped kernel, run as an
            # implicit GEMM: no columns matrix, no col2im scatter, no zero fill
            return Conv(1, full_pad, self.dilation, g).compute(y, _flipped_conv_weight(w, g))
        # the kept output is the data of the conv geometry with the roles of input and output
        # swapped: taps that only land in the cropped padding are skipped
        plan = _plan((ho, wo), w.shape[:2], self.stride, self.padding, self.dilation, (hi, wi))
        if plan is None:
            return array_api.zeros(out_shape, device=y.device)
        (h0, h1, bh, ah, sth), (w0, w1, bw, aw, stw) = plan
        kh, kw = h1 - h0 + 1, w1 - w0 + 1
        og = cout // g
        # columns = y @ W^T: one row of KH'*KW'*Cout/G values per input pixel (and group)
        y2 = _rows(y, hint)
        w_live = _live(w, plan)
        if g == 1:
            cols = y2 @ w_live.permute((2, 0, 1, 3)).reshape((cin, kh * kw * og))
        else:
            w_rows = w_live.reshape((kh * kw, g, cin // g, og)).permute((1, 2, 0, 3))
            cols = array_api.matmul(_split_groups(y2, g), w_rows.reshape((g, cin // g,
                                                                          kh * kw * og)))
        # col2im: add every column entry at its place in the (trimmed) padded output
        buf_shape = (n, ho + bh + ah, wo + bw + aw, cout)
        if (g == 1 and hi == wi == 1 and buf_shape[1:3] == (kh, kw)
                and (kh == 1 or self.dilation[0] == 1) and (kw == 1 or self.dilation[1] == 1)):
            full = cols.reshape(buf_shape)  # one window covering every output pixel once
        else:
            full = array_api.zeros(buf_shape, device=y.device)
            _window_view(full, (sth, stw), (kh, kw), self.stride, self.dilation, (hi, wi),
                         g).scatter_add_(cols)
        if bh or ah or bw or aw:
            # a copy, not a view: the gradient graph keeps its tensors until the garbage collector
            # breaks its cycles, and a view would keep the whole buffer, which then misses the
            # backend's buffer cache in the next step (fresh pages: a page fault each)
            return full[:, bh:bh + ho, bw:bw + wo, :].compact()
        return full

    def gradient(self, out_grad, node):
        y, w = node.inputs
        wc = transpose(w, (2, 3))  # the conv-layout weight KH x KW x Cout/G x Cin
        dy = _grad_conv(out_grad, wc, self.stride, self.padding, self.dilation, self.groups)
        dwc = conv_weight_grad(out_grad, y, w.shape[:2], self.stride, self.padding,
                               self.dilation, self.groups)
        return dy, transpose(dwc, (2, 3))


def _flipped_conv_weight(w, groups):
    """conv_transpose weight KH x KW x Cin x Cout/G -> the conv weight KH x KW x Cin/G x Cout
    of the same map at stride 1: taps reversed, each group's in and out channels swapped in."""
    kh, kw, cin, og = w.shape
    flipped = w.flip((0, 1))
    if groups == 1:
        return flipped
    per_group = flipped.reshape((kh, kw, groups, cin // groups, og))
    return per_group.permute((0, 1, 3, 2, 4)).reshape((kh, kw, cin // groups, groups * og))


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
        self._cols_hint = None  # (input array, cols, order) kept by the forward Conv
        self._rows_hint = None  # (out_grad array, its (M, Cout) rows)

    def compute(self, x, g):
        _check_array_mode("conv_weight_grad", x, g)
        cols_hint, rows_hint = self._cols_hint, self._rows_hint
        self._cols_hint = self._rows_hint = None
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
        out_shape = (kh, kw, cin // grp, cout)
        plan = _plan((h, w), self.kernel_size, self.stride, self.padding, self.dilation, (ho, wo))
        if plan is None:  # every tap reads padding only
            return array_api.zeros(out_shape, device=x.device)
        if cols_hint is not None and cols_hint[0] is x:
            cols, order = cols_hint[1], cols_hint[2]
        else:
            cols, order = _im2col(x, plan, self.stride, self.dilation, (ho, wo), grp)
            if grp > 1:
                cols = _group_cols(cols)
        g2 = _rows(g, rows_hint)
        if grp == 1:  # taps x pixels @ pixels x Cout, the transposed im2col view read in place
            dw = array_api.flat_matmul(cols.permute((3, 4, 5, 0, 1, 2)), g2, 3)
        else:
            dw = _merge_groups(array_api.matmul(cols, _split_groups(g2, grp), transpose_a=True))
        # rows of dw follow the columns' axis order; put the axes back to KH' x KW' x Cg
        (h0, h1, *_), (w0, w1, *_) = plan
        live_shape = (h1 - h0 + 1, w1 - w0 + 1, cin // grp)
        dw = dw.reshape(tuple(live_shape[i] for i in order) + (cout,))
        dw = dw.permute(tuple(order.index(i) for i in range(3)) + (3,))
        return _embed(dw, plan, self.kernel_size)

    def gradient(self, out_grad, node):
        # conv_weight_grad(x, g) is bilinear with <conv_weight_grad(x, g), G> = <conv(x, G), g>
        x, g = node.inputs
        extra = _leftover(x.shape[1:3], self.kernel_size, self.stride, self.padding, self.dilation)
        dx = conv_transpose(g, transpose(out_grad, (2, 3)), self.stride, self.padding,
                            self.dilation, self.groups, extra)
        dg = _grad_conv(x, out_grad, self.stride, self.padding, self.dilation, self.groups)
        return dx, dg


def conv_weight_grad(x, out_grad, kernel_size, stride=1, padding=0, dilation=1, groups=1):
    """Gradient of conv w.r.t. its weight: KH x KW x (Cin / groups) x Cout.

    Args:
        x: the conv input, N x H x W x Cin.
        out_grad: the gradient of the conv output, N x Ho x Wo x Cout.
        kernel_size: (KH, KW) or an int; the other arguments as in conv.
    """
    return ConvWeightGrad(kernel_size, stride, padding, dilation, groups)(x, out_grad)


# ---------------------------------------------------------------- layout moves for nn
class Permute(TensorOp):
    """Reorder axes (a view, no copy): output axis i is input axis axes[i]. nn's NCHW <-> NHWC
    moves around the NHWC conv ops take one such node instead of two transposes."""

    def __init__(self, axes):
        self.axes = tuple(int(a) for a in axes)

    def compute(self, a):
        if sorted(self.axes) != list(range(a.ndim)):
            raise ValueError(f"permute: {self.axes} is not a permutation of the axes of shape "
                             f"{a.shape}")
        return a.transpose(self.axes)  # NDArray.permute, or numpy's transpose in numpy mode

    def gradient(self, out_grad, node):
        return permute(out_grad, tuple(self.axes.index(i) for i in range(len(self.axes))))


def permute(a, axes):
    """Tensor with axes reordered: permute(x (N x C x H x W), (0, 2, 3, 1)) is N x H x W x C."""
    return Permute(axes)(a)
