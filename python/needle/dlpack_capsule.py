"""DLPack capsules made and read with ctypes, for CUDA tensors (the CPU path goes through numpy).

A capsule named "dltensor" holds a DLManagedTensor (the DLPack 0.8 ABI, which every consumer
still accepts): data pointer, device, float32 dtype, shape and strides in elements, and a deleter
the consumer calls when done. Export keeps the NDArray buffer alive in `_LIVE` until then (a
capsule that is never consumed keeps it to the end of the process); import renames the capsule
"used_dltensor" and calls the producer's deleter when the needle buffer that wraps the memory is
freed.
"""
import ctypes

__all__ = ["export_capsule", "import_capsule"]

KDL_FLOAT = 2


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class DLManagedTensor(ctypes.Structure):
    pass


_Deleter = ctypes.CFUNCTYPE(None, ctypes.POINTER(DLManagedTensor))
DLManagedTensor._fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p),
                            ("deleter", _Deleter)]

_NAME, _USED = b"dltensor", b"used_dltensor"
_api = ctypes.pythonapi
_api.PyCapsule_New.restype = ctypes.py_object
_api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_api.PyCapsule_IsValid.restype = ctypes.c_int
_api.PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_SetName.restype = ctypes.c_int
_api.PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]

# address of an exported DLManagedTensor -> (the struct, shape, strides, the buffer's owner)
_LIVE = {}


@_Deleter
def _release(managed):
    _LIVE.pop(ctypes.addressof(managed.contents), None)


def export_capsule(address, shape, strides, device_type, owner):
    """A "dltensor" capsule over float32 memory at `address` (strides in elements)."""
    managed = DLManagedTensor()
    ndim = len(shape)
    shape_arr = (ctypes.c_int64 * max(ndim, 1))(*shape)
    strides_arr = (ctypes.c_int64 * max(ndim, 1))(*strides)
    t = managed.dl_tensor
    t.data = address
    t.device = DLDevice(device_type, 0)
    t.ndim = ndim
    t.dtype = DLDataType(KDL_FLOAT, 32, 1)
    t.shape = ctypes.cast(shape_arr, ctypes.POINTER(ctypes.c_int64))
    t.strides = ctypes.cast(strides_arr, ctypes.POINTER(ctypes.c_int64))
    t.byte_offset = 0
    managed.deleter = _release
    key = ctypes.addressof(managed)
    _LIVE[key] = (managed, shape_arr, strides_arr, owner)
    # No capsule destructor: it would run Python code (a ctypes callback) while a consumer
    # unwinds an error, which clears that error. So a capsule nobody consumes keeps its buffer
    # in _LIVE until the process ends; a consumer releases it through `deleter`.
    return _api.PyCapsule_New(key, _NAME, None)


class _Producer:
    """Owns an imported DLManagedTensor: calls its deleter when the needle buffer goes."""

    def __init__(self, managed_address):
        self.address = managed_address

    def __del__(self):
        managed = DLManagedTensor.from_address(self.address)
        if managed.deleter:
            managed.deleter(ctypes.cast(self.address, ctypes.POINTER(DLManagedTensor)))


def import_capsule(capsule, device_type):
    """Consume a "dltensor" capsule of float32 data on `device_type`.

    Returns (address of element 0, shape, strides in elements, owner); raises BufferError for
    another device, dtype or a used capsule."""
    if not _api.PyCapsule_IsValid(capsule, _NAME):
        raise BufferError("from_dlpack: expected an unused 'dltensor' capsule")
    address = _api.PyCapsule_GetPointer(capsule, _NAME)
    t = DLManagedTensor.from_address(address).dl_tensor
    if t.device.device_type != device_type:
        raise BufferError(f"from_dlpack: capsule on device type {t.device.device_type}, "
                          f"expected {device_type}")
    if (t.dtype.code, t.dtype.bits, t.dtype.lanes) != (KDL_FLOAT, 32, 1):
        raise BufferError("from_dlpack: only float32 CUDA producers are supported, got dtype "
                          f"code {t.dtype.code} bits {t.dtype.bits}")
    shape = tuple(t.shape[i] for i in range(t.ndim))
    if t.strides:
        strides = tuple(t.strides[i] for i in range(t.ndim))
    else:  # NULL strides: compact row-major
        strides, step = [], 1
        for n in reversed(shape):
            strides.insert(0, step)
            step *= n
        strides = tuple(strides)
    _api.PyCapsule_SetName(capsule, _USED)  # consumed: its destructor leaves it to us
    return (t.data or 0) + t.byte_offset, shape, strides, _Producer(address)
