"""Numpy-mode devices (NEEDLE_BACKEND=np): tensors hold plain numpy arrays and keep numpy dtypes."""
import numpy as np

__all__ = ["Device", "CPUDevice", "CUDADisabledDevice", "cpu", "cpu_numpy", "cuda", "default_device",
           "all_devices"]


class Device:
    """Base class of numpy-mode devices."""


class CPUDevice(Device):
    """The only numpy-mode device: arrays are numpy arrays in host memory."""

    def __repr__(self):
        return "needle.cpu()"

    def __hash__(self):
        return hash(self.__repr__())

    def __eq__(self, other):
        return isinstance(other, CPUDevice)

    def enabled(self):
        return True

    def zeros(self, *shape, dtype="float32"):
        return np.zeros(shape, dtype=dtype)

    def ones(self, *shape, dtype="float32"):
        return np.ones(shape, dtype=dtype)

    def randn(self, *shape):
        return np.random.randn(*shape)

    def rand(self, *shape):
        return np.random.rand(*shape)

    def one_hot(self, n, i, dtype="float32"):
        return np.eye(n, dtype=dtype)[np.asarray(i, dtype=np.int32)]

    def empty(self, shape, dtype="float32"):
        return np.empty(shape, dtype=dtype)

    def full(self, shape, fill_value, dtype="float32"):
        return np.full(shape, fill_value, dtype=dtype)


class CUDADisabledDevice(Device):
    """numpy mode has no GPU: `cuda()` exists so code can ask, and reports enabled() False."""

    def __repr__(self):
        return "needle.cuda()"

    def __hash__(self):
        return hash(self.__repr__())

    def __eq__(self, other):
        return isinstance(other, CUDADisabledDevice)

    def enabled(self):
        return False


_CPU = CPUDevice()


def cpu():
    return _CPU


cpu_numpy = cpu
default_device = cpu


def cuda():
    return CUDADisabledDevice()


def all_devices():
    return [cpu()]
