"""`needle-bench`: a few of benchmarks/run.py's rows, timed from an installed package.

    needle-bench [--quick] [--device cpu|cuda]

Rows: sgemm (GFLOP/s) against numpy and, when installed, torch; a LeNet and a ResNet9 training
step (images/s), eager and replayed by `ndl.jit`. Each result is checked before it is timed;
the figures are medians. The CPU model and its vector ISA head the table: compare ratios taken
in one run, not figures across machines. The repository's benchmarks/ folder has the full set.
"""
import argparse
import platform
import sys
import time

import numpy as np

import needle as ndl
from needle.apps.models import LeNet, ResNet9

__all__ = ["main"]


def _median_seconds(fn, repeats):
    fn()  # warm up: first-call allocation and thread start-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return platform.processor() or "unknown CPU", ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                 if line.startswith("model name")), "unknown CPU")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines()
                  if line.startswith("flags")), [])
    isa = "avx512f" if "avx512f" in flags else "avx2+fma" if "avx2" in flags else "baseline"
    return name, isa


def sgemm_rows(device, sizes, repeats):
    """(name, needle, numpy, torch) GFLOP/s rows for n x n float32 matrix products."""
    try:
        import torch
    except ImportError:
        torch = None
    rows = []
    for n in sizes:
        a, b = (np.random.randn(n, n).astype(np.float32) for _ in range(2))
        x, y = (ndl.Tensor(m, device=device, requires_grad=False) for m in (a, b))
        got = (x @ y).numpy()
        if not np.allclose(got, a @ b, rtol=1e-3, atol=1e-3 * np.sqrt(n)):
            raise RuntimeError(f"needle-bench: sgemm {n} differs from numpy")
        flops = 2 * n ** 3 / 1e9
        ours = flops / _median_seconds(lambda: (x @ y).numpy(), repeats)
        ref = flops / _median_seconds(lambda: a @ b, repeats)
        theirs = None
        if torch is not None and device == ndl.cpu():
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            theirs = flops / _median_seconds(lambda: ta @ tb, repeats)
        rows.append((f"sgemm {n}, GFLOP/s", ours, ref, theirs))
    return rows


def step_rows(device, steps):
    """(name, eager img/s, jit img/s) for LeNet (batch 64) and ResNet9 (batch 32) steps."""
    rows = []
    for name, model_cls, batch, shape in (("LeNet", LeNet, 64, (1, 28, 28)),
                                          ("ResNet9", ResNet9, 32, (3, 32, 32))):
        rates = []
        for use_jit in (False, True):
            np.random.seed(0)
            model = model_cls(device=device)
            opt = ndl.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            loss_fn = ndl.nn.SoftmaxLoss()
            x = ndl.Tensor(np.random.randn(batch, *shape).astype(np.float32), device=device,
                           requires_grad=False)
            y = ndl.Tensor(np.random.randint(0, 10, batch).astype(np.float32), device=device,
                           requires_grad=False)

            def train_step(x, y):
                opt.reset_grad()
                loss = loss_fn(model(x), y)
                loss.backward()
                opt.step()
                return loss

            fn = ndl.jit(train_step) if use_jit else train_step
            for _ in range(4 if use_jit else 1):  # jit: an eager call and two captures
                fn(x, y).numpy()
            rates.append(batch / _median_seconds(lambda: fn(x, y).numpy(), steps))
        rows.append((f"{name} step, batch {batch}, img/s", *rates))
    return rows


def main(argv=None):
    """Time the rows and print them as a markdown table; returns the exit code."""
    p = argparse.ArgumentParser(prog="needle-bench", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = p.parse_args(argv)
    device = ndl.cpu() if args.device == "cpu" else ndl.cuda()
    if not device.enabled():
        print(f"error: device {args.device} is not enabled here", file=sys.stderr)
        return 2
    np.random.seed(0)
    name, isa = _cpu_model()
    print(f"needle {ndl.__version__} on {name} ({isa}), device {device}\n")
    print("| benchmark | needle | numpy | vs numpy | torch | vs torch |\n|---|---|---|---|---|---|")
    sizes, repeats = ([256, 512], 3) if args.quick else ([512, 1024], 7)
    for label, ours, ref, theirs in sgemm_rows(device, sizes, repeats):
        torch_cells = f"{theirs:.1f} | {ours / theirs:.2f}x" if theirs else "not installed |"
        print(f"| {label} | {ours:.1f} | {ref:.1f} | {ours / ref:.2f}x | {torch_cells} |")
    print("\n| training step | eager | jit | jit / eager |\n|---|---|---|---|")
    for label, eager, jitted in step_rows(device, 3 if args.quick else 10):
        print(f"| {label} | {eager:.0f} | {jitted:.0f} | {jitted / eager:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
