"""What plain `loss.backward()` costs, and three semantics a PyTorch user relies on.

    python benchmarks/bench_backward.py                  # every figure
    python benchmarks/bench_backward.py resnet9 lenet    # a subset

Figures (each in its own child process, so RSS is its own):
  resnet9  ResNet9 training step (forward, SoftmaxLoss, plain `loss.backward()`, SGD) at batch
           32 and 128: img/s, best of --steps steps after one warm-up; the same step with
           `backward(create_graph=False)` as the lean reference. With --cpu-time the step is
           timed in process CPU time (run with OMP_NUM_THREADS=1 on a loaded machine).
  lenet    LeNet, 200 steps at batch 64 with plain `loss.backward()` and no `gc.collect()`:
           peak and final RSS, and the cyclic objects the collector finds afterwards.
  race     one thread runs ops under `no_grad` while another builds a graph: how many of the
           second thread's 20,000 results came back detached (0 when grad mode is per thread).
  tying    a weight used twice by one model (a tied embedding/output layer): one SGD step's
           size divided by lr * grad (1.0 when the shared parameter is updated once).
"""
import argparse
import gc
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np


def rss_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def resnet9(batch, steps, create_graph, clock=time.perf_counter):
    import needle as ndl
    from apps.models import ResNet9

    np.random.seed(0)
    model = ResNet9(device=ndl.cpu())
    opt = ndl.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = ndl.nn.SoftmaxLoss()
    x = ndl.Tensor(np.random.randn(batch, 3, 32, 32).astype(np.float32), requires_grad=False)
    y = ndl.Tensor(np.random.randint(0, 10, batch).astype(np.float32), requires_grad=False)
    best = float("inf")
    for _ in range(steps + 1):
        start = clock()
        opt.reset_grad()
        loss = loss_fn(model(x), y)
        if create_graph is None:
            loss.backward()  # what every README reader writes
        else:
            loss.backward(create_graph=create_graph)
        opt.step()
        loss.numpy()
        best = min(best, clock() - start)
    return {"img_s": batch / best}


def lenet(steps=200, batch=64):
    import needle as ndl
    from apps.models import LeNet

    np.random.seed(0)
    model = LeNet(device=ndl.cpu())
    opt = ndl.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = ndl.nn.SoftmaxLoss()
    x = ndl.Tensor(np.random.randn(batch, 1, 28, 28).astype(np.float32), requires_grad=False)
    y = ndl.Tensor(np.random.randint(0, 10, batch).astype(np.float32), requires_grad=False)
    for _ in range(steps):
        opt.reset_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    out = {"peak_rss_mb": rss_mb("VmHWM"), "final_rss_mb": rss_mb("VmRSS")}
    del loss
    out["cyclic_objects"] = gc.collect()  # measured after the loop, not during it
    return out


def race(n=20000):
    import needle as ndl

    w = ndl.Tensor(np.ones(4, dtype=np.float32))
    stop = threading.Event()

    def eval_thread():
        while not stop.is_set():
            with ndl.no_grad():
                (w * 2.0).sum()

    other = threading.Thread(target=eval_thread)
    other.start()
    detached = 0
    try:
        for _ in range(n):
            detached += not (w * 3.0).requires_grad
    finally:
        stop.set()
        other.join()
    return {"detached": detached, "of": n}


def tying(lr=0.1):
    import needle as ndl

    class Tied(ndl.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = ndl.nn.Linear(3, 3, bias=False)
            self.b = ndl.nn.Linear(3, 3, bias=False)
            self.b.weight = self.a.weight  # one Parameter, used twice

        def forward(self, x):
            return self.b(self.a(x))

    np.random.seed(0)
    model = Tied()
    opt = ndl.optim.SGD(model.parameters(), lr=lr)
    before = model.a.weight.numpy()
    x = ndl.Tensor(np.random.randn(2, 3).astype(np.float32), requires_grad=False)
    model(x).sum().backward()
    grad = model.a.weight.grad.numpy()
    opt.step()
    step = before - model.a.weight.numpy()
    return {"step_over_lr_grad": float(np.abs(step).sum() / np.abs(lr * grad).sum()),
            "params_listed": len(model.parameters())}


def child(name, args):
    if name.startswith("resnet9"):
        _, batch, mode = name.split(":")
        mode = {"plain": None, "lean": False}[mode]
        clock = time.process_time if args.cpu_time else time.perf_counter
        return resnet9(int(batch), args.steps, mode, clock)
    return {"lenet": lenet, "race": race, "tying": tying}[name]()


def run_child(name, args):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, __file__, "--child", name, "--steps", str(args.steps)]
    proc = subprocess.run(cmd + ["--cpu-time"] * args.cpu_time, capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-2000:])
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figures", nargs="*", default=["resnet9", "lenet", "race", "tying"])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--cpu-time", action="store_true",
                        help="time ResNet9 steps in process CPU time (with OMP_NUM_THREADS=1, a "
                             "steadier figure than wall time on a shared machine)")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    for fig in args.figures:
        if fig == "resnet9":
            for batch in (32, 128):
                for mode in ("plain", "lean"):
                    res = run_child(f"resnet9:{batch}:{mode}", args)
                    label = "loss.backward()" if mode == "plain" else "create_graph=False"
                    print(f"resnet9 batch {batch:3d} {label:20s} {res['img_s']:8.0f} img/s")
        else:
            print(fig, run_child(fig, args))


if __name__ == "__main__":
    main()
