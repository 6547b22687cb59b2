"""Convolution algorithms measured: im2col (our implicit GEMM) vs Winograd F(2x2,3x3) /
F(4x4,3x3) vs FFT, and depthwise convs (direct kernel vs grouped GEMM vs PyTorch).

    python benchmarks/bench_conv_algos.py [--repeat 3] [--batch 8] [--no-plots]

Sections (each validates against a float64 reference or our im2col before timing):
  1. error    max |out - ref| / max |ref| of forward, input and weight gradients against a
              float64 direct convolution, for im2col, winograd (m=2), winograd4 and fft;
  2. speed    forward and forward+backward of the 3x3 layers of VGG-16 and ResNet-18 (CIFAR
              size, padding 1), Winograd vs im2col (ratio > 1: Winograd faster);
  3. sweep    forward time vs kernel size 3..31 on a 64 x 64 map, im2col vs fft (and Winograd
              at 3): the crossover where FFT wins;
  4. mults    multiplication counts, Winograd against direct, with mu(F(m x m, 3 x 3));
  5. depthwise MobileNet-style depthwise 3x3 layers: direct kernel, grouped GEMM, PyTorch.
Times are the best of --repeat runs in ms (least disturbed by other processes). Plots go to
docs/img/conv_algos_*.png (matplotlib), used by docs/conv_algorithms.md.
"""
import argparse
import os
import pathlib
import platform

import numpy as np

import needle as ndl
from bench_conv import best_ms  # best of `repeat` runs, in ms (benchmarks/ is on sys.path)
from needle.ops import ops_conv_depthwise
from needle.ops.ops_conv_algos import winograd_multiplications

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # torch is optional
    torch = None

IMG = pathlib.Path(__file__).resolve().parents[1] / "docs" / "img"
ALGOS = ("im2col", "winograd", "winograd4", "fft")
# (H = W, C = K) of the 3x3 padding-1 convs of VGG-16 and ResNet-18 on 32 x 32 inputs
VGG16 = [(32, 64), (16, 128), (8, 256), (4, 512), (2, 512)]
RESNET18 = [(32, 64), (16, 128), (8, 256), (4, 512)]
# MobileNet-v1 depthwise 3x3 layers at CIFAR size: (H = W, C, stride)
MOBILENET_DW = [(32, 32, 1), (32, 64, 2), (16, 128, 1), (16, 128, 2), (8, 256, 1), (4, 512, 1)]


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                flags = next(ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")).split()
                isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"
                return f"{name} ({isa}, {os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def tensors(x, w, device):
    return (ndl.Tensor(x, device=device, requires_grad=True),
            ndl.Tensor(w, device=device, requires_grad=True))


def conv_f64(x, w, padding):
    """float64 direct convolution (NHWC, stride 1) and its input / weight gradients for the
    all-ones output gradient: the reference of section 1."""
    n, h, wd, c = x.shape
    k = w.shape[0]
    xp = np.pad(x, ((0, 0), (padding,) * 2, (padding,) * 2, (0, 0)))
    ho, wo = h + 2 * padding - k + 1, wd + 2 * padding - k + 1
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2))[:, :ho, :wo]
    y = np.einsum("nijcab,abco->nijo", win, w)
    g = np.ones_like(y)
    dw = np.einsum("nijcab,nijo->abco", win, g)
    dxp = np.zeros_like(xp)
    for a in range(k):
        for b in range(k):
            dxp[:, a:a + ho, b:b + wo] += g @ w[a, b].T
    return y, dxp[:, padding:padding + h, padding:padding + wd], dw


def section_error(device):
    print("\n1. error against a float64 direct convolution (max |err| / max |ref|), "
          "N=2, 16x16, C=K=64, 3x3, padding 1, inputs ~ N(0, 1)")
    rng = np.random.default_rng(0)
    x64, w64 = rng.standard_normal((2, 16, 16, 64)), rng.standard_normal((3, 3, 64, 64)) / 24
    refs = conv_f64(x64, w64, 1)
    x, w = x64.astype(np.float32), w64.astype(np.float32)
    print(f"{'algo':<11}{'forward':>12}{'input grad':>12}{'weight grad':>12}")
    rows = {}
    for algo in ALGOS:
        X, W = tensors(x, w, device)
        y = ndl.conv(X, W, padding=1, algo=algo)
        y.sum().backward()
        errs = [np.abs(a.numpy().astype(np.float64) - r).max() / np.abs(r).max()
                for a, r in zip((y, X.grad, W.grad), refs)]
        rows[algo] = errs
        print(f"{algo:<11}" + "".join(f"{e:12.2e}" for e in errs))
    for algo in ALGOS[1:]:
        print(f"  {algo} / im2col forward error: {rows[algo][0] / rows['im2col'][0]:.1f}x")
    return rows


