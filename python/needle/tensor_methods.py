"""The PyTorch-style Tensor surface, attached to `needle.Tensor` by `attach()`:

`t[index]`, `t.to(device)`, `t.item()`, `t.T`, `t.mean()`, `t.max()` / `t.min()` /
`t.argmax()` / `t.argmin()`, `t.reshape(*shape)` / `t.view`, the comparisons `t.eq(u)` ... and
`<`, `<=`, `>`, `>=`, `len(t)`, `bool(t)`, `float(t)`, `np.asarray(t)`, and DLPack.

`==`, `!=` and `hash` stay identity (contract §4.1: gradients and optimizer state are keyed by
tensor); use `t.eq(u)` / `ndl.eq(t, u)` for element-wise equality. numpy scalars and arrays on the
left of an operator (`np.float32(2) * t`, `array + t`) go through needle's operators: Tensor sets
`__array_ufunc__ = None`, so numpy hands the operation back instead of making an array that
would drop the graph.
"""
from collections import namedtuple

import numpy

from .autograd import Tensor
from .backend_selection import BACKEND
from .ops import ops_indexing, ops_tensor
from .ops.ops_conv import permute
from .ops.ops_mathematic import reshape, summation
from . import tensor_dlpack

__all__ = ["attach", "MinMaxResult"]

_NUMPY_MODE = BACKEND == "np"

# torch.return_types.max / min: t.max(dim) gives the values and their indices
MinMaxResult = namedtuple("MinMaxResult", ["values", "indices"])


def _device_from(owner, device):
    """A needle device from a device object or a torch-style name ("cpu", "cuda", "cpu_numpy")."""
    from . import backend_selection as bs  # noqa: PLC0415

    if isinstance(device, str):
        name = device.split(":")[0]
        if name not in ("cpu", "cuda", "cpu_numpy"):
            raise ValueError(f"{owner}: unknown device {device!r}; use 'cpu', 'cuda' or "
                             "'cpu_numpy'")
        device = getattr(bs, name)()
        if not device.enabled():
            raise ValueError(f"{owner}: device {name} is not available")
        return device
    if not hasattr(device, "name") or not hasattr(device, "enabled"):
        raise TypeError(f"{owner}: expected a device or a device name, got "
                        f"{type(device).__name__}")
    return device


def _to(self, device=None, dtype=None):
    """This tensor on `device` (a device or "cpu" / "cuda"), differentiably; `self` when it is
    there already. dtype: only the tensor's own dtype (NDArray mode is float32 only)."""
    if dtype is not None and numpy.dtype(dtype) != numpy.dtype(self.dtype):
        raise TypeError(f"Tensor.to: cannot convert {self.dtype} to {dtype}")
    if device is None or _NUMPY_MODE:
        return self
    device = _device_from("Tensor.to", device)
    if device == self.device:
        return self
    return ops_tensor.to_device(self, device)


def _item(self):
    """The value of a one-element tensor as a Python number."""
    values = self.numpy()
    if values.size != 1:
        raise ValueError(f"Tensor.item: only one-element tensors can be converted to a Python "
                         f"number, this one has shape {tuple(self.shape)}")
    return values.reshape(()).item()


def _bool(self):
    if numpy.prod(self.shape) != 1:
        raise ValueError(f"bool(Tensor): the truth value of a tensor of shape "
                         f"{tuple(self.shape)} is ambiguous; use .sum() or a comparison")
    return bool(_item(self))


def _len(self):
    if not self.shape:
        raise TypeError("len() of a 0-d tensor")
    return self.shape[0]


def _iter(self):
    """The sub-tensors along dim 0 (t[0], t[1], ...); a 0-d tensor is not iterable."""
    n = _len(self)
    return (ops_indexing.getitem(self, i) for i in range(n))


def _array(self, dtype=None, copy=None):
    """numpy's array protocol: a copy, or with copy=False a view sharing memory (cpu only)."""
    if copy is False:
        view = tensor_dlpack.host_view(self)
        if view is None:
            raise ValueError("Tensor.__array__: a CUDA tensor cannot be viewed without a copy")
        if dtype is not None and numpy.dtype(dtype) != view.dtype:
            raise ValueError(f"Tensor.__array__: copy=False cannot convert to {dtype}")
        return view
    out = self.numpy()
    return out if dtype is None else out.astype(dtype, copy=False)


