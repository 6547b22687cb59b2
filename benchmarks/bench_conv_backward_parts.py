"""Two parts of a ResNet9 step's conv backward, timed alone (best of --repeats):

* the weight gradients' im2col: each conv's input padded again (the ops keep no copy from the
  forward), with the inputs laid out as nn.Conv hands them (an NCHW array viewed as NHWC);
* the stem's input gradient (conv_transpose 7x7 / 4 down to the 3-channel image), which a data
  batch's deferred `.grad` skips unless it is read.

    OMP_NUM_THREADS=1 python benchmarks/bench_conv_backward_parts.py [--batch 128]
"""
import argparse
import time

import numpy as np

import needle as ndl
import needle.backend_ndarray as nd
from needle.ops.ops_conv_geometry import _im2col, _plan, conv_output_size

# ResNet9's convs: input size, input channels, kernel, stride (padding kernel // 2)
LAYERS = [(32, 3, 7, 4), (8, 16, 3, 2), (4, 32, 3, 1), (4, 32, 3, 1), (4, 32, 3, 2),
          (2, 64, 3, 2), (1, 128, 3, 1), (1, 128, 3, 1)]


def best_ms(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    dev, b = ndl.cpu(), args.batch
    rng = np.random.default_rng(0)
    total = 0.0
    for h, c, k, s in LAYERS:
        x = nd.array(rng.standard_normal((b, c, h, h), dtype=np.float32), device=dev)
        x = x.permute((0, 2, 3, 1))
        o = conv_output_size(h, k, s, k // 2)
        plan = _plan((h, h), (k, k), (s, s), (k // 2, k // 2), (1, 1), (o, o))
        ms = best_ms(lambda: _im2col(x, plan, (s, s), (1, 1), (o, o), 1), args.repeats)
        total += ms
        print(f"im2col for dW, {b}x{h}x{h}x{c}, {k}x{k}/{s}: {ms:.3f} ms")
    print(f"im2col for dW, all layers: {total:.3f} ms")
    g = ndl.Tensor(rng.standard_normal((b, 8, 8, 16), dtype=np.float32), device=dev,
                   requires_grad=False)
    w = ndl.Tensor(rng.standard_normal((7, 7, 16, 3), dtype=np.float32), device=dev,
                   requires_grad=False)
    ms = best_ms(lambda: ndl.conv_transpose(g, w, 4, 3, 1, 1, 3), args.repeats)
    print(f"stem input gradient, {b}x8x8x16 -> {b}x32x32x3: {ms:.3f} ms")


if __name__ == "__main__":
    main()
