"""Two other ways to compute a stride-1 2-D convolution (NHWC input N x H x W x C, weight
KH x KW x C x K, groups 1, dilation 1), selected with `conv(..., algo=...)`:

Winograd F(m x m, 3 x 3), algo="winograd" (m = 2) or "winograd4" (m = 4), 3 x 3 kernels only.
Every m x m output tile comes from an alpha x alpha input patch (alpha = m + 2):
    Y_tile = A^T [ sum over c of (G w_ck G^T) * (B^T d_c B) ] A        (* element-wise)
so each tile costs alpha^2 multiplications per (c, k) instead of the direct m^2 * 9: the
element-wise products of all tiles at once are alpha^2 GEMMs (T x C) @ (C x K). The matrices
are built here from interpolation points (0, 1, -1, 2, -2, ..., and infinity), exactly, with
fractions: A^T and G are Vandermonde rows, B^T the inverse of the Vandermonde matrix. The
transforms of the input and output tiles run in native code (backend `winograd_*`); the weight
transform (alpha^2 x 9 times 9 x C*K) is one small GEMM.
Gradients use the same transforms: the map x -> y is linear, and its adjoint runs the adjoint
transforms (winograd_*_adjoint) in reverse order, so the input and weight gradients are
Winograd computations too (exact gradients of the computed function).

FFT, algo="fft": a teaching path through numpy's real FFT on the host (float64): the padded
input and the kernel are transformed over the padded size, multiplied and summed over the
input channels in the frequency domain, transformed back, and the valid part is kept. The
gradients are two more FFT products of the same kind. Any kernel size; no multiplication
savings for small kernels (the transforms cost O(HW log HW) per channel).

Each algorithm is three ops (forward, input gradient, weight gradient) whose gradients are
written with each other, as for the im2col ops. See docs/conv_algorithms.md for the measured
speed and error.
"""
import functools
from fractions import Fraction

import numpy as np

from ..autograd import TensorOp
from ..backend_selection import array_api

__all__ = ["winograd_matrices", "winograd_multiplications", "ALGOS"]

ALGOS = ("im2col", "winograd", "winograd4", "fft", "auto")


# ---------------------------------------------------------------- transform matrices
def _points(n):
    """n finite interpolation points: 0, 1, -1, 2, -2, 3, -3, ... (small, for accuracy)."""
    pts = [Fraction(0)]
    k = 1
    while len(pts) < n:
        for v in (Fraction(k), Fraction(-k)):
            if len(pts) < n:
                pts.append(v)
        k += 1
    return pts


@functools.lru_cache(maxsize=8)
def _exact_matrices(m, r):
    """(A^T m x alpha, G alpha x r, B^T alpha x alpha) as Fractions, alpha = m + r - 1.

    With finite points p_j and one point at infinity, let V[s, j] = p_j^s (s < alpha) and
    V[s, inf] = [s == alpha - 1]. Take A^T[i, j] = p_j^i, A^T[i, inf] = [i == m - 1],
    G[j, k] = p_j^k, G[inf, k] = [k == r - 1] and B^T = V^-1: then
    sum_j A^T[i, j] G[j, k] B^T[j, l] = (V B^T)[i + k, l] = [l == i + k], which is the 1-D
    correlation y_i = sum_k g_k d_(i+k). Rows of B^T are then rescaled to integers (and G's
    rows by the inverse factors), which keeps B^T's transform exact in float32.
    """
    alpha = m + r - 1
    pts = _points(alpha - 1)
    V = [[p ** s for p in pts] + [Fraction(int(s == alpha - 1))] for s in range(alpha)]
    # invert V exactly (Gauss-Jordan over fractions)
    aug = [row[:] + [Fraction(int(i == j)) for j in range(alpha)] for i, row in enumerate(V)]
    for col in range(alpha):
        piv = next(i for i in range(col, alpha) if aug[i][col] != 0)
        aug[col], aug[piv] = aug[piv], aug[col]
        inv = 1 / aug[col][col]
        aug[col] = [v * inv for v in aug[col]]
        for i in range(alpha):
            if i != col and aug[i][col] != 0:
                f = aug[i][col]
                aug[i] = [a - f * b for a, b in zip(aug[i], aug[col])]
    B_T = [row[alpha:] for row in aug]  # V^-1: rows indexed by points j
    # the point at infinity keeps the leading coefficients: of y (row m-1) and of g (col r-1)
    A_T = [V[i][:-1] + [Fraction(int(i == m - 1))] for i in range(m)]
    G = [[V[k][j] for k in range(r)] for j in range(alpha - 1)]
    G.append([Fraction(int(k == r - 1)) for k in range(r)])
    for j in range(alpha):  # integer rows of B^T: multiply by the lcm of the denominators
        scale = Fraction(np.lcm.reduce([int(v.denominator) for v in B_T[j]]))
        B_T[j] = [v * scale for v in B_T[j]]
        G[j] = [v / scale for v in G[j]]
    return A_T, G, B_T


