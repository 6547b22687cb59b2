"""DataLoader throughput with worker processes: CIFAR-style augmentation (random crop with
padding 4, horizontal flip, normalize) on synthetic 32 x 32 x 3 uint8 images, in images/s.

First validates that 1 and 2 workers yield exactly the batches of 0 workers (same
`ndl.Generator` seed, max abs diff 0), then times one epoch per setting (median of repeats)
for needle and, when installed, torch.utils.data.DataLoader over the same transforms.

    python benchmarks/bench_dataloader.py [--images 10000] [--batch-size 128] [--repeats 3]
"""
import argparse
import os
import platform
import statistics
import time

import needle as ndl
import numpy as np
from needle import data


class SyntheticCIFAR(data.Dataset):
    """N random uint8 32 x 32 x 3 images; items are augmented one by one -> (3, 32, 32) float32."""

    def __init__(self, n):
        super().__init__([data.RandomCropPad(32, padding=4), data.RandomFlipHorizontal(),
                          data.ToTensor(layout="HWC"),
                          data.Normalize(data.CIFAR10_MEAN, data.CIFAR10_STD), data.ToTensor()])
        rng = np.random.RandomState(0)
        self.images = rng.randint(0, 256, (n, 32, 32, 3)).astype(np.uint8)
        self.labels = rng.randint(0, 10, n)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        i = int(i)  # one item at a time, as a torchvision dataset does
        return self.apply_transforms(self.images[i]), self.labels[i]


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _epoch_time(make_loader, repeats):
    times = []
    for _ in range(repeats):
        loader = make_loader()
        start = time.perf_counter()
        for _batch in loader:
            pass
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=10000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args(argv)
    ds = SyntheticCIFAR(args.images)

    def needle_loader(workers):
        return data.DataLoader(ds, args.batch_size, True, num_workers=workers,
                               generator=ndl.Generator(0))

    # validation: the first 4 batches agree across worker counts
    reference = [tuple(t.numpy() for t in b) for _, b in zip(range(4), needle_loader(0))]
    for workers in args.workers:
        got = [tuple(t.numpy() for t in b) for _, b in zip(range(4), needle_loader(workers))]
        diff = max(float(np.abs(a - b).max()) for x, y in zip(got, reference)
                   for a, b in zip(x, y))
        print(f"validate num_workers={workers}: max abs diff vs num_workers=0 = {diff}")
        assert diff == 0.0

    print(f"CPU: {_cpu_model()} ({os.cpu_count()} logical cores); {args.images} images, "
          f"batch {args.batch_size}, median of {args.repeats} epochs")
    base = {}
    for workers in args.workers:
        t = _epoch_time(lambda workers=workers: needle_loader(workers), args.repeats)
        base.setdefault("needle", t)
        print(f"needle DataLoader num_workers={workers}: {args.images / t:10.0f} images/s "
              f"({base['needle'] / t:.2f}x of 0 workers)")
    try:
        import torch
    except ImportError:
        print("torch not installed: no torch comparison")
        return
    torch.set_num_threads(1)
    for workers in args.workers:
        t = _epoch_time(lambda workers=workers: torch.utils.data.DataLoader(
            ds, args.batch_size, shuffle=True, num_workers=workers), args.repeats)
        base.setdefault("torch", t)
        print(f"torch  DataLoader num_workers={workers}: {args.images / t:10.0f} images/s "
              f"({base['torch'] / t:.2f}x of 0 workers)")


if __name__ == "__main__":
    main()
