"""The packed SGEMM (src/gemm.h) through the backend `gemm` / `matmul` entry points and NDArray
matmul, against numpy in float64.

Sizes mix 1, 2, 7, 16, 33, 65, 257 so that every edge of the 6 x 16 (AVX2) and 4 x 8 (generic)
micro-tiles and of the 96 / 384 cache blocks is crossed. `accumulate` and leading dims wider than
the matrix are only reachable from C++: `test_native_harness` compiles the standalone harness
benchmarks/bench_gemm_native.cc and runs its correctness sweep, and `test_every_plan` compiles
tests/gemm_plans_check.cc, which forces every thread plan (row / column / K splits, shared or
private B blocks) whatever the core count and the cost model would pick, then sweeps odd sizes.
Both also run the AVX-512 kernel (12 x 32) with its intrinsics emulated on AVX2
(tests/avx512_emulation.h), since this machine and CI have no AVX-512.
"""
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import sysconfig

import needle.backend_ndarray as nd
import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

# (m, n, p) = (rows of out, reduction size, cols of out); every size appears in every position.
SIZES = [
    (1, 1, 1), (2, 7, 16), (7, 16, 2), (16, 2, 7), (33, 65, 257), (257, 33, 65), (65, 257, 33),
    (1, 257, 7), (257, 1, 16), (16, 33, 1), (65, 65, 65), (7, 2, 257),
    (5, 257, 1000),  # short and wide: the two threads split the columns
]


def tolerance(k):
    """float32 accumulation error grows with the reduction length k; bugs give O(1) errors."""
    return {"rtol": 1e-5, "atol": 2e-6 * max(k, 1)}


def to_buffer(device, flat):
    buf = device.Array(flat.size)
    device.from_numpy(np.ascontiguousarray(flat, dtype=np.float32), buf)
    return buf


def stored(op, transposed):
    """The row-major storage of an operand whose math value is `op` (transposed if asked)."""
    return np.ascontiguousarray(op.T if transposed else op)


def run_gemm(device, a_ops, b_ops, ta, tb, a_shared=False, b_shared=False, lead=3):
    """out[i] = a_ops[i] @ b_ops[i] via device.gemm; operands stored after `lead` junk floats,
    one after the other (batch stride = matrix size), or once with batch stride 0 when shared."""
    batch, m, n = a_ops.shape
    p = b_ops.shape[2]
    a_mats = a_ops[:1] if a_shared else a_ops
    b_mats = b_ops[:1] if b_shared else b_ops
    a_flat = np.concatenate([np.full(lead, np.nan, np.float32)]
                            + [stored(x, ta).ravel() for x in a_mats])
    b_flat = np.concatenate([np.full(lead + 1, np.nan, np.float32)]
                            + [stored(x, tb).ravel() for x in b_mats])
    out = device.Array(batch * m * p)
    device.gemm(to_buffer(device, a_flat), to_buffer(device, b_flat), out, batch, m, n, p,
                lead, 0 if a_shared else m * n, ta, lead + 1, 0 if b_shared else n * p, tb)
    return device.to_numpy(out, (batch, m, p), (m * p, p, 1), 0)


def random_ops(batch, rows, cols):
    return np.random.uniform(-1, 1, (batch, rows, cols)).astype(np.float32)


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)],
                         ids=["NN", "TN", "NT", "TT"])
@pytest.mark.parametrize("m,n,p", SIZES, ids=[f"{m}x{n}x{p}" for m, n, p in SIZES])
def test_backend_gemm_sizes(device, m, n, p, ta, tb):
    a, b = random_ops(1, m, n), random_ops(1, n, p)
    got = run_gemm(device, a, b, ta, tb)
    want = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(got, want, **tolerance(n), err_msg=f"gemm {m}x{n}x{p} ta={ta} tb={tb}")


@pytest.mark.parametrize("a_shared,b_shared", [(False, False), (True, False), (False, True)],
                         ids=["strided", "a_stride0", "b_stride0"])
@pytest.mark.parametrize("batch,m,n,p", [(3, 7, 33, 17), (2, 150, 140, 170), (80, 20, 24, 30)],
                         ids=["small", "team_threads", "batch_threads"])