def winograd_matrices(m, r=3, dtype=np.float32):
    """(A^T, G, B^T) of Winograd F(m, r) as numpy arrays: for a 1-D signal d of length
    alpha = m + r - 1 and a filter g of length r, A^T @ ((G @ g) * (B^T @ d)) equals the m
    outputs of the correlation y_i = sum_k g_k d_(i+k). 2-D: apply them on both sides."""
    return tuple(np.array([[float(v) for v in row] for row in M], dtype=dtype)
                 for M in _exact_matrices(m, r))


def winograd_multiplications(out_hw, c, k, m, r=3):
    """(winograd, direct) multiplication counts of a conv with output Ho x Wo, C -> K channels:
    alpha^2 per tile and (c, k) pair (mu(F(m x m, r x r)) = (m+r-1)^2 per m^2 outputs) against
    r^2 per output; the partial tiles at the edges count in full."""
    tiles = -(-out_hw[0] // m) * -(-out_hw[1] // m)
    return tiles * (m + r - 1) ** 2 * c * k, out_hw[0] * out_hw[1] * r * r * c * k


# ---------------------------------------------------------------- engines
class _Winograd:
    """Forward / input-gradient / weight-gradient of a stride-1 3x3 conv via F(m x m, 3 x 3)."""

    def __init__(self, m):
        self.m = m
        self.name = "winograd" if m == 2 else f"winograd{m}"
        at, g, bt = winograd_matrices(m)
        self._mats = {"at": at, "bt": bt, "gk": np.kron(g, g)}  # gk: alpha^2 x 9
        self._cache = {}

    def _mat(self, name, device):
        key = (name, str(device))
        if key not in self._cache:
            self._cache[key] = array_api.array(self._mats[name], device=device)
        return self._cache[key]

    def _weight(self, w):
        """U = G w G^T for every (c, k): alpha^2 x C x K."""
        kh, kw, c, k = w.shape
        gk = self._mat("gk", w.device)
        return (gk @ w.compact().reshape((kh * kw, c * k))).reshape((gk.shape[0], c, k))

    def forward(self, x, w, padding, out_shape):
        v = array_api.winograd_input_transform(x, self._mat("bt", x.device), out_shape[1:3],
                                               padding, self.m)
        mm = array_api.matmul(v, self._weight(w))  # alpha^2 batched (T x C) @ (C x K)
        return array_api.winograd_output_transform(mm, self._mat("at", x.device), out_shape)

    def input_grad(self, dy, w, padding, in_shape):
        dm = array_api.winograd_output_transform_adjoint(dy, self._mat("at", dy.device))
        dv = array_api.matmul(dm, self._weight(w), transpose_b=True)
        return array_api.winograd_input_transform_adjoint(dv, self._mat("bt", dy.device),
                                                          in_shape, dy.shape[1:3], padding,
                                                          self.m)

    def weight_grad(self, x, dy, padding, kernel):
        dm = array_api.winograd_output_transform_adjoint(dy, self._mat("at", dy.device))
        v = array_api.winograd_input_transform(x, self._mat("bt", x.device), dy.shape[1:3],
                                               padding, self.m)
        du = array_api.matmul(v, dm, transpose_a=True)  # alpha^2 x C x K
        a2, c, k = du.shape
        gk = self._mat("gk", x.device)
        dw = gk.permute((1, 0)) @ du.reshape((a2, c * k))
        return dw.reshape(tuple(kernel) + (c, k))


class _FFT:
    """The same three maps through numpy's real 2-D FFT over the padded size, in float64."""

    name = "fft"

    @staticmethod
    def _host(a):
        return a.numpy().astype(np.float64)

    @staticmethod
    def _pad(x, padding):
        ph, pw = padding
        return np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))

    @staticmethod
    def _back(y, device):
        return array_api.array(np.ascontiguousarray(y, dtype=np.float32), device=device)

    def forward(self, x, w, padding, out_shape):
        xp = self._pad(self._host(x), padding)
        size = xp.shape[1:3]
        xf = np.fft.rfft2(xp, size, axes=(1, 2))
        wf = np.fft.rfft2(self._host(w), size, axes=(0, 1))
        # correlation: the kernel's spectrum conjugated; sum over the input channels
        y = np.fft.irfft2(np.einsum("nuvc,uvck->nuvk", xf, np.conj(wf)), size, axes=(1, 2))
        return self._back(y[:, :out_shape[1], :out_shape[2]], x.device)

    def input_grad(self, dy, w, padding, in_shape):
        (ph, pw), (_, h, wd, _) = padding, in_shape
        size = (h + 2 * ph, wd + 2 * pw)
        gf = np.fft.rfft2(self._host(dy), size, axes=(1, 2))
        wf = np.fft.rfft2(self._host(w), size, axes=(0, 1))
        dxp = np.fft.irfft2(np.einsum("nuvk,uvck->nuvc", gf, wf), size, axes=(1, 2))
        return self._back(dxp[:, ph:ph + h, pw:pw + wd], dy.device)

    def weight_grad(self, x, dy, padding, kernel):
        xp = self._pad(self._host(x), padding)
        size = xp.shape[1:3]
        xf = np.fft.rfft2(xp, size, axes=(1, 2))
        gf = np.fft.rfft2(self._host(dy), size, axes=(1, 2))
        dw = np.fft.irfft2(np.einsum("nuvc,nuvk->uvck", xf, np.conj(gf)), size, axes=(0, 1))
        return self._back(dw[:kernel[0], :kernel[1]], x.device)


