"""Pick the array library from NEEDLE_BACKEND: "nd" (default, needle NDArray) or "np" (numpy)."""
import os

BACKEND = os.environ.get("NEEDLE_BACKEND", "nd")

if BACKEND == "nd":
    from . import backend_ndarray as array_api
    from .backend_ndarray import (
        BackendDevice as Device,
        all_devices,
        cpu,
        cpu_numpy,
        cuda,
        default_device,
    )

    NDArray = array_api.NDArray
elif BACKEND == "np":
    import numpy as array_api
    from .backend_numpy import Device, all_devices, cpu, cpu_numpy, cuda, default_device

    NDArray = array_api.ndarray
else:
    raise ValueError(f"NEEDLE_BACKEND must be 'nd' or 'np', got {BACKEND!r}")

__all__ = ["BACKEND", "array_api", "NDArray", "Device", "all_devices", "cpu", "cpu_numpy", "cuda",
           "default_device"]
