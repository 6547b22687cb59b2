"""DLPack: zero-copy exchange with numpy and torch on the CPU, in both directions (a write on
one side is read on the other), the protocol's device query, and numpy mode."""
import textwrap

import numpy as np
import pytest

import needle as ndl

torch = pytest.importorskip("torch")

CPU_DEVICES = [ndl.cpu, ndl.cpu_numpy]


def _address(t):
    data = t.realize_cached_data()
    return data._handle.ptr() + 4 * data._offset


@pytest.mark.parametrize("make", CPU_DEVICES, ids=["cpu", "cpu_numpy"])
def test_needle_to_numpy_and_torch_shares_memory(make):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = ndl.Tensor(x, device=make())
    assert t.__dlpack_device__() == (1, 0)
    a = np.from_dlpack(t)
    tt = torch.from_dlpack(t)
    assert a.ctypes.data == _address(t) == tt.data_ptr()
    a[0, 1] = 100.0  # numpy writes, needle and torch read
    tt[2, 3] = -5.0  # torch writes, needle and numpy read
    for view in (t.numpy(), a, tt.numpy()):
        assert view[0, 1] == 100.0 and view[2, 3] == -5.0
    # np.asarray copies by default (as .numpy()); copy=False is the shared view
    assert np.shares_memory(np.asarray(t, copy=False), a)
    assert not np.shares_memory(np.asarray(t), a)


@pytest.mark.parametrize("make", CPU_DEVICES, ids=["cpu", "cpu_numpy"])
def test_strided_views_export_with_their_strides(make):
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    t = ndl.Tensor(x, device=make())
    view = ndl.Tensor.make_const(t.realize_cached_data().permute((1, 0))[1:5:2, 1:])
    ref = x.T[1:5:2, 1:]
    for out in (np.from_dlpack(view), torch.from_dlpack(view).numpy()):
        np.testing.assert_array_equal(out, ref)
    np.from_dlpack(view)[0, 0] = -1.0  # lands in the base tensor at x.T[1, 1] = x[1, 1]
    assert t.numpy()[1, 1] == -1.0


@pytest.mark.parametrize("make", CPU_DEVICES, ids=["cpu", "cpu_numpy"])
def test_numpy_and_torch_to_needle_share_memory(make):
    device = make()
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    src = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    from_np, from_torch = ndl.from_dlpack(a, device=device), ndl.from_dlpack(src, device=device)
    assert from_np.device == device and not from_np.requires_grad
    assert _address(from_np) == a.ctypes.data and _address(from_torch) == src.data_ptr()
    a[1, 2] = 42.0
    src[0, 0] = -7.0
    assert from_np.numpy()[1, 2] == 42.0 and from_torch.numpy()[0, 0] == -7.0
    # and back: needle's write through setitem reaches the producer
    from_torch.realize_cached_data()[1, 1] = 9.0
    assert src[1, 1].item() == 9.0
    # the imported tensor is an ordinary tensor
    y = (from_torch * 2).sum()
    assert y.item() == pytest.approx(float((src * 2).sum()))


def test_import_keeps_the_producer_alive():
    import gc
    t = ndl.from_dlpack(torch.full((1000,), 3.0))  # nobody else holds the torch tensor
    gc.collect()
    junk = [torch.full((1000,), -1.0) for _ in range(50)]  # would reuse freed memory
    assert float(t.numpy().min()) == 3.0
    del junk


def test_import_of_strided_and_non_float32_producers():
    base = torch.arange(20, dtype=torch.float32).reshape(4, 5)
    view = base.t()[1:, ::2]
    t = ndl.from_dlpack(view)
    np.testing.assert_array_equal(t.numpy(), view.numpy())
    base[2, 1] = 77.0  # in the view at [0, 1]
    assert t.numpy()[0, 1] == 77.0
    ints = ndl.from_dlpack(np.arange(4))  # int64: converted, so copied (NDArray is float32)
    np.testing.assert_array_equal(ints.numpy(), np.arange(4, dtype=np.float32))


def test_dlpack_errors():
    with pytest.raises(TypeError, match=r"from_dlpack: expected an object with __dlpack__"):
        ndl.from_dlpack([1.0, 2.0])

    class FakeVulkan:
        def __dlpack__(self, **kw):
            raise AssertionError("not reached")

        def __dlpack_device__(self):
            return (7, 0)

    with pytest.raises(BufferError, match=r"from_dlpack: only CPU producers \(and CUDA ones"):
        ndl.from_dlpack(FakeVulkan())
    with pytest.raises(BufferError, match=r"cannot export to device"):
        ndl.Tensor([1.0]).__dlpack__(dl_device=(2, 0))


def test_backend_wrap_pointer_validates():
    from needle.backend_ndarray import ndarray_backend_numpy as spec
    from needle.backend_ndarray import ndarray_backend_cpu as native
    owner = np.zeros(4, np.float32)
    for mod in (spec, native):
        with pytest.raises(ValueError, match=r"wrap_pointer: size must be >= 0"):
            mod.wrap_pointer(owner.ctypes.data, -1, owner)
        with pytest.raises(ValueError, match=r"wrap_pointer: address is not float32-aligned"):
            mod.wrap_pointer(owner.ctypes.data + 1, 2, owner)
        arr = mod.wrap_pointer(owner.ctypes.data, 4, owner)
        assert arr.size == 4 and arr.ptr() == owner.ctypes.data


