"""Allreduce latency (alpha) and per-byte time (beta) between 2 local ranks, and what the ring
allreduce alpha-beta model predicts for data-parallel ResNet9 / ResNet18 on a cluster.

    python benchmarks/bench_allreduce.py [--plot docs/img/allreduce_scaling.png]

1. Measure: `mpiexec -n 2` runs MPI Allreduce (sum, float32, in place) on 4 B ... 64 MiB
   messages; the time per size is the median over repetitions (after a barrier each). Fit:
   alpha = median time of the messages up to 64 B; beta = least-squares slope over >= 1 MiB.
2. Model: a ring allreduce of n bytes over p nodes costs
       T(n, p) = 2 (p - 1) alpha_net + 2 (p - 1) / p * n * 8 / B
   (p - 1 reduce-scatter plus p - 1 allgather steps, each moving n / p bytes per link), with B
   the link speed in bit/s and alpha_net a per-step network latency (assumed below). A step of
   data-parallel training at a fixed per-node batch (weak scaling) costs compute + exposed
   communication; efficiency = compute / (compute + exposed).
   - "no overlap": exposed = T (all communication after backward).
   - "overlap": DDP launches buckets during backward, so up to the backward time (taken as 2/3
     of the step compute) hides communication; the last bucket (the first layers' gradients,
     ready only at the very end) is never hidden: exposed = max(T - backward, T_last_bucket).
   Compute per step comes from this machine (ResNet9, per-node batch 32, 1 thread; ResNet18
   measured the same way), and from a 100x faster accelerator node for contrast.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
SIZES = [4 * 4**k for k in range(13)]  # 4 B .. 64 MiB
PARAMS = {"ResNet9": 431_946, "ResNet18": 11_173_962}
NODES = (8, 64, 512)
LINKS_GBPS = (10, 25, 100)
ALPHA_NET = 20e-6   # assumed per-step latency of a TCP/Ethernet cluster network (s)
PER_NODE_BATCH = 32


def measure():
    """Under mpiexec: rank 0 prints {size: median seconds}."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    out = {}
    for nbytes in SIZES:
        buf = np.ones(nbytes // 4, dtype=np.float32)
        reps = max(5, min(200, int(2e8 // max(nbytes, 1) // 100)))
        times = []
        for _ in range(reps + 2):
            comm.Barrier()
            start = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            times.append(time.perf_counter() - start)
        out[nbytes] = float(np.median(times[2:]))
    if comm.Get_rank() == 0:
        print(json.dumps(out))


def step_seconds(model_name, batch=PER_NODE_BATCH, steps=3):
    """Median seconds of a training step of `model_name` on this machine (1 thread)."""
    code = f"""
import time, json, numpy as np, needle as ndl
from apps.models import ResNet9, ResNet18
np.random.seed(0)
model = {model_name}()
opt = ndl.optim.SGD(model.parameters(), lr=0.01)
x = ndl.Tensor(np.random.randn({batch}, 3, 32, 32), requires_grad=False)
y = ndl.Tensor(np.random.randint(0, 10, {batch}), requires_grad=False)
ts = []
for _ in range({steps} + 1):
    t0 = time.perf_counter(); opt.reset_grad()
    ndl.nn.SoftmaxLoss()(model(x), y).backward(create_graph=False); opt.step()
    ts.append(time.perf_counter() - t0)
print(json.dumps(sorted(ts[1:])[len(ts[1:]) // 2]))
"""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=1800, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def fit(times):
    sizes = np.array(sorted(times), dtype=float)
    t = np.array([times[int(s)] for s in sizes])
    alpha = float(np.median(t[sizes <= 64]))
    big = sizes >= 2**20
    beta = float(np.polyfit(sizes[big], t[big], 1)[0])
    return alpha, beta


def ring_seconds(nbytes, p, link_gbps):
    return 2 * (p - 1) * ALPHA_NET + 2 * (p - 1) / p * nbytes * 8 / (link_gbps * 1e9)


def efficiency(params, compute, p, link_gbps, overlap, bucket):
    """compute / (compute + exposed communication) for float32 gradients of `params`."""
    buckets = _buckets(4 * params, bucket)
    comm = sum(ring_seconds(b, p, link_gbps) for b in buckets)
    if overlap:
        last = ring_seconds(buckets[-1], p, link_gbps)
        exposed = max(comm - 2 / 3 * compute, last)
    else:
        exposed = comm
    return compute / (compute + exposed)


def _buckets(nbytes, bucket):
    full, rest = divmod(nbytes, bucket)
    return [bucket] * full + ([rest] if rest else [])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plot", default=str(REPO / "docs" / "img" / "allreduce_scaling.png"))
    p.add_argument("--bucket-mb", type=float, default=25, help="DDP bucket size in the model")
    p.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    bucket = int(args.bucket_mb * 2**20)
    if args.measure:
        return measure()
    mpiexec = pathlib.Path(sys.executable).parent / "mpiexec"
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMP_NUM_THREADS="1")
    out = subprocess.run([str(mpiexec) if mpiexec.exists() else "mpiexec", "-n", "2",
                          sys.executable, __file__, "--measure"], env=env, capture_output=True,
                         text=True, timeout=600, check=True).stdout
    times = {int(k): v for k, v in json.loads(out.strip().splitlines()[-1]).items()}
    print("Allreduce (sum, float32, in place) between 2 local ranks (Open MPI, shared memory)")
    print(f"{'bytes':>10s} {'median us':>10s} {'GB/s':>7s}")
    for n in sorted(times):
        print(f"{n:10d} {times[n] * 1e6:10.1f} {n / times[n] / 1e9:7.2f}")
    alpha, beta = fit(times)
    print(f"alpha = {alpha * 1e6:.1f} us, beta = {beta * 1e9:.3f} ns/byte "
          f"({1 / beta / 1e9:.2f} GB/s)")

    compute = {name: step_seconds(name) for name in PARAMS}
    for name, sec in compute.items():
        print(f"{name}: {sec * 1e3:.0f} ms per training step, per-node batch {PER_NODE_BATCH}, "
              "1 thread (this machine)")
    nodes_of = {"this CPU node": 1.0, "a node 100x faster": 0.01}
    rows = []
    print(f"\nScaling efficiency, ring allreduce alpha_net = {ALPHA_NET * 1e6:.0f} us, "
          f"{args.bucket_mb:g} MiB buckets (no overlap / overlap with backward)")
    print(f"{'node':20s} {'model':9s} {'nodes':>5s} " +
          " ".join(f"{g:>3d} Gb/s     " for g in LINKS_GBPS))
    for node, speed in nodes_of.items():
        for name, params in PARAMS.items():
            for n in NODES:
                cells = []
                for g in LINKS_GBPS:
                    sec = compute[name] * speed
                    a = efficiency(params, sec, n, g, overlap=False, bucket=bucket)
                    b = efficiency(params, sec, n, g, overlap=True, bucket=bucket)
                    cells.append(f"{a:5.1%}/{b:5.1%}")
                    rows.append((node, name, n, g, a, b))
                print(f"{node:20s} {name:9s} {n:5d} " + " ".join(cells))
    plot(rows, args.plot)


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=90, sharey=True)
    for ax, node in zip(axes, ("this CPU node", "a node 100x faster")):
        for name, style in (("ResNet9", "-"), ("ResNet18", "--")):
            for g, color in zip(LINKS_GBPS, ("tab:red", "tab:orange", "tab:green")):
                pts = [(n, b) for nd_, m, n, gg, a, b in rows if nd_ == node and m == name
                       and gg == g]
                ax.plot([x for x, _ in pts], [y for _, y in pts], style, marker="o",
                        color=color, label=f"{name}, {g} Gb/s")
        ax.set(xscale="log", xlabel="nodes", title=f"{node} (overlap with backward)",
               ylim=(0, 1.05))
        ax.set_xticks(NODES, [str(n) for n in NODES])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("scaling efficiency")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
