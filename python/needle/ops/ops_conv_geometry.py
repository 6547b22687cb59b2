"""Geometry shared by the convolution ops, for 1, 2 or 3 spatial dims (nd): argument checks, the
live-tap plan, padding, and the im2col window view.

Layouts (channels last): input N x S1 x .. x Snd x C (NLC, NHWC, NDHWC), weight
K1 x .. x Knd x Cin/G x Cout. One im2col view serves every nd: entry
[g, n, o1..ond, t1..tnd, c] of the view is input[n, o1*s1 + t1*d1, .., g*Cg + c]; the GEMM
flattens (n, o...) into rows and (t..., c) into columns (see docs/conv.md).
"""
import functools

import numpy as np

from ..backend_selection import BACKEND

__all__ = []

_AXES = {1: "(l,)", 2: "(h, w)", 3: "(d, h, w)"}


# ---------------------------------------------------------------- argument checking
def _ints(v, name, op, minimum):
    """An int, or a tuple of 1 to 3 ints, each >= minimum: kept as given (an int is expanded to
    the rank once the input is seen, by _expand)."""
    if type(v) is int and v >= minimum:  # the common cases first (ops are made per call)
        return v
    if type(v) is tuple and 1 <= len(v) <= 3 and all(type(x) is int and x >= minimum for x in v):
        return v
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        v = int(v)
        if v < minimum:
            raise ValueError(f"{op}: {name} must be >= {minimum}, got {v}")
        return v
    if not isinstance(v, (tuple, list)) or not 1 <= len(v) <= 3:
        raise TypeError(f"{op}: {name} must be an int or a tuple of 1 to 3 ints, got {v!r}")
    if not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in v):
        raise TypeError(f"{op}: {name} must hold ints, got {v!r}")
    v = tuple(int(x) for x in v)
    if min(v) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {v}")
    return v


def _expand(v, nd, name, op):
    """int or nd-tuple -> nd-tuple (ValueError when a tuple's length is not the input's rank)."""
    if isinstance(v, int):
        return (v,) * nd
    if len(v) != nd:
        raise ValueError(f"{op}: {name} {v} has {len(v)} entries but the input has {nd} spatial "
                         f"dims {_AXES[nd]}")
    return v


def _pair(v, name, op, minimum):
    """(h, w) from an int or a pair, each >= minimum (ValueError / TypeError otherwise)."""
    v = _ints(v, name, op, minimum)
    if not isinstance(v, int) and len(v) != 2:
        raise TypeError(f"{op}: {name} must be an int or an (h, w) pair, got {v!r}")
    return _expand(v, 2, name, op)


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


_LAYOUT = {3: "N x L x C", 4: "N x H x W x C", 5: "N x D x H x W x C"}


def _check_conv_shapes(op, a, b, what_b="K... x Cin/groups x Cout"):
    """Input of rank 3, 4 or 5 (1, 2 or 3 spatial dims) and a weight of the same rank."""
    if a.ndim not in _LAYOUT:
        raise ValueError(f"{op}: input must be N x L x C, N x H x W x C or N x D x H x W x C "
                         f"(3-D to 5-D), got shape {a.shape}")
    if b.ndim != a.ndim or min(b.shape) < 1:
        raise ValueError(f"{op}: weight must be {what_b} with one kernel dim per spatial dim "
                         f"of the input ({a.ndim}-D, no empty dim), got shape {b.shape} for "
                         f"input {a.shape} read as {_LAYOUT[a.ndim]} (inputs: N x L x C, "
                         f"N x H x W x C or N x D x H x W x C)")


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
def _plan(sizes, kernel, stride, padding, dilation, steps):
    """_axis_plan for every spatial axis: a tuple of 5-tuples, or None when some axis has no
    live tap."""
    plans = tuple(_axis_plan(*args) for args in zip(sizes, kernel, stride, padding, dilation,
                                                    steps))
    return None if any(p is None for p in plans) else plans


@functools.lru_cache(maxsize=256)
def _live_kernel(plan):
    return tuple(p[1] - p[0] + 1 for p in plan)


@functools.lru_cache(maxsize=256)
def _plan_parts(plan):
    """(live kernel, start, before, after) of a plan, each an nd-tuple (cached, as _plan)."""
    return (_live_kernel(plan), tuple(p[4] for p in plan), tuple(p[2] for p in plan),
            tuple(p[3] for p in plan))


def _live(w, plan):
    """The live taps of a K1 x .. x Knd x ... weight: a view K1' x .. x Knd' x ..."""
    if _live_kernel(plan) == tuple(w.shape[:len(plan)]):
        return w
    return w[tuple(slice(p[0], p[1] + 1) for p in plan)]


def _embed(live, plan, kernel):
    """K1' x .. x C x O weight gradient of the live taps -> K1 x .. x C x O (dead taps: 0)."""
    if tuple(live.shape[:len(plan)]) == tuple(kernel):
        return live.compact()
    rest = ((0, 0),) * (live.ndim - len(plan))
    return live.pad(tuple((p[0], k - 1 - p[1]) for p, k in zip(plan, kernel)) + rest)


