"""float64 numpy versions of needle's three conv maps (NCHW tensors, torch weight layout
Cout x Cin x KH x KW), for torch.autograd.gradcheck: needle's NDArray holds float32 only.

Same algorithm as needle's ops: an im2col view of the padded input (no copy) contracted with
the weight; the input gradient scatters the columns back (col2im); the weight gradient
contracts the view with the output gradient.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

__all__ = ["conv2d", "conv2d_input_grad", "conv2d_weight_grad"]


def _windows(xp, kernel, stride, out_hw):
    """N x C x Ho x Wo x KH x KW view of the padded input xp (N x C x Hp x Wp)."""
    n, c, h, w = xp.strides
    (sh, sw), (kh, kw) = stride, kernel
    return as_strided(xp, xp.shape[:2] + tuple(out_hw) + (kh, kw), (n, c, h * sh, w * sw, h, w),
                      writeable=False)


def _out_hw(hw, kernel, stride, padding):
    return tuple((s + 2 * p - k) // st + 1 for s, k, st, p in zip(hw, kernel, stride, padding))


def conv2d(x, w, stride, padding):
    """x (N x C x H x W) * w (K x C x KH x KW) -> N x K x Ho x Wo."""
    (ph, pw), kernel = padding, w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = _windows(xp, kernel, stride, _out_hw(x.shape[2:], kernel, stride, padding))
    return np.einsum("ncijab,kcab->nkij", cols, w)


def conv2d_input_grad(gy, w, x_shape, stride, padding):
    """d<conv2d(x, w), gy>/dx: every column entry added back where the window read it."""
    (ph, pw), (sh, sw), (kh, kw) = padding, stride, w.shape[2:]
    n, c, h, wd = x_shape
    ho, wo = gy.shape[2:]
    cols = np.einsum("nkij,kcab->ncijab", gy, w)
    full = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    for a in range(kh):  # col2im: one strided slice per kernel tap
        for b in range(kw):
            full[:, :, a:a + sh * (ho - 1) + 1:sh, b:b + sw * (wo - 1) + 1:sw] += cols[..., a, b]
    return full[:, :, ph:ph + h, pw:pw + wd]


def conv2d_weight_grad(x, gy, kernel, stride, padding):
    """d<conv2d(x, w), gy>/dw: the im2col view contracted with gy over N, Ho, Wo."""
    ph, pw = padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = _windows(xp, kernel, stride, gy.shape[2:])
    return np.einsum("ncijab,nkij->kcab", cols, gy)