def test_backend_gemm_batched(device, batch, m, n, p, a_shared, b_shared):
    a, b = random_ops(batch, m, n), random_ops(batch, n, p)
    if a_shared:
        a[:] = a[0]
    if b_shared:
        b[:] = b[0]
    for ta, tb in [(False, False), (True, True)]:
        got = run_gemm(device, a, b, ta, tb, a_shared, b_shared)
        want = a.astype(np.float64) @ b.astype(np.float64)
        np.testing.assert_allclose(got, want, **tolerance(n), err_msg=f"ta={ta} tb={tb}")


# The ResNet9 (batch 128) training-step shapes, (m, n, p) of out (m x p) = a (m x n) @ b (n x p):
# a tall A read in place (few B panels), tiny reductions, and the weight gradients cols^T @ dY
# (long reduction, small output: split over k between the threads, then summed).
STEP_SHAPES = [
    ("NN", 8192, 147, 16), ("NN", 8192, 16, 147), ("TN", 147, 8192, 16),
    ("NN", 2048, 32, 288), ("TN", 288, 2048, 32), ("TN", 144, 2048, 32),
    ("NN", 512, 64, 288), ("TN", 288, 512, 64), ("NN", 128, 1152, 128), ("TN", 1152, 128, 128),
    ("NT", 128, 128, 128), ("TT", 130, 1000, 20), ("NN", 5, 3000, 7),
]


@pytest.mark.parametrize("kind,m,n,p", STEP_SHAPES,
                         ids=[f"{k}{m}x{n}x{p}" for k, m, n, p in STEP_SHAPES])
def test_ndarray_matmul_step_shapes(device, kind, m, n, p):
    ta, tb = kind[0] == "T", kind[1] == "T"
    a, b = random_ops(1, m, n)[0], random_ops(1, n, p)[0]
    x = nd.array(stored(a, ta), device=device)
    y = nd.array(stored(b, tb), device=device)
    got = nd.matmul(x, y, transpose_a=ta, transpose_b=tb).numpy()
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, **tolerance(n))


@pytest.mark.parametrize("m,n,p", [(7, 33, 3), (13, 9, 8), (31, 500, 9), (200, 70, 24)],
                         ids=["3cols", "8cols", "9cols", "24cols"])
def test_backend_gemm_narrow_edges(device, m, n, p):
    """Last micro-panels of at most half the tile width (the half-width kernel) and partial
    rows of an A read in place (packed into a zero-padded edge panel), all transposes."""
    a, b = random_ops(1, m, n), random_ops(1, n, p)
    for ta, tb in [(False, False), (True, False), (False, True), (True, True)]:
        got = run_gemm(device, a, b, ta, tb)
        np.testing.assert_allclose(got, a.astype(np.float64) @ b.astype(np.float64), **tolerance(n),
                                   err_msg=f"ta={ta} tb={tb}")


def test_backend_gemm_zero_reduction_and_empty(device):
    a, b = device.Array(1), device.Array(1)
    out = device.Array(2 * 3 * 4)
    device.fill(out, 7.0)
    device.gemm(a, b, out, 2, 3, 0, 4, 0, 0, False, 0, 0, False)
    assert np.array_equal(device.to_numpy(out, (24,), (1,), 0), np.zeros(24, np.float32))
    device.fill(out, 7.0)
    device.gemm(a, b, out, 0, 3, 5, 4, 0, 0, False, 0, 0, False)  # empty batch: untouched
    assert np.array_equal(device.to_numpy(out, (24,), (1,), 0), np.full(24, 7.0, np.float32))


def test_backend_gemm_rejects_views_outside_buffer(device):
    a, b, out4, out8 = device.Array(6), device.Array(6), device.Array(4), device.Array(8)
    with pytest.raises(IndexError, match="gemm"):
        device.gemm(a, b, out4, 1, 2, 3, 2, 1, 0, False, 0, 0, False)  # A needs 7 elements
    with pytest.raises(IndexError, match="gemm"):
        device.gemm(a, b, out8, 2, 2, 3, 2, 0, 6, False, 0, 0, False)  # second A past the end
    with pytest.raises(ValueError, match="gemm"):
        device.gemm(a, b, out4, 1, 3, 2, 2, 0, 0, False, 0, 0, False)  # out holds 4, needs 6