# ---------------------------------------------------------------- im2col / col2im on NDArrays
def _pad(a, before, after):
    """Compact channels-last copy of `a` zero-padded along its spatial axes by before[i] /
    after[i] (`a` itself, compacted, when nothing is padded): one backend call, which reads `a`
    in place whatever its strides (an NCHW tensor seen as NHWC)."""
    if not any(before) and not any(after):
        return a.compact()
    return a.pad(((0, 0),) + tuple(zip(before, after)) + ((0, 0),))


def _window_view(buf, start, kernel, stride, dilation, steps, groups):
    """im2col view of a channels-last array (any strides), no copy.

    Shape G x N x O1..Ond x K1..Knd x Cg; entry [g, n, o.., t.., c] is
    buf[n, start_i + o_i*s_i + t_i*d_i .., g*Cg + c]. G is dropped when G == 1.
    """
    shape, strides, offset = _window_layout(buf.shape, buf.strides, start, kernel, stride,
                                            dilation, steps, groups)
    return buf.as_strided(shape, strides, buf._offset + offset)


@functools.lru_cache(maxsize=256)
def _window_layout(buf_shape, buf_strides, start, kernel, stride, dilation, steps, groups):
    """(shape, strides, offset from buf's offset) of _window_view: a pure function of the
    layouts, cached (asked by every conv call). `start` lies inside buf (the plan's windows
    fit in it), so the offset is the one buf[.., start_i:, ..] would have."""
    n, c = buf_shape[0], buf_shape[-1]
    s_n, *s_sp, s_c = buf_strides
    offset = sum(b * s for b, s in zip(start, s_sp))
    shape = (n,) + tuple(steps) + tuple(kernel) + (c // groups,)
    strides = ((s_n,) + tuple(s * st for s, st in zip(s_sp, stride))
               + tuple(s * d for s, d in zip(s_sp, dilation)) + (s_c,))
    if groups > 1:
        shape, strides = (groups,) + shape, ((c // groups) * s_c,) + strides
    return shape, strides, offset


def _im2col(a, plan, stride, dilation, steps, groups):
    """im2col of the live taps of a channels-last input (any strides), as a view: nothing is
    copied but the padded input, when the live taps reach padding.

    Returns (cols, order): cols is the view (G x) N x O.. x T0 x .. x Tnd whose last nd+1 axes
    are (the taps of each spatial axis, channel) in the order `order` (a permutation of
    range(nd + 1)). That is the identity except when the windows need no padding and lie in
    memory in another axis order (an NCHW input): then the taps follow memory order, so that
    more views are plain matrices and the gathers read longer runs.
    """
    nd = len(plan)
    kernel, start, before, after = _plan_parts(plan)
    lead = (0 if groups == 1 else 1) + 1 + nd  # axes before the taps: (G,) N, O..
    if not any(before) and not any(after):
        view = _window_view(a, start, kernel, stride, dilation, steps, groups)
        order = tuple(sorted(range(nd + 1), key=lambda i: -view.strides[lead + i]))
        return view.permute(tuple(range(lead)) + tuple(lead + i for i in order)), order
    # a channels-last copy first (for an NCHW-ordered input a transposing copy, faster than
    # gathering single channels), so that the windows read runs of K*C adjacent floats
    return (_window_view(_pad(a, before, after), start, kernel, stride, dilation, steps, groups),
            tuple(range(nd + 1)))


def _group_cols(cols):
    """G x N x O.. x T.. im2col view -> compact (G, M, K) matrices (the native im2col gather),
    for the batched GEMM of grouped convs."""
    nd = (cols.ndim - 3) // 2
    g, m = cols.shape[0], int(np.prod(cols.shape[1:2 + nd]))
    return cols.compact().reshape((g, m, int(np.prod(cols.shape[2 + nd:]))))


def _weight_rows(w_live, order):
    """K1' x .. x Cg x Cout live weight -> (K, Cout) rows in the columns' axis order."""
    cout = w_live.shape[-1]
    return w_live.permute(tuple(order) + (len(order),)).reshape((w_live.size // cout, cout))


def _split_groups(x, groups):
    """(M, G*Cg) -> compact (G, M, Cg)."""
    m, c = x.shape
    return x.reshape((m, groups, c // groups)).permute((1, 0, 2)).compact()


def _merge_groups(x):
    """(G, M, Cg) -> compact (M, G*Cg)."""
    g, m, c = x.shape
    return x.permute((1, 0, 2)).compact().reshape((m, g * c))


def _rows(x):
    """N x S.. x C array as (N*S.., C) rows: a reshape (a copy only when x is not laid out row
    by row)."""
    return x.reshape((x.size // x.shape[-1], x.shape[-1]))


def _leftover(sizes, kernel, stride, padding, dilation):
    """Positions at the end of each padded axis that no window reaches (< stride): the
    output_padding that makes conv_transpose give back the input size."""
    return tuple((x + 2 * p - d * (k - 1) - 1) % s
                 for x, k, s, p, d in zip(sizes, kernel, stride, padding, dilation))
