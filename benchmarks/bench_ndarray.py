"""NDArray speed against numpy (and PyTorch when installed): matmul GFLOP/s, compact and
element-wise GB/s.

Every case first checks needle's result against numpy (max abs diff) and stops on a mismatch,
then reports the median time of `--repeats` runs after a warm-up and the ratio to numpy.
Threads: set OMP_NUM_THREADS (needle), OPENBLAS_NUM_THREADS (numpy) and torch follow the
environment; by default all use every core.

    python benchmarks/bench_ndarray.py                       # cpu (and cuda when enabled)
    python benchmarks/bench_ndarray.py --sizes 256 512 --repeats 5
"""
import argparse
import os
import statistics
import time

import numpy as np

import needle.backend_ndarray as nd

try:
    import torch
except ImportError:  # optional
    torch = None


def median_seconds(fn, repeats, sync=None):
    fn()  # warm-up: first-touch page faults, thread-pool start
    if sync:
        sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def check(name, got, want, tol):
    diff = float(np.max(np.abs(np.asarray(got, dtype=np.float64) - want)))
    if not diff <= tol:
        raise SystemExit(f"{name}: max abs diff {diff:.3g} exceeds {tol:.3g}")
    return diff


def report(name, unit, figures, diff):
    """figures: list of (label, value); ratios are against the numpy entry."""
    base = dict(figures)["numpy"]
    cells = "  ".join(f"{label} {value:8.2f}" for label, value in figures)
    ratios = "  ".join(f"{label}/numpy {value / base:5.2f}x" for label, value in figures
                       if label != "numpy")
    print(f"{name:<28} {unit:<7} {cells}   {ratios}   (max abs diff {diff:.2g})")


def bench_matmul(devices, sizes, repeats):
    rng = np.random.default_rng(0)
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        want = a.astype(np.float64) @ b.astype(np.float64)
        flops = 2.0 * n ** 3
        reps = max(3, min(repeats, int(4e10 / flops)))
        figures = [("numpy", flops / median_seconds(lambda: a @ b, reps) / 1e9)]
        diff = 0.0
        for dev in devices:
            x, y = nd.array(a, device=dev), nd.array(b, device=dev)
            diff = max(diff, check(f"matmul {n} {dev}", (x @ y).numpy(), want, 2e-5 * n))
            sec = median_seconds(lambda: x @ y, reps, dev.synchronize)
            figures.append((f"needle-{dev.name}", flops / sec / 1e9))
        if torch is not None:
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            diff = max(diff, check(f"matmul {n} torch", (ta @ tb).numpy(), want, 2e-5 * n))
            figures.append(("torch", flops / median_seconds(lambda: ta @ tb, reps) / 1e9))
        report(f"matmul {n}x{n}x{n}", "GFLOP/s", figures, diff)


def bench_memory(devices, repeats, shape):
    """compact of a permuted 4-D view (read + write) and element-wise add / mul (2 reads + write)."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal(shape, dtype=np.float32)
    b = rng.standard_normal(shape, dtype=np.float32)
    nbytes = a.nbytes
    axes = (0, 3, 1, 2)
    cases = [
        ("compact permute(0,3,1,2)", 2 * nbytes,
         lambda x, y: np.ascontiguousarray(x.transpose(axes)),
         lambda x, y: x.permute(axes).compact(),
         lambda x, y: x.permute(axes).contiguous()),
        ("ewise add", 3 * nbytes, np.add, lambda x, y: x + y, lambda x, y: x + y),
        ("ewise mul", 3 * nbytes, np.multiply, lambda x, y: x * y, lambda x, y: x * y),
    ]
    label = "x".join(map(str, shape))
    for name, moved, np_fn, nd_fn, torch_fn in cases:
        want = np_fn(a, b)
        figures = [("numpy", moved / median_seconds(lambda: np_fn(a, b), repeats) / 1e9)]
        diff = 0.0
        for dev in devices:
            x, y = nd.array(a, device=dev), nd.array(b, device=dev)
            diff = max(diff, check(f"{name} {dev}", nd_fn(x, y).numpy(), want, 1e-6))
            sec = median_seconds(lambda: nd_fn(x, y), repeats, dev.synchronize)
            figures.append((f"needle-{dev.name}", moved / sec / 1e9))
        if torch is not None:
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            diff = max(diff, check(f"{name} torch", torch_fn(ta, tb).numpy(), want, 1e-6))
            figures.append(("torch", moved / median_seconds(lambda: torch_fn(ta, tb), repeats) / 1e9))
        report(f"{name} {label}", "GB/s", figures, diff)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--shape", type=int, nargs=4, default=[16, 64, 64, 64],
                        help="N H W C of the arrays for the memory-bound cases")
    args = parser.parse_args()
    devices = [nd.cpu()] + ([nd.cuda()] if nd.cuda().enabled() else [])
    threads = {k: os.environ.get(k, "unset") for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    print(f"cores {os.cpu_count()}, {threads}" + (f", torch {torch.__version__} threads "
                                                   f"{torch.get_num_threads()}" if torch else ""))
    bench_matmul(devices, args.sizes, args.repeats)
    bench_memory(devices, args.repeats, tuple(args.shape))


if __name__ == "__main__":
    main()