def _T(self):  # noqa: N802 (torch's name)
    """The tensor with its dims reversed (the transpose of a matrix); 0-d and 1-d: itself."""
    if self.ndim < 2:
        return self
    return permute(self, tuple(reversed(range(self.ndim))))


def _pick_dims(owner, axes, dim, keepdims, keepdim):
    """Merge needle's (axes, keepdims) and torch's (dim, keepdim) spellings."""
    if axes is not None and dim is not None:
        raise TypeError(f"{owner}: give axes= or dim=, not both")
    if keepdims is not None and keepdim is not None:
        raise TypeError(f"{owner}: give keepdims= or keepdim=, not both")
    keep = keepdims if keepdims is not None else bool(keepdim)
    if not isinstance(keep, bool):
        raise TypeError(f"{owner}: keepdim must be a bool, got {keep!r}")
    return (axes if axes is not None else dim), keep


def _mean(self, axes=None, keepdims=None, *, dim=None, keepdim=None):
    """Mean over `axes` / `dim` (an int or a tuple; None = all dims, shape ()), the reduced dims
    dropped unless keepdims / keepdim."""
    axes, keep = _pick_dims("Tensor.mean", axes, dim, keepdims, keepdim)
    axes = ops_tensor.check_dims("Tensor.mean", axes, self.ndim)
    shape = tuple(self.shape)
    reduced = range(len(shape)) if axes is None else axes
    count = int(numpy.prod([shape[a] for a in reduced]))
    kept = tuple(1 if i in reduced else n for i, n in enumerate(shape))
    dropped = tuple(n for i, n in enumerate(shape) if i not in reduced)
    return reshape(summation(self, axes) / count, kept if keep else dropped)


def _arg(self, owner, dim, keepdim, fn):
    """argmax / argmin on the host: indices as a constant tensor (float32 in NDArray mode)."""
    if not isinstance(keepdim, bool):
        raise TypeError(f"{owner}: keepdim must be a bool, got {keepdim!r}")
    if numpy.prod(self.shape) == 0:
        raise ValueError(f"{owner}: empty tensor of shape {tuple(self.shape)}")
    values = self.numpy()
    if dim is None:
        idx = numpy.asarray(fn(values))
        idx = idx.reshape((1,) * self.ndim) if keepdim else idx
    else:
        if isinstance(dim, bool) or not isinstance(dim, (int, numpy.integer)):
            raise TypeError(f"{owner}: dim must be an int, got {dim!r}")
        (d,) = ops_tensor.check_dims(owner, dim, self.ndim)
        idx = fn(values, axis=d, keepdims=keepdim) if self.ndim else numpy.asarray(0)
    idx = numpy.asarray(idx, dtype=numpy.int64)
    if _NUMPY_MODE:
        return Tensor(idx, requires_grad=False)
    return Tensor(idx.astype(numpy.float32), device=self.device, requires_grad=False)


def _argmax(self, dim=None, keepdim=False):
    """Index of the maximum: of the flattened tensor (dim=None, shape ()), or along `dim`."""
    return _arg(self, "Tensor.argmax", dim, keepdim, numpy.argmax)


def _argmin(self, dim=None, keepdim=False):
    """Index of the minimum, as argmax."""
    return _arg(self, "Tensor.argmin", dim, keepdim, numpy.argmin)


def _extreme(self, owner, sign, dim, keepdim, axes, keepdims):
    if dim is not None and axes is not None:
        raise TypeError(f"{owner}: give axes= or dim=, not both")
    if axes is not None:  # needle style: values only, any set of axes
        keep = bool(keepdims) if keepdims is not None else keepdim
        x = self if sign > 0 else -self
        out = ops_tensor.max_reduce(x, axes, keep)
        return out if sign > 0 else -out
    if isinstance(dim, bool) or (dim is not None and not isinstance(dim, (int, numpy.integer))):
        raise TypeError(f"{owner}: dim must be an int, got {dim!r} (axes= takes a tuple)")
    x = self if sign > 0 else -self
    values = ops_tensor.max_reduce(x, dim, keepdim)
    values = values if sign > 0 else -values
    if dim is None:  # torch: t.max() is the value alone
        return values
    indices = _arg(self, owner, dim, keepdim, numpy.argmax if sign > 0 else numpy.argmin)
    return MinMaxResult(values, indices)


