"""Native backend modules (cpu, and cuda when a GPU answers) called directly, entry point by
entry point, against the numpy reference module on random data: buffers and copies, strided
views (compact, setitem, overlapping scatter_add, the *_strided operands), element-wise kernels
with special values, the generic-ISA build, memory and threads. Matmul / GEMM, reductions,
softmax, batch norm, pooling and every validation path are in test_backend_native_kernels.py,
which imports the helpers below."""
import importlib
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import needle.backend_ndarray as nd
from needle.backend_ndarray import ndarray_backend_numpy as REF


def _native_modules():
    params = [pytest.param("ndarray_backend_cpu", id="cpu")]
    cuda = nd.cuda()  # the GPU module, or the emulated one under NEEDLE_CUDA_EMULATOR
    name = cuda.mod.__name__.rsplit(".", 1)[-1] if cuda.enabled() else "ndarray_backend_cuda"
    reason = "no CUDA device (NEEDLE_CUDA_EMULATOR=1 runs these on the CPU emulator)"
    params.append(pytest.param(name, id="cuda", marks=pytest.mark.skipif(not cuda.enabled(), reason=reason)))
    return params


@pytest.fixture(params=_native_modules())
def mod(request):
    """A native backend module."""
    return importlib.import_module(f"needle.backend_ndarray.{request.param}")


RNG = np.random.default_rng(1234)
SPECIALS = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-38, 3e38,
                     -3e38, 88.8, -104.0, 0.625, -0.625, 1e-4, 20.0, -20.0], dtype=np.float32)


def put(m, x):
    """A buffer of module m holding x (flattened, float32)."""
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    a = m.Array(x.size)
    m.from_numpy(x, a)
    return a


def get(m, a):
    return m.to_numpy(a, (a.size,), (1,), 0)


def garbage(m, n, val=7.0):
    a = m.Array(n)
    m.fill(a, val)
    return a


def both(mod, fname, inputs, out_size, *params, scalar=(), fill=7.0):
    """Run fname(*inputs, *scalar, out, *params) on REF and mod; return both out buffers."""
    res = []
    for m in (REF, mod):
        out = garbage(m, out_size, fill)
        with np.errstate(all="ignore"):  # overflow to inf is part of what is compared
            getattr(m, fname)(*[put(m, x) for x in inputs], *scalar, out, *params)
        res.append(get(m, out))
    return res


def same(a, b):
    np.testing.assert_array_equal(a, b)


def close(a, b, rtol=1e-6, atol=1e-6):
    np.testing.assert_allclose(b, a, rtol=rtol, atol=atol, equal_nan=True)


# ---------------------------------------------------------------- buffers and copies
def test_array_basics(mod):
    for n in (0, 1, 17, 1 << 20):
        a = mod.Array(n)
        assert a.size == n and isinstance(a.ptr(), int) and a.ptr() % 64 == 0
    with pytest.raises(ValueError, match="Array"):
        mod.Array(-1)
    with pytest.raises(TypeError):
        mod.Array("3")
    assert mod.is_available() is True and mod.synchronize() is None
    assert mod.__tile_size__ == REF.__tile_size__ == 8


def test_from_numpy_converts_any_array(mod):
    x = np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2]  # float64, non-contiguous
    a = mod.Array(6)
    mod.from_numpy(x, a)
    same(get(mod, a), x.astype(np.float32).reshape(-1))
    mod.from_numpy(np.array([[1, 2], [3, 4], [5, 6]], dtype=np.int64), a)
    same(get(mod, a), np.arange(1, 7, dtype=np.float32))
    mod.from_numpy(np.zeros(0), mod.Array(0))
    with pytest.raises(ValueError, match="from_numpy"):
        mod.from_numpy(np.zeros(5), a)


def test_fill_and_to_numpy_shapes(mod):
    for n in (0, 1, 9, 100_001):
        a = mod.Array(n)
        mod.fill(a, -2.5)
        same(get(mod, a), np.full(n, -2.5, np.float32))
    a = put(mod, np.arange(6))
    r = mod.to_numpy(a, (2, 0, 3), (3, 1, 1), 0)
    assert r.shape == (2, 0, 3) and r.dtype == np.float32
    assert mod.to_numpy(a, (), (), 4).shape == () and mod.to_numpy(a, (), (), 4) == 4.0


