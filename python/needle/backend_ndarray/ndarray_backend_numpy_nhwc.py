"""The numpy reference backend's NHWC image kernels (part of ndarray_backend_numpy's table):
2-D pooling, depthwise convolution and the Winograd tile transforms.

Images are N x H x W x C buffers. Letters: N batch, H/W spatial, C channels, kh/kw kernel,
sh/sw stride, ph/pw padding, dh/dw dilation.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import ndarray_backend_numpy as _spec  # its size check (read at call time: it imports us)


def _check_size(fn, what, arr, need):
    _spec._check_size(fn, what, arr, need)


# ---------------------------------------------------------------- pooling (NHWC)
def _pool_dims(fn, N, H, W, C, kh, kw, sh, sw, ph, pw):
    if min(N, H, W, C) < 0 or min(kh, kw, sh, sw) < 1 or min(ph, pw) < 0:
        raise ValueError(f"{fn}: bad sizes N={N} H={H} W={W} C={C} kernel=({kh},{kw}) "
                         f"stride=({sh},{sw}) padding=({ph},{pw})")
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"{fn}: kernel ({kh},{kw}) larger than padded input ({H + 2 * ph},{W + 2 * pw})")
    return Ho, Wo


def _windows(x, kh, kw, sh, sw, Ho, Wo):
    """View of the padded NHWC input as N x Ho x Wo x C x kh x kw windows."""
    n, h, w, c = x.strides
    return as_strided(x, (x.shape[0], Ho, Wo, x.shape[3], kh, kw), (n, h * sh, w * sw, c, h, w))


def _padded(fn, a, N, H, W, C, ph, pw, pad_value):
    _check_size(fn, "a", a, N * H * W * C)
    x = a.array[: N * H * W * C].reshape(N, H, W, C)
    return np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=pad_value)


def max_pool2d(a, out, N, H, W, C, kh, kw, sh, sw, ph, pw):
    Ho, Wo = _pool_dims("max_pool2d", N, H, W, C, kh, kw, sh, sw, ph, pw)
    _check_size("max_pool2d", "out", out, N * Ho * Wo * C)
    x = _padded("max_pool2d", a, N, H, W, C, ph, pw, -np.inf)
    out.array[: N * Ho * Wo * C] = _windows(x, kh, kw, sh, sw, Ho, Wo).max(axis=(4, 5)).reshape(-1)


def max_pool2d_backward(a, dout, dinp, N, H, W, C, kh, kw, sh, sw, ph, pw):
    Ho, Wo = _pool_dims("max_pool2d_backward", N, H, W, C, kh, kw, sh, sw, ph, pw)
    _check_size("max_pool2d_backward", "dout", dout, N * Ho * Wo * C)
    _check_size("max_pool2d_backward", "dinp", dinp, N * H * W * C)
    x = _padded("max_pool2d_backward", a, N, H, W, C, ph, pw, -np.inf)
    win = _windows(x, kh, kw, sh, sw, Ho, Wo).reshape(N, Ho, Wo, C, kh * kw)
    first = win.argmax(axis=4)  # argmax returns the first maximum: the tie rule
    ki, kj = first // kw, first % kw
    n, i, j, c = np.indices((N, Ho, Wo, C))
    hi, wj = i * sh + ki - ph, j * sw + kj - pw
    grad = np.zeros((N, H, W, C), dtype=np.float32)
    np.add.at(grad, (n, hi, wj, c), dout.array[: N * Ho * Wo * C].reshape(N, Ho, Wo, C))
    dinp.array[: N * H * W * C] = grad.reshape(-1)


def avg_pool2d(a, out, N, H, W, C, kh, kw, sh, sw, ph, pw):
    Ho, Wo = _pool_dims("avg_pool2d", N, H, W, C, kh, kw, sh, sw, ph, pw)
    _check_size("avg_pool2d", "out", out, N * Ho * Wo * C)
    x = _padded("avg_pool2d", a, N, H, W, C, ph, pw, 0.0)
    out.array[: N * Ho * Wo * C] = _windows(x, kh, kw, sh, sw, Ho, Wo).mean(axis=(4, 5)).reshape(-1)


def avg_pool2d_backward(dout, dinp, N, H, W, C, kh, kw, sh, sw, ph, pw):
    Ho, Wo = _pool_dims("avg_pool2d_backward", N, H, W, C, kh, kw, sh, sw, ph, pw)
    _check_size("avg_pool2d_backward", "dout", dout, N * Ho * Wo * C)
    _check_size("avg_pool2d_backward", "dinp", dinp, N * H * W * C)
    g = dout.array[: N * Ho * Wo * C].reshape(N, Ho, Wo, C) / np.float32(kh * kw)
    grad = np.zeros((N, H + 2 * ph, W + 2 * pw, C), dtype=np.float32)
    for di in range(kh):
        for dj in range(kw):
            grad[:, di: di + sh * (Ho - 1) + 1: sh, dj: dj + sw * (Wo - 1) + 1: sw, :] += g
    dinp.array[: N * H * W * C] = grad[:, ph: ph + H, pw: pw + W, :].reshape(-1)


# ---------------------------------------------------------------- depthwise conv (NHWC)
# Letters as above plus dh/dw (dilation); the weight is kh x kw x C, one filter per channel.
def _depthwise_dims(fn, N, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw):
    if min(N, H, W, C) < 0 or min(kh, kw, sh, sw, dh, dw) < 1 or min(ph, pw) < 0:
        raise ValueError(f"{fn}: bad sizes N={N} H={H} W={W} C={C} kernel=({kh},{kw})")
    if H + 2 * ph < dh * (kh - 1) + 1 or W + 2 * pw < dw * (kw - 1) + 1:
        raise ValueError(f"{fn}: dilated kernel larger than padded input ({H + 2 * ph},"
                         f"{W + 2 * pw})")
    return (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1


def _tap_slices(a, b, sh, sw, dh, dw, Ho, Wo):
    """The padded-input positions tap (a, b) meets for every output pixel."""
    return (slice(None), slice(a * dh, a * dh + sh * (Ho - 1) + 1, sh),
            slice(b * dw, b * dw + sw * (Wo - 1) + 1, sw), slice(None))


def depthwise_conv2d(a, w, out, N, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw):
    fn = "depthwise_conv2d"
    Ho, Wo = _depthwise_dims(fn, N, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw)
    _check_size(fn, "w", w, kh * kw * C)
    _check_size(fn, "out", out, N * Ho * Wo * C)
    x = _padded(fn, a, N, H, W, C, ph, pw, 0.0)
    taps = w.array[: kh * kw * C].reshape(kh, kw, C)
    acc = np.zeros((N, Ho, Wo, C), dtype=np.float32)
    for i in range(kh):
        for j in range(kw):
            acc += x[_tap_slices(i, j, sh, sw, dh, dw, Ho, Wo)] * taps[i, j]
    out.array[: N * Ho * Wo * C] = acc.reshape(-1)


def depthwise_conv2d_backward_input(dout, w, dinp, N, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw):
    fn = "depthwise_conv2d_backward_input"
    Ho, Wo = _depthwise_dims(fn, N, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw)
    _check_size(fn, "dout", dout, N * Ho * Wo * C)
    _check_size(fn, "w", w, kh * kw * C)
    _check_size(fn, "dinp", dinp, N * H * W * C)
    g = dout.array[: N * Ho * Wo * C].reshape(N, Ho, Wo, C)
    taps = w.array[: kh * kw * C].reshape(kh, kw, C)
    grad = np.zeros((N, H + 2 * ph, W + 2 * pw, C), dtype=np.float32)
    for i in range(kh):
        for j in range(kw):
            grad[_tap_slices(i, j, sh, sw, dh, dw, Ho, Wo)] += g * taps[i, j]
    dinp.array[: N * H * W * C] = grad[:, ph: ph + H, pw: pw + W, :].reshape(-1)


def depthwise_conv2d_backward_weight(a, dout, dweight, N, H, W, C, kh, kw, sh, sw, ph, pw, dh,
                                     dw):
    fn = "depthwise_conv2d_backward_weight"
    Ho, Wo = _depthwise_dims(fn, N, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw)
    _check_size(fn, "dout", dout, N * Ho * Wo * C)
    _check_size(fn, "dweight", dweight, kh * kw * C)
    x = _padded(fn, a, N, H, W, C, ph, pw, 0.0)
    g = dout.array[: N * Ho * Wo * C].reshape(N, Ho, Wo, C)
    grad = np.zeros((kh, kw, C), dtype=np.float32)
    for i in range(kh):
        for j in range(kw):
            grad[i, j] = (x[_tap_slices(i, j, sh, sw, dh, dw, Ho, Wo)] * g).sum(axis=(0, 1, 2))
    dweight.array[: kh * kw * C] = grad.reshape(-1)


# ---------------------------------------------------------------- Winograd tile transforms
# V / M are alpha^2 x T x C (T = N*th*tw tiles, tile t = (n, ty, tx)); images are NHWC. The
# patch of tile t starts at input (ty*m - ph, tx*m - pw); its m x m output block at (ty*m, tx*m).
def _winograd_check(fn, N, H, W, C, ph, pw, m, alpha, th, tw):
    if min(N, H, W, C, ph, pw, th, tw) < 0 or m < 1 or alpha < m or alpha > 8:
        raise ValueError(f"{fn}: bad sizes N={N} H={H} W={W} C={C} m={m} alpha={alpha}")


def _patches(x, m, alpha, th, tw):
    """N x Hp x Wp x C padded image -> N x th x tw x alpha x alpha x C view of the tile patches."""
    n, h, w, c = x.strides
    return as_strided(x, (x.shape[0], th, tw, alpha, alpha, x.shape[3]),
                      (n, h * m, w * m, h, w, c))


def _padded_for_tiles(img, ph, pw, m, alpha, th, tw):
    """Zero-padded copy covering every patch: (th-1)*m + alpha rows, (tw-1)*m + alpha cols."""
    N, H, W, C = img.shape
    out = np.zeros((N, (th - 1) * m + alpha, (tw - 1) * m + alpha, C), dtype=np.float32)
    rows, cols = min(H, out.shape[1] - ph), min(W, out.shape[2] - pw)
    out[:, ph:ph + rows, pw:pw + cols] = img[:, :rows, :cols]
    return out


def winograd_input_transform(a, bt, out, N, H, W, C, ph, pw, m, alpha, th, tw):
    fn = "winograd_input_transform"
    _winograd_check(fn, N, H, W, C, ph, pw, m, alpha, th, tw)
    _check_size(fn, "a", a, N * H * W * C)
    _check_size(fn, "out", out, alpha * alpha * N * th * tw * C)
    B_T = bt.array[: alpha * alpha].reshape(alpha, alpha)
    x = _padded_for_tiles(a.array[: N * H * W * C].reshape(N, H, W, C), ph, pw, m, alpha, th, tw)
    v = np.einsum("ik,ntsklc,jl->ijntsc", B_T, _patches(x, m, alpha, th, tw), B_T)
    out.array[: v.size] = v.reshape(-1)


def winograd_input_transform_adjoint(dv, bt, dinp, N, H, W, C, ph, pw, m, alpha, th, tw):
    fn = "winograd_input_transform_adjoint"
    _winograd_check(fn, N, H, W, C, ph, pw, m, alpha, th, tw)
    _check_size(fn, "dv", dv, alpha * alpha * N * th * tw * C)
    _check_size(fn, "dinp", dinp, N * H * W * C)
    B_T = bt.array[: alpha * alpha].reshape(alpha, alpha)
    g = dv.array[: alpha * alpha * N * th * tw * C].reshape(alpha, alpha, N, th, tw, C)
    patches = np.einsum("ik,ijntsc,jl->ntsklc", B_T, g, B_T)  # B dv B^T per tile
    full = np.zeros((N, (th - 1) * m + alpha, (tw - 1) * m + alpha, C), dtype=np.float32)
    for ty in range(th):
        for tx in range(tw):
            full[:, ty * m:ty * m + alpha, tx * m:tx * m + alpha] += patches[:, ty, tx]
    rows, cols = min(H, full.shape[1] - ph), min(W, full.shape[2] - pw)
    grad = np.zeros((N, H, W, C), dtype=np.float32)
    grad[:, :rows, :cols] = full[:, ph:ph + rows, pw:pw + cols]
    dinp.array[: N * H * W * C] = grad.reshape(-1)


def winograd_output_transform(mm, at, out, N, H, W, C, m, alpha, th, tw):
    fn = "winograd_output_transform"
    _winograd_check(fn, N, H, W, C, 0, 0, m, alpha, th, tw)
    _check_size(fn, "mm", mm, alpha * alpha * N * th * tw * C)
    _check_size(fn, "out", out, N * H * W * C)
    A_T = at.array[: m * alpha].reshape(m, alpha)
    g = mm.array[: alpha * alpha * N * th * tw * C].reshape(alpha, alpha, N, th, tw, C)
    y = np.einsum("ik,klntsc,jl->ntisjc", A_T, g, A_T).reshape(N, th * m, tw * m, C)
    out.array[: N * H * W * C] = y[:, :H, :W].reshape(-1)


def winograd_output_transform_adjoint(dout, at, dm, N, H, W, C, m, alpha, th, tw):
    fn = "winograd_output_transform_adjoint"
    _winograd_check(fn, N, H, W, C, 0, 0, m, alpha, th, tw)
    _check_size(fn, "dout", dout, N * H * W * C)
    _check_size(fn, "dm", dm, alpha * alpha * N * th * tw * C)
    A_T = at.array[: m * alpha].reshape(m, alpha)
    g = np.zeros((N, th * m, tw * m, C), dtype=np.float32)
    g[:, :H, :W] = dout.array[: N * H * W * C].reshape(N, H, W, C)
    g = g.reshape(N, th, m, tw, m, C)
    out = np.einsum("ik,ntisjc,jl->klntsc", A_T, g, A_T)
    dm.array[: out.size] = out.reshape(-1).astype(np.float32)
