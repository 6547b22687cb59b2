"""Convolution ops, channels last, 1 to 3 spatial dims: conv, conv_transpose and the
weight-gradient op that closes them.

Layouts (letters: N batch, L/D/H/W spatial, C channels, K kernel, G groups; S.. = the nd spatial
dims, K.. = the nd kernel dims):
  conv            input N x S.. x Cin, weight K.. x (Cin/G) x Cout -> N x O.. x Cout
  conv_transpose  input N x S.. x Cin, weight K.. x Cin x (Cout/G) -> N x O.. x Cout
                  (torch conv_transpose{1,2,3}d weight = ours permuted channels-first)
with S.. = L (NLC), H x W (NHWC) or D x H x W (NDHWC).
Forward: im2col as an `as_strided` view of the padded input (ops_conv_geometry._window_view, the
same for every nd), multiplied by the weight without being materialised (`flat_matmul`: an
implicit GEMM that packs its panels from the view); grouped convs gather the columns and run a
batched GEMM. The native GEMM takes views of up to 3 row and 3 column dims after merging the
dims whose strides chain: a 2-D conv's (N, Ho, Wo | KH, KW, C) always fits; a 3-D conv's
(N, Do, Ho, Wo | KD, KH, KW, C) fits when KW and C merge (dilation 1, padded input) and N, Do
merge, else flat_matmul compacts the view first (an explicit im2col matrix, then one GEMM).
Input gradient: the transposed conv; at stride 1 that is a conv with the flipped kernel (implicit
GEMM again), otherwise a GEMM into columns and col2im with `scatter_add_`. Weight gradient:
im2col^T @ out_grad, the view read transposed. The three ops' gradients are written with each
other, so gradients of gradients work.

The ops keep no state: an op object holds its constructor arguments only, and each gradient is
built from node.inputs and those with ordinary ops. Shortcuts, none of which changes a value:
kernel taps that read only padding are left out of im2col and the GEMMs (with as much padding as
the kept taps still need, often none); both gradients of a conv read one compact copy of out_grad
(a `Compact` node of the gradient graph); a data batch's input gradient is a deferred node
(computed if read). See docs/conv.md for the derivation and worked strides.
"""
import functools

from ..autograd import Tensor, TensorOp
from ..backend_selection import array_api
from .ops_conv_geometry import (_axis_plan, _check_array_mode, _check_conv_shapes, _check_groups,
                                _embed, _expand, _group_cols, _im2col, _ints, _leftover, _live,
                                _live_kernel, _merge_groups, _pair, _plan, _rows, _split_groups,
                                _weight_rows, _window_view, conv_output_size,
                                conv_transpose_output_size)
from . import ops_conv_algos as algos
from . import ops_conv_depthwise as depthwise
from .ops_mathematic import transpose

__all__ = ["Conv", "conv", "ConvTranspose", "conv_transpose", "ConvWeightGrad", "conv_weight_grad",
           "conv_output_size", "conv_transpose_output_size"]

# the helpers tests and ops_pool reach through this module
_ = (_axis_plan, _pair)


_MINIMUM = dict(stride=1, padding=0, dilation=1, output_padding=0, kernel_size=1)


class _Geometry:
    """Stride / padding / dilation (and output_padding, kernel_size) kept as given: an int or a
    tuple with one entry per spatial dim. `_resolved(nd)` expands them for an nd input."""

    op_name = "conv"

    def _init_geometry(self, **values):
        for k, v in values.items():
            setattr(self, k, _ints(v, k, self.op_name, _MINIMUM[k]))

    def _resolved(self, nd, *names):
        """The named fields as nd-tuples (ValueError when a tuple's length is not nd)."""
        return tuple(_expand(getattr(self, k), nd, k, self.op_name) for k in names)

    def _conv_geometry(self, nd):
        """(stride, padding, dilation) as nd-tuples."""
        return _expanded_geometry(self.stride, self.padding, self.dilation, nd, self.op_name)


@functools.lru_cache(maxsize=256)
def _expanded_geometry(stride, padding, dilation, nd, op_name):
    # cached: every conv op resolves its geometry several times per call (errors are not cached)
    return tuple(_expand(v, nd, k, op_name) for k, v in (
        ("stride", stride), ("padding", padding), ("dilation", dilation)))