@pytest.mark.parametrize("m,n,p", [(1, 1, 1), (7, 65, 33), (257, 16, 2), (64, 64, 64)])
def test_backend_matmul(device, m, n, p):
    a, b = random_ops(1, m, n)[0], random_ops(1, n, p)[0]
    out = device.Array(m * p)
    device.matmul(to_buffer(device, a), to_buffer(device, b), out, m, n, p)
    got = device.to_numpy(out, (m, p), (p, 1), 0)
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, **tolerance(n))


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)],
                         ids=["NN", "TN", "NT", "TT"])
def test_ndarray_matmul_transposes(device, ta, tb):
    a, b = random_ops(1, 33, 65)[0], random_ops(1, 65, 17)[0]
    x = nd.array(stored(a, ta), device=device)
    y = nd.array(stored(b, tb), device=device)
    got = nd.matmul(x, y, transpose_a=ta, transpose_b=tb).numpy()
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, **tolerance(65))
    # The same through permuted views, which NDArray hands to gemm without copies.
    xv = x.permute((1, 0)) if ta else x
    yv = y.permute((1, 0)) if tb else y
    np.testing.assert_allclose((xv @ yv).numpy(), a.astype(np.float64) @ b, **tolerance(65))


@pytest.mark.parametrize("sa,sb", [((4, 7, 16), (16, 33)), ((7, 16), (3, 16, 9)),
                                   ((2, 3, 5, 6), (3, 6, 4)), ((3, 1, 5, 6), (1, 2, 6, 4))],
                         ids=["batch_at_2d", "2d_at_batch", "bcast_rank", "bcast_ones"])
def test_ndarray_matmul_broadcast(device, sa, sb):
    a = np.random.uniform(-1, 1, sa).astype(np.float32)
    b = np.random.uniform(-1, 1, sb).astype(np.float32)
    got = (nd.array(a, device=device) @ nd.array(b, device=device)).numpy()
    want = a.astype(np.float64) @ b.astype(np.float64)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, **tolerance(sa[-1]))


def test_ndarray_matmul_offset_views(device):
    base = np.random.uniform(-1, 1, (40, 50)).astype(np.float32)
    x = nd.array(base, device=device)
    a, b = x[3:20, 5:38], x[7:40, 11:23]  # non-zero offsets, leading dim 50
    want = base[3:20, 5:38].astype(np.float64) @ base[7:40, 11:23]
    np.testing.assert_allclose((a @ b).numpy(), want, **tolerance(33))


# Implicit GEMMs with few output columns (gemm_skinny.h where AVX-512 runs): im2col views of an
# N x H x W x C buffer whose rows are pixels and columns taps (runs of C contiguous floats), or,
# for a weight gradient, rows taps and columns pixels (runs of one image row when C = 1).
# Runs of 13 / 29 (masked 16-lane chunks), 80 (whole chunks), 1 (the packed kernels), and
# sizes that make the two threads split rows or k.
# One-channel forward views (rows are pixels, adjacent along an image row: gemm_skinny_rows.h)
# with output rows of 16 (whole 16-row chunks), 19 and 29 (chunks crossing rows), row counts
# that end inside a tile, and weight gradients whose k spans several 2048-step blocks.
SKINNY = [  # (N, H, C, kernel, weight_grad, output columns)
    (2, 9, 13, 3, False, 6), (3, 14, 16, 5, False, 1), (8, 18, 16, 5, False, 6),
    (4, 12, 29, 3, False, 8), (2, 9, 3, 3, False, 5), (64, 32, 1, 5, True, 6),
    (3, 20, 1, 3, True, 3), (2, 12, 2, 3, True, 7), (2, 9, 13, 3, False, 9),
    (3, 20, 1, 5, False, 6), (3, 21, 1, 3, False, 3), (2, 33, 1, 5, False, 8),
    (5, 31, 1, 3, False, 1), (1, 18, 1, 3, False, 7), (4, 20, 1, 3, True, 8),
    (9, 30, 1, 2, True, 1), (2, 40, 1, 5, True, 5),
]


