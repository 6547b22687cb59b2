"""needle.backend_ndarray: the strided NDArray and its devices (cpu, cuda, cpu_numpy)."""
from .ndarray import *  # noqa: F401,F403
from .ndarray import __all__  # noqa: F401