# (buffer size, shape, strides, offset): odd sizes, negative and zero strides, offsets, high rank,
# and shapes big enough for the parallel paths (many rows, and few long rows).
VIEWS = [
    (24, (2, 3, 4), (12, 4, 1), 0),
    (24, (4, 3, 2), (1, 4, 12), 0),                  # permuted
    (30, (2, 3), (3, 1), 5),                         # offset
    (24, (3, 4), (-4, -1), 23),                      # flipped both ways
    (13, (13,), (-1,), 12),
    (5, (4, 3), (0, 1), 1),                          # broadcast rows
    (5, (3, 4), (1, 0), 2),                          # broadcast inner dim
    (1, (2, 3, 5), (0, 0, 0), 0),
    (100, (3, 1, 5, 1), (20, 7, 3, 9), 4),           # size-1 dims with odd strides
    (300, (2, 3, 2, 2, 3, 2), (150, 50, 25, 12, 4, 1), 3),
    (360, (5, 7, 9), (1, 45, 5), 10),
    (0, (3, 0, 2), (4, 1, 9), 0),                    # empty view
    (450 * 301, (301, 450), (1, 301), 0),            # transpose, parallel
    (140_003, (2, 70_000), (70_001, 1), 2),          # two long rows, cut into pieces
    (160_000, (400, 400), (-400, 1), 399 * 400),
]


@pytest.mark.parametrize("fname", ["ewise_add_strided", "ewise_mul_strided"])
@pytest.mark.parametrize("size,shape,strides,offset", VIEWS)
def test_ewise_with_strided_operand(mod, fname, size, shape, strides, offset):
    x = RNG.standard_normal(size).astype(np.float32)
    n = int(np.prod(shape))
    dense = RNG.standard_normal(n + 2).astype(np.float32)  # longer than needed: only n are read
    a, b = both(mod, fname, [dense, x], n + 3, shape, strides, offset)
    same(a, b)
    op = np.add if fname == "ewise_add_strided" else np.multiply
    view = np.lib.stride_tricks.as_strided(x[offset:] if size else x, shape,
                                           [s * 4 for s in strides]) if n else np.zeros(0)
    same(b[:n], op(dense[:n], view.reshape(-1)))
    same(b[n:], np.full(3, 7.0, np.float32))  # nothing written past the view's size


def test_ewise_strided_out_is_b(mod):
    """out may be b's own buffer: the view is read before it is overwritten."""
    x = np.arange(12, dtype=np.float32)
    for m in (REF, mod):
        b = put(m, x)
        m.ewise_add_strided(put(m, np.ones(12)), b, b, (12,), (-1,), 11)
        same(get(m, b), x[::-1] + 1)


@pytest.mark.parametrize("size,shape,strides,offset", VIEWS)
def test_compact_and_to_numpy(mod, size, shape, strides, offset):
    x = RNG.standard_normal(size).astype(np.float32)
    n = int(np.prod(shape))
    a, b = both(mod, "compact", [x], n + 3, shape, strides, offset)
    same(a, b)
    same(REF.to_numpy(put(REF, x), shape, strides, offset),
         mod.to_numpy(put(mod, x), shape, strides, offset))


@pytest.mark.parametrize("size,shape,strides,offset", VIEWS)
def test_setitems(mod, size, shape, strides, offset):
    n = int(np.prod(shape))
    x = RNG.standard_normal(n).astype(np.float32)
    res = []
    for m in (REF, mod):
        out = put(m, np.arange(size))
        m.ewise_setitem(put(m, x), out, shape, strides, offset)
        res.append(get(m, out))
    same(*res)
    res = []
    for m in (REF, mod):
        out = put(m, np.arange(size))
        m.scalar_setitem(n, -3.25, out, shape, strides, offset)
        res.append(get(m, out))
    same(*res)


@pytest.mark.parametrize("shape,axes", [((37, 45), (1, 0)), ((8, 8), (1, 0)), ((3, 29, 41), (0, 2, 1)),
                                        ((5, 17, 9, 16), (0, 3, 1, 2)), ((64, 70), (1, 0)),
                                        ((2, 300, 300), (2, 0, 1)), ((33, 20, 7), (2, 1, 0))])
