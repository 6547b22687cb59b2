"""Training steps, needle eager vs needle `ndl.jit` vs PyTorch eager, in images/s.

    PYTHONPATH=. python benchmarks/bench_jit.py [--model resnet9|lenet] [--batch 32]
        [--steps 30] [--rounds 3] [--busy] [--device cpu|cuda]

Each framework runs in its own child process (its own thread pool and peak memory), and they
are alternated for `--rounds` rounds; the best median per framework is reported, the least
disturbed by other processes on a shared machine. `--busy` keeps one core busy with a
spinning process during the measurements. The step is forward, softmax loss, backward
(constant gradients: `create_graph=False` / torch's default) and SGD with momentum 0.9.
`--device cuda` adds `jit_nograph` (ndl.jit with NEEDLE_JIT_GRAPHS=0: replayed call by call
instead of as CUDA graphs) and runs torch on the GPU with cuDNN (skipped when torch has no
GPU, e.g. on the emulator: NEEDLE_CUDA_EMULATOR=1 ... --device cuda --model lenet --batch 8
--steps 2 --rounds 1 is a smoke test of the code path, its timings mean nothing).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from bench_resnet9 import peak_rss_mb, torch_resnet9, torch_train_times

SHAPES = {"resnet9": (3, 32), "lenet": (1, 28)}  # (channels, height = width)
FRAMEWORKS = ("eager", "jit", "jit_nograph", "torch")


def needle_step_times(model_name, batch, steps, use_jit, device_name="cpu"):
    import needle as ndl
    from apps.models import LeNet, ResNet9

    device = ndl.cuda() if device_name == "cuda" else ndl.cpu()
    np.random.seed(0)
    model = ResNet9(device=device) if model_name == "resnet9" else LeNet(device=device)
    opt = ndl.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = ndl.nn.SoftmaxLoss()
    c, h = SHAPES[model_name]
    x = ndl.Tensor(np.random.randn(batch, c, h, h).astype(np.float32), device=device,
                   requires_grad=False)
    y = ndl.Tensor.from_host(np.random.randint(0, 10, batch).astype(np.float32), device=device)
    model.train()

    def step(x, y):
        opt.reset_grad()
        loss = loss_fn(model(x), y)
        loss.backward(create_graph=False)
        opt.step()
        return loss

    fn = ndl.jit(step) if use_jit else step
    warmup = 4 if use_jit else 1  # jit: an eager call and two captures, then replays
    times = []
    for _ in range(steps + warmup):
        start = time.perf_counter()
        fn(x, y).numpy()  # a host read: waits for queued device work
        times.append(time.perf_counter() - start)
    return times[warmup:]


def torch_step_times(model_name, batch, steps, device_name="cpu"):
    import torch
    import torch.nn as tnn

    if device_name == "cuda":
        torch.backends.cudnn.benchmark = True  # cuDNN picks its fastest algorithms
    if model_name == "resnet9":
        model = torch_resnet9()
    else:
        torch.manual_seed(0)
        model = tnn.Sequential(
            tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
            tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
            tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10))
    dev = "cuda" if device_name == "cuda" else "cpu"
    model = model.to(dev)
    c, h = SHAPES[model_name]
    x = torch.randn(batch, c, h, h, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    return torch_train_times(model, x, y, steps)  # its loss.item() waits for the GPU


def child(framework, model_name, batch, steps, device_name):
    if framework == "torch":
        times = torch_step_times(model_name, batch, steps, device_name)
    else:
        times = needle_step_times(model_name, batch, steps, framework != "eager", device_name)
    print(json.dumps({"median_s": statistics.median(times), "peak_mb": peak_rss_mb()}))


def frameworks(device_name):
    """The frameworks measured on this device: torch only where it can run there, and the
    graph-less jit only on cuda (on the CPU it is the jit)."""
    out = ["eager", "jit"] + (["jit_nograph"] if device_name == "cuda" else [])
    try:
        import torch
        if device_name != "cuda" or torch.cuda.is_available():
            out.append("torch")
    except ImportError:
        pass
    return out


def measure(framework, model_name, batch, steps, device_name="cpu"):
    """One child process; returns {"median_s", "peak_mb"} or None when it fails."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if framework == "jit_nograph":
        env["NEEDLE_JIT_GRAPHS"] = "0"
    proc = subprocess.run([sys.executable, __file__, "--child", framework, "--model", model_name,
                           "--batch", str(batch), "--steps", str(steps), "--device", device_name],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-2000:])
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(model_name="resnet9", batch=32, steps=30, rounds=3, busy=False, device_name="cpu"):
    """{framework: (images/s, peak MB)}: the best of `rounds` alternated child runs."""
    spinner = None
    if busy:  # one core kept busy by another process, as on a shared machine
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    best = {}
    try:
        for _ in range(rounds):
            for framework in frameworks(device_name):
                res = measure(framework, model_name, batch, steps, device_name)
                if res is not None:
                    ips = batch / res["median_s"]
                    if framework not in best or ips > best[framework][0]:
                        best[framework] = (ips, res["peak_mb"])
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet9", choices=sorted(SHAPES))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--busy", action="store_true", help="keep one core busy meanwhile")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--child", choices=FRAMEWORKS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.model, args.batch, args.steps, args.device)
        return
    best = run(args.model, args.batch, args.steps, args.rounds, args.busy, args.device)
    print(f"{args.model} training step on {args.device}, batch {args.batch}"
          f"{', one core busy' if args.busy else ''}")
    print(f"{'framework':<12}{'images/s':>10}{'peak MB':>9}{'vs torch':>10}")
    torch_ips = best.get("torch", (None,))[0]
    for name, (ips, mb) in best.items():
        ratio = f"{ips / torch_ips:.2f}x" if torch_ips else ""
        print(f"{name:<12}{ips:>10.0f}{mb:>9.0f}{ratio:>10}")


if __name__ == "__main__":
    main()