def section_speed(device, batch, repeat):
    print(f"\n2. speed, 3x3 padding-1 layers at batch {batch}: ms (best of {repeat}); "
          "ratio = im2col time / algo time")
    head = ["layer", "im2col fwd", "wino fwd", "wino4 fwd", "im2col f+b", "wino f+b",
            "wino4 f+b", "w/i fwd", "w4/i fwd", "w/i f+b", "w4/i f+b"]
    print(f"{head[0]:<22}" + "".join(f"{h:>11}" for h in head[1:]))
    rng = np.random.default_rng(1)
    rows = []
    for net, layers in (("VGG-16", VGG16), ("ResNet-18", RESNET18)):
        for hw, c in layers:
            x = rng.standard_normal((batch, hw, hw, c)).astype(np.float32)
            w = (rng.standard_normal((3, 3, c, c)) / np.sqrt(9 * c)).astype(np.float32)
            X, W = tensors(x, w, device)
            fwd, fb = {}, {}
            for algo in ("im2col", "winograd", "winograd4"):
                fwd[algo] = best_ms(lambda: ndl.conv(X, W, padding=1, algo=algo).numpy(), repeat)
                fb[algo] = best_ms(lambda: ndl.conv(X, W, padding=1, algo=algo).sum()
                                   .backward(), repeat)
            ratios = [fwd["im2col"] / fwd["winograd"], fwd["im2col"] / fwd["winograd4"],
                      fb["im2col"] / fb["winograd"], fb["im2col"] / fb["winograd4"]]
            rows.append((f"{net} {hw}x{hw}x{c}", fwd, fb, ratios))
            vals = [fwd[a] for a in ("im2col", "winograd", "winograd4")] + [
                fb[a] for a in ("im2col", "winograd", "winograd4")]
            print(f"{net + f' {hw}x{hw}x{c}':<22}" + "".join(f"{v:11.2f}" for v in vals)
                  + "".join(f"{r:11.2f}" for r in ratios))
    return rows


