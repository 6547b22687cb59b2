"""ndl.jit on the CUDA backend replays each run of backend calls as one CUDA graph (docs/jit.md,
"CUDA graphs"): bit for bit the eager run, with graphs on and off. The cuda tests run on a GPU
or on the CPU emulator (NEEDLE_CUDA_EMULATOR=1 pytest -k cuda)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import needle as ndl
from needle import jit_graphs, nn
from needle.autograd import BACKEND

from test_jit import adam, assert_same_run, mlp, sgd, sgd_torch_nesterov, sgd_torch_plain
from test_jit_live import SCHEDULES, assert_jit_equals_eager, sgd_torch_dampening

pytestmark = pytest.mark.skipif(BACKEND != "nd", reason="ndl.jit captures NDArray backend calls")

CUDA = ndl.cuda()
needs_cuda = pytest.mark.skipif(not CUDA.enabled(), reason="no CUDA device (nor NEEDLE_CUDA_EMULATOR)")
# Scratch memory inside a graph needs stream-ordered pools: every recent GPU; the emulator
# only with CUDA_EMU_MEMPOOLS=1 (else its cudaMalloc fallback cannot be captured).
POOLS = not CUDA.emulated or os.environ.get("CUDA_EMU_MEMPOOLS") == "1"


@pytest.fixture(params=[True, False], ids=["graphs", "no_graphs"])
def graphs(request, monkeypatch):
    monkeypatch.setenv("NEEDLE_JIT_GRAPHS", "1" if request.param else "0")
    return request.param


def conv_bn(device):
    return nn.Sequential(nn.Conv(1, 4, 3, device=device), nn.BatchNorm2d(4, device=device), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 6 * 6, 5, device=device))


def run_and_inspect(make_model, make_opt, shape, steps=22):
    """Eager and jitted training on cuda agree bit for bit; returns the jitted step's graph_info."""
    seen = {}
    assert_same_run(make_model, make_opt, shape, 5, steps, device=CUDA,
                    inspect=lambda fn, x, y: seen.update(info=fn.graph_info(x, y)))
    return seen["info"]


SGD_MODES = {"momentum": sgd, "torch_nesterov": sgd_torch_nesterov,
             "torch_dampening": sgd_torch_dampening, "torch_no_momentum": sgd_torch_plain}


@needs_cuda
@pytest.mark.parametrize("make_opt", list(SGD_MODES.values()), ids=list(SGD_MODES))
def test_cuda_mlp_dropout_sgd_bit_exact(graphs, make_opt):
    info = run_and_inspect(mlp, make_opt, (8, 3, 4))
    if not graphs:
        assert info is None
        return
    # the dropout mask (a host draw), the loss's one_hot and the write of SGD's hyper-parameters
    # (a host_op, so that a replay reads the lr as it is then) split the step into 4 graphs; the
    # fused update of each of the 4 parameters (sgd_update, or sgd_torch_update in torch mode)
    # reads them on the device: inside the last graph, with no live scalars
    assert (info["captured"], info["graphs"], info["plain_calls"]) == (True, 4, 0)
    assert info["live_calls"] == 0
    assert info["nodes"] > 30


@needs_cuda
@pytest.mark.parametrize("make_opt", [sgd_torch_nesterov, sgd_torch_dampening],
                         ids=["nesterov", "dampening"])
def test_cuda_torch_mode_sgd_follows_onecycle_in_graphs_as_contract_sgd(graphs, make_opt):
    """OneCycleLR changes lr and momentum at every step: 30 jitted steps equal the eager ones
    bit for bit, and the step's graphs are those of the contract's SGD (one call per
    parameter, no live scalars)."""
    seen = {}
    for name, make in (("torch", make_opt), ("contract", sgd)):
        assert_jit_equals_eager(make, make_sched=SCHEDULES["onecycle"], device=CUDA, build=mlp,
                                inspect=lambda fn, x, y, name=name: seen.update(
                                    {name: fn.graph_info(x, y)}))
    if not graphs:
        assert seen == {"torch": None, "contract": None}
        return
    assert seen["torch"]["live_calls"] == 0
    keys = ("captured", "graphs", "nodes", "plain_calls", "live_calls")
    assert [seen["torch"][k] for k in keys] == [seen["contract"][k] for k in keys]


