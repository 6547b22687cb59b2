"""Per-op Python overhead of the autograd layer: a small Tensor add, forward and forward+backward.

Validates the result against numpy first, then times (median of repeats, microseconds per op):
  * forward:          c = a + b
  * forward+backward: (a + b).backward()   (default out_grad = ones)
for needle on cpu and cpu_numpy, and torch (CPU) when installed, and prints ratios to torch.

    python benchmarks/bench_overhead.py [--size 4] [--repeats 7] [--number 2000]
"""
import argparse
import statistics
import time

import numpy as np

import needle as ndl


def _time_per_call(fn, number, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number * 1e6)
    return statistics.median(times)


def bench_needle(device, x, y, number, repeats):
    a = ndl.Tensor(x, device=device)
    b = ndl.Tensor(y, device=device)
    got = (a + b).numpy()
    err = float(np.max(np.abs(got - (x + y))))
    assert err < 1e-6, f"needle on {device}: max abs diff {err}"

    def fwd():
        return a + b

    def fwd_bwd():
        (a + b).backward()

    fwd_bwd()
    assert np.allclose(a.grad.numpy(), 1.0)
    return _time_per_call(fwd, number, repeats), _time_per_call(fwd_bwd, number, repeats)


def bench_torch(x, y, number, repeats):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    a = torch.tensor(x, requires_grad=True)
    b = torch.tensor(y, requires_grad=True)
    ones = torch.ones_like(a)
    assert float((a + b - torch.tensor(x + y)).detach().abs().max()) < 1e-6

    def fwd():
        return a + b

    def fwd_bwd():
        (a + b).backward(ones)

    return _time_per_call(fwd, number, repeats), _time_per_call(fwd_bwd, number, repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4, help="tensors are size x size")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--number", type=int, default=2000, help="calls per repeat")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.size, args.size)).astype(np.float32)
    y = rng.standard_normal((args.size, args.size)).astype(np.float32)

    rows = []
    for name, dev in (("needle cpu", ndl.cpu()), ("needle cpu_numpy", ndl.cpu_numpy())):
        rows.append((name, *bench_needle(dev, x, y, args.number, args.repeats)))
    torch_times = bench_torch(x, y, args.number, args.repeats)
    if torch_times is not None:
        rows.append(("torch cpu", *torch_times))

    print(f"Tensor add, {args.size}x{args.size} float32, median of {args.repeats} x "
          f"{args.number} calls (us/op)")
    print(f"{'impl':<18}{'forward':>10}{'fwd+bwd':>10}{'fwd/torch':>11}{'f+b/torch':>11}")
    for name, fwd, fwd_bwd in rows:
        if torch_times is None:
            ratios = ("      n/a", "      n/a")
        else:
            ratios = (f"{fwd / torch_times[0]:>10.2f}x", f"{fwd_bwd / torch_times[1]:>10.2f}x")
        print(f"{name:<18}{fwd:>10.2f}{fwd_bwd:>10.2f}{ratios[0]}{ratios[1]}")


if __name__ == "__main__":
    main()
