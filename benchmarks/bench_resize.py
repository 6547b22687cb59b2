"""The digits resize: needle's hand-written `resize_bilinear` against scipy.ndimage.zoom and
Pillow on all 1,797 sklearn digits (max abs difference, then the median time of each, taken
in turn so that load on a shared machine hits all three alike). docs/data.md has the figures.

    python benchmarks/bench_resize.py [--size 28] [--repeats 7]
"""
import argparse
import platform
import statistics
import time

import numpy as np
from PIL import Image
from scipy import ndimage
from sklearn.datasets import load_digits

from needle.data import resize_bilinear


def scipy_zoom(images, size):
    _, h, w = images.shape
    return ndimage.zoom(images, (1, size / h, size / w), order=1, grid_mode=True, mode="nearest")


def pillow(images, size):
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR))
                     for im in images])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    images = load_digits().images.astype(np.float32) / np.float32(16)
    ours = resize_bilinear(images, args.size)
    candidates = {"needle resize_bilinear": resize_bilinear, "scipy.ndimage.zoom": scipy_zoom,
                  "Pillow Image.resize": pillow}
    for name, fn in list(candidates.items())[1:]:
        print(f"{name}: max abs difference {np.abs(fn(images, args.size) - ours).max():.2g}")
    times = {name: [] for name in candidates}
    for _ in range(args.repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn(images, args.size)
            times[name].append(time.perf_counter() - start)
    print(f"{len(images)} images 8x8 -> {args.size}x{args.size}, median of {args.repeats} "
          f"({platform.processor() or platform.machine()}):")
    for name, ts in times.items():
        print(f"  {name:<24} {statistics.median(ts) * 1e3:7.1f} ms")


if __name__ == "__main__":
    main()