def _max(self, dim=None, keepdim=False, *, axes=None, keepdims=None):
    """torch: `t.max()` (shape ()), `t.max(dim, keepdim=False)` -> (values, indices);
    needle: `t.max(axes=(0, 2), keepdims=False)` -> values. Ties share the gradient."""
    return _extreme(self, "Tensor.max", 1, dim, keepdim, axes, keepdims)


def _min(self, dim=None, keepdim=False, *, axes=None, keepdims=None):
    """As `max`, for the minimum."""
    return _extreme(self, "Tensor.min", -1, dim, keepdim, axes, keepdims)


def _reshape(self, *shape, **kwargs):
    """reshape((2, 3)) / reshape(shape=(2, 3)) as before, or torch's reshape(2, 3); one -1 is
    inferred."""
    if kwargs:
        if set(kwargs) != {"shape"} or shape:
            raise TypeError(f"Tensor.reshape: unexpected arguments {sorted(kwargs)}")
        shape = (kwargs["shape"],)
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    for n in shape:
        if isinstance(n, bool) or not isinstance(n, (int, numpy.integer)):
            raise TypeError(f"Tensor.reshape: sizes must be ints, got {shape}")
    if list(shape).count(-1) > 1 or any(n < -1 for n in shape):
        raise ValueError(f"Tensor.reshape: invalid shape {shape}")
    size = int(numpy.prod(self.shape))
    if -1 in shape:
        rest = int(numpy.prod([n for n in shape if n != -1]))
        if rest == 0 or size % rest:
            raise ValueError(f"Tensor.reshape: cannot reshape {tuple(self.shape)} into {shape}")
        shape = tuple(size // rest if n == -1 else int(n) for n in shape)
    return reshape(self, tuple(int(n) for n in shape))


def _comparison(name):
    fn = getattr(ops_tensor, name)

    def method(self, other):
        return fn(self, other)
    method.__name__ = name
    method.__doc__ = f"`ndl.{name}(self, other)`: a 0/1 float tensor, no gradient."
    return method


def _getitem(self, index):
    return ops_indexing.getitem(self, index)


def _coerced(op_name):
    """Tensor's operator `op_name`, with a numpy array operand (ndim >= 1) made a constant Tensor
    on this tensor's device first, so `array + t` builds the graph (or raises on a shape
    mismatch) instead of being taken for a scalar."""
    reflected = op_name.startswith("__r")
    forward = getattr(Tensor, "__" + op_name[3:] if reflected else op_name)
    op = getattr(Tensor, op_name, None)

    def method(self, other):
        if isinstance(other, numpy.ndarray) and other.ndim:
            other = Tensor(other, device=self.device, requires_grad=False)
            return forward(other, self) if reflected else forward(self, other)
        if op is None:
            return NotImplemented
        return op(self, other)
    method.__name__ = op_name
    return method


def attach(cls=Tensor):
    """Add the methods above to `cls` (done once, by `needle/__init__.py`)."""
    # Only the reflected operators: numpy on the left lands there. The forward ones stay
    # unwrapped (no extra call per op); `t + array` is AddScalar(array), which NDArray mode
    # refuses with a TypeError and numpy mode computes with numpy's broadcasting.
    for name in ("__radd__", "__rmul__", "__rsub__", "__rtruediv__", "__rmatmul__"):
        setattr(cls, name, _coerced(name))
    cls.__array_ufunc__ = None  # numpy returns NotImplemented: Python calls our reflected op
    cls.__array_priority__ = 1000
    cls.__array__ = _array
    cls.__getitem__ = _getitem
    cls.__len__ = _len
    cls.__iter__ = _iter
    cls.__bool__ = _bool
    cls.__float__ = lambda self: float(_item(self))
    cls.__int__ = lambda self: int(_item(self))
    cls.__dlpack__ = tensor_dlpack.dlpack
    cls.__dlpack_device__ = tensor_dlpack.dlpack_device
    cls.to = _to
    cls.item = _item
    cls.T = property(_T)
    cls.mean = _mean
    cls.max = _max
    cls.min = _min
    cls.argmax = _argmax
    cls.argmin = _argmin
    cls.reshape = _reshape
    cls.view = _reshape
    for name in ("eq", "ne", "lt", "le", "gt", "ge"):
        setattr(cls, name, _comparison(name))
    cls.__lt__ = _comparison("lt")
    cls.__le__ = _comparison("le")
    cls.__gt__ = _comparison("gt")
    cls.__ge__ = _comparison("ge")
    # __eq__ / __ne__ / __hash__ are deliberately left alone: identity (contract §4.1)
