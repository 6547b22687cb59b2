"""needle: a miniature deep-learning framework.

Layers, bottom to top: backend kernels -> backend_ndarray (NDArray) -> autograd -> ops ->
nn / init / optim / data.
"""
from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("needle-dl")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

from . import backend_ndarray
from . import random
from .random import Generator, manual_seed
from .backend_selection import all_devices, cpu, cpu_numpy, cuda, default_device, BACKEND
from . import autograd
from .autograd import Tensor, TensorTuple, no_grad
from . import ops
from .ops import *  # noqa: F401,F403  (the contract re-exports the functional ops at top level)
from . import init
from .init import ones, zeros, ones_like, zeros_like
from . import nn
from . import optim
from . import data
