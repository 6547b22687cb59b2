"""The CUDA emulator itself (tests/cuda_emu): one small kernel per feature the backend uses, and
the faults it must turn into a RuntimeError naming the kernel instead of hanging or aborting.
tests/cuda_emu/emu_selftest.cc is built here, with the flags CMake uses for the emulated module."""
import importlib.util
import os
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

import needle.backend_ndarray as nd

from test_gemm import REPO, _cxx

EMU = REPO / "tests" / "cuda_emu"


def build_selftest(folder, *flags):
    """Compiles emu_selftest.cc into folder; returns the module's path."""
    out = folder / ("emu_selftest" + sysconfig.get_config_var("EXT_SUFFIX"))
    pybind = subprocess.run([sys.executable, "-m", "pybind11", "--includes"], capture_output=True,
                            text=True, check=True).stdout.split()
    cmd = [_cxx(), "-std=c++17", "-O1", "-shared", "-fPIC", "-ffp-contract=off", *flags,
           "-DNEEDLE_CUDA_EMULATOR", "-D__CUDA_ARCH__=800", f"-I{EMU}", f"-I{REPO / 'src'}", *pybind,
           str(EMU / "emu_selftest.cc"), "-o", str(out)]
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stderr
    return out


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    """The self-test module, compiled against the emulator headers and imported from a temp dir."""
    out = build_selftest(tmp_path_factory.mktemp("emu"))
    spec = importlib.util.spec_from_file_location("emu_selftest", out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def order(monkeypatch):
    """Sets the emulator's thread order (read at each launch)."""
    def set_order(name, warp_eager=False):
        monkeypatch.setenv("CUDA_EMU_ORDER", name)
        monkeypatch.setenv("CUDA_EMU_WARP_EAGER", "1" if warp_eager else "0")
    return set_order


# ---- faults: a RuntimeError naming the kernel, never a hang or an abort

def test_threads_split_between_syncthreads_and_a_shuffle_raise(emu):
    with pytest.raises(RuntimeError, match=r"deadlock.*SplitBarrierKernel.*block \(0,0,0\)"):
        emu.split_barrier()


def test_shuffle_with_an_exited_lane_raises(emu):
    with pytest.raises(RuntimeError, match="exited.*ShuffleExitedLaneKernel"):
        emu.shuffle_exited_lane()


def test_misaligned_wmma_pointer_raises(emu):
    with pytest.raises(RuntimeError, match="load_matrix_sync.*aligned.*MisalignedWmmaKernel"):
        emu.misaligned_wmma()


@pytest.mark.parametrize("grid, block", [
    ((1, 1, 1), (1025, 1, 1)), ((1, 1, 1), (32, 32, 2)), ((1, 1, 1), (1, 1, 65)),
    ((0, 1, 1), (32, 1, 1)), ((1, 65536, 1), (32, 1, 1)), ((1, 1, 65536), (32, 1, 1)),
    ((1, 1, 1), (0, 1, 1))])
def test_bad_launch_configuration_raises(emu, grid, block):
    with pytest.raises(RuntimeError, match=r"launch of .*EmptyKernel.*invalid configuration"):
        emu.launch(list(grid), list(block))
    assert emu.launch([1, 1, 1], [1, 1, 1]) == [1.0]  # the error was cleared


def test_a_fault_leaves_the_emulator_usable(emu):
    with pytest.raises(RuntimeError):
        emu.split_barrier()
    np.testing.assert_array_equal(emu.synced_neighbour(), np.r_[0, np.arange(63)])


def test_asan_build_reports_an_out_of_bounds_write(tmp_path):
    """What CI's ASan pass relies on: a kernel writing past its buffer stops the run with a report."""
    libasan = subprocess.run([_cxx(), "-print-file-name=libasan.so"], capture_output=True, text=True,
                             check=False).stdout.strip()
    if not os.path.isabs(libasan):
        pytest.skip("the compiler has no AddressSanitizer runtime")
    out = build_selftest(tmp_path, "-fsanitize=address", "-fno-omit-frame-pointer")
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('emu_selftest', "
            "sys.argv[1]); m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "print(m.synced_neighbour()[5]); m.out_of_bounds(); print('not caught')")
    env = dict(os.environ, LD_PRELOAD=libasan, ASAN_OPTIONS="detect_leaks=0")
    res = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, env=env,
                         timeout=300, check=False)
    assert res.stdout.split()[0] == "4.0", res.stdout + res.stderr  # fibers work under ASan
    assert res.returncode != 0 and "not caught" not in res.stdout
    assert "heap-buffer-overflow" in res.stderr and "WRITE of size 4" in res.stderr, res.stderr[-3000:]


# ---- features

def test_shared_memory_is_nan_at_each_block_start(emu):
    assert np.isnan(emu.read_shared_first()).all()


def test_shared_align(emu):
    assert emu.aligned_shared() == [0.0]


def test_shuffle_xor_float_and_double(emu):
    out = np.array(emu.shuffle_sum()).reshape(64, 2)
    # the double lanes carry steps of 1e-12 that a float would lose
    np.testing.assert_allclose(out[:32, 0], sum(range(32)), atol=0.01)
    np.testing.assert_allclose(out[32:, 0], sum(range(32, 64)), atol=0.01)
    np.testing.assert_array_equal(out[:32, 1], sum(range(32)))
    np.testing.assert_array_equal(out[32:, 1], sum(range(32, 64)))


def test_3d_grid_and_block_cover_every_thread_once(emu):
    np.testing.assert_array_equal(emu.grid3d(), np.arange(2 * 3 * 4 * 60) + 1.0)


def test_float_atomic_add(emu):
    assert emu.atomic_count() == [7 * 96 * 0.5]


def test_umulhi_rn_intrinsics_and_float4(emu):
    x = np.float32(1 + 2 ** -12)
    out = emu.scalar_intrinsics([x, x, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0])
    assert out[0] == 0xff
    assert out[1] == np.float32(x * x) - 1  # rounded product, then the add: not an FMA
    assert out[2] == 0.0 and out[3] == 10.0


def test_tf32_rounding(emu):
    """10 explicit mantissa bits, to nearest, ties away from zero; inf and NaN unchanged."""
    assert emu.tf32(1 + 2 ** -11) == 1 + 2 ** -10  # a tie: away from zero
    assert emu.tf32(-(1 + 2 ** -11)) == -(1 + 2 ** -10)
    assert emu.tf32(1 + 2 ** -12) == 1.0
    assert emu.tf32(1 + 3 * 2 ** -12) == 1 + 2 ** -10
    assert emu.tf32(np.inf) == np.inf and np.isnan(emu.tf32(np.nan))


def test_wmma_tf32_product(emu):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((16, 8)).astype(np.float32)
    b = rng.standard_normal((8, 16)).astype(np.float32)
    c = np.array(emu.wmma(a.ravel().tolist(), b.ravel().tolist())).reshape(16, 16)
    tf32 = np.vectorize(emu.tf32)
    exact_tf32 = tf32(a).astype(np.float64) @ tf32(b).astype(np.float64)
    np.testing.assert_allclose(c, exact_tf32, rtol=0, atol=1e-5)  # operands rounded, FP32 sums
    assert np.abs(c - a.astype(np.float64) @ b).max() > 1e-5  # ... and visibly not FP32 products


def test_runtime_calls_without_pools(emu, monkeypatch):
    monkeypatch.delenv("CUDA_EMU_MEMPOOLS", raising=False)
    r = emu.runtime()
    assert (r["count"], r["cc_major"], r["pools"]) == (1, 8, 0)
    assert r["malloc_async"] == "operation not supported"  # the backend falls back to cudaMalloc
    assert r["copied"] == [1.0, 2.0, 0.0, 0.0] and r["last_error"] == "no error"


def test_runtime_calls_with_pools(emu, monkeypatch):
    monkeypatch.setenv("CUDA_EMU_MEMPOOLS", "1")
    monkeypatch.setenv("CUDA_EMU_SMS", "3")
    r = emu.runtime()
    assert (r["pools"], r["sms"], r["malloc_async"]) == (1, 3, "no error")
    assert r["copied"] == [1.0, 2.0, 0.0, 0.0]


def test_stream_capture_and_graph_semantics(emu):
    r = emu.graphs()
    assert r["legacy_stream"] == "operation not permitted when stream is capturing"
    assert r["status"] == 1 and r["nodes"] == 2  # active; a kernel and a copy recorded
    assert r["while_capturing"] == [0.0] * 4  # recorded, not run
    # the kernel's by-value argument as captured ({1, 2}, not the later {5, 6}), then the copy
    assert r["launched"] == [1.0, 2.0, 1.0, 2.0] and r["launched_again"] == [1.0, 2.0, 1.0, 2.0]
    unsupported = ("operation not permitted when stream is capturing",
                   "operation failed due to a previous error during capture", True)
    for call in ("malloc", "memcpy", "device_sync", "stream_sync"):
        assert r[call] == unsupported, call
    assert r["legacy_async"] == ("operation would make the legacy stream depend on a capturing "
                                 "blocking stream", unsupported[1], True)
    assert r["after"] == [1.0, 2.0, 1.0, 2.0]


# ---- thread orders: a missing barrier shows up in some order

@pytest.mark.parametrize("name, eager", [("forward", False), ("reverse", False), ("random", False),
                                         ("forward", True), ("reverse", True)])
def test_correct_kernel_is_right_in_every_order(emu, order, name, eager):
    order(name, eager)
    np.testing.assert_array_equal(emu.synced_neighbour(), np.r_[0, np.arange(63)])


def test_missing_barrier_shows_in_reverse_order(emu, order):
    order("forward")
    np.testing.assert_array_equal(emu.racy_neighbour(), np.r_[0, np.arange(63)])  # by luck
    order("reverse")
    assert np.isnan(emu.racy_neighbour()[1:]).all()  # the neighbour has not written yet


# ---- selection

def test_cuda_device_reports_emulation():
    assert nd.cpu().emulated is False
    want = os.environ.get("NEEDLE_CUDA_EMULATOR", "").lower() in ("1", "on", "asan")
    assert nd.cuda().emulated is want
    if want:
        assert nd.cuda().enabled()


def test_emulator_is_never_picked_silently():
    """Without NEEDLE_CUDA_EMULATOR, cuda() is the real module (or disabled); a bad value raises."""
    code = ("import needle as ndl; d = ndl.cuda(); "
            "print(d.emulated, d.enabled() and d.mod.__name__.endswith('ndarray_backend_cuda'))")
    env = {k: v for k, v in os.environ.items() if k != "NEEDLE_CUDA_EMULATOR"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120, check=True)
    assert res.stdout.split()[0] == "False"
    bad = subprocess.run([sys.executable, "-c", "import needle as ndl; ndl.cuda()"], capture_output=True,
                         text=True, env=dict(env, NEEDLE_CUDA_EMULATOR="yes"), timeout=120, check=False)
    assert bad.returncode != 0 and "NEEDLE_CUDA_EMULATOR='yes'" in bad.stderr


# ---- the backend's graph capture (src/cuda_graph.cuh), as ndl.jit uses it; GPU or emulator

needs_cuda = pytest.mark.skipif(not nd.cuda().enabled(), reason="no CUDA device (nor NEEDLE_CUDA_EMULATOR)")


def _cuda_buffers(*values):
    m = nd.cuda().mod
    out = []
    for v in values:
        a = m.Array(np.size(v))
        m.from_numpy(np.asarray(v, dtype=np.float32).ravel(), a)
        out.append(a)
    return m, out


def _read(m, a, n):
    return m.to_numpy(a, (n,), (1,), 0)


@needs_cuda
def test_cuda_graph_replays_captured_calls_on_current_data():
    m, (a, b, out, t) = _cuda_buffers(np.arange(6.0), np.ones(6), np.zeros(6), np.zeros(6))
    m._graphs.begin()
    assert m._graphs.capturing()
    m.ewise_add(a, b, out)
    m.compact(out, t, (2, 3), (1, 2), 0)  # a transposed view: its metadata is copied now
    m.scalar_mul(t, 3.0, t)
    g = m._graphs.end()
    assert not m._graphs.capturing() and g.nodes == 3
    np.testing.assert_array_equal(_read(m, t, 6), np.zeros(6))  # recorded, not run
    for x in (np.arange(6.0), np.full(6, -2.0)):
        m.from_numpy(x.astype(np.float32), a)
        g.launch()
        want = 3 * (x + 1).reshape(3, 2).T.ravel()
        np.testing.assert_array_equal(_read(m, t, 6), want)


@needs_cuda
def test_cuda_graph_illegal_call_raises_and_the_device_recovers():
    m, (a,) = _cuda_buffers(np.arange(4.0))
    m._graphs.begin()
    with pytest.raises(RuntimeError, match="cudaMemcpy.*not permitted when stream is capturing"):
        m.to_numpy(a, (4,), (1,), 0)  # a synchronous copy
    with pytest.raises(RuntimeError, match="cuda graph: the capture failed"):
        m._graphs.end()
    assert not m._graphs.capturing()
    m.scalar_add(a, 1.0, a)
    np.testing.assert_array_equal(_read(m, a, 4), np.arange(1.0, 5.0))


@needs_cuda
def test_cuda_graph_refuses_uploads_new_buffers_and_misuse():
    m, (a,) = _cuda_buffers(np.zeros(4))
    with pytest.raises(RuntimeError, match="end\\(\\) without begin\\(\\)"):
        m._graphs.end()
    m._graphs.begin()
    try:
        with pytest.raises(RuntimeError, match="begin\\(\\) while a capture is running"):
            m._graphs.begin()
        with pytest.raises(RuntimeError, match="upload cannot be captured"):
            m.from_numpy(np.ones(4, dtype=np.float32), a)
        with pytest.raises(RuntimeError, match="cannot allocate a buffer while a CUDA graph"):
            m.Array(4)
        m.fill(a, 7.0)
    finally:
        g = m._graphs.end()
    g.launch()
    np.testing.assert_array_equal(_read(m, a, 4), np.full(4, 7.0))
    with pytest.raises(TypeError):
        m._graphs.begin(1)