@pytest.mark.parametrize("transposed_b", [False, True], ids=["B", "BT"])
@pytest.mark.parametrize("n,h,c,k,weight_grad,p", SKINNY)
def test_flat_matmul_few_output_columns(device, n, h, c, k, weight_grad, p, transposed_b):
    x = np.random.uniform(-1, 1, (n, h, h, c)).astype(np.float32)
    ho = h - k + 1
    pix_shape, pix_strides = (n, ho, ho), (h * h * c, h * c, c)
    tap_shape, tap_strides = (k, k, c), (h * c, c, 1)
    if weight_grad:
        shape, strides = tap_shape + pix_shape, tap_strides + pix_strides
    else:
        shape, strides = pix_shape + tap_shape, pix_strides + tap_strides
    view = nd.array(x, device=device).as_strided(shape, strides, 0)
    rows, cols = int(np.prod(shape[:3])), int(np.prod(shape[3:]))
    b = np.random.uniform(-1, 1, (cols, p)).astype(np.float32)
    bb = nd.array(b.T.copy(), device=device).permute((1, 0)) if transposed_b else nd.array(
        b, device=device)
    want = np.lib.stride_tricks.as_strided(x.astype(np.float64), shape,
                                           [s * 8 for s in strides]).reshape(rows, cols) @ b
    got = nd.flat_matmul(view, bb, 3)
    np.testing.assert_allclose(got.numpy(), want, **tolerance(cols))


def narrow_case(rng, device, n, h, w, c, k, stride, pad, weight_grad, p, transposed_b, lead):
    """gemm_strided_a over the im2col view of an N x H x W x C image stored with `pad` spare
    floats per row and `lead` before it (offsets, gaps between rows); returns (got, want, the
    reduction length)."""
    ho, wo = (h - k) // stride + 1, (w - k) // stride + 1
    row = (w + pad) * c
    pix_shape, pix_strides = (n, ho, wo), (h * row, stride * row, stride * c)
    tap_shape, tap_strides = (k, k, c), (row, c, 1)
    if weight_grad:
        shape, strides = tap_shape + pix_shape, tap_strides + pix_strides
    else:
        shape, strides = pix_shape + tap_shape, pix_strides + tap_strides
    flat = rng.uniform(-1, 1, lead + n * h * row).astype(np.float32)
    m, kk = int(np.prod(shape[:3])), int(np.prod(shape[3:]))
    b = rng.uniform(-1, 1, (kk, p)).astype(np.float32)
    out = device.Array(m * p)
    device.gemm_strided_a(to_buffer(device, flat), to_buffer(device, stored(b, transposed_b)), out,
                          m, kk, p, shape, strides, lead, 3, 0, transposed_b)
    view = np.lib.stride_tricks.as_strided(flat[lead:].astype(np.float64), shape,
                                           [s * 8 for s in strides])
    return device.to_numpy(out, (m, p), (p, 1), 0), view.reshape(m, kk) @ b, kk


@pytest.mark.parametrize("transposed_b", [False, True], ids=["B", "BT"])
@pytest.mark.parametrize("n,h,w,k,stride,pad,weight_grad,p", [
    (2, 32, 32, 5, 1, 0, False, 6), (2, 32, 28, 5, 1, 4, False, 6),  # LeNet conv1, padded rows
    (3, 23, 40, 3, 1, 3, False, 8), (1, 21, 17, 3, 1, 5, False, 2),  # 38 / 15 (<16) per row
    (2, 24, 30, 3, 2, 1, False, 4),  # stride 2: the packed kernels
    (4, 30, 30, 5, 1, 2, True, 6), (2, 25, 19, 2, 1, 1, True, 3),  # weight gradients
])
def test_backend_narrow_strided_views(device, n, h, w, k, stride, pad, weight_grad, p,
                                      transposed_b):
    """Few output columns over views with offsets and gaps between image rows."""
    rng = np.random.default_rng(5)
    got, want, kk = narrow_case(rng, device, n, h, w, 1, k, stride, pad, weight_grad, p,
                                transposed_b, lead=7)
    np.testing.assert_allclose(got, want, **tolerance(kk))


