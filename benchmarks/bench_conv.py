"""Convolution, pooling and softmax speed: ndl ops vs a needle-style composed path vs PyTorch.

    python benchmarks/bench_conv.py [--device cpu] [--batch 32] [--repeat 7]
    OMP_NUM_THREADS=1 python benchmarks/bench_conv.py --torch-threads 1   # single-threaded

Shapes: the ResNet9 convolutions of contract §10.3 (input 32 x 32 x 3, padding k//2) at the
given batch; a few pooling and softmax shapes. For each shape the script first validates that
all paths agree (max abs difference, forward and gradients), then times forward and
forward+backward. Times are the best of `--repeat` runs (the minimum is the figure least
disturbed by other processes), in ms; ratios > 1 mean ours is faster.

Paths:
  ours      ndl.conv / ndl.max_pool2d / ndl.softmax through autograd (an implicit GEMM over the
            im2col view; input gradient: a conv with the flipped kernel at stride 1, else a
            GEMM and col2im with scatter_add_; weight gradient: the view read transposed).
  composed  the lecture's loop over kernel offsets: one strided slice + matmul per (i, j), built
            from NDArray calls (slices, compact, @, setitem), with the matching hand-written
            backward; pooling/softmax composed from the im2col view and max/exp/sum reductions.
  torch     torch.nn.functional in its native NCHW layout (if torch is installed).
"""
import argparse
import os
import time

import numpy as np

import needle as ndl
import needle.backend_ndarray as nd
from needle.ops.ops_pool import _first_max_mask, pool_windows

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # torch is optional
    torch = None

# (H = W of the input, Cin, Cout, kernel, stride) for ResNet9 on 32 x 32 x 3 images
RESNET9 = [(32, 3, 16, 7, 4), (8, 16, 32, 3, 2), (4, 32, 32, 3, 1), (4, 32, 32, 3, 1),
           (4, 32, 64, 3, 2), (2, 64, 128, 3, 2), (1, 128, 128, 3, 1), (1, 128, 128, 3, 1)]
POOLS = [("max", (16, 64), 3, 2, 1), ("max", (32, 16), 2, 2, 0), ("avg", (16, 64), 2, 2, 0)]
SOFTMAX = [(1024, 1000), (32 * 8 * 64, 64), (256, 10)]


