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
import operator
import os
import statistics
import time

import needle.backend_ndarray as nd
import numpy as np

try:
    import torch
except ImportError:  # optional
    torch = None


def median_seconds(fn, args, repeats, sync=None):
    """Median wall time of fn(*args) over `repeats` runs, after a warm-up run."""
    # Let the previous library's worker threads stop spinning (OpenBLAS spins ~0.1 s after a
    # call), else both thread pools fight over the cores.
    time.sleep(0.2)
    fn(*args)  # warm-up: first-touch page faults, thread-pool start
    if sync:
        sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
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
    print(f"{name:<40} {unit:<7} {cells}   {ratios}   (max abs diff {diff:.2g})")


def bench_matmul(devices, sizes, repeats):
    """Square n x n x n products, then a batch of 64 small ones (the batch-parallel path)."""
    rng = np.random.default_rng(0)
    shapes = [((n, n), (n, n)) for n in sizes] + [((64, 64, 64), (64, 64, 64))]
    for sa, sb in shapes:
        a = rng.standard_normal(sa, dtype=np.float32)
        b = rng.standard_normal(sb, dtype=np.float32)
        want = a.astype(np.float64) @ b.astype(np.float64)
        n = sa[-1]
        flops = 2.0 * np.prod(want.shape) * n
        reps = max(3, min(repeats, int(4e10 / flops)))
        figures = [("numpy", flops / median_seconds(operator.matmul, (a, b), reps) / 1e9)]
        diff = 0.0
        for dev in devices:
            x, y = nd.array(a, device=dev), nd.array(b, device=dev)
            diff = max(diff, check(f"matmul {n} {dev}", (x @ y).numpy(), want, 2e-5 * n))
            sec = median_seconds(operator.matmul, (x, y), reps, dev.synchronize)
            figures.append((f"needle-{dev.name}", flops / sec / 1e9))
        if torch is not None:
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            diff = max(diff, check(f"matmul {n} torch", (ta @ tb).numpy(), want, 2e-5 * n))
            figures.append(("torch", flops / median_seconds(operator.matmul, (ta, tb), reps) / 1e9))
        name = f"matmul {n}x{n}x{n}" if len(sa) == 2 else f"matmul {sa[0]} x ({n}x{n}x{n})"
        report(name, "GFLOP/s", figures, diff)


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
        figures = [("numpy", moved / median_seconds(np_fn, (a, b), repeats) / 1e9)]
        diff = 0.0
        for dev in devices:
            x, y = nd.array(a, device=dev), nd.array(b, device=dev)
            diff = max(diff, check(f"{name} {dev}", nd_fn(x, y).numpy(), want, 1e-6))
            sec = median_seconds(nd_fn, (x, y), repeats, dev.synchronize)
            figures.append((f"needle-{dev.name}", moved / sec / 1e9))
        if torch is not None:
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            diff = max(diff, check(f"{name} torch", torch_fn(ta, tb).numpy(), want, 1e-6))
            sec = median_seconds(torch_fn, (ta, tb), repeats)
            figures.append(("torch", moved / sec / 1e9))
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