def section_sweep(device, repeat):
    print(f"\n3. forward time vs kernel size on a 64 x 64 map (N=1, C=K=16, 'same' padding), "
          f"ms (best of {repeat})")
    print(f"{'k':>4}{'im2col':>10}{'fft':>10}{'winograd':>10}{'fft/im2col':>12}")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 64, 64, 16)).astype(np.float32)
    rows = []
    for k in range(3, 32, 2):
        w = (rng.standard_normal((k, k, 16, 16)) / k).astype(np.float32)
        X, W = tensors(x, w, device)
        t_i = best_ms(lambda: ndl.conv(X, W, padding=k // 2).numpy(), repeat)
        t_f = best_ms(lambda: ndl.conv(X, W, padding=k // 2, algo="fft").numpy(), repeat)
        t_w = (best_ms(lambda: ndl.conv(X, W, padding=1, algo="winograd").numpy(), repeat)
               if k == 3 else float("nan"))
        rows.append((k, t_i, t_f, t_w))
        print(f"{k:4d}{t_i:10.2f}{t_f:10.2f}{t_w:10.2f}{t_f / t_i:12.2f}")
    faster = [k for k, t_i, t_f, _ in rows if t_f < t_i]
    print(f"  FFT faster than im2col from k = {faster[0]}" if faster else
          "  FFT never faster than im2col up to k = 31")
    return rows


def section_mults():
    print("\n4. multiplications per layer (VGG-16 32x32x64 layer), Winograd vs direct")
    print(f"{'F(m x m, 3 x 3)':<18}{'mu = (m+2)^2':>14}{'direct 9m^2':>13}{'counted ratio':>15}")
    for m in (2, 4):
        wino, direct = winograd_multiplications((32, 32), 64, 64, m)
        print(f"{f'F({m}x{m}, 3x3)':<18}{(m + 2) ** 2:>14}{9 * m * m:>13}{direct / wino:>15.2f}")


def section_depthwise(device, batch, repeat):
    print(f"\n5. depthwise 3x3 (groups = C), MobileNet-v1 layers at batch {batch}: "
          f"ms (best of {repeat}); t/o = torch / ours (> 1: ours faster)")
    print(f"{'layer':<18}{'direct fwd':>11}{'GEMM fwd':>10}{'torch fwd':>10}{'direct f+b':>11}"
          f"{'GEMM f+b':>10}{'torch f+b':>10}{'t/o fwd':>9}{'t/o f+b':>9}")
    rng = np.random.default_rng(3)
    for hw, c, s in MOBILENET_DW:
        x = rng.standard_normal((batch, hw, hw, c)).astype(np.float32)
        w = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
        X, W = tensors(x, w, device)
        res = {}
        for mode in (True, False):
            ops_conv_depthwise.USE_DIRECT = mode
            f = best_ms(lambda: ndl.conv(X, W, stride=s, padding=1, groups=c).numpy(), repeat)
            fb = best_ms(lambda: ndl.conv(X, W, stride=s, padding=1, groups=c).sum().backward(),
                         repeat)
            res[mode] = (f, fb)
        ops_conv_depthwise.USE_DIRECT = True
        tf = tfb = float("nan")
        if torch is not None:
            xt = torch.tensor(x).permute(0, 3, 1, 2).contiguous().requires_grad_()
            wt = torch.tensor(w).permute(3, 2, 0, 1).contiguous().requires_grad_()
            yt = F.conv2d(xt, wt, stride=s, padding=1, groups=c)
            ours = ndl.conv(X, W, stride=s, padding=1, groups=c).numpy()
            assert np.abs(yt.detach().permute(0, 2, 3, 1).numpy() - ours).max() < 1e-3
            tf = best_ms(lambda: F.conv2d(xt, wt, stride=s, padding=1, groups=c), repeat)
            tfb = best_ms(lambda: F.conv2d(xt, wt, stride=s, padding=1, groups=c).sum()
                          .backward(), repeat)
        print(f"{f'{hw}x{hw}x{c} s{s}':<18}{res[True][0]:11.2f}{res[False][0]:10.2f}{tf:10.2f}"
              f"{res[True][1]:11.2f}{res[False][1]:10.2f}{tfb:10.2f}{tf / res[True][0]:9.2f}"
              f"{tfb / res[True][1]:9.2f}")


def plots(errors, sweep):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plots")
        return
    IMG.mkdir(parents=True, exist_ok=True)
    ks = [r[0] for r in sweep]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(ks, [r[1] for r in sweep], "o-", label="im2col (implicit GEMM)")
    ax.plot(ks, [r[2] for r in sweep], "s-", label="FFT (numpy)")
    ax.plot([3], [sweep[0][3]], "^", markersize=9, label="Winograd F(2x2,3x3)")
    ax.set_xlabel("kernel size k (k x k, 'same' padding)")
    ax.set_ylabel("forward time (ms)")
    ax.set_yscale("log")
    ax.set_title("1 x 64 x 64 x 16 -> 16 channels")
    ax.legend()
    fig.tight_layout()
    fig.savefig(IMG / "conv_algos_time_vs_kernel.png", dpi=110)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    names = list(errors)
    pos = np.arange(len(names))
    for i, what in enumerate(("forward", "input grad", "weight grad")):
        ax.bar(pos + (i - 1) * 0.27, [errors[n][i] for n in names], 0.27, label=what)
    ax.set_xticks(pos, names)
    ax.set_yscale("log")
    ax.set_ylabel("max |err| / max |ref|")
    ax.set_title("float32 error against a float64 direct conv")
    ax.legend()
    fig.tight_layout()
    fig.savefig(IMG / "conv_algos_error.png", dpi=110)
    print(f"plots written to {IMG}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args()
    device = ndl.cpu()
    threads = int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))
    if torch is not None:
        torch.set_num_threads(threads)  # the same thread count as needle's OpenMP
    print(f"CPU: {cpu_model()}; {threads} thread(s) each for needle (cpu device) and torch "
          f"{torch.__version__ if torch else '-'}; load average {os.getloadavg()[0]:.1f}")
    errors = section_error(device)
    section_speed(device, args.batch, args.repeat)
    sweep = section_sweep(device, args.repeat)
    section_mults()
    section_depthwise(device, args.batch, args.repeat)
    if not args.no_plots:
        plots(errors, sweep)


if __name__ == "__main__":
    main()
