"""Every benchmark in one run, as one markdown table: needle vs numpy vs PyTorch.

    python benchmarks/run.py [--quick] [--out docs/performance.md] [--device all|cpu|cuda]

Rows: sgemm at n = 512/1024/2048, conv forward+backward over the ResNet9 layer shapes at batch
32, max pooling, softmax, a ResNet9 training step at batch 128 (images/s, peak memory), training
steps eager and replayed by ndl.jit (ResNet9 batch 32 and 128, LeNet batch 64, and ResNet9 with
one core busy; benchmarks/bench_jit.py), and the per-op overhead of a small Tensor add; CUDA rows
when a GPU is enabled (`--device cuda`: those alone, the report of benchmarks/gpu_check.sh). Each
row validates needle's result against the reference first, then reports the median of repeated
runs.
"""
import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

import bench_jit
import bench_overhead
import bench_resnet9
import needle as ndl
import needle.backend_ndarray as nd

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # torch is optional
    torch = None

NOTES_MARKER = "<!-- notes -->"
RESNET9_CONVS = [(32, 3, 16, 7, 4), (8, 16, 32, 3, 2), (4, 32, 32, 3, 1), (4, 32, 32, 3, 1),
                 (4, 32, 64, 3, 2), (2, 64, 128, 3, 2), (1, 128, 128, 3, 1), (1, 128, 128, 3, 1)]


