"""needle.backend_ndarray: the strided NDArray and its devices (cpu, cuda, cpu_numpy).

device.py: devices and their backend modules; ndarray.py: NDArray (all the stride logic);
ndarray_ewise.py: its element-wise operators (dense layouts kept); ndarray_fused.py: its fused
batch-norm and softmax kernels; ndarray_functions.py: the numpy-style functions (array, full, stack...);
linalg.py: matmul and flat_matmul; pool.py: pooling; depthwise.py: depthwise convolution; winograd.py: Winograd transforms."""
from . import depthwise, device, linalg, ndarray, pool, winograd
from .depthwise import *  # noqa: F401,F403
from .device import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from .ndarray import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .winograd import *  # noqa: F401,F403

__all__ = (device.__all__ + ndarray.__all__ + linalg.__all__ + pool.__all__
           + depthwise.__all__ + winograd.__all__)