NARROW_THREADS_CHECK = """
import numpy as np, needle.backend_ndarray as nd, sys
sys.path.insert(0, "tests")
from test_gemm import narrow_case
rng = np.random.default_rng(3)
worst = 0.0
for args in [(64, 32, 28, 1, 5, 1, 4, False, 6), (64, 32, 28, 1, 5, 1, 4, True, 6),
             (5, 40, 40, 1, 3, 1, 0, True, 7), (3, 35, 35, 1, 5, 1, 0, False, 3)]:
    got, want, k = narrow_case(rng, nd.cpu(), *args, transposed_b=False, lead=3)
    worst = max(worst, float(np.abs(got - want).max() / (2e-6 * k + 1e-5)))
print(worst)
"""


@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_narrow_thread_counts(threads):
    """The narrow paths' row splits and K splits (one to three shares of k, several blocks
    each) for LeNet's conv1 shapes."""
    res = run_python(NARROW_THREADS_CHECK, NEEDLE_NUM_THREADS=threads, NEEDLE_ADAPTIVE_THREADS="0")
    assert res.returncode == 0, res.stderr
    assert float(res.stdout.split()[-1]) < 1.0, res.stdout


def run_python(code, **env):
    full_env = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full_env, timeout=120, check=False)


GENERIC_CHECK = """
import numpy as np
import needle.backend_ndarray as nd
rng = np.random.default_rng(1)
worst = 0.0
for m, n, p in [(1, 1, 1), (5, 7, 9), (33, 65, 17), (257, 33, 65), (150, 300, 140),
                (2000, 147, 16), (147, 3000, 16), (40, 16, 147)]:
    a = rng.uniform(-1, 1, (m, n)).astype(np.float32)
    b = rng.uniform(-1, 1, (n, p)).astype(np.float32)
    x, y = nd.array(a, device=nd.cpu()), nd.array(b, device=nd.cpu())
    want = a.astype(np.float64) @ b
    for got in [x @ y, nd.matmul(nd.array(a.T.copy(), device=nd.cpu()), y, transpose_a=True),
                nd.matmul(x, nd.array(b.T.copy(), device=nd.cpu()), transpose_b=True)]:
        worst = max(worst, float(np.abs(got.numpy() - want).max() / (2e-6 * n + 1e-5)))
print(worst)
"""


@pytest.mark.parametrize("kernel", ["generic", "avx512"])
def test_kernel_forced_by_env(kernel):
    """NEEDLE_GEMM_KERNEL=generic runs the portable kernel (what CPUs without AVX2 get);
    avx512 runs that kernel, or the best one below it on a CPU without AVX-512."""
    res = run_python(GENERIC_CHECK, NEEDLE_GEMM_KERNEL=kernel)
    assert res.returncode == 0, res.stderr
    assert float(res.stdout.split()[-1]) < 1.0, res.stdout


THREADS_CHECK = """
import numpy as np
import needle.backend_ndarray as nd
rng = np.random.default_rng(2)
worst = 0.0
for kind, m, n, p in [("TN", 147, 8192, 16), ("TN", 288, 2048, 32), ("NN", 8192, 147, 16),
                      ("NN", 2048, 32, 288), ("NT", 128, 128, 128), ("TT", 300, 900, 40)]:
    ta, tb = kind[0] == "T", kind[1] == "T"
    a = rng.uniform(-1, 1, (m, n)).astype(np.float32)
    b = rng.uniform(-1, 1, (n, p)).astype(np.float32)
    x = nd.array(a.T.copy() if ta else a, device=nd.cpu())
    y = nd.array(b.T.copy() if tb else b, device=nd.cpu())
    got = nd.matmul(x, y, transpose_a=ta, transpose_b=tb).numpy()
    worst = max(worst, float(np.abs(got - a.astype(np.float64) @ b).max() / (2e-6 * n + 1e-5)))
print(worst)
"""


@pytest.mark.parametrize("threads", ["1", "3"])
def test_step_shapes_thread_counts(threads):
    """The cost model's plans for 1 and 3 threads (a 3-way K split for the weight gradients),
    whatever the number of cores here."""
    res = run_python(THREADS_CHECK, NEEDLE_NUM_THREADS=threads, NEEDLE_ADAPTIVE_THREADS="0")
    assert res.returncode == 0, res.stderr
    assert float(res.stdout.split()[-1]) < 1.0, res.stdout


