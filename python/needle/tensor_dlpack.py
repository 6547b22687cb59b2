"""DLPack and numpy views of Tensors: `t.__dlpack__()`, `ndl.from_dlpack(obj)`.

On the cpu and cpu_numpy devices (and in numpy mode) both directions share memory with numpy
and torch: a write on either side is seen by the other. The export is a numpy array built over
the NDArray's buffer (its `ptr()` plus the view's offset and strides), whose own `__dlpack__`
makes the capsule; the import reads the producer through `numpy.from_dlpack` and wraps its
memory with the backend's `wrap_pointer`, which keeps the producer alive.

CUDA tensors export a "dltensor" capsule over their device memory (built with ctypes in
`dlpack_capsule`), and a CUDA producer imports onto `ndl.cuda()` without a copy, its memory
wrapped by the CUDA backend's `wrap_pointer`. Not zero-copy: a CPU producer whose dtype is not
float32 in NDArray mode (converted), or one sent to another device; CUDA producers must be
float32 (BufferError otherwise).
"""
import numpy

from .autograd import Tensor
from .backend_selection import BACKEND, cpu, cuda
from .dlpack_capsule import export_capsule, import_capsule

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
        return _cuda_capsule(self, dl_device, copy)
    if dl_device is not None and tuple(dl_device)[0] != _KDL_CPU:
        raise BufferError(f"Tensor.__dlpack__: cannot export to device {dl_device}")
    if copy:
        view = view.copy()
    kwargs = {k: v for k, v in (("max_version", max_version), ("copy", copy)) if v is not None}
    try:
        return view.__dlpack__(stream=stream, **kwargs)
    except TypeError:  # an older numpy: no max_version / copy keywords
        return view.__dlpack__(stream=stream)


def _cuda_capsule(t, dl_device, copy):
    """A CUDA tensor's capsule (ctypes: dlpack_capsule); the consumer reads device memory."""
    if dl_device is not None and tuple(dl_device)[0] != _KDL_CUDA:
        raise BufferError(f"Tensor.__dlpack__: a CUDA tensor cannot be exported to device "
                          f"{dl_device} without a copy; use .to(ndl.cpu()) first")
    data = t.realize_cached_data()
    if copy:
        data = data._copy()  # a fresh compact buffer
    data.device.synchronize()  # the consumer's stream must see finished values
    address = data._handle.ptr() + data._offset * _ITEM
    return export_capsule(address, data.shape, data.strides, _KDL_CUDA, data._handle)


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
    kind = obj.__dlpack_device__()[0] if hasattr(obj, "__dlpack_device__") else _KDL_CPU
    if kind == _KDL_CUDA and not _NUMPY_MODE:
        return _from_cuda(obj, device)
    if kind != _KDL_CPU:
        raise BufferError(f"from_dlpack: only CPU producers (and CUDA ones onto ndl.cuda()) "
                          f"are supported, got device {obj.__dlpack_device__()}")
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
    return Tensor.make_const(_wrap(device, arr.ctypes.data, arr.shape, strides, arr))


def _wrap(device, address, shape, strides, owner):
    """An NDArray over memory at `address` (element 0) with element `strides`, no copy."""
    from .backend_ndarray import NDArray  # noqa: PLC0415 (NDArray mode only)
    size = 1
    for n in shape:
        size *= n
    low = sum(min(0, (n - 1) * s) for n, s in zip(shape, strides)) if size else 0
    high = sum(max(0, (n - 1) * s) for n, s in zip(shape, strides)) if size else -1
    start = address + low * _ITEM
    # cuda wants 16-byte aligned buffers: start the buffer below and skip to element 0
    skew = (start % 16) // _ITEM if device.name == "cuda" else 0
    handle = device.wrap_pointer(start - skew * _ITEM, high - low + 1 + skew, owner)
    return NDArray.make(shape, strides=strides, device=device, handle=handle, offset=skew - low)


def _from_cuda(obj, device):
    """Zero-copy import of a CUDA producer onto ndl.cuda()."""
    device = cuda() if device is None else device
    if device.name != "cuda" or not device.enabled():
        raise BufferError("from_dlpack: a CUDA producer needs device=ndl.cuda() on a machine "
                          "with the CUDA backend; copy it to the CPU first otherwise")
    try:
        capsule = obj.__dlpack__(stream=None)
    except TypeError:  # a producer without the stream keyword
        capsule = obj.__dlpack__()
    address, shape, strides, owner = import_capsule(capsule, _KDL_CUDA)
    return Tensor.make_const(_wrap(device, address, shape, strides, owner))
