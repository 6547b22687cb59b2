"""Scenarios run by tests/test_distributed.py under `mpiexec -n 2 python dist_worker.py NAME OUT`.

`checks` runs every correctness check and writes `OUT/rank<r>.json` (the test reads and asserts
on them); the other scenarios are bad inputs and a planted failure, which must end the job with
a non-zero exit code and a clear message, never hang.
"""
import contextlib
import json
import os
import sys
import time

import needle as ndl
import needle.distributed as dist
import numpy as np
from needle import nn

BATCH = 4  # per rank; the full batch of the single-process reference is 2 * BATCH


def small_cnn(sync_bn=False, bn=False):
    """A conv net on 3 x 8 x 8 images, with or without BatchNorm2d."""
    layers = [nn.Conv(3, 6, 3)]
    if bn:
        layers.append(nn.BatchNorm2d(6))
    layers += [nn.ReLU(), nn.Flatten(), nn.Linear(6 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 5)]
    return nn.Sequential(*layers)


def global_batch(seed, n):
    rng = np.random.RandomState(seed)
    return rng.randn(n, 3, 8, 8).astype(np.float32), rng.randint(0, 5, size=n).astype(np.float32)


def local(x, rank, size):
    per = len(x) // size
    return x[rank * per:(rank + 1) * per]


def grads(model):
    return [p.grad.numpy() for p in model.parameters()]


def params(model):
    return [p.numpy() for p in model.parameters()]


def max_diff(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def reference_grads(ddp_model, build, X, y):
    """The gradient of one process on the full batch, from the DDP model's current state."""
    ref = build()
    ref.load_state_dict(ddp_model.module.state_dict())
    loss = nn.SoftmaxLoss()(ref(ndl.Tensor(X)), ndl.Tensor(y))
    loss.backward(create_graph=False)
    return ref, grads(ref)


def same_on_all_ranks(comm, arrays):
    gathered = comm.allgather([a.tobytes() for a in arrays])
    return all(g == gathered[0] for g in gathered)


def check_ddp(comm, rank, size, out):
    np.random.seed(100 + rank)  # different seeds: the broadcast must make the replicas equal
    model = small_cnn()
    out["different_before_broadcast"] = not same_on_all_ranks(comm, params(model))
    ddp = dist.DistributedDataParallel(model, bucket_mb=0.004)  # ~1000 floats: several buckets
    out["equal_after_broadcast"] = same_on_all_ranks(comm, params(model))
    out["num_buckets"] = len(ddp._reducer.buckets)
    X, y = global_batch(0, BATCH * size)
    loss = nn.SoftmaxLoss()(ddp(ndl.Tensor(local(X, rank, size))), ndl.Tensor(local(y, rank, size)))
    loss.backward()
    out["launched_during_backward"] = ddp._reducer.launched_early
    _, ref = reference_grads(ddp, small_cnn, X, y)
    out["grad_vs_full_batch"] = max_diff(grads(model), ref)
    out["grad_scale"] = max(float(np.max(np.abs(g))) for g in ref)
    out["grads_equal_across_ranks"] = same_on_all_ranks(comm, grads(model))

    # N optimizer steps on different data per rank: the replicas stay bit-identical
    opt = ndl.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    for step in range(5):
        X, y = global_batch(1 + step, BATCH * size)
        opt.reset_grad()
        loss = nn.SoftmaxLoss()(ddp(ndl.Tensor(local(X, rank, size))),
                                ndl.Tensor(local(y, rank, size)))
        loss.backward(create_graph=False)
        opt.step()
    out["params_equal_after_steps"] = same_on_all_ranks(comm, params(model))
    out["comm_wait_seconds"] = ddp.comm_wait_seconds


def ddp_run(comm, rank, size, use_jit, sync_bn, steps=10, no_sync_at=()):
    """Losses and final parameters of `steps` DDP steps (SGD, StepLR), eager or ndl.jit, those
    in `no_sync_at` inside ddp.no_sync(); with jit also whether the last call replayed."""
    np.random.seed(5)
    model = small_cnn(bn=sync_bn)
    ddp = dist.DistributedDataParallel(model, bucket_mb=0.004, sync_bn=sync_bn)
    opt = ndl.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    sched = ndl.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)

    def step(x, y):
        opt.reset_grad()
        loss = nn.SoftmaxLoss()(ddp(x), y)
        loss.backward(create_graph=False)
        opt.step()
        return loss

    fn = ndl.jit(step) if use_jit else step
    losses = []
    for i in range(steps):
        X, y = global_batch(20 + i, BATCH * size)
        x, y = ndl.Tensor(local(X, rank, size)), ndl.Tensor.from_host(local(y, rank, size))
        with ddp.no_sync() if i in no_sync_at else contextlib.nullcontext():
            losses.append(float(fn(x, y).numpy().item()))
        sched.step()
    return losses, params(model), use_jit and fn.replaying(x, y)