NP_MODE_SCRIPT = textwrap.dedent("""
    import numpy as np, torch
    import needle as ndl
    assert ndl.BACKEND == "np"
    x = np.arange(12.0).reshape(3, 4)  # float64: numpy mode keeps it
    t = ndl.Tensor(x)
    a = np.from_dlpack(t); a[0, 0] = 5.0
    assert t.numpy()[0, 0] == 5.0 and t.__dlpack_device__() == (1, 0)
    src = torch.ones(3, dtype=torch.float64)
    u = ndl.from_dlpack(src); src[0] = 2.0
    assert u.numpy()[0] == 2.0 and u.dtype == np.float64
    y = t[[2, 0], ::-2]
    assert np.array_equal(y.numpy(), x[[2, 0], ::-2])
    y.sum().backward()
    g = np.zeros_like(x); g[[2, 0], ::-2] += 1
    assert np.array_equal(t.grad.numpy(), g)
    t = ndl.Tensor(np.arange(12.0).reshape(3, 4))
    assert t.mean().shape == () and t.max(1).indices.numpy().tolist() == [3, 3, 3]
    assert (t > 4).numpy().sum() == 7 and isinstance(np.float32(2) * t, ndl.Tensor)
    assert (np.ones((3, 4)) + t).op is not None and len(t) == 3
    print("np-mode tensor api OK")
""")


def test_numpy_mode_subprocess(run_numpy_mode):
    run_numpy_mode(NP_MODE_SCRIPT, "np-mode tensor api OK")


class _Producer:
    """Hands out a given capsule, as a CUDA library's tensor would."""

    def __init__(self, capsule, device=(2, 0)):
        self.capsule, self.device = capsule, device

    def __dlpack__(self, stream=None):
        return self.capsule

    def __dlpack_device__(self):
        return self.device


@pytest.mark.skipif(not ndl.cuda().enabled(), reason="no CUDA device")
def test_cuda_tensors_share_memory_through_capsules():
    """A CUDA tensor exports a kDLCUDA capsule and a CUDA producer imports onto ndl.cuda()
    without a copy. (Runs on a GPU, or on the CUDA emulator build.)"""
    base = ndl.Tensor(np.arange(12, dtype=np.float32).reshape(3, 4), device=ndl.cuda())
    assert base.__dlpack_device__() == (2, 0)
    view = ndl.Tensor.make_const(base.realize_cached_data().permute((1, 0))[1:, ::2])
    u = ndl.from_dlpack(_Producer(view.__dlpack__()))
    assert u.device == ndl.cuda()
    np.testing.assert_array_equal(u.numpy(), np.arange(12).reshape(3, 4).T[1:, ::2])
    u.realize_cached_data()[0, 1] = -3.0  # element [2, 1] of base, through shared memory
    assert base.numpy()[2, 1] == -3.0
    copied = ndl.from_dlpack(_Producer(base.__dlpack__(copy=True)))
    copied.realize_cached_data()[0, 0] = 99.0
    assert base.numpy()[0, 0] == 0.0
    capsule = base.__dlpack__()
    ndl.from_dlpack(_Producer(capsule))
    with pytest.raises(BufferError, match=r"from_dlpack: expected an unused 'dltensor'"):
        ndl.from_dlpack(_Producer(capsule))  # a capsule is consumed once
    del capsule, u, view, copied
    import gc
    gc.collect()
    from needle import dlpack_capsule
    assert not dlpack_capsule._LIVE  # every consumer called the deleter


@pytest.mark.skipif(not ndl.cuda().enabled(), reason="no CUDA device")
def test_cuda_dlpack_errors_and_copies():
    t = ndl.Tensor(np.arange(6, dtype=np.float32), device=ndl.cuda())
    with pytest.raises(BufferError, match=r"cannot be exported to device \(1, 0\)"):
        t.__dlpack__(dl_device=(1, 0))
    with pytest.raises(RuntimeError, match=r"Unsupported device"):  # numpy reads CPU memory
        np.from_dlpack(t)
    with pytest.raises(ValueError, match=r"a CUDA tensor cannot be viewed without a copy"):
        np.asarray(t, copy=False)
    np.testing.assert_array_equal(np.asarray(t), np.arange(6))  # the copying protocol works
    with pytest.raises(BufferError, match=r"a CUDA producer needs device=ndl.cuda\(\)"):
        ndl.from_dlpack(_Producer(t.__dlpack__()), device=ndl.cpu())
    src = np.ones(3, dtype=np.float32)
    u = ndl.from_dlpack(src, device=ndl.cuda())  # CPU producer onto cuda: a copy
    src[0] = 5.0
    np.testing.assert_array_equal(u.numpy(), np.ones(3))
    from needle.backend_ndarray import ndarray_backend_cuda as native
    with pytest.raises(ValueError, match=r"wrap_pointer: size must be >= 0"):
        native.wrap_pointer(0, -1, None)
    with pytest.raises(ValueError, match=r"wrap_pointer: device address is not 16-byte aligned"):
        native.wrap_pointer(8, 2, None)