@functools.lru_cache(maxsize=256)
def _conv_output_shape(a_shape, b_shape, stride, padding, dilation, groups):
    """Conv's output shape N x O.. x Cout from the shapes and the fields as given (cached: a pure
    function of them, asked on every conv call; a ValueError is raised each time, not cached)."""
    n, *sizes, cin = a_shape
    *kernel, cg, cout = b_shape
    stride, padding, dilation = _expanded_geometry(stride, padding, dilation,
                                                   len(a_shape) - 2, "conv")
    g = groups
    if cin % g or cout % g or cg * g != cin:
        raise ValueError(f"conv: input {a_shape} and weight {b_shape} with groups={g}: need "
                         f"Cin ({cin}) = weight dim {len(kernel)} ({cg}) x groups and Cout "
                         f"({cout}) divisible by groups")
    out = tuple(conv_output_size(*args) for args in zip(sizes, kernel, stride, padding,
                                                       dilation))
    if min(out) < 1:
        padded = tuple(s + 2 * p for s, p in zip(sizes, padding))
        raise ValueError(f"conv: kernel {tuple(kernel)} with dilation {dilation} is "
                         f"larger than the padded input {padded} (input {a_shape}, weight "
                         f"{b_shape})")
    return (n,) + out + (cout,)


def _transpose_weight(w):
    """Swap the two channel axes of a K.. x A x B weight (the last two)."""
    return transpose(w, (len(w.shape) - 2, len(w.shape) - 1))


