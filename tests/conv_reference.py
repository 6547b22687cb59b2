"""Independent numpy references for the conv / pool / softmax tests: direct loops, no im2col.

Layouts are needle's: NHWC activations, conv weights KH x KW x Cin/groups x Cout,
conv_transpose weights KH x KW x Cin x Cout/groups. Everything is computed in float64.
"""
import numpy as np


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def conv_out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def conv2d_loops(x, w, stride=1, padding=0, dilation=1, groups=1):
    """out[n, i, j, o] = sum over (a, b, c) of x_pad[n, i*sh + a*dh, j*sw + b*dw, c] * w[a, b, c, o]
    with c over the input channels of o's group. One loop per output pixel and kernel tap."""
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    n, h, wd, cin = x.shape
    kh, kw, cg, cout = w.shape
    assert cg * groups == cin and cout % groups == 0
    og = cout // groups
    ho, wo = conv_out_size(h, kh, sh, ph, dh), conv_out_size(wd, kw, sw, pw, dw)
    xp = np.zeros((n, h + 2 * ph, wd + 2 * pw, cin))
    xp[:, ph:ph + h, pw:pw + wd, :] = x
    out = np.zeros((n, ho, wo, cout))
    for i in range(ho):
        for j in range(wo):
            for a in range(kh):
                for b in range(kw):
                    pix = xp[:, i * sh + a * dh, j * sw + b * dw, :]  # N x Cin
                    for g in range(groups):
                        out[:, i, j, g * og:(g + 1) * og] += (
                            pix[:, g * cg:(g + 1) * cg] @ w[a, b, :, g * og:(g + 1) * og])
    return out


