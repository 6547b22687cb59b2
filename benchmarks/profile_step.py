"""Where a ResNet9 training step's time goes: time inside each backend function, the rest
(Python: autograd, ops, NDArray bookkeeping), and the GEMMs' FLOP rate.

    PYTHONPATH=. python benchmarks/profile_step.py [--batch 128] [--steps 15] [--device cpu]
    PYTHONPATH=. python benchmarks/profile_step.py --jit     # the step replayed by ndl.jit
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/profile_step.py      # one core

(PYTHONPATH=. from the repository root makes `apps` importable, as pytest's configuration does.)

Every function of the device's backend table is wrapped with a timer (a few hundred ns each),
then the step with the smallest total of `--steps` is reported: the least disturbed by other
processes on a shared machine. The step is forward, loss, backward(create_graph=False) and SGD
with momentum, as in apps/train.py. With `--jit` the timers are installed before the
capture, so the replayed tape calls them too: "Python" is then what a replay adds around the
backend calls (the tape loop, the input and output copies' bookkeeping).
"""
import argparse
import collections
import time

import numpy as np

import needle as ndl

try:
    from apps.models import LeNet, ResNet9
except ImportError as err:  # run from elsewhere than the repository root
    raise SystemExit(f"{err}: run from the repository root with PYTHONPATH=.") from err


def wrap_backend(dev, seconds, calls, flops):
    """Time every backend call of `dev`; count GEMM multiply-adds."""
    for name, fn in list(dev.__dict__.items()):
        if not callable(fn) or isinstance(fn, type):
            continue

        def timed(*args, fn=fn, name=name):
            start = time.perf_counter()
            out = fn(*args)
            seconds[name] += time.perf_counter() - start
            calls[name] += 1
            if name == "gemm":  # a, b, out, batch, m, n, p, ...
                flops[name] += 2.0 * args[3] * args[4] * args[5] * args[6]
            elif name == "gemm_strided_a":  # a, b, out, m, n, p, ...
                flops[name] += 2.0 * args[3] * args[4] * args[5]
            return out

        dev.__dict__[name] = timed


def training_step(model_name, batch, dev):
    """(train_step, x, y): one SGD-with-momentum step of ResNet9 or LeNet on a random batch,
    as in apps/train.py (forward, loss, backward(create_graph=False), step)."""
    np.random.seed(0)
    model = ResNet9(device=dev) if model_name == "resnet9" else LeNet(device=dev)
    c, h = (3, 32) if model_name == "resnet9" else (1, 28)
    opt = ndl.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = ndl.nn.SoftmaxLoss()
    x = ndl.Tensor(np.random.randn(batch, c, h, h).astype(np.float32), device=dev,
                   requires_grad=False)
    y = ndl.Tensor.from_host(np.random.randint(0, 10, batch).astype(np.float32), device=dev)

    def train_step(x, y):
        opt.reset_grad()
        loss = loss_fn(model(x), y)
        loss.backward(create_graph=False)
        opt.step()
        return loss

    return train_step, x, y


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cpu_numpy", "cuda"])
    parser.add_argument("--jit", action="store_true", help="profile the ndl.jit replay")
    parser.add_argument("--model", default="resnet9", choices=["resnet9", "lenet"])
    args = parser.parse_args()
    dev = getattr(ndl, args.device)()
    if not dev.enabled():
        raise SystemExit(f"device {args.device} is not enabled")
    train_step, x, y = training_step(args.model, args.batch, dev)

    seconds, calls, flops = (collections.defaultdict(float), collections.defaultdict(int),
                             collections.defaultdict(float))
    if args.jit:  # timers first, so that the captured tape calls them
        wrap_backend(dev, seconds, calls, flops)
    fn = ndl.jit(train_step) if args.jit else train_step

    def step():
        fn(x, y).numpy()  # waits for the device

    for _ in range(4):  # jit: an eager call and two captures, then replays
        step()
    if not args.jit:
        wrap_backend(dev, seconds, calls, flops)
    best = None
    for _ in range(args.steps):
        for d in (seconds, calls, flops):
            d.clear()
        start = time.perf_counter()
        step()
        total = time.perf_counter() - start
        if best is None or total < best[0]:
            best = (total, dict(seconds), dict(calls), dict(flops))
    total, seconds, calls, flops = best
    inside = sum(seconds.values())
    mode = "ndl.jit replay" if args.jit else "eager"
    print(f"{args.model} step ({mode}), batch {args.batch}, device {dev}: best of {args.steps}")
    print(f"  total {total * 1e3:.2f} ms = backend {inside * 1e3:.2f} ms "
          f"({sum(calls.values())} calls) + Python {(total - inside) * 1e3:.2f} ms")
    gemm_s = sum(seconds.get(k, 0.0) for k in flops)
    if gemm_s:
        print(f"  GEMMs: {sum(flops.values()) / 1e9:.3f} GFLOP in {gemm_s * 1e3:.2f} ms = "
              f"{sum(flops.values()) / gemm_s / 1e9:.1f} GFLOP/s")
    print(f"  {'backend function':<24}{'ms':>8}{'calls':>7}")
    for name, sec in sorted(seconds.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {name:<24}{sec * 1e3:>8.3f}{calls[name]:>7}")
    if args.jit:
        print(f"  replay Python with every tape entry a no-op: {stubbed_replay_s(fn, x, y) * 1e3:.3f}"
              f" ms (the timers above add ~1 us per call to 'Python')")


def stubbed_replay_s(fn, x, y, repeats=200):
    """Best time of a replay whose tape entries (kernels, draws) do nothing: the replay's own
    Python (input and output copies included). Reaches into the jit's internal cache."""
    ((entry,),) = fn._cache.values()  # one signature, one guarded capture
    program, tape = entry.program, entry.program.tape
    program.tape = [(lambda *a: None, args) for _, args in tape]
    try:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            fn(x, y)
            best = min(best, time.perf_counter() - start)
    finally:
        program.tape = tape
    return best


if __name__ == "__main__":
    main()