def best_ms(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


HEAD = ("ours fwd", "comp fwd", "torch fwd", "ours f+b", "comp f+b", "torch f+b",
        "c/o fwd", "t/o fwd", "c/o f+b", "t/o f+b")


def print_head(title, width):
    print(title)
    print("{:<{w}}".format("shape", w=width) + "".join(f"{h:>10}" for h in HEAD))


def print_row(name, row, width):
    """row = (ours fwd, composed fwd, torch fwd, ours f+b, composed f+b, torch f+b) in ms, then
    the ratios other / ours (> 1: ours is faster)."""
    o_f, c_f, t_f, o_fb, c_fb, t_fb = row
    ratios = (c_f / o_f, t_f / o_f, c_fb / o_fb, t_fb / o_fb)
    print(f"{name:<{width}}" + "".join(f"{v:>10.3f}" for v in row)
          + "".join(f"{r:>10.2f}" for r in ratios))


def maxdiff(a, b):
    a, b = np.array(a, np.float64), np.array(b, np.float64)
    return float(np.max(np.abs(a - b)) / (1.0 + np.max(np.abs(b))))


def check(name, pairs, tol=1e-3):
    """pairs: (label, ours, other); exits naming the first pair that differs."""
    for label, a, b in pairs:
        diff = maxdiff(a, b)
        if not diff <= tol:
            raise SystemExit(f"{name}: {label} disagree (relative max diff {diff:.2e} > {tol})")


# ---------------------------------------------------------------- composed conv (NDArray level)
def composed_conv_forward(z, w, s, p):
    """sum over kernel offsets (i, j) of Zpad[:, i::s, j::s, :] @ W[i, j] (the lecture's loop)."""
    n, h, wd, cin = z.shape
    k, _, _, cout = w.shape
    zp = z.pad(((0, 0), (p, p), (p, p), (0, 0)))
    ho, wo = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
    out = None
    for i in range(k):
        for j in range(k):
            patch = zp[:, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s, :]
            term = patch.compact().reshape((n * ho * wo, cin)) @ w[i, j].compact().reshape(
                (cin, cout))
            out = term if out is None else out + term
    return out.reshape((n, ho, wo, cout)), zp


def composed_conv_backward(zp, w, g, s, p, in_shape):
    """dW[i, j] = patch^T @ g and dZpad[patch] += g @ W[i, j]^T, offset by offset."""
    n, h, wd, cin = in_shape
    k, _, _, cout = w.shape
    _, ho, wo, _ = g.shape
    g2 = g.compact().reshape((n * ho * wo, cout))
    dzp = nd.zeros(zp.shape, device=zp.device)
    dw = nd.zeros(w.shape, device=w.device)
    for i in range(k):
        for j in range(k):
            sl = (slice(None), slice(i, i + s * (ho - 1) + 1, s), slice(j, j + s * (wo - 1) + 1, s),
                  slice(None))
            patch = zp[sl].compact().reshape((n * ho * wo, cin))
            dw[i, j] = nd.matmul(patch, g2, transpose_a=True).reshape((1, 1, cin, cout))
            wij = w[i, j].compact().reshape((cin, cout))
            dzp[sl] = dzp[sl] + nd.matmul(g2, wij, transpose_b=True).reshape((n, ho, wo, cin))
    return dzp[:, p:p + h, p:p + wd, :].compact(), dw


def bench_convs(dev, batch, repeat):
    print_head(f"\n== conv, ResNet9 layers, batch {batch}, NHWC (torch: NCHW) ==", 22)
    rng = np.random.default_rng(0)
    totals = np.zeros(6)
    for h, cin, cout, k, s in RESNET9:
        p = k // 2
        x = rng.standard_normal((batch, h, h, cin)).astype(np.float32)
        w = (rng.standard_normal((k, k, cin, cout)) / np.sqrt(k * k * cin)).astype(np.float32)
        X = ndl.Tensor(x, device=dev)
        Wt = ndl.Tensor(w, device=dev)
        Xc = ndl.Tensor(x, device=dev, requires_grad=False)
        Wc = ndl.Tensor(w, device=dev, requires_grad=False)
        y = ndl.conv(X, Wt, stride=s, padding=p)
        g = rng.standard_normal(y.shape).astype(np.float32)
        G = ndl.Tensor(g, device=dev, requires_grad=False)
        y.backward(G)
        za, wa, ga = nd.array(x, device=dev), nd.array(w, device=dev), nd.array(g, device=dev)
        cy, zp = composed_conv_forward(za, wa, s, p)
        cdx, cdw = composed_conv_backward(zp, wa, ga, s, p, x.shape)
        pairs = [("composed forward", y.numpy(), cy.numpy()),
                 ("composed dx", X.grad.numpy(), cdx.numpy()),
                 ("composed dw", Wt.grad.numpy(), cdw.numpy())]
        t_f = t_fb = None
        if torch is not None:
            xt = torch.tensor(x).permute(0, 3, 1, 2).contiguous().requires_grad_()
            wt = torch.tensor(w).permute(3, 2, 0, 1).contiguous().requires_grad_()
            gt = torch.tensor(g).permute(0, 3, 1, 2).contiguous()
            yt = F.conv2d(xt, wt, stride=s, padding=p)
            yt.backward(gt)
            pairs += [("torch forward", y.numpy(), yt.detach().permute(0, 2, 3, 1).numpy()),
                      ("torch dx", X.grad.numpy(), xt.grad.permute(0, 2, 3, 1).numpy()),
                      ("torch dw", Wt.grad.numpy(), wt.grad.permute(2, 3, 1, 0).numpy())]
        check(f"conv {h}x{h}x{cin}->{cout} k{k} s{s}", pairs)  # before timing: grads accumulate
        if torch is not None:
            with torch.no_grad():
                t_f = best_ms(lambda: F.conv2d(xt, wt, stride=s, padding=p), repeat)
            t_fb = best_ms(lambda: F.conv2d(xt, wt, stride=s, padding=p).backward(gt), repeat)
        o_f = best_ms(lambda: ndl.conv(Xc, Wc, stride=s, padding=p), repeat)
        o_fb = best_ms(lambda: ndl.conv(X, Wt, stride=s, padding=p).backward(G), repeat)
        c_f = best_ms(lambda: composed_conv_forward(za, wa, s, p), repeat)
        c_fb = best_ms(lambda: composed_conv_backward(
            composed_conv_forward(za, wa, s, p)[1], wa, ga, s, p, x.shape), repeat)
        row = [o_f, c_f, np.nan if t_f is None else t_f, o_fb, c_fb,
               np.nan if t_fb is None else t_fb]
        totals += row
        print_row(f"{h}x{h}x{cin}->{cout} k{k}s{s}", row, 22)
    print_row("total", totals, 22)


# Bigger 3 x 3 'same' layers (H, Cin, Cout), where the im2col copy is 9x the input
IMPLICIT_EXTRA = [(32, 16, 32), (16, 64, 64), (8, 128, 128)]


def bench_implicit(dev, batch, repeat):
    """The implicit GEMM (flat_matmul over the im2col view) against gathering the im2col matrix
    first (compact, then GEMM); for the weight gradient, against a GEMM on an im2col matrix kept
    from the forward pass (what ndl.conv did before the implicit GEMM)."""
    print(f"\n== implicit GEMM vs im2col matrix, batch {batch} (ms; ratio > 1: implicit faster) ==")
    print(f"{'layer':<22}{'impl fwd':>10}{'gath fwd':>10}{'ratio':>8}{'impl dW':>10}"
          f"{'kept dW':>10}{'ratio':>8}")
    rng = np.random.default_rng(0)
    layers = [(h, cin, cout, k, s) for h, cin, cout, k, s in RESNET9 if h * h > 1]
    layers += [(h, cin, cout, 3, 1) for h, cin, cout in IMPLICIT_EXTRA]
    for h, cin, cout, k, s in layers:
        p = k // 2
        hp, ho = h + 2 * p, (h + 2 * p - k) // s + 1
        x = nd.array(rng.standard_normal((batch, hp, hp, cin)).astype(np.float32), device=dev)
        w = nd.array(rng.standard_normal((k * k * cin, cout)).astype(np.float32), device=dev)
        dy = nd.array(rng.standard_normal((batch * ho * ho, cout)).astype(np.float32), device=dev)
        sn, sh, sw, sc = x.strides
        view = x.as_strided((batch, ho, ho, k, k, cin), (sn, sh * s, sw * s, sh, sw, sc))
        view_t = view.permute((3, 4, 5, 0, 1, 2))
        cols = view.compact().reshape((batch * ho * ho, k * k * cin))
        check(f"implicit {h}x{h}x{cin}->{cout}", [
            ("forward", nd.flat_matmul(view, w, 3).numpy(), (cols @ w).numpy()),
            ("weight grad", nd.flat_matmul(view_t, dy, 3).numpy(),
             nd.matmul(cols, dy, transpose_a=True).numpy())])
        i_f = best_ms(lambda: nd.flat_matmul(view, w, 3), repeat)
        g_f = best_ms(lambda: view.compact().reshape((batch * ho * ho, k * k * cin)) @ w, repeat)
        i_w = best_ms(lambda: nd.flat_matmul(view_t, dy, 3), repeat)
        k_w = best_ms(lambda: nd.matmul(cols, dy, transpose_a=True), repeat)
        print(f"{f'{h}x{h}x{cin}->{cout} k{k}s{s}':<22}{i_f:>10.3f}{g_f:>10.3f}{g_f / i_f:>8.2f}"
              f"{i_w:>10.3f}{k_w:>10.3f}{k_w / i_w:>8.2f}")


# ---------------------------------------------------------------- pooling
def composed_pool(a, mode, k, s, p):
    fill = -np.inf if mode == "max" else 0.0
    win = pool_windows(a, (k, k), (s, s), (p, p), fill)
    return win.max(axis=3) if mode == "max" else win.sum(axis=3) / (k * k)


def composed_pool_backward(a, g, mode, k, s, p):
    """Spread g over the window view (first-max mask for max, 1/k^2 for avg), then col2im."""
    n, h, w, c = a.shape
    _, ho, wo, _ = g.shape
    gb = g.compact().reshape((n, ho, wo, 1, c)).broadcast_to((n, ho, wo, k * k, c))
    if mode == "max":
        vals = _first_max_mask(a, (k, k), (s, s), (p, p)) * gb
    else:
        vals = gb.compact() / (k * k)
    full = nd.zeros((n, h + 2 * p, w + 2 * p, c), device=a.device)
    st = full.strides
    full.as_strided((n, ho, wo, k, k, c), (st[0], st[1] * s, st[2] * s, st[1], st[2], 1)) \
        .scatter_add_(vals)
    return full[:, p:p + h, p:p + w, :].compact()


def bench_pools(dev, batch, repeat):
    print_head(f"\n== pooling, batch {batch}, NHWC (torch: NCHW) ==", 26)
    rng = np.random.default_rng(1)
    for mode, (h, c), k, s, p in POOLS:
        x = rng.standard_normal((batch, h, h, c)).astype(np.float32)
        op = ndl.max_pool2d if mode == "max" else ndl.avg_pool2d
        X = ndl.Tensor(x, device=dev)
        Xc = ndl.Tensor(x, device=dev, requires_grad=False)
        y = op(X, k, s, p)
        g = rng.standard_normal(y.shape).astype(np.float32)
        G = ndl.Tensor(g, device=dev, requires_grad=False)
        y.backward(G)
        a, ga = nd.array(x, device=dev), nd.array(g, device=dev)
        pairs = [("composed forward", y.numpy(), composed_pool(a, mode, k, s, p).numpy()),
                 ("composed backward", X.grad.numpy(),
                  composed_pool_backward(a, ga, mode, k, s, p).numpy())]
        t_f = t_fb = np.nan
        if torch is not None:
            tf = F.max_pool2d if mode == "max" else F.avg_pool2d
            xt = torch.tensor(x).permute(0, 3, 1, 2).contiguous().requires_grad_()
            gt = torch.tensor(g).permute(0, 3, 1, 2).contiguous()
            yt = tf(xt, k, s, p)
            yt.backward(gt)
            pairs += [("torch forward", y.numpy(), yt.detach().permute(0, 2, 3, 1).numpy()),
                      ("torch backward", X.grad.numpy(), xt.grad.permute(0, 2, 3, 1).numpy())]
        check(f"{mode} pool", pairs, tol=1e-5)
        if torch is not None:
            with torch.no_grad():
                t_f = best_ms(lambda: tf(xt, k, s, p), repeat)
            t_fb = best_ms(lambda: tf(xt, k, s, p).backward(gt), repeat)
        row = [best_ms(lambda: op(Xc, k, s, p), repeat),
               best_ms(lambda: composed_pool(a, mode, k, s, p), repeat),
               t_f,
               best_ms(lambda: op(X, k, s, p).backward(G), repeat),
               best_ms(lambda: (composed_pool(a, mode, k, s, p),
                                composed_pool_backward(a, ga, mode, k, s, p)), repeat),
               t_fb]
        print_row(f"{mode} {h}x{h}x{c} k{k}s{s}p{p}", row, 26)


# ---------------------------------------------------------------- softmax
def composed_softmax(a):
    z = a - a.max(axis=1, keepdims=True).broadcast_to(a.shape)
    e = z.exp()
    return e / e.sum(axis=1, keepdims=True).broadcast_to(a.shape)


def bench_softmax(dev, repeat):
    print_head("\n== softmax over the last axis (rows x cols) ==", 26)
    rng = np.random.default_rng(2)
    for shape in SOFTMAX:
        x = (rng.standard_normal(shape) * 5).astype(np.float32)
        g = rng.standard_normal(shape).astype(np.float32)
        X = ndl.Tensor(x, device=dev)
        Xc = ndl.Tensor(x, device=dev, requires_grad=False)
        G = ndl.Tensor(g, device=dev, requires_grad=False)
        y = ndl.softmax(X, 1)
        y.backward(G)
        a, ga = nd.array(x, device=dev), nd.array(g, device=dev)

        def composed_fb():
            yy = composed_softmax(a)
            dot = (ga * yy).sum(axis=1, keepdims=True).broadcast_to(a.shape)
            return yy * (ga - dot)

        pairs = [("composed forward", y.numpy(), composed_softmax(a).numpy()),
                 ("composed backward", X.grad.numpy(), composed_fb().numpy())]
        t_f = t_fb = np.nan
        if torch is not None:
            xt = torch.tensor(x, requires_grad=True)
            gt = torch.tensor(g)
            yt = torch.softmax(xt, 1)
            yt.backward(gt)
            pairs += [("torch forward", y.numpy(), yt.detach().numpy()),
                      ("torch backward", X.grad.numpy(), xt.grad.numpy())]
        check(f"softmax {shape}", pairs, tol=1e-5)
        if torch is not None:
            with torch.no_grad():
                t_f = best_ms(lambda: torch.softmax(xt, 1), repeat)
            t_fb = best_ms(lambda: torch.softmax(xt, 1).backward(gt), repeat)
        row = [best_ms(lambda: ndl.softmax(Xc, 1), repeat),
               best_ms(lambda: composed_softmax(a), repeat), t_f,
               best_ms(lambda: ndl.softmax(X, 1).backward(G), repeat),
               best_ms(composed_fb, repeat), t_fb]
        print_row(str(shape), row, 26)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cpu_numpy", "cuda"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads (match OMP_NUM_THREADS for a fair comparison)")
    args = parser.parse_args()
    if torch is not None and args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    dev = getattr(ndl, args.device)()
    if not dev.enabled():
        raise SystemExit(f"device {args.device} is not enabled")
    threads = f", torch threads {torch.get_num_threads()}" if torch is not None else ", no torch"
    omp = os.environ.get("OMP_NUM_THREADS", "default")
    print(f"device {dev} (OMP_NUM_THREADS {omp}){threads}; times: best of {args.repeat}, ms; "
          f"all paths validated first")
    bench_convs(dev, args.batch, args.repeat)
    bench_implicit(dev, args.batch, args.repeat)
    bench_pools(dev, args.batch, args.repeat)
    bench_softmax(dev, args.repeat)


if __name__ == "__main__":
    main()
