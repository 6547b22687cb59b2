"""ResNet9 training step (forward + backward + SGD) in images/s and peak memory: needle vs PyTorch.

    python benchmarks/bench_resnet9.py [--batch 128] [--steps 5] [--device cpu]

Each framework runs in its own child process so that its peak resident memory (ru_maxrss) is
its own. The first step is a warm-up; the figure is the median of the remaining steps.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np


def needle_step_times(batch, steps, device_name):
    import needle as ndl
    from apps.models import ResNet9

    device = getattr(ndl, device_name)()
    np.random.seed(0)
    model = ResNet9(device=device)
    opt = ndl.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = ndl.nn.SoftmaxLoss()
    x = ndl.Tensor(np.random.randn(batch, 3, 32, 32).astype(np.float32), device=device,
                   requires_grad=False)
    y = ndl.Tensor(np.random.randint(0, 10, batch).astype(np.float32), device=device,
                   requires_grad=False)
    model.train()
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        opt.reset_grad()
        loss = loss_fn(model(x), y)
        loss.backward(create_graph=False)  # constant grads, as torch's default
        opt.step()
        loss.numpy()  # a host read: waits for queued device work
        times.append(time.perf_counter() - start)
    return times[1:]


def torch_resnet9():
    """ResNet9 in PyTorch, layer for layer as apps.models.ResNet9 (seeded with 0)."""
    import torch
    import torch.nn as tnn

    def conv_bn(a, b, k, s):
        return tnn.Sequential(tnn.Conv2d(a, b, k, s, k // 2), tnn.BatchNorm2d(b), tnn.ReLU())

    class Residual(tnn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def forward(self, x):
            return self.fn(x) + x

    torch.manual_seed(0)
    return tnn.Sequential(
        conv_bn(3, 16, 7, 4), conv_bn(16, 32, 3, 2),
        Residual(tnn.Sequential(conv_bn(32, 32, 3, 1), conv_bn(32, 32, 3, 1))),
        conv_bn(32, 64, 3, 2), conv_bn(64, 128, 3, 2),
        Residual(tnn.Sequential(conv_bn(128, 128, 3, 1), conv_bn(128, 128, 3, 1))),
        tnn.Flatten(), tnn.Linear(128, 128), tnn.ReLU(), tnn.Linear(128, 10))


def torch_train_times(model, x, y, steps):
    """Seconds of each of `steps` SGD-momentum steps of `model` on (x, y), after one warm-up."""
    import torch
    import torch.nn as tnn

    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        opt.zero_grad()
        loss = tnn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        loss.item()
        times.append(time.perf_counter() - start)
    return times[1:]


def torch_step_times(batch, steps, device_name):
    import torch

    dev = "cuda" if device_name == "cuda" else "cpu"
    model = torch_resnet9().to(dev)
    x = torch.randn(batch, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    return torch_train_times(model, x, y, steps)


def peak_rss_mb():
    """This process's peak resident memory (VmHWM; ru_maxrss would keep the parent's across exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def gpu_used_mb():
    """Device memory in use (cuMemGetInfo of the current context), or None without a GPU driver."""
    import ctypes
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    if lib.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)) != 0:
        return None
    return (total.value - free.value) / 2 ** 20


def start_gpu(framework):
    """Creates the framework's CUDA context; returns the device memory in use then."""
    if framework == "needle":
        import needle as ndl
        ndl.Tensor(np.zeros(1, np.float32), device=ndl.cuda()).numpy()
    else:
        import torch
        torch.zeros(1, device="cuda")
        torch.cuda.synchronize()
    return gpu_used_mb()


def child(framework, batch, steps, device_name):
    fn = needle_step_times if framework == "needle" else torch_step_times
    # On a GPU: the device memory the steps added to a fresh context. Both caching allocators
    # (needle's memory pool, torch's) keep what they took, so this is the step's peak.
    base = start_gpu(framework) if device_name == "cuda" else None
    times = fn(batch, steps, device_name)
    used = gpu_used_mb() if base is not None else None
    print(json.dumps({"median_s": statistics.median(times), "peak_mb": peak_rss_mb(),
                      "gpu_mb": None if used is None else used - base}))


def measure(framework, batch, steps, device_name):
    """Run one framework in a child process; returns dict or None when unavailable."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, __file__, "--child", framework, "--batch", str(batch),
                           "--steps", str(steps), "--device", device_name],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-2000:])
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(batch=128, steps=5, device_name="cpu"):
    """Rows (name, images/s, ms/step, peak MB) for needle and torch (when installed); the peak
    is host RSS on cpu, device memory on cuda (None on the emulator)."""
    rows = []
    for framework in ("needle", "torch"):
        if framework == "torch":
            try:
                import torch
            except ImportError:
                continue
            if device_name == "cuda" and not torch.cuda.is_available():  # e.g. on the emulator
                continue
        res = measure(framework, batch, steps, device_name)
        if res is not None:
            rows.append((framework, batch / res["median_s"], res["median_s"] * 1e3,
                         res["gpu_mb"] if device_name == "cuda" else res["peak_mb"]))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", choices=["needle", "torch"])
    args = parser.parse_args()
    if args.child:
        child(args.child, args.batch, args.steps, args.device)
        return
    rows = run(args.batch, args.steps, args.device)
    print(f"ResNet9 training step, batch {args.batch}, device {args.device}")
    print(f"{'framework':<10} {'images/s':>10} {'ms/step':>10} {'peak MB':>10}")
    for name, ips, ms, mb in rows:
        print(f"{name:<10} {ips:>10.1f} {ms:>10.1f} {mb:>10.0f}")
    if len(rows) == 2:
        print(f"needle/torch images/s ratio: {rows[0][1] / rows[1][1]:.3f}; "
              f"peak memory ratio: {rows[0][3] / rows[1][3]:.2f}")


if __name__ == "__main__":
    main()
