"""Devices: a name plus the backend module that implements the function table of
docs/backends.md (cpu_numpy: the numpy spec; cpu: C++; cuda)."""
import importlib
import os

import numpy as np

from . import ndarray_backend_numpy

__all__ = ["BackendDevice", "DeviceNotEnabledError", "cpu", "cuda", "cpu_numpy", "default_device", "all_devices"]


def _check_dtype(dtype, op):
    if dtype is None:
        return
    try:
        ok = np.dtype(dtype) == np.float32
    except TypeError:
        ok = False
    if not ok:
        raise TypeError(f"{op}: NDArray supports only float32, got dtype {dtype!r}")


class DeviceNotEnabledError(AttributeError):
    """A backend function was looked up on a device whose backend is not available."""


class BackendDevice:
    """A device: a name plus the backend module implementing the function table."""

    emulated = False  # True only for cuda() run by the CPU emulator (NEEDLE_CUDA_EMULATOR)

    def __init__(self, name, mod):
        self.name = name
        self.mod = mod
        # The backend can capture its calls as CUDA graphs (its `_graphs` submodule, outside
        # the shared function table): ndl.jit replays runs of calls as graphs (docs/jit.md).
        self.supports_graphs = mod is not None and hasattr(mod, "_graphs")
        if mod is not None:  # bind the function table once: no __getattr__ on the hot path
            self.__dict__.update({k: getattr(mod, k) for k in dir(mod) if not k.startswith("__")})

    def __eq__(self, other):
        return isinstance(other, BackendDevice) and self.name == other.name

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        return self.name + "()"

    __str__ = __repr__

    def __getattr__(self, name):
        # Only reached for names not found normally: forward to the backend module.
        mod = self.__dict__.get("mod")
        if mod is None:
            # an AttributeError, so getattr(dev, name, None) and hasattr work (pytest's
            # parametrize ids probe attributes that way)
            raise DeviceNotEnabledError(
                f"device {self.name}() is not enabled (backend not built or no device); "
                f"cannot use {name!r}")
        return getattr(mod, name)

    def enabled(self):
        return self.mod is not None

    def randn(self, *shape, dtype="float32"):
        _check_dtype(dtype, "randn")
        return ndarray.NDArray(np.random.randn(*shape).astype(np.float32), device=self)

    def rand(self, *shape, dtype="float32"):
        _check_dtype(dtype, "rand")
        return ndarray.NDArray(np.random.rand(*shape).astype(np.float32), device=self)

    def one_hot(self, n, i, dtype="float32"):
        _check_dtype(dtype, "one_hot")
        n = checks.as_size(n, "one_hot", "n")
        if isinstance(i, ndarray.NDArray):
            i = i.numpy()
        idx = np.asarray(i)
        if idx.size and not np.array_equal(idx, np.round(idx)):  # 1.5 is not a class index
            raise TypeError(f"one_hot: indices must be whole numbers, got {idx.ravel()[:5]} "
                            f"(dtype {idx.dtype})")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"one_hot: indices must lie in [0, {n}), got range "
                             f"[{idx.min()}, {idx.max()}] for shape {idx.shape}")
        out = np.zeros(idx.shape + (n,), dtype=np.float32)  # not eye(n)[idx]: n may be 10^4+
        np.put_along_axis(out, idx[..., None], 1.0, axis=-1)
        return ndarray.NDArray(out, device=self)

    def empty(self, shape, dtype="float32"):
        _check_dtype(dtype, "empty")
        return ndarray.NDArray.make(checks.as_shape(shape, "empty"), device=self)

    def full(self, shape, fill_value, dtype="float32"):
        _check_dtype(dtype, "full")
        arr = ndarray.NDArray.make(checks.as_shape(shape, "full"), device=self)
        arr.fill(fill_value)
        return arr


def cpu_numpy():
    """The pure-numpy reference backend (always available)."""
    return _DEVICES.setdefault("cpu_numpy", BackendDevice("cpu_numpy", ndarray_backend_numpy))


def cpu():
    """The C++ CPU backend (its own thread pool + SIMD).

    Kernels split their work over ``NEEDLE_NUM_THREADS`` threads (else ``OMP_NUM_THREADS``,
    else the CPUs this process may run on); see docs/performance.md, "Threads on a busy
    machine". The process environment is never changed.

    Raises:
        ValueError: ``NEEDLE_NUM_THREADS`` is set but is not a positive integer.
    """
    if "cpu" not in _DEVICES:
        threads = os.environ.get("NEEDLE_NUM_THREADS")
        if threads is not None and not (threads.isdigit() and int(threads) > 0):
            raise ValueError(f"cpu: NEEDLE_NUM_THREADS must be a positive integer, got {threads!r}")
        from . import ndarray_backend_cpu
        _DEVICES["cpu"] = BackendDevice("cpu", ndarray_backend_cpu)
    return _DEVICES["cpu"]


def _cuda_emulator_module():
    """The CPU-emulated CUDA module NEEDLE_CUDA_EMULATOR asks for (1/on, or asan), else None."""
    choice = os.environ.get("NEEDLE_CUDA_EMULATOR", "").strip().lower()
    if choice in ("", "0", "off"):
        return None
    name = {"1": "ndarray_backend_cuda_emu", "on": "ndarray_backend_cuda_emu",
            "asan": "ndarray_backend_cuda_emu_asan"}.get(choice)
    if name is None:
        raise ValueError(f"NEEDLE_CUDA_EMULATOR={choice!r}: expected 1, on, asan, 0 or off")
    try:
        return importlib.import_module(f"{__package__}.{name}")
    except ImportError as err:
        raise ImportError(f"NEEDLE_CUDA_EMULATOR={choice}: the module {name} was not built; "
                          f"install with NEEDLE_CUDA_EMULATOR=ON (or ASAN), see docs/cuda.md") from err


def cuda():
    """The CUDA backend; `enabled()` is False when it was not built or no GPU answers.

    With NEEDLE_CUDA_EMULATOR=1 it is the same backend run by a CPU emulator (tests only;
    `cuda().emulated` is True), never chosen without that variable.
    """
    if "cuda" not in _DEVICES:
        mod = _cuda_emulator_module()
        emulated = mod is not None
        if not emulated:
            try:
                from . import ndarray_backend_cuda as mod
                if not mod.is_available():
                    mod = None
            except ImportError:
                mod = None
        _DEVICES["cuda"] = BackendDevice("cuda", mod)
        _DEVICES["cuda"].emulated = emulated
    return _DEVICES["cuda"]


_DEVICES = {}


def default_device():
    """The device NDArrays use when none is given: `cpu()`."""
    return cpu()


def all_devices():
    """Every NDArray device: [cpu(), cuda(), cpu_numpy()] (cuda may be disabled)."""
    return [cpu(), cuda(), cpu_numpy()]


# The constructors above build NDArrays; ndarray.py imports this module, hence the import at the
# end (a module reference, resolved when they run).
from . import checks, ndarray  # noqa: E402