def check_ddp_jit(comm, rank, size, out):
    for key, sync_bn, no_sync_at in (("jit", False, ()), ("jit_sync_bn", True, ()),
                                     ("jit_no_sync", False, (5, 6))):
        eager_losses, eager_params, _ = ddp_run(comm, rank, size, False, sync_bn, 10, no_sync_at)
        jit_losses, jit_params, replayed = ddp_run(comm, rank, size, True, sync_bn, 10,
                                                   no_sync_at)
        out[f"{key}_replayed"] = replayed
        out[f"{key}_losses_equal_eager"] = jit_losses == eager_losses
        out[f"{key}_params_equal_eager"] = all(np.array_equal(a, b)
                                               for a, b in zip(jit_params, eager_params))
        out[f"{key}_params_equal_across_ranks"] = same_on_all_ranks(comm, jit_params)


def check_no_sync(comm, rank, size, out):
    np.random.seed(7)
    model = small_cnn()
    ddp = dist.DistributedDataParallel(model)
    XA, yA = global_batch(10, BATCH * size)
    XB, yB = global_batch(11, BATCH * size)

    def backward(X, y):
        loss = nn.SoftmaxLoss()(ddp(ndl.Tensor(local(X, rank, size))),
                                ndl.Tensor(local(y, rank, size)))
        loss.backward(create_graph=False)

    with ddp.no_sync():
        backward(XA, yA)
    local_a = grads(model)
    # the local (unaveraged) gradient of this rank's micro-batch A
    ref = small_cnn()
    ref.load_state_dict(model.state_dict())
    nn.SoftmaxLoss()(ref(ndl.Tensor(local(XA, rank, size))),
                     ndl.Tensor(local(yA, rank, size))).backward(create_graph=False)
    out["no_sync_grad_is_local"] = max_diff(local_a, grads(ref))
    out["no_sync_grads_differ_across_ranks"] = not same_on_all_ranks(comm, local_a)
    backward(XB, yB)  # synced: averages what .grad holds now
    ref.load_state_dict(model.state_dict())
    for p in ref.parameters():
        p.grad = None
    nn.SoftmaxLoss()(ref(ndl.Tensor(local(XB, rank, size))),
                     ndl.Tensor(local(yB, rank, size))).backward(create_graph=False)
    local_b = grads(ref)
    # Parameter .grad either accumulates (torch) or is overwritten (course): detect which.
    probe = nn.Parameter(ndl.Tensor([1.0]))
    (probe * 1.0).sum().backward()
    (probe * 1.0).sum().backward()
    accumulates = float(probe.grad.numpy()[0]) == 2.0
    mine = [b + a for a, b in zip(local_a, local_b)] if accumulates else local_b
    expected = [sum(g) / size for g in zip(*comm.allgather(mine))]
    out["synced_after_no_sync"] = max_diff(grads(model), expected)