@pytest.mark.parametrize("flip", ["none", "last", "all"])
def test_compact_transposes(mod, shape, axes, flip):
    """Permuted (and flipped) views: the tiled transpose path, with ragged edge tiles."""
    x = RNG.standard_normal(shape).astype(np.float32)
    v = x.transpose(axes)
    flipped = {"none": (), "last": (v.ndim - 1,), "all": tuple(range(v.ndim))}[flip]
    strides, offset = [s // 4 for s in v.strides], 0
    for ax in flipped:  # a reversed axis: negative stride, offset at its last element
        offset += (v.shape[ax] - 1) * strides[ax]
        strides[ax] = -strides[ax]
    v = np.flip(v, flipped) if flipped else v
    out = mod.Array(x.size)
    mod.compact(put(mod, x), out, v.shape, tuple(strides), offset)
    same(get(mod, out), v.reshape(-1))
    same(mod.to_numpy(put(mod, x), v.shape, tuple(strides), offset), v)


def _flat(shape, strides, offset):
    idx = np.full((), offset, dtype=np.int64)
    for n, s in zip(shape, strides):
        idx = idx[..., None] + np.arange(n, dtype=np.int64) * s
    return idx


SCATTERS = [
    # col2im: N x Ho x Wo x kh x kw x C windows over an N x H x W x C buffer (overlapping)
    (2 * 7 * 6 * 3, (2, 5, 4, 3, 3, 3), (126, 18, 3, 18, 3, 1), 0),
    (8 * 33 * 33 * 8, (8, 16, 16, 3, 3, 8), (8712, 528, 16, 264, 8, 1), 0),  # stride 2, parallel
    (1, (64, 700), (0, 0), 0),                       # everything into one element, in order
    (50, (10, 7), (0, 1), 3),                        # rows summed onto one row
    (40, (6, 5), (-5, 1), 30),                       # injective, negative stride
    (160_000, (400, 400), (1, 400), 0),              # injective transpose, parallel
    (300, (3, 40, 9), (100, 2, 1), 5),               # overlapping inner dims, disjoint outer
]


@pytest.mark.parametrize("size,shape,strides,offset", SCATTERS)
def test_scatter_add_overlapping(mod, size, shape, strides, offset):
    n = int(np.prod(shape))
    vals = RNG.standard_normal(n).astype(np.float32)
    base = RNG.standard_normal(size).astype(np.float32)
    res = []
    for m in (REF, mod):
        out = put(m, base)
        m.scatter_add(put(m, vals), out, shape, strides, offset)
        res.append(get(m, out))
    # float32 sums in another order (CUDA atomics): the error grows with the number of terms
    terms = np.zeros(size)
    np.add.at(terms, _flat(shape, strides, offset).reshape(-1), 1)
    err = np.abs(res[1].astype(np.float64) - res[0])
    assert np.all(err <= 1e-4 * np.sqrt(terms + 1) + 1e-5 * np.abs(res[0])), err.max()


def test_scatter_add_counts_every_contribution(mod):
    """Integer-valued data: exact sums whatever the order, no contribution lost to a race."""
    out = mod.Array(8 * 14 * 14 * 16)
    mod.fill(out, 0.0)
    shape, strides = (8, 12, 12, 3, 3, 16), (3136, 224, 16, 224, 16, 1)
    mod.scatter_add(put(mod, np.ones(int(np.prod(shape)))), out, shape, strides, 0)
    cover = np.zeros((8, 14, 14, 16), np.float32)
    for i in range(3):
        for j in range(3):
            cover[:, i:i + 12, j:j + 12, :] += 1
    same(get(mod, out), cover.reshape(-1))


# ---------------------------------------------------------------- element-wise
SIZES = [0, 1, 7, 8, 9, 33, 140_001]
EWISE = ["ewise_add", "ewise_mul", "ewise_div", "ewise_pow", "ewise_maximum", "ewise_eq",
         "ewise_ge", "ewise_gt"]
SCALAR = ["scalar_add", "scalar_mul", "scalar_div", "scalar_power", "scalar_maximum", "scalar_eq",
          "scalar_ge", "scalar_gt"]


def _operands(n):
    x = (RNG.standard_normal(n) * 3).astype(np.float32)
    y = RNG.standard_normal(n).astype(np.float32)
    if n >= 8:
        x[:4], y[:4] = [np.nan, 1.0, np.inf, 2.0], [1.0, np.nan, np.inf, 2.0]
    return x, y


@pytest.mark.parametrize("fname", EWISE)
@pytest.mark.parametrize("n", SIZES)
def test_ewise(mod, fname, n):
    x, y = _operands(n)
    a, b = both(mod, fname, [x, y], n)
    (close if fname == "ewise_pow" else same)(a, b)


@pytest.mark.parametrize("fname", SCALAR)
@pytest.mark.parametrize("val", [2.0, 0.5, -1.0, 1.0, -1.3, 0.0, 3.0])
def test_scalar(mod, fname, val):
    x, _ = _operands(1001)
    x = np.concatenate([x, SPECIALS])
    a, b = both(mod, fname, [x], x.size, scalar=(val,))
    (close if fname == "scalar_power" else same)(a, b)


def test_power_of_negative_base_is_nan(mod):
    a, b = both(mod, "scalar_power", [[-8.0, -2.0, 4.0]], 3, scalar=(1.0 / 3.0,))
    assert np.isnan(b[:2]).all() and np.isnan(a[:2]).all()
    close(a, b)


def test_ewise_reads_prefix_of_bigger_inputs(mod):
    a, b = both(mod, "ewise_add", [np.arange(10), np.ones(12)], 9)
    same(a, b)


@pytest.mark.parametrize("fname,fn", [("ewise_exp", np.exp), ("ewise_log", np.log),
                                      ("ewise_tanh", np.tanh)])
def test_transcendental_accuracy(mod, fname, fn):
    x = np.concatenate([RNG.standard_normal(5000) * 30, RNG.uniform(-1e-3, 1e-3, 500),
                        np.exp(RNG.uniform(-100, 88, 3000)), SPECIALS]).astype(np.float32)
    out = mod.Array(x.size)
    getattr(mod, fname)(put(mod, x), out)
    with np.errstate(all="ignore"):
        ref = fn(x)
    got = get(mod, out)
    # a few ulp; denormal results compared absolutely
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-44, equal_nan=True)
    np.testing.assert_array_equal(np.signbit(got[ref == 0]), np.signbit(ref[ref == 0]))


