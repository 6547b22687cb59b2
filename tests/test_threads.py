"""The CPU backend's thread pool (src/cpu_threads.h): no environment side effect, the thread cap
from NEEDLE_NUM_THREADS / OMP_NUM_THREADS, results that do not depend on the thread count where
kernels promise it, fork safety, and the late-worker policy (tests/threads_check.cc)."""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import needle as ndl
from test_gemm import build_native

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_python(code, timeout=120, **env):
    base = {k: v for k, v in os.environ.items()
            if k not in ("NEEDLE_NUM_THREADS", "OMP_NUM_THREADS", "NEEDLE_ADAPTIVE_THREADS")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(base, **env), timeout=timeout, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_native_pool_checks(tmp_path):
    """Pieces, teams and barriers for 1, 2, 3 and 5 threads, the late-worker policy driven by
    recorded events, concurrent callers, and a forked child."""
    exe = build_native(tmp_path, REPO / "tests" / "threads_check.cc", "threads_check")
    res = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0 and "failed=0" in res.stdout, res.stdout + res.stderr
    assert res.stdout.count("ok ") >= 20, res.stdout


ENV_WATCH = """
import os
import numpy as np  # numpy sets OPENBLAS_MAIN_FREE when it loads: before the watch
added = []
environ_type = type(os.environ)
original_set = environ_type.__setitem__
def watch(self, key, value):
    added.append(key)
    original_set(self, key, value)
environ_type.__setitem__ = watch
original_putenv = os.putenv
os.putenv = lambda key, value: (added.append(key), original_putenv(key, value))
before = dict(os.environ)
import needle as ndl
a = ndl.Tensor(np.ones((512, 1024), dtype=np.float32), device=ndl.cpu())
((a * 2.0) @ a.transpose()).numpy()  # parallel element-wise and GEMM: the pool is running
print(sorted(added))
print(dict(os.environ) == before)
"""


def test_import_and_kernels_leave_the_environment_alone():
    """No key is ever written to the environment, not even for a moment (every write is
    recorded), and nothing is left behind."""
    out = run_python(ENV_WATCH).split("\n")
    assert out[0] == "[]", out
    assert out[1] == "True", out


THREAD_COUNT = """
import os
import needle as ndl
import numpy as np
a = ndl.Tensor(np.ones(1 << 21, dtype=np.float32), device=ndl.cpu())
before = len(os.listdir("/proc/self/task"))
(a + 1.0).numpy()
print(len(os.listdir("/proc/self/task")) - before)
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
@pytest.mark.parametrize("env, workers", [
    ({"NEEDLE_NUM_THREADS": "3"}, 2),
    ({"OMP_NUM_THREADS": "3"}, 2),
    ({"OMP_NUM_THREADS": "4,2"}, 3),  # OpenMP's nested list: its first level
    ({"NEEDLE_NUM_THREADS": "2", "OMP_NUM_THREADS": "4"}, 1),  # needle's own setting wins
    ({"NEEDLE_NUM_THREADS": "1"}, 0),
])
def test_thread_cap_from_environment(env, workers):
    """A big element-wise kernel starts cap - 1 workers, whatever the number of cores."""
    assert int(run_python(THREAD_COUNT, **env).split()[-1]) == workers


@pytest.mark.parametrize("value", ["0", "-2", "two", "3 "])
def test_bad_needle_num_threads_raises(value):
    code = ("import needle.backend_ndarray as nd\n"
            "try:\n    nd.cpu()\nexcept ValueError as e:\n    print('ValueError:', e)\n")
    out = run_python(code, NEEDLE_NUM_THREADS=value)
    assert "ValueError:" in out and "NEEDLE_NUM_THREADS" in out, out


KERNELS = """
import sys
import numpy as np
import needle as ndl
import needle.backend_ndarray as nd
rng = np.random.default_rng(0)
dev = ndl.cpu()
x = rng.standard_normal((16, 24, 24, 32)).astype(np.float32)
w = rng.standard_normal((3, 3, 32, 16)).astype(np.float32)
a = nd.array(x, device=dev)
out = {}
out["ewise"] = (a * 1.5 + a.exp()).numpy()
out["transpose"] = a.permute((0, 3, 1, 2)).compact().numpy()
out["rowsum"] = a.reshape((16 * 24 * 24, 32)).sum(axis=1).numpy()
sub = nd.array(np.zeros_like(x), device=dev)
sub[:, ::2, 1::2, :] = a[:, ::2, 1::2, :]
out["setitem"] = sub.numpy()
xp = ndl.Tensor(x, device=dev, requires_grad=True)
p = ndl.nn.MaxPool2d(2)(xp)
(p * p).sum().backward()
out["pool"] = p.numpy()
out["pool_grad"] = xp.grad.numpy()
xt = ndl.Tensor(x, device=dev, requires_grad=True)
y = ndl.conv(xt, ndl.Tensor(w, device=dev, requires_grad=True), stride=1, padding=1)
(y * y).sum().backward()
out["conv"] = y.numpy()
out["conv_grad"] = xt.grad.numpy()
np.savez(sys.argv[1] if len(sys.argv) > 1 else "out.npz", **out)
"""


def _kernel_results(tmp_path, name, **env):
    path = tmp_path / f"{name}.npz"
    code = KERNELS.replace('sys.argv[1] if len(sys.argv) > 1 else "out.npz"', repr(str(path)))
    run_python(code, timeout=300, **env)
    return dict(np.load(path))


def test_results_do_not_depend_on_the_thread_count(tmp_path):
    """Element-wise, gather / scatter, row reductions and max pooling (forward and backward)
    give the same bits on 1, 2 and 3 threads (each element is computed by one thread, whichever); convolution forward and
    backward (GEMM plans differ with the team size) agree on every count, also with the
    opt-in team fallback (NEEDLE_ADAPTIVE_THREADS=1)."""
    one = _kernel_results(tmp_path, "one", NEEDLE_NUM_THREADS="1")
    for n, adaptive in (("2", "0"), ("3", "0"), ("2", "1")):
        many = _kernel_results(tmp_path, f"t{n}{adaptive}", NEEDLE_NUM_THREADS=n,
                               NEEDLE_ADAPTIVE_THREADS=adaptive)
        for key in ("ewise", "transpose", "rowsum", "setitem", "pool", "pool_grad"):
            np.testing.assert_array_equal(many[key], one[key], err_msg=f"{key}, {n} threads")
        for key in ("conv", "conv_grad"):
            np.testing.assert_allclose(many[key], one[key], rtol=1e-4, atol=1e-3, err_msg=key)
    x = np.random.default_rng(0).standard_normal((16, 24, 24, 32)).astype(np.float32)
    np.testing.assert_allclose(one["ewise"], x * 1.5 + np.exp(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(one["transpose"], x.transpose(0, 3, 1, 2))
    np.testing.assert_allclose(one["rowsum"], x.reshape(-1, 32).sum(axis=1), rtol=1e-5, atol=1e-5)
    # MaxPool2d reads N x C x H x W: windows of 2 x 2 over the last two axes
    windows = x.reshape(16, 24, 12, 2, 16, 2).transpose(0, 1, 2, 4, 3, 5).reshape(16, 24, 12, 16, 4)
    np.testing.assert_array_equal(one["pool"], windows.max(axis=-1))
    grad = np.zeros_like(windows)  # d sum(p^2) goes to the first maximum of each window
    np.put_along_axis(grad, windows.argmax(axis=-1)[..., None], 2 * one["pool"][..., None], axis=-1)
    grad = grad.reshape(16, 24, 12, 16, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(x.shape)
    np.testing.assert_allclose(one["pool_grad"], grad, rtol=1e-6)


def test_conv_matches_torch_on_two_threads(tmp_path):
    torch = pytest.importorskip("torch")
    got = _kernel_results(tmp_path, "two", NEEDLE_NUM_THREADS="2")
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal((16, 24, 24, 32)).astype(np.float32), requires_grad=True)
    w = torch.tensor(rng.standard_normal((3, 3, 32, 16)).astype(np.float32))
    y = torch.nn.functional.conv2d(x.permute(0, 3, 1, 2), w.permute(3, 2, 0, 1), padding=1)
    y = y.permute(0, 2, 3, 1)
    (y * y).sum().backward()
    np.testing.assert_allclose(got["conv"], y.detach().numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(got["conv_grad"], x.grad.numpy(), rtol=1e-4, atol=2e-2)


FORKED = """
import os
import numpy as np
import needle.backend_ndarray as nd
a = nd.array(np.arange(1 << 21, dtype=np.float32), device=nd.cpu())
(a + 1.0).numpy()  # the parent's workers are running
m = nd.array(np.ones((256, 256), dtype=np.float32), device=nd.cpu())
pid = os.fork()
if pid == 0:
    ok = np.array_equal((a * 2.0).numpy(), np.arange(1 << 21, dtype=np.float32) * 2)
    ok = ok and np.array_equal((m @ m).numpy(), np.full((256, 256), 256, dtype=np.float32))
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
print("parent", np.array_equal((a * 2.0).numpy(), np.arange(1 << 21, dtype=np.float32) * 2))
"""


def test_forked_child_runs_parallel_kernels():
    """A child forked after the pool started (DataLoader workers) gets a pool of its own: it
    neither deadlocks on the parent's workers nor disturbs them."""
    out = run_python(FORKED, timeout=120, NEEDLE_NUM_THREADS="2").split("\n")
    assert out[0] == "child 0" and out[1] == "parent True", out
