"""ResNet9 training throughput: R ranks x T threads under mpiexec against 1 process x R*T threads.

    python benchmarks/bench_ddp.py [--batch 64] [--steps 6] [--ranks 2]

Both runs train ResNet9 on the same synthetic global batch (--batch images per step, split over
the ranks) with SGD: the single process with OMP_NUM_THREADS=R, the data-parallel job as
`mpiexec -n R` with OMP_NUM_THREADS=1 per rank and DistributedDataParallel. Printed: images/s
(median step after one warm-up), and for DDP the share of the step that backward() spent
waiting for the gradient allreduces (DistributedDataParallel.comm_wait_seconds).
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]


def worker(batch, steps):
    """One rank (or the single process): step times and allreduce wait times, as JSON."""
    import needle as ndl
    import needle.distributed as dist

    from apps.models import ResNet9

    dist.init()
    rank, size = dist.get_rank(), dist.get_world_size()
    np.random.seed(0)
    model = ResNet9()
    train = dist.DistributedDataParallel(model) if size > 1 else model
    opt = ndl.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = ndl.nn.SoftmaxLoss()
    rng = np.random.RandomState(1)
    X = rng.randn(batch, 3, 32, 32).astype(np.float32)
    y = rng.randint(0, 10, batch).astype(np.float32)
    per = batch // size
    x = ndl.Tensor(X[rank * per:(rank + 1) * per], requires_grad=False)
    t = ndl.Tensor(y[rank * per:(rank + 1) * per], requires_grad=False)
    times, waits = [], []
    for _ in range(steps + 1):
        dist.barrier()
        wait0 = getattr(train, "comm_wait_seconds", 0.0)
        start = time.perf_counter()
        opt.reset_grad()
        loss_fn(train(x), t).backward(create_graph=False)
        opt.step()
        times.append(time.perf_counter() - start)
        waits.append(getattr(train, "comm_wait_seconds", 0.0) - wait0)
    if rank == 0:
        print(json.dumps({"times": times[1:], "waits": waits[1:]}))


def launch(cmd, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.batch, args.steps)
    me = [sys.executable, __file__, "--worker", "--batch", str(args.batch),
          "--steps", str(args.steps)]
    mpiexec = pathlib.Path(sys.executable).parent / "mpiexec"
    mpiexec = str(mpiexec) if mpiexec.exists() else "mpiexec"
    runs = {
        "1 process x 1 thread": launch(me, 1),
        f"1 process x {args.ranks} threads": launch(me, args.ranks),
        f"{args.ranks} ranks x 1 thread (DDP)": launch(
            [mpiexec, "-n", str(args.ranks), "--bind-to", "core"] + me, 1),
    }
    print(f"ResNet9, global batch {args.batch}, median of {args.steps} steps after a warm-up")
    for name, r in runs.items():
        step = statistics.median(r["times"])
        wait = statistics.median(r["waits"])
        print(f"  {name:28s} {args.batch / step:7.1f} img/s   step {step * 1e3:7.1f} ms   "
              f"allreduce wait {wait * 1e3:6.1f} ms ({100 * wait / step:4.1f} % of the step)")


if __name__ == "__main__":
    main()