def conv_transpose2d_loops(y, wt, stride=1, padding=0, dilation=1, groups=1, output_padding=0):
    """Scatter form of the transposed convolution: every input pixel y[n, i, j, :] adds
    y[n, i, j, cin] * wt[a, b, cin, o] at output position (i*sh + a*dh - ph, j*sw + b*dw - pw)."""
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    oph, opw = pair(output_padding)
    y, wt = np.asarray(y, np.float64), np.asarray(wt, np.float64)
    n, hi, wi, cin = y.shape
    kh, kw, cin2, og = wt.shape
    assert cin2 == cin and cin % groups == 0
    ig = cin // groups
    ho = (hi - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    wo = (wi - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    full = np.zeros((n, ho + 2 * ph, wo + 2 * pw, og * groups))
    for i in range(hi):
        for j in range(wi):
            for a in range(kh):
                for b in range(kw):
                    for g in range(groups):
                        full[:, i * sh + a * dh, j * sw + b * dw, g * og:(g + 1) * og] += (
                            y[:, i, j, g * ig:(g + 1) * ig] @ wt[a, b, g * ig:(g + 1) * ig, :])
    return full[:, ph:ph + ho, pw:pw + wo, :]


def pool2d_loops(x, kernel, stride=None, padding=0, mode="max"):
    """NHWC pooling by loops over output pixels; padding is -inf for max, counted zeros for avg."""
    (kh, kw) = pair(kernel)
    (sh, sw) = pair(stride if stride is not None else kernel)
    (ph, pw) = pair(padding)
    x = np.asarray(x, np.float64)
    n, h, w, c = x.shape
    fill = -np.inf if mode == "max" else 0.0
    xp = np.full((n, h + 2 * ph, w + 2 * pw, c), fill)
    xp[:, ph:ph + h, pw:pw + w, :] = x
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    out = np.zeros((n, ho, wo, c))
    for i in range(ho):
        for j in range(wo):
            win = xp[:, i * sh:i * sh + kh, j * sw:j * sw + kw, :]
            out[:, i, j, :] = win.max(axis=(1, 2)) if mode == "max" else win.mean(axis=(1, 2))
    return out


def max_pool2d_backward_loops(x, dout, kernel, stride=None, padding=0):
    """Each output gradient goes to the FIRST maximum of its window in row-major (kh, kw) order."""
    (kh, kw) = pair(kernel)
    (sh, sw) = pair(stride if stride is not None else kernel)
    (ph, pw) = pair(padding)
    x, dout = np.asarray(x, np.float64), np.asarray(dout, np.float64)
    n, h, w, c = x.shape
    dx = np.zeros_like(x)
    for b in range(n):
        for i in range(dout.shape[1]):
            for j in range(dout.shape[2]):
                for ch in range(c):
                    best, arg = -np.inf, None
                    for a in range(kh):
                        for e in range(kw):
                            r, s = i * sh + a - ph, j * sw + e - pw
                            if 0 <= r < h and 0 <= s < w and x[b, r, s, ch] > best:
                                best, arg = x[b, r, s, ch], (r, s)
                    dx[b, arg[0], arg[1], ch] += dout[b, i, j, ch]
    return dx


def avg_pool2d_backward_loops(x_shape, dout, kernel, stride=None, padding=0):
    """Each output gradient / (kh*kw) goes to every in-bounds element of its window."""
    (kh, kw) = pair(kernel)
    (sh, sw) = pair(stride if stride is not None else kernel)
    (ph, pw) = pair(padding)
    dout = np.asarray(dout, np.float64)
    n, h, w, c = x_shape
    dxp = np.zeros((n, h + 2 * ph, w + 2 * pw, c))
    for i in range(dout.shape[1]):
        for j in range(dout.shape[2]):
            share = dout[:, i:i + 1, j:j + 1, :] / (kh * kw)
            dxp[:, i * sh:i * sh + kh, j * sw:j * sw + kw, :] += share
    return dxp[:, ph:ph + h, pw:pw + w, :]


def softmax_loops(x, axis=-1):
    """Stable softmax along `axis`, row by row."""
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    out = np.empty_like(x)
    for idx in np.ndindex(*x.shape[:-1]):
        row = x[idx] - x[idx].max()
        e = np.exp(row)
        out[idx] = e / e.sum()
    return np.moveaxis(out, -1, axis)


def log_softmax_loops(x, axis=-1):
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    out = np.empty_like(x)
    for idx in np.ndindex(*x.shape[:-1]):
        row = x[idx] - x[idx].max()
        out[idx] = row - np.log(np.exp(row).sum())
    return np.moveaxis(out, -1, axis)


def full_conv2d(k1, k2):
    """The 'full' 2-D convolution of two single-channel kernels: size (k1 + k2 - 1) per axis.
    Cross-correlating with k1 then k2 equals one cross-correlation with this kernel."""
    k1, k2 = np.asarray(k1, np.float64), np.asarray(k2, np.float64)
    out = np.zeros((k1.shape[0] + k2.shape[0] - 1, k1.shape[1] + k2.shape[1] - 1))
    for a in range(k1.shape[0]):
        for b in range(k1.shape[1]):
            out[a:a + k2.shape[0], b:b + k2.shape[1]] += k1[a, b] * k2
    return out


def _ntuple(v, nd):
    return (v,) * nd if isinstance(v, int) else tuple(v)


def conv_nd_loops(x, w, stride=1, padding=0, dilation=1, groups=1):
    """Channels-last conv over any number of spatial dims: one loop per kernel tap, each adding
    the strided input slice it meets times that tap's Cin/G x Cout/G block."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    nd = x.ndim - 2
    s, p, d = _ntuple(stride, nd), _ntuple(padding, nd), _ntuple(dilation, nd)
    n, *sizes, cin = x.shape
    *kernel, cg, cout = w.shape
    og = cout // groups
    out_sizes = [conv_out_size(*a) for a in zip(sizes, kernel, s, p, d)]
    xp = np.pad(x, [(0, 0)] + [(q, q) for q in p] + [(0, 0)])
    out = np.zeros([n] + out_sizes + [cout])
    for tap in np.ndindex(*kernel):
        sl = tuple(slice(t * dd, t * dd + (o - 1) * ss + 1, ss)
                   for t, dd, o, ss in zip(tap, d, out_sizes, s))
        pix = xp[(slice(None),) + sl + (slice(None),)]
        for g in range(groups):
            out[..., g * og:(g + 1) * og] += (pix[..., g * cg:(g + 1) * cg]
                                              @ w[tap][:, g * og:(g + 1) * og])
    return out


def conv_transpose_nd_loops(y, wt, stride=1, padding=0, dilation=1, groups=1, output_padding=0):
    """Scatter form of the transposed conv, any number of spatial dims (as
    conv_transpose2d_loops)."""
    y, wt = np.asarray(y, np.float64), np.asarray(wt, np.float64)
    nd = y.ndim - 2
    s, p, d = _ntuple(stride, nd), _ntuple(padding, nd), _ntuple(dilation, nd)
    op = _ntuple(output_padding, nd)
    n, *sizes, cin = y.shape
    *kernel, _, og = wt.shape
    ig = cin // groups
    out_sizes = [(i - 1) * ss - 2 * pp + dd * (k - 1) + o + 1
                 for i, ss, pp, dd, k, o in zip(sizes, s, p, d, kernel, op)]
    full = np.zeros([n] + [o + 2 * pp for o, pp in zip(out_sizes, p)] + [og * groups])
    for tap in np.ndindex(*kernel):
        sl = tuple(slice(t * dd, t * dd + (i - 1) * ss + 1, ss)
                   for t, dd, i, ss in zip(tap, d, sizes, s))
        for g in range(groups):
            full[(slice(None),) + sl + (slice(g * og, (g + 1) * og),)] += (
                y[..., g * ig:(g + 1) * ig] @ wt[tap][g * ig:(g + 1) * ig, :])
    crop = tuple(slice(pp, pp + o) for pp, o in zip(p, out_sizes))
    return full[(slice(None),) + crop + (slice(None),)]


def pool_nd_loops(x, kernel, stride=None, padding=0, mode="max"):
    """Channels-last pooling over any number of spatial dims (padding -inf for max, counted
    zeros for avg)."""
    x = np.asarray(x, np.float64)
    nd = x.ndim - 2
    k = _ntuple(kernel, nd)
    s = _ntuple(stride if stride is not None else kernel, nd)
    p = _ntuple(padding, nd)
    fill = -np.inf if mode == "max" else 0.0
    xp = np.pad(x, [(0, 0)] + [(q, q) for q in p] + [(0, 0)], constant_values=fill)
    out_sizes = [(n + 2 * q - kk) // ss + 1 for n, q, kk, ss in zip(x.shape[1:-1], p, k, s)]
    taps = []
    for tap in np.ndindex(*k):
        sl = tuple(slice(t, t + (o - 1) * ss + 1, ss) for t, o, ss in zip(tap, out_sizes, s))
        taps.append(xp[(slice(None),) + sl + (slice(None),)])
    taps = np.stack(taps)
    return taps.max(axis=0) if mode == "max" else taps.mean(axis=0)
