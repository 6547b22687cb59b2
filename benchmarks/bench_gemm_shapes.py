"""Times NDArray matmul on the ResNet9 (batch 128) training-step shapes against numpy and torch,
in one process, interleaved: ms per call (best of the repeats: on a shared box the median
mostly measures the other jobs) and GFLOP/s.

    PYTHONPATH=python python benchmarks/bench_gemm_shapes.py [--repeats 7] [--squares]

A shape `NN m x n x p` is out (m x p) = a (m x n) @ b (n x p); `TN` reads a^T in place (a is
stored n x m), `NT` reads b^T in place. Every result is checked against numpy first.
"""
import argparse
import time

import needle.backend_ndarray as nd
import numpy as np

try:
    import torch
except ImportError:  # torch is optional here
    torch = None

SHAPES = [
    ("NN", 8192, 147, 16), ("NN", 8192, 16, 147), ("TN", 147, 8192, 16),
    ("NN", 2048, 144, 32), ("NN", 2048, 32, 144), ("TN", 144, 2048, 32),
    ("NN", 2048, 288, 32), ("NN", 2048, 32, 288), ("TN", 288, 2048, 32),
    ("NN", 512, 288, 64), ("NN", 512, 64, 288), ("TN", 288, 512, 64),
    ("NN", 128, 1152, 128), ("NN", 128, 128, 1152), ("TN", 1152, 128, 128),
    ("NN", 128, 128, 128), ("NT", 128, 128, 128), ("TN", 128, 128, 128),
]
SQUARES = [("NN", 512, 512, 512), ("NN", 1024, 1024, 1024), ("NN", 2048, 2048, 2048),
           ("TN", 1024, 1024, 1024), ("NT", 1024, 1024, 1024)]


def time_call(fn, calls):
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def make_case(kind, m, n, p, rng):
    ta, tb = kind[0] == "T", kind[1] == "T"
    a = rng.uniform(-1, 1, (n, m) if ta else (m, n)).astype(np.float32)
    b = rng.uniform(-1, 1, (p, n) if tb else (n, p)).astype(np.float32)
    a_op, b_op = (a.T if ta else a), (b.T if tb else b)
    x, y = nd.array(a, device=nd.cpu()), nd.array(b, device=nd.cpu())
    fns = {
        "needle": lambda: nd.matmul(x, y, transpose_a=ta, transpose_b=tb),
        "numpy": lambda: a_op @ b_op,
    }
    if torch is not None:
        ta_, tb_ = torch.from_numpy(a), torch.from_numpy(b)
        ta_op, tb_op = (ta_.T if ta else ta_), (tb_.T if tb else tb_)
        fns["torch"] = lambda: ta_op @ tb_op
    want = a_op.astype(np.float64) @ b_op
    got = fns["needle"]().numpy()
    assert np.allclose(got, want, rtol=1e-4, atol=1e-5 * n), f"{kind} {m}x{n}x{p} wrong"
    return fns


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--squares", action="store_true", help="large squares instead")
    parser.add_argument("--only", default="", help="run the shapes whose name contains this")
    parser.add_argument("--pause", type=float, default=0.2,
                        help="seconds of sleep before each library's turn")
    parser.add_argument("--target-ms", type=float, default=20.0, help="time per repeat")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    shapes = SQUARES if args.squares else SHAPES
    names = ["needle", "numpy"] + (["torch"] if torch is not None else [])
    print(f"{'shape':<22}" + "".join(f"{n + ' ms':>11}" for n in names)
          + "".join(f"{n + ' GF/s':>12}" for n in names))
    for kind, m, n, p in shapes:
        if args.only not in f"{kind} {m}x{n}x{p}":
            continue
        fns = make_case(kind, m, n, p, rng)
        for fn in fns.values():
            fn()
        calls = max(1, int(args.target_ms * 1e-3 / max(time_call(fns["needle"], 3), 1e-6)))
        samples = {name: [] for name in names}
        for _ in range(args.repeats):  # interleaved, so a noisy moment hits everyone
            for name in names:
                # The other libraries' idle threads spin for a while after their last call
                # (OpenBLAS ~0.1 s): let them fall asleep, or they steal the 2 cores.
                time.sleep(args.pause)
                fns[name]()
                samples[name].append(time_call(fns[name], calls))
        med = {name: float(np.min(v)) for name, v in samples.items()}
        flops = 2.0 * m * n * p
        print(f"{kind} {m}x{n}x{p}".ljust(22)
              + "".join(f"{med[x] * 1e3:11.3f}" for x in names)
              + "".join(f"{flops / med[x] * 1e-9:12.1f}" for x in names), flush=True)


if __name__ == "__main__":
    main()
