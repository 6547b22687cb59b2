"""DLPack and numpy views of Tensors: `t.__dlpack__()`, `ndl.from_dlpack(obj)`.

On the cpu and cpu_numpy devices (and in numpy mode) both directions share memory with numpy
and torch: a write on either side is seen by the other. The export is a numpy array built over
the NDArray's buffer (its `ptr()` plus the view's offset and strides), whose own `__dlpack__`
makes the capsule; the import reads the producer through `numpy.from_dlpack` and wraps its
memory with the backend's `wrap_pointer`, which keeps the producer alive.

Not zero-copy: a producer whose dtype is not float32 in NDArray mode (converted, so copied),
and CUDA tensors, which are refused with a BufferError in both directions (move them with
`.to(ndl.cpu())` / `.cpu()` first).
"""
import numpy

from .autograd import Tensor
from .backend_selection import BACKEND, cpu

__all__ = ["from_dlpack", "host_view", "dlpack", "dlpack_device"]

_NUMPY_MODE = BACKEND == "np"
_ITEM = 4  # bytes per float32
_KDL_CPU, _KDL_CUDA = 1, 2


class _Memory:
    """Presents a strided float32 view at `address` to numpy; keeps `owner` (the buffer) alive."""

    def __init__(self, address, shape, strides, owner):
        self.owner = owner
        self.__array_interface__ = {
            "shape": tuple(shape), "typestr": "<f4", "data": (address, False),
            "strides": tuple(s * _ITEM for s in strides), "version": 3}


def host_view(t):
    """A numpy array sharing `t`'s memory (cpu / cpu_numpy / numpy mode), or None (cuda)."""
    data = t.realize_cached_data()
    if _NUMPY_MODE:
        return data
    if data.device.name == "cuda":
        return None
    if data.size == 0:
        return numpy.zeros(data.shape, dtype=numpy.float32)
    address = data._handle.ptr() + data._offset * _ITEM
    return numpy.asarray(_Memory(address, data.shape, data.strides, data._handle))


def dlpack(self, *, stream=None, max_version=None, dl_device=None, copy=None):
    """The DLPack capsule of this tensor's data (zero-copy on cpu; see the module docstring)."""
    view = host_view(self)
    if view is None:
        raise BufferError("Tensor.__dlpack__: CUDA tensors are not exported; move it with "
                          ".to(ndl.cpu()) first")
    if dl_device is not None and tuple(dl_device)[0] != _KDL_CPU:
        raise BufferError(f"Tensor.__dlpack__: cannot export to device {dl_device}")
    if copy:
        view = view.copy()
    kwargs = {k: v for k, v in (("max_version", max_version), ("copy", copy)) if v is not None}
    try:
        return view.__dlpack__(stream=stream, **kwargs)
    except TypeError:  # an older numpy: no max_version / copy keywords
        return view.__dlpack__(stream=stream)


def dlpack_device(self):
    """(device type, device id): (1, 0) for the CPU, (2, 0) for CUDA."""
    if _NUMPY_MODE:
        return (_KDL_CPU, 0)
    return (_KDL_CUDA, 0) if self.device.name == "cuda" else (_KDL_CPU, 0)


def from_dlpack(obj, device=None):
    """A constant Tensor over the memory of `obj` (numpy array, torch CPU tensor, any object
    with `__dlpack__`), without a copy when it is float32 on the CPU.

    Args:
        obj: the producer. Its strides may be anything numpy accepts.
        device: NDArray mode: `ndl.cpu()` (default) or `ndl.cpu_numpy()` share memory; another
            device gets a copy. Ignored in numpy mode, which keeps the producer's dtype.

    Raises:
        TypeError: `obj` has no `__dlpack__`.
        BufferError: the producer lives on a GPU.
    """
    if not hasattr(obj, "__dlpack__"):
        raise TypeError(f"from_dlpack: expected an object with __dlpack__, got "
                        f"{type(obj).__name__}")
    if hasattr(obj, "__dlpack_device__") and obj.__dlpack_device__()[0] != _KDL_CPU:
        raise BufferError(f"from_dlpack: only CPU producers are supported, got device "
                          f"{obj.__dlpack_device__()}; copy it to the CPU first")
    arr = numpy.from_dlpack(obj)
    if _NUMPY_MODE:
        return Tensor.make_const(arr)
    from .backend_ndarray import NDArray  # noqa: PLC0415 (NDArray mode only)
    device = cpu() if device is None else device
    zero_copy = (arr.dtype == numpy.float32 and device.name in ("cpu", "cpu_numpy")
                 and all(s % _ITEM == 0 for s in arr.strides))
    if not zero_copy:
        return Tensor.make_const(NDArray(numpy.asarray(arr, dtype=numpy.float32), device=device))
    strides = tuple(s // _ITEM for s in arr.strides)
    low = sum(min(0, (n - 1) * s) for n, s in zip(arr.shape, strides)) if arr.size else 0
    high = sum(max(0, (n - 1) * s) for n, s in zip(arr.shape, strides)) if arr.size else -1
    handle = device.wrap_pointer(arr.ctypes.data + low * _ITEM, high - low + 1, arr)
    data = NDArray.make(arr.shape, strides=strides, device=device, handle=handle, offset=-low)
    return Tensor.make_const(data)