def test_unknown_kernel_name_raises():
    code = ("import needle.backend_ndarray as nd\n"
            "a = nd.ones((2, 2), device=nd.cpu())\n"
            "try:\n    a @ a\nexcept ValueError as e:\n    print('ValueError:', e)\n")
    res = run_python(code, NEEDLE_GEMM_KERNEL="no-such-kernel")
    assert res.returncode == 0, res.stderr
    assert "ValueError:" in res.stdout and "NEEDLE_GEMM_KERNEL" in res.stdout, res.stdout
    assert "avx512" in res.stdout, res.stdout  # the message lists the valid names


def _cxx():
    for name in [os.environ.get("CXX"), sysconfig.get_config_var("CXX"), "c++", "g++", "clang++"]:
        if name and shutil.which(name.split()[0]):
            return name.split()[0]
    pytest.fail("no C++ compiler found (the package build needs one too); set CXX")


def build_native(tmp_path, source, name, emulate_avx512=False):
    """Compiles a C++ checker; with emulate_avx512, its AVX-512 kernel runs on AVX2."""
    exe = tmp_path / name
    emulation = ["-include", str(REPO / "tests" / "avx512_emulation.h")] if emulate_avx512 else []
    cmd = [_cxx(), "-O2", "-pthread", "-std=c++17", f"-I{REPO / 'src'}", *emulation, str(source),
           "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stderr
    return exe


def run_native(exe, kernel, *args):
    """Runs a C++ checker with NEEDLE_GEMM_KERNEL=kernel; returns its output, which must report
    no failure."""
    res = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300,
                         check=False, env=dict(os.environ, NEEDLE_GEMM_KERNEL=kernel))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "failed=0" in res.stdout, res.stdout
    return res.stdout


def avx2_fma_here():
    """Whether this CPU runs the AVX-512 emulation (AVX2 + FMA underneath)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        flags = pathlib.Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: let the run report the kernel it got
        return True
    return "avx2" in flags and "fma" in flags


needs_avx512_emulation = pytest.mark.skipif(
    not avx2_fma_here(),
    reason="the AVX-512 kernel is emulated on AVX2 + FMA, which this CPU lacks")

PLANS_CHECK = REPO / "tests" / "gemm_plans_check.cc"
NATIVE_HARNESS = REPO / "benchmarks" / "bench_gemm_native.cc"


def test_every_plan(tmp_path):
    """Every thread plan (row, column and K splits; shared or private B blocks; 2 to 4 threads)
    and both A paths (packed, read in place), forced one after the other, then odd sizes
    (1, 7, 13, 16, 17, 31, 33, 257 in every position); the native kernels."""
    exe = build_native(tmp_path, PLANS_CHECK, "plans")
    outputs = [run_native(exe, "auto"), run_native(exe, "generic")]
    if "kernel=avx512" in outputs[0]:  # auto ran AVX-512 natively: check AVX2 on its own too
        outputs.append(run_native(exe, "avx2"))
    for out in outputs:
        assert "cases=2708" in out, out


@needs_avx512_emulation
def test_every_plan_avx512_emulated(tmp_path):
    """The same checks on the AVX-512 kernel (12 x 32 tile, 256-deep k blocks: edges at other
    sizes than AVX2's), its _mm512 intrinsics emulated lane for lane on AVX2."""
    exe = build_native(tmp_path, PLANS_CHECK, "plans512", emulate_avx512=True)
    out = run_native(exe, "avx512")
    assert "kernel=avx512" in out and "cases=2708" in out, out


def test_native_harness(tmp_path):
    """accumulate=true, leading dims wider than the matrix, k = 0, NaN-filled C (never read
    unless accumulating), untouched padding columns: the C++ correctness sweep, both native
    kernels."""
    exe = build_native(tmp_path, NATIVE_HARNESS, "bench_gemm")
    for kernel in ["auto", "generic"]:
        run_native(exe, kernel, "check")


@needs_avx512_emulation
def test_native_harness_avx512_emulated(tmp_path):
    """The C++ correctness sweep on the AVX-512 kernel, emulated on AVX2."""
    exe = build_native(tmp_path, NATIVE_HARNESS, "bench_gemm512", emulate_avx512=True)
    assert "kernel=avx512" in run_native(exe, "avx512", "check")