def median_s(fn, repeats, sync=None):
    # Let the previous framework's worker threads (OpenBLAS, torch's and our OpenMP pools
    # all spin for a while after a call) go idle first: on 2 cores they would steal one.
    time.sleep(0.2)
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine():
    cpu = platform.processor() or "unknown cpu"
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
        flags = next(line for line in lines if line.startswith("flags")).split()
        simd = [f for f in ("avx2", "fma", "avx512f") if f in flags]
    except (OSError, StopIteration):
        simd = []
    parts = [cpu, f"{os.cpu_count()} cores", "+".join(simd) or "no avx2",
             f"numpy {np.__version__}", f"torch {torch.__version__}" if torch else "no torch",
             f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"]
    if ndl.cuda().enabled() and torch is not None and torch.cuda.is_available():
        parts.append(torch.cuda.get_device_name(0))
    return ", ".join(parts)


def check(name, got, want, tol):
    err = float(np.max(np.abs(np.asarray(got) - np.asarray(want))))
    if err > tol:
        raise AssertionError(f"{name}: max abs diff {err} > {tol}")


def row(name, unit, ours, numpy_val=None, torch_val=None, higher_is_better=True):
    """A table row; ratios are 'needle is x times as fast' (> 1 means needle wins)."""
    def ratio(other):
        if other is None or ours is None:
            return ""
        return f"{(ours / other) if higher_is_better else (other / ours):.2f}x"
    fmt = lambda v: "" if v is None else f"{v:.3g}"  # noqa: E731
    return [name, unit, fmt(ours), fmt(numpy_val), fmt(torch_val), ratio(numpy_val), ratio(torch_val)]


def torch_device(device):
    """The torch device matching a needle device, or None (no torch, or no GPU for torch)."""
    if torch is None:
        return None
    if device.name == "cuda":
        return "cuda" if torch.cuda.is_available() else None
    return "cpu"


def torch_sync(dev):
    return torch.cuda.synchronize if dev == "cuda" else None


def bench_sgemm(device, sizes, repeats, tf32=False):
    """GFLOP/s of an n x n x n product; on cuda, tf32 says which mode both frameworks run (needle's
    is NEEDLE_CUDA_TF32, read once per process)."""
    rows = []
    mode = " TF32" if tf32 else ""
    for n in sizes:
        x = np.random.randn(n, n).astype(np.float32)
        y = np.random.randn(n, n).astype(np.float32)
        a, b = nd.array(x, device=device), nd.array(y, device=device)
        check(f"sgemm {n}", (a @ b).numpy(), x @ y, (3e-2 if tf32 else 1e-2) * np.sqrt(n))
        flops = 2 * n ** 3 / 1e9
        ours = flops / median_s(lambda: a @ b, repeats, device.synchronize)
        np_val = flops / median_s(lambda: x @ y, repeats) if device.name == "cpu" else None
        t_val = None
        dev = torch_device(device)
        if dev is not None:
            if dev == "cuda":
                torch.backends.cuda.matmul.allow_tf32 = tf32
            tx, ty = torch.tensor(x, device=dev), torch.tensor(y, device=dev)
            t_val = flops / median_s(lambda: tx @ ty, repeats, torch_sync(dev))
        rows.append(row(f"sgemm {n}x{n}x{n}{mode} ({device.name})", "GFLOP/s", ours, np_val, t_val))
    return rows


def bench_conv_layers(device, batch, repeats):
    """Forward+backward of every ResNet9 convolution, summed (ms); torch on the same device
    (cuDNN on cuda)."""
    ours_total, torch_total = 0.0, 0.0
    dev = torch_device(device)
    for h, cin, cout, k, s in RESNET9_CONVS:
        x = np.random.randn(batch, h, h, cin).astype(np.float32)
        w = (np.random.randn(k, k, cin, cout) / np.sqrt(k * k * cin)).astype(np.float32)
        X, W = ndl.Tensor(x, device=device), ndl.Tensor(w, device=device)

        def step():
            ndl.conv(X, W, stride=s, padding=k // 2).sum().backward()
        step()
        if dev is not None:
            xt = torch.tensor(x, device=dev).permute(0, 3, 1, 2).contiguous().requires_grad_()
            wt = torch.tensor(w, device=dev).permute(3, 2, 0, 1).contiguous().requires_grad_()
            F.conv2d(xt, wt, stride=s, padding=k // 2).sum().backward()
            check("conv dx", X.grad.numpy(), xt.grad.permute(0, 2, 3, 1).cpu().numpy(), 1e-2)
            check("conv dw", W.grad.numpy(), wt.grad.permute(2, 3, 1, 0).cpu().numpy(), 1e-1)
            torch_total += median_s(
                lambda: F.conv2d(xt, wt, stride=s, padding=k // 2).sum().backward(), repeats,
                torch_sync(dev))
        ours_total += median_s(step, repeats, device.synchronize)
    return [row(f"conv fwd+bwd, ResNet9 layers, batch {batch} ({device.name})", "ms",
                ours_total * 1e3, None, torch_total * 1e3 if dev is not None else None,
                higher_is_better=False)]


def bench_pool_softmax(device, repeats, batch=32, rows_=1024):
    rows = []
    dev = torch_device(device)
    x = np.random.randn(batch, 16, 16, 64).astype(np.float32)
    X = ndl.Tensor(x, device=device)

    def pool():
        ndl.ops.max_pool2d(X, 3, 2, 1).sum().backward()
    pool()
    t_val = None
    if dev is not None:
        xt = torch.tensor(x, device=dev).permute(0, 3, 1, 2).contiguous().requires_grad_()
        F.max_pool2d(xt, 3, 2, 1).sum().backward()
        check("max_pool2d grad", X.grad.numpy(), xt.grad.permute(0, 2, 3, 1).cpu().numpy(), 1e-5)
        t_val = median_s(lambda: F.max_pool2d(xt, 3, 2, 1).sum().backward(), repeats,
                         torch_sync(dev)) * 1e3
    rows.append(row(f"max_pool2d 3x3/2 fwd+bwd, {batch}x16x16x64 ({device.name})", "ms",
                    median_s(pool, repeats, device.synchronize) * 1e3, None, t_val,
                    higher_is_better=False))

    z = np.random.randn(rows_, 1000).astype(np.float32)
    g = np.random.randn(rows_, 1000).astype(np.float32)
    Z = ndl.Tensor(z, device=device)
    G = ndl.Tensor(g, device=device, requires_grad=False)

    def softmax():
        ndl.ops.softmax(Z, axis=1).backward(G)
    softmax()
    e = np.exp(z - z.max(1, keepdims=True))
    sm = e / e.sum(1, keepdims=True)
    check("softmax grad", Z.grad.numpy(), sm * (g - (g * sm).sum(1, keepdims=True)), 1e-4)
    t_val = None
    if dev is not None:
        zt = torch.tensor(z, device=dev, requires_grad=True)
        gt = torch.tensor(g, device=dev)
        t_val = median_s(lambda: torch.softmax(zt, 1).backward(gt), repeats, torch_sync(dev)) * 1e3
    rows.append(row(f"softmax {rows_}x1000 fwd+bwd ({device.name})", "ms",
                    median_s(softmax, repeats, device.synchronize) * 1e3, None, t_val,
                    higher_is_better=False))
    return rows


def bench_step(device, batch, steps):
    res = dict((name, (ips, mb)) for name, ips, _, mb in bench_resnet9.run(batch, steps, device.name))
    ours, theirs = res.get("needle"), res.get("torch")
    rows = [row(f"ResNet9 train step, batch {batch} ({device.name})", "images/s",
                ours[0] if ours else None, None, theirs[0] if theirs else None)]
    peak = "peak RSS" if device.name == "cpu" else "device memory"
    if device.name == "cpu" or (ours and ours[1] is not None):
        rows.append(row(f"ResNet9 train step {peak}, batch {batch} ({device.name})", "MB",
                        ours[1] if ours else None, None, theirs[1] if theirs else None,
                        higher_is_better=False))
    return rows


def bench_jit_steps(quick):
    """Training steps eager and replayed by ndl.jit, against torch eager, each in its own
    process, alternated; then ResNet9 batch 128 again with one core kept busy."""
    rows = []
    steps, rounds = (5, 1) if quick else (30, 3)
    cases = [("resnet9", 32, False), ("resnet9", 128, False), ("lenet", 64, False),
             ("resnet9", 128, True)]
    for model, batch, busy in cases:
        best = bench_jit.run(model, batch, steps, rounds, busy)
        theirs = best.get("torch", (None,))[0]
        name = {"resnet9": "ResNet9", "lenet": "LeNet"}[model]
        for mode, label in (("eager", "eager"), ("jit", "ndl.jit")):
            ours = best.get(mode, (None,))[0]
            rows.append(row(f"{name} train step, batch {batch}, {label}"
                            f"{', one core busy' if busy else ''}", "images/s", ours, None,
                            theirs))
    return rows


def bench_op_overhead(repeats):
    x = np.random.randn(4, 4).astype(np.float32)
    y = np.random.randn(4, 4).astype(np.float32)
    fwd, fwd_bwd = bench_overhead.bench_needle(ndl.cpu(), x, y, 2000, repeats)
    t = bench_overhead.bench_torch(x, y, 2000, repeats)
    return [row("Tensor add 4x4, forward", "us/op", fwd, None, t[0] if t else None,
                higher_is_better=False),
            row("Tensor add 4x4, forward+backward", "us/op", fwd_bwd, None, t[1] if t else None,
                higher_is_better=False)]


def tf32_sgemm_rows(sizes, repeats):
    """The TF32 sgemm rows, from a child process: NEEDLE_CUDA_TF32 is read once per process."""
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--tf32-sgemm-child",
                           json.dumps([sizes, repeats])], capture_output=True, text=True,
                          env=dict(os.environ, NEEDLE_CUDA_TF32="1"), check=False)
    if proc.returncode != 0:
        raise RuntimeError("TF32 sgemm benchmark failed:\n" + proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cuda_rows(quick, repeats):
    """The GPU report: sgemm FP32 and TF32 vs torch.matmul, the ResNet9 convolutions vs cuDNN,
    pooling, softmax, a ResNet9 step at batch 256 vs torch + cuDNN. --quick: sizes small
    enough for the CPU emulator (NEEDLE_CUDA_EMULATOR=1), which checks the code path only."""
    device = ndl.cuda()
    sizes = [64, 128] if quick else [1024, 2048, 4096, 8192]
    rows = bench_sgemm(device, sizes, repeats)
    rows += tf32_sgemm_rows(sizes, repeats)
    rows += bench_conv_layers(device, 1 if quick else 32, repeats)
    rows += bench_pool_softmax(device, repeats, 2 if quick else 32, 8 if quick else 1024)
    rows += bench_step(device, 2 if quick else 256, 1 if quick else 10)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes")
    parser.add_argument("--out", help="also write the markdown to this file")
    parser.add_argument("--device", choices=["all", "cpu", "cuda"], default="all",
                        help="all (default): cpu, then cuda when enabled; cuda: the GPU report")
    parser.add_argument("--tf32-sgemm-child", help=argparse.SUPPRESS)  # [sizes, repeats]
    args = parser.parse_args()
    np.random.seed(0)
    if args.tf32_sgemm_child:
        sizes, repeats = json.loads(args.tf32_sgemm_child)
        print(json.dumps(bench_sgemm(ndl.cuda(), sizes, repeats, tf32=True)))
        return
    repeats = 3 if args.quick else 9
    rows = []
    if args.device in ("all", "cpu"):
        rows += bench_sgemm(ndl.cpu(), [256, 512] if args.quick else [512, 1024, 2048], repeats)
        rows += bench_conv_layers(ndl.cpu(), 32, repeats)
        rows += bench_pool_softmax(ndl.cpu(), repeats)
        rows += bench_step(ndl.cpu(), 32 if args.quick else 128, 2 if args.quick else 10)
        rows += bench_jit_steps(args.quick)
        gc.collect()  # the graphs of the benchmarks above would slow every allocation below
        rows += bench_op_overhead(repeats)
    if args.device == "cuda" and not ndl.cuda().enabled():
        parser.error("--device cuda: needle.cuda() is not enabled (no GPU, module not built)")
    if args.device == "cuda" or (args.device == "all" and ndl.cuda().enabled()):
        gc.collect()
        rows += cuda_rows(args.quick, repeats)
    header = ["benchmark", "unit", "needle", "numpy", "torch", "vs numpy", "vs torch"]
    lines = [f"Measured {datetime.date.today().isoformat()} on: {machine()}", "",
             "Median of repeated runs. Ratios > 1 mean needle is faster (or leaner).", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    text = "\n".join(lines)
    print(text)
    if args.out:
        notes = ""  # hand-written analysis below the marker survives a regeneration
        if os.path.exists(args.out):
            with open(args.out) as f:
                old = f.read()
            if NOTES_MARKER in old:
                notes = old[old.index(NOTES_MARKER):]
        with open(args.out, "w") as f:
            f.write("# Performance\n\nGenerated by `python benchmarks/run.py --out "
                    f"{args.out}`.\n\n{text}\n\n{notes}")


if __name__ == "__main__":
    main()