def check_sync_bn(comm, rank, size, out):
    np.random.seed(3)
    ddp = dist.DistributedDataParallel(small_cnn(bn=True), sync_bn=True)
    out["sync_bn_converted"] = type(ddp.module.modules[1]).__name__
    X, y = global_batch(20, BATCH * size)
    X = X * 3 + 1  # statistics far from (0, 1), so a per-rank BN would differ
    ref = small_cnn(bn=True)
    ref.load_state_dict(ddp.module.state_dict())
    logits = ddp(ndl.Tensor(local(X, rank, size)))
    nn.SoftmaxLoss()(logits, ndl.Tensor(local(y, rank, size))).backward(create_graph=False)
    ref_logits = ref(ndl.Tensor(X))
    nn.SoftmaxLoss()(ref_logits, ndl.Tensor(y)).backward(create_graph=False)
    out["sync_bn_forward"] = float(np.max(np.abs(logits.numpy() - local(ref_logits.numpy(),
                                                                         rank, size))))
    out["sync_bn_grads"] = max_diff(grads(ddp.module), grads(ref))
    bn, ref_bn = ddp.module.modules[1], ref.modules[1]
    out["sync_bn_running"] = max(
        float(np.max(np.abs(bn.running_mean.numpy() - ref_bn.running_mean.numpy()))),
        float(np.max(np.abs(bn.running_var.numpy() - ref_bn.running_var.numpy()))))


def check_collectives(comm, rank, size, out):
    t = ndl.Tensor([1.0 + rank, 2.0 * rank])
    same = dist.all_reduce(t) is t
    out["all_reduce_tensor"] = t.numpy().tolist()
    a = ndl.backend_ndarray.array(np.full((2, 3), rank + 1.0))
    dist.all_reduce(a[0:2, 1:3], op="mean")  # a strided view, written through in place
    out["all_reduce_view"] = a.numpy().tolist()
    b = np.arange(3, dtype=np.float32) * (rank + 1)
    dist.broadcast(b, src=1)
    out["broadcast_src1"] = b.tolist()
    out["all_reduce_returns_input"] = same
    dist.barrier()


def check_sampler(comm, rank, size, out):
    for n in (10, 11):
        s = dist.DistributedSampler(list(range(n)), shuffle=True, seed=5)
        s.set_epoch(2)
        out[f"sampler_{n}"] = list(s)
    loader = ndl.data.DataLoader(ndl.data.NDArrayDataset(np.arange(12, dtype=np.float32)),
                                 batch_size=2, sampler=dist.DistributedSampler(range(12)))
    out["loader_items"] = sorted(int(v) for (xb,) in loader for v in xb.numpy())


def scenario_checks(out_dir):
    dist.init()
    dist.init()  # idempotent
    comm = dist.dist_comm._STATE.comm
    rank, size = dist.get_rank(), dist.get_world_size()
    out = {"rank": rank, "size": size}
    for check in (check_ddp, check_no_sync, check_sync_bn, check_collectives, check_sampler,
                  check_ddp_jit):
        check(comm, rank, size, out)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(out, f)


# ------------------------------------------------------------------------- bad inputs
def scenario_models_differ(out_dir):
    dist.init()
    dist.DistributedDataParallel(nn.Linear(4, 2 + dist.get_rank()))


def scenario_no_params(out_dir):
    dist.init()
    dist.DistributedDataParallel(nn.Sequential(nn.ReLU(), nn.Flatten()))


def scenario_shape_mismatch(out_dir):
    dist.init()
    dist.all_reduce(ndl.Tensor(np.ones(3 + dist.get_rank())))


def scenario_sampler_before_init(out_dir):
    dist.DistributedSampler(list(range(10)))


def scenario_planted_failure(out_dir):
    dist.init()
    if dist.get_rank() == 1:
        time.sleep(0.2)
        print(f"planted at {time.time():.3f}", flush=True)
        raise RuntimeError("planted failure on rank 1")
    dist.barrier()  # rank 0 would wait here forever without the abort
    print("rank 0 passed the barrier: the abort did not happen", flush=True)


if __name__ == "__main__":
    globals()["scenario_" + sys.argv[1]](sys.argv[2])