def test_generic_isa_build_matches_numpy():
    """The portable (non-AVX2) build of the vector kernels, forced through NEEDLE_CPU_ISA."""
    script = """
import numpy as np
from needle.backend_ndarray import ndarray_backend_cpu as C, ndarray_backend_numpy as R
x = np.concatenate([np.random.default_rng(0).standard_normal(1003) * 20,
                    [0, -0.0, np.inf, -np.inf, np.nan, 1e-40]]).astype(np.float32)
def run(m, f, *args):
    a = m.Array(x.size); m.from_numpy(x, a); o = m.Array(x.size); f(m)(a, *args, o) if args else f(m)(a, o)
    return m.to_numpy(o, (x.size,), (1,), 0)
for name in ["ewise_exp", "ewise_log", "ewise_tanh"]:
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(run(C, lambda m: getattr(m, name)), run(R, lambda m: getattr(m, name)),
                                   rtol=1e-6, atol=1e-44, equal_nan=True)
for name in ["scalar_maximum", "scalar_ge", "scalar_div"]:
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(run(C, lambda m: getattr(m, name), 0.5), run(R, lambda m: getattr(m, name), 0.5))
y = x[:1000]
for name in ["softmax_rows", "log_softmax_rows"]:
    o = []
    for m in (C, R):
        a = m.Array(y.size); m.from_numpy(np.nan_to_num(y), a); out = m.Array(y.size)
        getattr(m, name)(a, out, 10); o.append(m.to_numpy(out, (y.size,), (1,), 0))
    np.testing.assert_allclose(o[0], o[1], rtol=1e-5, atol=1e-6)
"""
    env = dict(os.environ, NEEDLE_CPU_ISA="generic")
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]


# ---------------------------------------------------------------- memory and threads
def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_arrays_are_freed(mod):
    if os.environ.get("NEEDLE_CUDA_EMULATOR", "").lower() == "asan":
        pytest.skip("AddressSanitizer keeps freed blocks in its quarantine (256 MB), so RSS "
                    "cannot show a leak here; the emulated pass without ASan checks it")
    mod.fill(mod.Array(1 << 20), 1.0)  # warm-up allocations
    before = _rss_bytes()
    for _ in range(200):
        a = mod.Array(1 << 20)  # 4 MB, touched so that it is resident
        mod.fill(a, 1.0)
        del a
    assert _rss_bytes() - before < 64 << 20


def test_reused_buffers_are_never_shared(mod):
    """Buffers recycled by the allocator cache: live arrays never overlap."""
    rng = np.random.default_rng(7)
    live = {}
    for step in range(400):
        if live and rng.random() < 0.45:
            del live[rng.choice(list(live))]
        else:
            n = int(rng.choice([1 << 14, 1 << 16, 40_000, 1 << 20]))
            live[step] = mod.Array(n)
            mod.fill(live[step], float(step))
    for key, a in live.items():
        got = get(mod, a)
        assert got.min() == got.max() == key


def test_freed_memory_stays_bounded_across_many_sizes(mod):
    before = _rss_bytes()
    for k in range(60):  # ~370 MB of distinct sizes: more than the cpu allocator cache keeps
        a = mod.Array((3 << 20) + k * 4096)
        mod.fill(a, 1.0)
        del a
    assert _rss_bytes() - before < 320 << 20


def test_concurrent_calls_from_python_threads(mod):
    x = RNG.standard_normal(200_000).astype(np.float32)
    expect = np.exp(x)
    errors = []

    def work():
        a, out = put(mod, x), mod.Array(x.size)
        for _ in range(5):
            mod.ewise_exp(a, out)
            if not np.allclose(get(mod, out), expect, rtol=1e-6):
                errors.append("mismatch")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
