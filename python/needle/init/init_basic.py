"""Tensor creation: random (one numpy draw each, then an affine map), constant and one-hot."""
import numpy

from ..autograd import Tensor, _is_float32
from ..backend_selection import BACKEND, cpu
from ..random import resolve_generator

__all__ = ["rand", "randn", "constant", "ones", "zeros", "randb", "one_hot", "zeros_like",
           "ones_like"]

_NUMPY_MODE = BACKEND == "np"


def _wrap(array, device, dtype, requires_grad):
    """A leaf Tensor around a freshly made raw array (cast in numpy mode, no extra copy)."""
    if _NUMPY_MODE:
        if dtype is not None and array.dtype != dtype:
            array = array.astype(dtype)
        return Tensor.make_const(array, requires_grad=requires_grad)
    if not _is_float32(dtype):
        raise TypeError(f"init: NDArray mode supports only float32, got dtype {dtype!r}")
    return Tensor.make_const(array, requires_grad=requires_grad)


def _draw(device, method, shape, generator, where):
    """One draw of `shape` from the global stream (via the device, as the contract says) or
    from `generator`, as a raw array on `device`."""
    if generator is None:
        return getattr(device, method)(*shape)
    values = getattr(resolve_generator(generator, where), method)(*shape)
    return Tensor._array_from_numpy(numpy.asarray(values, dtype=numpy.float32)
                                    if not _NUMPY_MODE else values, device=device, dtype=None)


def rand(*shape, low=0.0, high=1.0, device=None, dtype="float32", requires_grad=False,
         generator=None):
    """U(low, high) of `shape`: one `rand(*shape)` draw v, then v * (high - low) + low.

    The draw comes from numpy's global stream, or from `generator` (an `ndl.Generator`).
    """
    device = cpu() if device is None else device
    array = _draw(device, "rand", shape, generator, "init.rand") * (high - low) + low
    return _wrap(array, device, dtype, requires_grad)


def randn(*shape, mean=0.0, std=1.0, device=None, dtype="float32", requires_grad=False,
          generator=None):
    """Normal N(mean, std^2) of `shape`: one `randn(*shape)` draw, v * std + mean (global
    stream, or `generator`)."""
    device = cpu() if device is None else device
    array = _draw(device, "randn", shape, generator, "init.randn") * std + mean
    return _wrap(array, device, dtype, requires_grad)


def constant(*shape, c=1.0, device=None, dtype="float32", requires_grad=False):
    """A tensor of `shape` filled with `c` (no draw)."""
    device = cpu() if device is None else device
    array = device.full(shape, c, dtype=dtype)
    return _wrap(array, device, dtype, requires_grad)


def ones(*shape, device=None, dtype="float32", requires_grad=False):
    """A tensor of `shape` filled with 1."""
    return constant(*shape, c=1.0, device=device, dtype=dtype, requires_grad=requires_grad)


def zeros(*shape, device=None, dtype="float32", requires_grad=False):
    """A tensor of `shape` filled with 0."""
    return constant(*shape, c=0.0, device=device, dtype=dtype, requires_grad=requires_grad)


def randb(*shape, p=0.5, device=None, dtype="bool", requires_grad=False, generator=None):
    """Bernoulli(p) mask of `shape`: one `rand(*shape)` draw (global stream, or `generator`),
    v <= p.

    NDArray mode holds only float32, so callers pass dtype="float32" (values 1.0 / 0.0).
    """
    device = cpu() if device is None else device
    array = _draw(device, "rand", shape, generator, "init.randb") <= p
    if not _NUMPY_MODE and dtype in ("bool", bool):
        dtype = "float32"  # NDArray holds only float32: the mask is 1.0 / 0.0
    return _wrap(array, device, dtype, requires_grad)


def one_hot(n, i, device=None, dtype="float32", requires_grad=False):
    """Rows of the n x n identity picked by the index tensor `i`: shape i.shape + (n,) (no draw)."""
    device = cpu() if device is None else device
    idx = i.numpy() if isinstance(i, Tensor) else numpy.asarray(i)
    if idx.size and not numpy.array_equal(idx, numpy.round(idx)):  # 1.5 is not a class index
        raise TypeError(f"one_hot: indices must be whole numbers, got {idx.ravel()[:5]}")
    array = device.one_hot(n, idx.astype("int32"), dtype=dtype)
    return _wrap(array, device, dtype, requires_grad)


def zeros_like(array, *, device=None, requires_grad=False):
    """Zeros with the shape, dtype and device (unless given) of the Tensor `array`."""
    device = device if device is not None else array.device
    return zeros(*array.shape, dtype=array.dtype, device=device, requires_grad=requires_grad)


def ones_like(array, *, device=None, requires_grad=False):
    """Ones with the shape, dtype and device (unless given) of the Tensor `array`."""
    device = device if device is not None else array.device
    return ones(*array.shape, dtype=array.dtype, device=device, requires_grad=requires_grad)