@needs_cuda
def test_cuda_conv_batchnorm_adam_bit_exact(graphs):
    info = run_and_inspect(conv_bn, adam, (2, 1, 6, 6))
    if not graphs:
        assert info is None
        return
    # Adam's fused update reads its hyper-parameters on the device (written by one host_op
    # per step): no live scalars, and the optimizer's calls form one graph after the write
    assert info["live_calls"] == 0
    if POOLS:  # one graph before the loss's one_hot, one after it, then the optimizer's
        assert (info["graphs"], info["plain_calls"]) == (3, 0)
    else:  # batch norm's scratch memory (cudaMalloc) cannot be captured: those calls run plainly
        assert (info["graphs"], info["plain_calls"]) == (5, 2)
        # the conv's channels-last output is read in place by the strided batch-norm kernels
        assert [f.split(":")[0] for f in info["fallbacks"]] == ["batch_norm_forward_strided",
                                                                 "batch_norm_backward_strided"]
        assert all("not permitted when stream is capturing" in f for f in info["fallbacks"])


@needs_cuda
def test_cuda_conv_batchnorm_with_emulated_memory_pools():
    """The emulator's pool path (a child process: the backend reads the setting once)."""
    if POOLS:
        pytest.skip("memory pools are on in this process: the test above used them")
    env = dict(os.environ, CUDA_EMU_MEMPOOLS="1", NEEDLE_JIT_GRAPHS="1")
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          f"{__file__}::test_cuda_conv_batchnorm_adam_bit_exact[graphs]"],
                         capture_output=True, text=True, env=env, timeout=300, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 passed" in res.stdout


@needs_cuda
def test_cuda_replay_reads_each_calls_input_data():
    rng = np.random.default_rng(0)
    w = ndl.Tensor(rng.standard_normal((6, 3)).astype(np.float32), device=CUDA)

    def f(x):
        return ndl.ops.relu(x @ w).sum(axes=(1,))

    fn = ndl.jit(f)
    for _ in range(6):  # replays from the 4th call on, each with new data
        data = rng.standard_normal((4, 6)).astype(np.float32)
        x = ndl.Tensor(data, device=CUDA, requires_grad=False)
        np.testing.assert_array_equal(fn(x).numpy(), f(x).numpy())
    np.testing.assert_allclose(fn(x).numpy(), np.maximum(data @ w.numpy(), 0).sum(1), rtol=1e-5, atol=1e-6)
    assert fn.graph_info(x)["graphs"] == 1


@needs_cuda
def test_cuda_uncapturable_call_runs_outside_the_graphs():
    """Winograd reads its transform matrices on the host (a synchronous copy): not capturable,
    so those calls run plainly between graphs, with the same results."""
    rng = np.random.default_rng(1)
    w = ndl.Tensor(rng.standard_normal((3, 3, 2, 4)).astype(np.float32), device=CUDA)

    def f(x):
        return ndl.ops.conv(x, w, padding=1, algo="winograd") * 2.0

    fn = ndl.jit(f)
    for _ in range(5):
        x = ndl.Tensor(rng.standard_normal((2, 5, 5, 2)).astype(np.float32), device=CUDA,
                       requires_grad=False)
        np.testing.assert_array_equal(fn(x).numpy(), f(x).numpy())
    info = fn.graph_info(x)
    assert info["plain_calls"] >= 2 and info["graphs"] >= 1
    assert all(f.startswith("winograd_") and "capturing" in f for f in info["fallbacks"])


def test_cpu_replays_without_graphs():
    x = ndl.Tensor(np.ones((3, 2), dtype=np.float32), device=ndl.cpu(), requires_grad=False)
    fn = ndl.jit(lambda t: t * 2.0)
    for _ in range(4):
        np.testing.assert_array_equal(fn(x).numpy(), np.full((3, 2), 2.0))
    assert fn.replaying(x) and fn.graph_info(x) is None
    assert not ndl.cpu().supports_graphs


def test_graph_switch_rejects_unknown_values(monkeypatch):
    monkeypatch.setenv("NEEDLE_JIT_GRAPHS", "maybe")
    with pytest.raises(ValueError, match="NEEDLE_JIT_GRAPHS='maybe'"):
        jit_graphs.graphs_enabled()
    monkeypatch.setenv("NEEDLE_JIT_GRAPHS", "0")
    assert not jit_graphs.graphs_enabled()