# ---------------------------------------------------------------- conv
class Conv(_Geometry, TensorOp):
    """N-d cross-correlation (no kernel flip) of a channels-last input (N x S.. x Cin, 1 to 3
    spatial dims) with a K.. x Cin/G x Cout weight."""

    def __init__(self, stride=1, padding=0, dilation=1, groups=1):
        self._init_geometry(stride=stride, padding=padding, dilation=dilation)
        self.groups = _check_groups(groups, "conv")

    def _check_sizes(self, a_shape, b_shape):
        """The output shape N x O.. x Cout, or the ValueError compute would raise."""
        return _conv_output_shape(tuple(a_shape), tuple(b_shape), self.stride, self.padding,
                                  self.dilation, self.groups)

    def compute(self, a, b):
        _check_array_mode("conv", a, b)
        _check_conv_shapes("conv", a, b)
        nd = a.ndim - 2
        stride, padding, dilation = self._conv_geometry(nd)
        out_shape = self._check_sizes(a.shape, b.shape)
        steps, cout = out_shape[1:-1], out_shape[-1]
        g = self.groups
        plan = _plan(a.shape[1:-1], b.shape[:nd], stride, padding, dilation, steps)
        if plan is None:  # every tap reads padding only
            return array_api.zeros(out_shape, device=a.device)
        if depthwise.is_depthwise(nd, g, a.shape[-1], cout, b.shape[-2]):
            return depthwise.forward(a, b, stride, padding, dilation)
        cols, order = _im2col(a, plan, stride, dilation, steps, g)
        w_rows = _weight_rows(_live(b, plan), order)
        if g == 1:
            out = array_api.flat_matmul(cols, w_rows, nd + 1)  # implicit GEMM: no im2col matrix
        else:
            cols = _group_cols(cols)
            k = w_rows.shape[0]
            wg = w_rows.reshape((k, g, cout // g)).permute((1, 0, 2)).compact()
            out = _merge_groups(array_api.matmul(cols, wg))
        return out.reshape(out_shape)

    def gradient(self, out_grad, node):
        a, b = node.inputs
        nd = len(a.shape) - 2
        g = compact(out_grad)  # both gradients read it as (M, Cout) rows: one copy, if any
        extra = _leftover(a.shape[1:-1], b.shape[:nd], *self._conv_geometry(nd))
        da_op = ConvTranspose(self.stride, self.padding, self.dilation, self.groups, extra)
        if a.op is None and not a.requires_grad:
            # a data batch: its .grad (every node gets one) is rarely read, so it is a node
            # computed on first read (the stem's whole input-gradient conv otherwise)
            da = Tensor.make_deferred(da_op, [g, _transpose_weight(b)])
        else:
            da = da_op(g, _transpose_weight(b))
        db = conv_weight_grad(a, g, b.shape[:nd], self.stride, self.padding, self.dilation,
                              self.groups)
        return da, db


class Compact(TensorOp):
    """The same values in a compact row-major array (no copy when already compact). The conv
    gradients share one such node, so that a permuted out_grad is copied once, not per use."""

    def compute(self, a):
        return a.compact()

    def gradient(self, out_grad, node):
        return out_grad


def compact(a):
    """`a` (any shape) as a compact array of the same values; a graph node with the identity
    gradient."""
    return Compact()(a)


def conv(a, b, stride=1, padding=1, dilation=1, groups=1, algo="im2col"):
    """1-D, 2-D or 3-D convolution (cross-correlation, as torch conv{1,2,3}d), channels last.

    Args:
        a: input Tensor, N x L x Cin, N x H x W x Cin or N x D x H x W x Cin.
        b: weight Tensor, K.. x (Cin / groups) x Cout with one K per spatial dim
            (KL; KH x KW; KD x KH x KW).
        stride, padding, dilation: int or a tuple with one entry per spatial dim; stride,
            dilation >= 1, padding >= 0 (zeros on both sides). Note the wrapper's default
            padding is 1 (the op class's is 0).
        groups: Cin and Cout split into `groups` independent blocks (groups == Cin: depthwise).
        algo: "im2col" (the implicit GEMM, every case), "winograd" / "winograd4" (Winograd
            F(2x2, 3x3) / F(4x4, 3x3): 3x3 kernels), "fft" (numpy FFT, any kernel), both
            for 2-D, stride 1, dilation 1, groups 1 (ValueError otherwise), or "auto"
            (currently im2col everywhere: see docs/conv_algorithms.md for why). See
            ops_conv_algos.
    Returns:
        N x O.. x Cout, O = (S + 2p - d(K-1) - 1) // s + 1 along each spatial dim.

    Example: conv(x (2x8x8x3), w (3x3x3x16), padding=1) -> 2x8x8x16;
    conv(x (2x16x3), w (5x3x8), padding=2) -> 2x16x8.
    """
    if algo != "im2col":
        engine = _algo_engine(a, b, stride, padding, dilation, groups, algo)
        if engine is not None:
            return algos.AlgoConv(engine, _expand(_ints(padding, "padding", "conv", 0), 2,
                                                  "padding", "conv"))(a, b)
    return Conv(stride, padding, dilation, groups)(a, b)


def _algo_engine(a, b, stride, padding, dilation, groups, algo):
    """The engine `algo` asks for (None: im2col), after the checks the im2col path would do."""
    nd = len(a.shape) - 2
    if nd not in (1, 2, 3) or len(b.shape) != nd + 2:
        return None  # the im2col op reports the shapes
    fields = {}
    for name, v, lo in (("stride", stride, 1), ("padding", padding, 0), ("dilation", dilation, 1)):
        fields[name] = _expand(_ints(v, name, "conv", lo), nd, name, "conv")
    engine = algos.check_algo(algo, nd, b.shape[:nd], fields["stride"], fields["dilation"],
                              _check_groups(groups, "conv"))
    if engine is not None:
        Conv(stride, padding, dilation, groups)._check_sizes(a.shape, b.shape)
    return engine


# ---------------------------------------------------------------- conv_transpose
class ConvTranspose(_Geometry, TensorOp):
    """Transposed convolution (the adjoint of `Conv` w.r.t. its input), channels last, weight
    K.. x Cin x Cout/G. `output_padding` (< stride) adds positions at the end of each axis."""

    op_name = "conv_transpose"

    def __init__(self, stride=1, padding=0, dilation=1, groups=1, output_padding=0):
        self._init_geometry(stride=stride, padding=padding, dilation=dilation,
                            output_padding=output_padding)
        self.groups = _check_groups(groups, "conv_transpose")
        ranks = {len(v) for v in (stride, self.output_padding) if isinstance(v, tuple)}
        if len(ranks) <= 1:  # checked now when the two agree (2-D unless a tuple says)
            self._check_output_padding(ranks.pop() if ranks else 2)

    def _check_output_padding(self, nd):
        stride, output_padding = self._resolved(nd, "stride", "output_padding")
        if any(o >= s for o, s in zip(output_padding, stride)):
            raise ValueError(f"conv_transpose: output_padding {output_padding} must be "
                             f"smaller than stride {stride}")

    def _check_sizes(self, y_shape, w_shape):
        """The output shape N x O.. x Cout, or the ValueError compute would raise (the
        output_padding check included)."""
        return _transpose_output_shape(tuple(y_shape), tuple(w_shape), self.stride,
                                       self.padding, self.dilation, self.output_padding,
                                       self.groups)

    def compute(self, y, w):
        _check_array_mode("conv_transpose", y, w)
        _check_conv_shapes("conv_transpose", y, w, "K.. x Cin x Cout/groups")
        nd = y.ndim - 2
        stride, padding, dilation = self._conv_geometry(nd)
        out_shape = self._check_sizes(y.shape, w.shape)
        n, *out_sizes, cout = out_shape
        in_sizes, cin = y.shape[1:-1], y.shape[-1]
        g = self.groups
        kernel = w.shape[:nd]
        if depthwise.is_depthwise(nd, g, cin, cout, w.shape[-1]):
            return depthwise.input_grad(y, w, out_shape, stride, padding, dilation)
        full_pad = tuple(d * (k - 1) - p for d, k, p in zip(dilation, kernel, padding))
        if all(s == 1 for s in stride) and min(full_pad) >= 0:
            # stride 1: a conv of y, padded by d(K-1) - p, with the flipped kernel, run as an
            # implicit GEMM: no columns matrix, no col2im scatter, no zero fill
            return Conv(1, full_pad, dilation, g).compute(y, _flipped_conv_weight(w, g))
        # the kept output is the data of the conv geometry with the roles of input and output
        # swapped: taps that only land in the cropped padding are skipped
        plan = _plan(tuple(out_sizes), kernel, stride, padding, dilation, in_sizes)
        if plan is None:
            return array_api.zeros(out_shape, device=y.device)
        live_k = _live_kernel(plan)
        kk = _prod(live_k)
        og = cout // g
        # columns = y @ W^T: one row of K'..*Cout/G values per input pixel (and group)
        y2 = _rows(y)
        w_live = _live(w, plan)
        if g == 1:
            # W^T is read column-major: (taps, Cout, Cin) rows, a conv weight's own layout, so
            # the reshape is a view (no copy) when the live taps are contiguous in it
            w_cols = w_live.permute(tuple(range(nd)) + (nd + 1, nd)).reshape((kk * og, cin))
            cols = array_api.matmul(y2, w_cols, transpose_b=True)
        else:
            w_rows = w_live.reshape((kk, g, cin // g, og)).permute((1, 2, 0, 3))
            cols = array_api.matmul(_split_groups(y2, g), w_rows.reshape((g, cin // g,
                                                                          kk * og)))
        # col2im: add every column entry at its place in the (trimmed) padded output
        before, after = tuple(p[2] for p in plan), tuple(p[3] for p in plan)
        buf_sizes = tuple(o + b + e for o, b, e in zip(out_sizes, before, after))
        buf_shape = (n,) + buf_sizes + (cout,)
        if (g == 1 and all(s == 1 for s in in_sizes) and buf_sizes == live_k
                and all(k == 1 or d == 1 for k, d in zip(live_k, dilation))):
            full = cols.reshape(buf_shape)  # one window covering every output pixel once
        else:
            full = array_api.zeros(buf_shape, device=y.device)
            _window_view(full, tuple(p[4] for p in plan), live_k, stride, dilation,
                         in_sizes, g).scatter_add_(cols)
        if any(before) or any(after):
            # a copy, not a view: the gradient graph keeps its tensors until the garbage collector
            # breaks its cycles, and a view would keep the whole buffer, which then misses the
            # backend's buffer cache in the next step (fresh pages: a page fault each)
            crop = tuple(slice(b, b + o) for b, o in zip(before, out_sizes))
            return full[(slice(None),) + crop + (slice(None),)].compact()
        return full

    def gradient(self, out_grad, node):
        y, w = node.inputs
        nd = len(y.shape) - 2
        wc = _transpose_weight(w)  # the conv-layout weight K.. x Cout/G x Cin
        dy = conv(out_grad, wc, self.stride, self.padding, self.dilation, self.groups)
        dwc = conv_weight_grad(out_grad, y, w.shape[:nd], self.stride, self.padding,
                               self.dilation, self.groups)
        return dy, _transpose_weight(dwc)


@functools.lru_cache(maxsize=256)
def _transpose_output_shape(y_shape, w_shape, stride, padding, dilation, output_padding, groups):
    """ConvTranspose's output shape from the shapes and the fields as given, after its
    output_padding check (cached as _conv_output_shape)."""
    n, *sizes, cin = y_shape
    *kernel, cin2, og = w_shape
    nd = len(kernel)
    stride_nd, output_padding = (_expand(v, nd, k, "conv_transpose") for k, v in (
        ("stride", stride), ("output_padding", output_padding)))
    if any(o >= s for o, s in zip(output_padding, stride_nd)):
        raise ValueError(f"conv_transpose: output_padding {output_padding} must be "
                         f"smaller than stride {stride_nd}")
    stride, padding, dilation = _expanded_geometry(stride, padding, dilation, nd,
                                                   "conv_transpose")
    g = groups
    if cin2 != cin or cin % g:
        raise ValueError(f"conv_transpose: input {y_shape} and weight {w_shape} with "
                         f"groups={g}: need weight dim {len(kernel)} = Cin ({cin}) divisible "
                         f"by groups")
    out = tuple(conv_transpose_output_size(*args) for args in zip(
        sizes, kernel, stride, padding, dilation, output_padding))
    if min(out) < 1:
        raise ValueError(f"conv_transpose: padding {padding} leaves an empty output "
                         f"{out} (input {y_shape}, weight {w_shape})")
    return (n,) + out + (og * g,)


def _prod(xs):
    out = 1
    for x in xs:
        out *= int(x)
    return out


def _flipped_conv_weight(w, groups):
    """conv_transpose weight K.. x Cin x Cout/G -> the conv weight K.. x Cin/G x Cout of the
    same map at stride 1: taps reversed, each group's in and out channels swapped in."""
    nd = w.ndim - 2
    *kernel, cin, og = w.shape
    if groups == 1:  # a view (taps' strides negated): the GEMM's operand copies the live taps only
        offset = w._offset + sum((k - 1) * st for k, st in zip(kernel, w.strides[:nd]))
        return w.as_strided(w.shape, tuple(-st for st in w.strides[:nd]) + w.strides[nd:], offset)
    flipped = w.flip(tuple(range(nd)))
    per_group = flipped.reshape(tuple(kernel) + (groups, cin // groups, og))
    axes = tuple(range(nd)) + (nd + 1, nd, nd + 2)
    return per_group.permute(axes).reshape(tuple(kernel) + (cin // groups, groups * og))


def conv_transpose(a, b, stride=1, padding=0, dilation=1, groups=1, output_padding=0):
    """Transposed 1-D, 2-D or 3-D convolution, channels last (torch conv_transpose{1,2,3}d on
    permuted tensors).

    Args:
        a: input Tensor, N x S.. x Cin (S.. = L; H x W; D x H x W).
        b: weight Tensor, K.. x Cin x (Cout / groups) (torch weight = b moved channels-first:
            b.permute(nd, nd+1, 0, .., nd-1)).
        stride, padding, dilation, output_padding: int or a tuple with one entry per spatial
            dim; output_padding < stride.
        groups: as in conv.
    Returns:
        N x O.. x Cout, O = (S-1)*s - 2*p + d*(K-1) + output_padding + 1 along each dim.

    It is the gradient of conv w.r.t. its input: conv_transpose(g, w with its channel axes
    swapped, ...) equals d<conv(x, w), g>/dx.
    """
    return ConvTranspose(stride, padding, dilation, groups, output_padding)(a, b)


# ---------------------------------------------------------------- weight gradient
class ConvWeightGrad(_Geometry, TensorOp):
    """dW of conv: W_grad[t.., c, o] = sum over n, o.. of x_pad[n, o_i*s_i + t_i*d_i .., c]
    * g[n, o.., o] (within groups). Inputs: x (N x S.. x Cin), g (N x O.. x Cout)."""

    op_name = "conv_weight_grad"

    def __init__(self, kernel_size, stride=1, padding=0, dilation=1, groups=1):
        self._init_geometry(kernel_size=kernel_size, stride=stride, padding=padding,
                            dilation=dilation)
        self.groups = _check_groups(groups, "conv_weight_grad")

    def compute(self, x, g):
        _check_array_mode("conv_weight_grad", x, g)
        stride, padding, dilation, kernel, steps, plan = _weight_grad_geometry(
            x.shape, g.shape, self.kernel_size, self.stride, self.padding, self.dilation,
            self.groups)
        nd = len(steps)
        cin, cout, grp = x.shape[-1], g.shape[-1], self.groups
        out_shape = kernel + (cin // grp, cout)
        if plan is None:  # every tap reads padding only
            return array_api.zeros(out_shape, device=x.device)
        if depthwise.is_depthwise(nd, grp, cin, cout, 1):
            return depthwise.weight_grad(x, g, kernel, stride, padding, dilation)
        cols, order = _im2col(x, plan, stride, dilation, steps, grp)
        if grp > 1:
            cols = _group_cols(cols)
        g2 = _rows(g)
        if grp == 1:  # taps x pixels @ pixels x Cout, the transposed im2col view read in place
            rows, taps = tuple(range(nd + 1)), tuple(range(nd + 1, 2 * nd + 2))
            dw = array_api.flat_matmul(cols.permute(taps + rows), g2, nd + 1)
        else:
            dw = _merge_groups(array_api.matmul(cols, _split_groups(g2, grp), transpose_a=True))
        # rows of dw follow the columns' axis order; put the axes back to K'.. x Cg
        live_shape = _live_kernel(plan) + (cin // grp,)
        dw = dw.reshape(tuple([live_shape[i] for i in order]) + (cout,))
        dw = dw.permute(tuple([order.index(i) for i in range(nd + 1)]) + (nd + 1,))
        return _embed(dw, plan, kernel)


    def gradient(self, out_grad, node):
        # conv_weight_grad(x, g) is bilinear with <conv_weight_grad(x, g), G> = <conv(x, G), g>
        x, g = node.inputs
        nd = len(x.shape) - 2
        (kernel,) = self._resolved(nd, "kernel_size")
        extra = _leftover(x.shape[1:-1], kernel, *self._conv_geometry(nd))
        dx = conv_transpose(g, _transpose_weight(out_grad), self.stride, self.padding,
                            self.dilation, self.groups, extra)
        dg = conv(x, out_grad, self.stride, self.padding, self.dilation, self.groups)
        return dx, dg


@functools.lru_cache(maxsize=256)
def _weight_grad_geometry(x_shape, g_shape, kernel_size, stride, padding, dilation, groups):
    """ConvWeightGrad's checks and geometry from the shapes and the fields as given: (stride,
    padding, dilation, kernel, steps, plan), nd-tuples but the plan. Cached: a pure function of
    them, asked on every call (a ValueError is raised each time, not cached)."""
    if len(x_shape) not in (3, 4, 5) or len(g_shape) != len(x_shape):
        raise ValueError(f"conv_weight_grad: input and out_grad must be channels-last arrays "
                         f"of the same rank (3-D to 5-D), got shapes {x_shape} and {g_shape}")
    nd = len(x_shape) - 2
    stride, padding, dilation = _expanded_geometry(stride, padding, dilation, nd,
                                                   "conv_weight_grad")
    kernel = tuple(_expand(kernel_size, nd, "kernel_size", "conv_weight_grad"))
    n, *sizes, cin = x_shape
    steps = tuple(conv_output_size(*args) for args in zip(
        sizes, kernel, stride, padding, dilation))
    cout = g_shape[-1]
    if g_shape[:-1] != (n,) + steps or cin % groups or cout % groups or min(steps) < 1:
        raise ValueError(f"conv_weight_grad: out_grad {g_shape} does not match input {x_shape} "
                         f"with kernel {kernel} stride {stride} padding "
                         f"{padding} dilation {dilation} groups {groups} "
                         f"(expected {(n,) + steps} x Cout divisible by groups)")
    plan = _plan(tuple(sizes), kernel, stride, padding, dilation, steps)
    return stride, padding, dilation, kernel, steps, plan


def conv_weight_grad(x, out_grad, kernel_size, stride=1, padding=0, dilation=1, groups=1):
    """Gradient of conv w.r.t. its weight: K.. x (Cin / groups) x Cout.

    Args:
        x: the conv input, N x S.. x Cin.
        out_grad: the gradient of the conv output, N x O.. x Cout.
        kernel_size: a tuple with one entry per spatial dim, or an int; the other arguments as
            in conv.
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