ENGINES = {"winograd": _Winograd(2), "winograd4": _Winograd(4), "fft": _FFT()}


def check_algo(algo, nd, kernel, stride, dilation, groups, op="conv"):
    """The engine name for `algo` (None: the im2col path). "auto" picks Winograd F(2x2, 3x3)
    where it applies and measured faster (docs/conv_algorithms.md: 3x3, stride 1, many
    channels), else im2col; an explicit algorithm that cannot run raises ValueError."""
    if algo not in ALGOS:
        raise ValueError(f"{op}: algo must be one of {ALGOS}, got {algo!r}")
    if algo == "im2col":
        return None
    plain = nd == 2 and groups == 1 and all(s == 1 for s in stride) and all(
        d == 1 for d in dilation)
    winograd_ok = plain and tuple(kernel) == (3, 3)
    if algo == "auto":
        return None
    if algo == "fft" and not plain or algo.startswith("winograd") and not winograd_ok:
        need = "a 3x3 kernel, " if algo.startswith("winograd") else ""
        raise ValueError(f"{op}: algo={algo!r} needs {need}stride 1, dilation 1, groups 1 and "
                         f"2 spatial dims; got kernel {tuple(kernel)}, stride {tuple(stride)}, "
                         f"dilation {tuple(dilation)}, groups {groups} (use algo='im2col' or "
                         f"'auto')")
    return algo


# ---------------------------------------------------------------- ops
class AlgoConv(TensorOp):
    """conv(x, w) by `engine` (stride 1, groups 1): N x H x W x C, 3x3 (or any, FFT) x C x K ->
    N x Ho x Wo x K."""

    def __init__(self, engine, padding):
        self.engine, self.padding = engine, tuple(padding)

    def compute(self, x, w):
        n, h, wd, _ = x.shape
        kh, kw, _, k = w.shape
        out = (n, h + 2 * self.padding[0] - kh + 1, wd + 2 * self.padding[1] - kw + 1, k)
        return ENGINES[self.engine].forward(x, w, self.padding, out)

    def gradient(self, out_grad, node):
        x, w = node.inputs
        return (AlgoConvInputGrad(self.engine, self.padding, x.shape)(out_grad, w),
                AlgoConvWeightGrad(self.engine, self.padding, w.shape[:2])(x, out_grad))


class AlgoConvInputGrad(TensorOp):
    """(dy, w) -> the conv's input gradient, shape in_shape; linear in each argument."""

    def __init__(self, engine, padding, in_shape):
        self.engine, self.padding, self.in_shape = engine, tuple(padding), tuple(in_shape)

    def compute(self, dy, w):
        return ENGINES[self.engine].input_grad(dy, w, self.padding, self.in_shape)

    def gradient(self, out_grad, node):
        dy, w = node.inputs  # <input_grad(dy, w), G> = <conv(G, w), dy>
        return (AlgoConv(self.engine, self.padding)(out_grad, w),
                AlgoConvWeightGrad(self.engine, self.padding, w.shape[:2])(out_grad, dy))


class AlgoConvWeightGrad(TensorOp):
    """(x, dy) -> the conv's weight gradient, KH x KW x C x K; linear in each argument."""

    def __init__(self, engine, padding, kernel):
        self.engine, self.padding, self.kernel = engine, tuple(padding), tuple(kernel)

    def compute(self, x, dy):
        return ENGINES[self.engine].weight_grad(x, dy, self.padding, self.kernel)

    def gradient(self, out_grad, node):
        x, dy = node.inputs  # <weight_grad(x, dy), H> = <conv(x, H), dy>
        return (AlgoConvInputGrad(self.engine, self.padding, x.shape)(dy, out_grad),
                AlgoConv(self.engine, self.padding)(x, out_grad))
