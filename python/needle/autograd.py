"""needle.autograd: the computational graph and reverse-mode automatic differentiation.

A `Value` is a node of the graph: either a leaf holding an array (`op is None`) or the result of
an `Op` applied to input Values. `Tensor` is the user-facing array node, `TensorTuple` a node
holding a tuple of arrays (used by `stack` / `split`). In eager mode (`LAZY_MODE = False`, the
default) every node is computed when it is created.

`Tensor.backward()` walks the graph in reverse topological order (`find_topo_sort`) and stores a
gradient Tensor on every node (`node.grad`: overwritten on plain Tensors, accumulated on Tensors
whose class sets `_accumulate_grad`, i.e. `nn.Parameter`). Plain `backward()` computes constant
gradients (no graph, no reference cycles); each remembers, through weak references, how to
rebuild its differentiable form while the forward graph is alive, so `x.grad.backward()` still
gives second-order gradients. `backward(create_graph=True)` builds that form eagerly.
"""
import threading

import numpy

from .backend_selection import BACKEND, array_api, cpu, default_device

__all__ = [
    "LAZY_MODE", "TENSOR_COUNTER", "Value", "Op", "TensorOp", "TensorTupleOp", "Tensor",
    "TensorTuple", "find_topo_sort", "compute_gradient_of_variables", "no_grad",
    "is_grad_enabled", "queue_backward_end_callback",
]

LAZY_MODE = False
# Live Value count: +1 in every Value initialisation, -1 in __del__ (contract §4.4).
TENSOR_COUNTER = 0

_NUMPY_MODE = BACKEND == "np"


class _GradMode(threading.local):
    """Grad mode is per thread: `no_grad` in one thread never detaches another thread's ops."""

    def __init__(self):
        self.enabled = True
        self.saved = []  # the modes that enclosing no_grad blocks restore
        self.end_callbacks = []  # queue_backward_end_callback's, for this thread's backward
        self.hook_mode = True  # the grad mode grad hooks run in: backward()'s caller's


_MODE = _GradMode()


class no_grad:
    """Context manager (and decorator): ops run inside it return detached constants.

    Example:
        with ndl.no_grad():
            y = model(x)        # y.requires_grad is False, no graph is kept
    """

    def __enter__(self):
        _MODE.saved.append(_MODE.enabled)
        _MODE.enabled = False
        return self

    def __exit__(self, *exc):
        _MODE.enabled = _MODE.saved.pop()
        return False

    def __call__(self, func):
        def wrapper(*args, **kwargs):
            with no_grad():
                return func(*args, **kwargs)

        wrapper.__name__ = getattr(func, "__name__", "wrapper")
        wrapper.__doc__ = getattr(func, "__doc__", None)
        return wrapper


def is_grad_enabled():
    """False inside a `no_grad()` block (of the calling thread)."""
    return _MODE.enabled


class _enable_grad:
    """Grad mode on inside the block (used to rebuild gradients, whatever the caller's mode)."""

    def __enter__(self):
        _MODE.saved.append(_MODE.enabled)
        _MODE.enabled = True

    def __exit__(self, *exc):
        _MODE.enabled = _MODE.saved.pop()
        return False


# ---------------------------------------------------------------------------------------- ops
class Op:
    """An operator: `compute` on raw arrays, `gradient` on Tensors (so it is differentiable)."""

    def __call__(self, *args):
        raise NotImplementedError()

    def compute(self, *args):
        """Forward pass on raw arrays (NDArray or numpy); returns a raw array."""
        raise NotImplementedError()

    def gradient(self, out_grad, node):
        """Partial adjoints of each input given the output adjoint `out_grad` (Tensor ops only)."""
        raise NotImplementedError()

    def gradient_as_tuple(self, out_grad, node):
        """`gradient`, always as a tuple (one entry per input)."""
        output = self.gradient(out_grad, node)
        if isinstance(output, tuple):
            return output
        if isinstance(output, list):
            return tuple(output)
        return (output,)


class TensorOp(Op):
    """An op producing a Tensor."""

    def __call__(self, *args):
        return Tensor.make_from_op(self, args)


class TensorTupleOp(Op):
    """An op producing a TensorTuple."""

    def __call__(self, *args):
        return TensorTuple.make_from_op(self, args)


def _op_name(op):
    return type(op).__name__


def _describe(data):
    if isinstance(data, tuple):
        return "(" + ", ".join(str(getattr(d, "shape", "?")) for d in data) + ")"
    return str(getattr(data, "shape", type(data).__name__))


def _compute(op, inputs):
    """Run op.compute on the inputs' arrays; errors name the op and the input shapes."""
    try:
        arrays = [x.realize_cached_data() for x in inputs]
    except AttributeError:
        bad = [type(x).__name__ for x in inputs if not isinstance(x, Value)]
        raise TypeError(f"{_op_name(op)}: inputs must be Tensors, got {', '.join(bad)}") from None
    if len(arrays) > 1 and not _NUMPY_MODE:
        dev = getattr(arrays[0], "device", None)
        for a in arrays[1:]:
            d = getattr(a, "device", None)
            if d is not dev and d != dev:
                _raise_mixed_devices(op, arrays)
    try:
        return op.compute(*arrays)
    except (ValueError, IndexError, TypeError) as e:
        shapes = ", ".join(_describe(a) for a in arrays)
        msg = f"{_op_name(op)}: {e} (input shapes: {shapes})"
        try:
            annotated = type(e)(msg)  # same type, so callers' except clauses still match
        except (TypeError, ValueError):  # exception types whose constructor wants other args
            kind = next(k for k in (IndexError, TypeError, ValueError) if isinstance(e, k))
            annotated = kind(msg)
        raise annotated from e


def _raise_mixed_devices(op, arrays):
    devs = [getattr(a, "device", None) for a in arrays]
    if any(d is None for d in devs):  # e.g. a TensorTuple input: nothing to compare
        known = [d for d in devs if d is not None]
        if all(d == known[0] for d in known):
            return
    devs = ", ".join(str(d) for d in devs)
    raise ValueError(f"{_op_name(op)}: inputs are on different devices ({devs}); "
                     f"move them with Tensor(t, device=...) first")


# ---------------------------------------------------------------------------------------- values
class Value:
    """A node of the computational graph.

    Fields: `op` (None for leaves), `inputs` (list of Values), `cached_data` (the raw array, or a
    tuple of arrays for a TensorTuple), `requires_grad`, `num_outputs`.
    """

    op = None
    inputs = ()
    cached_data = None
    requires_grad = False
    num_outputs = 1
    grad = None
    _accumulate_grad = False  # True on nn.Parameter: .grad sums over backward() calls
    _grad_source = None  # on a plain backward()'s gradient: how to rebuild it (_GradSource)
    _post_accumulate_hooks = None

    def realize_cached_data(self):
        """The raw array (computed and cached on first use); the object itself, not a copy."""
        if self.cached_data is not None:
            return self.cached_data
        self.cached_data = _compute(self.op, self.inputs)
        if self.__dict__.pop("_deferred", False) and not self.requires_grad:
            self.op, self.inputs = None, []  # now a constant, as eager mode would have made it
        return self.cached_data

    def is_leaf(self):
        return self.op is None

    def __del__(self):
        global TENSOR_COUNTER
        if "cached_data" in self.__dict__:  # skip objects whose construction failed
            TENSOR_COUNTER -= 1

    def _init(self, op, inputs, *, num_outputs=1, cached_data=None, requires_grad=None):
        global TENSOR_COUNTER
        TENSOR_COUNTER += 1
        if requires_grad is None:
            requires_grad = _MODE.enabled and any(x.requires_grad for x in inputs)
        self.op = op
        self.inputs = list(inputs)
        self.num_outputs = num_outputs
        self.cached_data = cached_data
        self.requires_grad = requires_grad

    @classmethod
    def make_const(cls, data, *, requires_grad=False):
        """A leaf wrapping the raw array `data` (shared, not copied)."""
        value = cls.__new__(cls)
        value._init(None, [], cached_data=data, requires_grad=requires_grad)
        return value

    @classmethod
    def make_deferred(cls, op, inputs):
        """The node op(*inputs), computed only when its data is first read.

        For gradients that are stored but rarely read (a data batch's `.grad`): the node is
        exactly what `op(*inputs)` makes, whether or not anyone looks at it.
        """
        value = cls.__new__(cls)
        value._init(op, inputs)
        value._deferred = True
        return value

    @classmethod
    def make_from_op(cls, op, inputs):
        """The node op(*inputs); eager mode computes it now, detached if nothing needs grad."""
        global TENSOR_COUNTER
        if LAZY_MODE:
            value = cls.__new__(cls)
            value._init(op, inputs)
            return value
        data = _compute(op, inputs)
        value = cls.__new__(cls)
        TENSOR_COUNTER += 1  # inlined _init: this is the hot path of every op
        value.cached_data = data
        value.num_outputs = 1
        if _MODE.enabled:
            for x in inputs:
                if x.requires_grad:
                    value.op = op
                    value.inputs = list(inputs)
                    value.requires_grad = True
                    return value
            for x in inputs:
                if x._grad_source is not None:
                    # computed from a plain backward()'s constant gradient: backward() on it
                    # could only be silently wrong, so it raises instead (see _DERIVED)
                    value._grad_source = _DERIVED
                    break
        value.op = None
        value.inputs = []
        value.requires_grad = False
        return value


def _is_float32(dtype):
    if dtype is None:
        return True
    try:
        return numpy.dtype(dtype) == numpy.float32
    except TypeError:
        return False


class Tensor(Value):
    """An n-dimensional array node of the graph.

    Args:
        array: nested list, Python scalar, numpy array, NDArray or another Tensor.
        device: a device (`ndl.cpu()`, `ndl.cuda()`, `ndl.cpu_numpy()`); None = default device
            (or the source Tensor's device).
        dtype: None, "float32", np.float32 or np.dtype("float32"). NDArray mode is float32 only;
            numpy mode keeps numpy's inferred dtype when None.
        requires_grad: whether backward() should produce a gradient for this leaf (default True).

    Example:
        x = ndl.Tensor([[1.0, 2.0]], device=ndl.cpu())   # shape (1, 2)
        (x * x).sum().backward()                           # x.grad = 2 * x
    """

    _host_copy = None  # (the array it was uploaded to, the numpy data): see from_host

    def __init__(self, array, *, device=None, dtype=None, requires_grad=True, **kwargs):
        if device is not None and not callable(getattr(device, "enabled", None)):
            raise TypeError(f"Tensor: device must be a device object such as ndl.cpu() or "
                            f"ndl.cuda(), got {device!r}")
        if isinstance(array, Tensor):
            if device is None:
                device = array.device
            if dtype is None:
                dtype = array.dtype
            if device == array.device and numpy.dtype(dtype) == numpy.dtype(array.dtype):
                cached_data = array.realize_cached_data()
            else:
                cached_data = Tensor._array_from_numpy(array.numpy(), device=device, dtype=dtype)
        else:
            device = device if device is not None else default_device()
            cached_data = Tensor._array_from_numpy(array, device=device, dtype=dtype)
        self._init(None, [], cached_data=cached_data, requires_grad=requires_grad)

    @staticmethod
    def _array_from_numpy(numpy_array, device, dtype):
        if _NUMPY_MODE:
            return numpy.array(numpy_array, dtype=dtype)
        if not _is_float32(dtype):
            raise TypeError(f"Tensor: NDArray mode supports only float32, got dtype {dtype!r}")
        return array_api.array(numpy_array, device=device)

    @staticmethod
    def from_host(array, *, device=None, dtype=None):
        """A constant Tensor of the numpy array `array` that keeps a host copy of it: `numpy()`
        returns that copy for as long as the Tensor holds the array it was uploaded to, without
        reading the device. A data batch's labels are read by the loss in the middle of a
        training step, which on a GPU would wait for all queued work (the DataLoader's batches
        are made this way)."""
        if _NUMPY_MODE:
            return Tensor(array, device=device, dtype=dtype, requires_grad=False)
        # one float32 copy (the caller may reuse `array`), which is also what gets uploaded
        host = numpy.array(array, dtype=numpy.float32)
        tensor = Tensor(host, device=device, dtype=dtype, requires_grad=False)
        tensor._host_copy = (tensor.cached_data, host)
        return tensor

    @staticmethod
    def make_const(data, requires_grad=False):
        """A leaf Tensor wrapping the raw array (or a Tensor's data), sharing memory."""
        tensor = Tensor.__new__(Tensor)
        if isinstance(data, Tensor):
            data = data.realize_cached_data()
        tensor._init(None, [], cached_data=data, requires_grad=requires_grad)
        return tensor

    # ------------------------------------------------------------------ properties
    @property
    def data(self):
        """A detached Tensor sharing this tensor's array; assigning replaces the array."""
        return self.detach()

    @data.setter
    def data(self, value):
        assert isinstance(value, Tensor), (
            f"Tensor.data: expected a Tensor, got {type(value).__name__}")
        assert value.dtype == self.dtype, (
            f"Tensor.data: dtype mismatch, {value.dtype} assigned to {self.dtype}")
        self.cached_data = value.realize_cached_data()

    def detach(self):
        """A new constant Tensor sharing the data (no graph)."""
        return Tensor.make_const(self.realize_cached_data())

    @property
    def shape(self):
        """The tensor's shape, a tuple (e.g. (N, C, H, W))."""
        return self.realize_cached_data().shape

    @property
    def dtype(self):
        """numpy dtype in numpy mode; the string "float32" in NDArray mode."""
        return self.realize_cached_data().dtype

    @property
    def device(self):
        """The device holding the data (`cpu()`, `cuda()`, ...)."""
        if _NUMPY_MODE:
            return cpu()
        return self.realize_cached_data().device

    @property
    def ndim(self):
        """Number of dimensions, len(shape)."""
        return len(self.shape)

    def backward(self, out_grad=None, create_graph=False):
        """Reverse-mode AD from this tensor; stores `.grad` on every node of the graph.

        Args:
            out_grad: adjoint of this tensor, same shape; default ones (also for non-scalars).
            create_graph: False (the default, as in torch): the gradients are constants, which
                is fast and leaves no reference cycles, so a step's activations are freed by
                reference counting as soon as the loss is dropped. Such a gradient can still be
                differentiated (`x.grad.backward()`) while the tensor `backward()` was called
                on is alive: it is rebuilt from the graph on demand. True: every `.grad` is
                built as a graph node at once, so gradients of gradients can be taken freely
                (`(x.grad ** 2).sum().backward()`, a gradient penalty, needs this).

        `.grad` is overwritten on plain Tensors and accumulated on `nn.Parameter`s (until
        the optimizer's `reset_grad()` or `Module.zero_grad()`).
        """
        if out_grad is None:
            data = self.realize_cached_data()
            out_grad = Tensor.make_const(self.device.full(data.shape, 1, dtype=data.dtype))
        elif not isinstance(out_grad, Tensor):
            raise TypeError(f"backward: out_grad must be a Tensor, got {type(out_grad).__name__}")
        elif tuple(out_grad.shape) != tuple(self.shape):
            raise ValueError(f"backward: out_grad shape {out_grad.shape} differs from the tensor "
                             f"shape {self.shape}")
        root = _differentiable(self)  # self, or the graph form of a plain backward's gradient
        caller_mode = _MODE.enabled
        if create_graph:
            with _enable_grad():
                _run_backward(root, out_grad, _store_grad, caller_mode)
        else:
            out_data = out_grad.realize_cached_data()
            source = _GradSource(self, out_data)  # anchored at the tensor the caller holds
            with no_grad():
                _run_backward(root, Tensor.make_const(out_data), source.store, caller_mode)
        if root is not self:
            self.grad = root.grad

    def register_post_accumulate_grad_hook(self, hook):
        """Call `hook(tensor)` each time `backward()` has stored this leaf's `.grad`.

        As torch's: the hook runs after the gradient is accumulated (or set), so it sees the
        final `.grad` of that backward call (data-parallel training all-reduces it there).

        Returns:
            a handle whose `remove()` unregisters the hook.
        """
        if not callable(hook):
            raise TypeError(f"register_post_accumulate_grad_hook: hook must be callable, got "
                            f"{type(hook).__name__}")
        if self.op is not None:
            raise RuntimeError("register_post_accumulate_grad_hook: only leaf tensors have their "
                               f".grad accumulated; this tensor is the output of "
                               f"{_op_name(self.op)}")
        if not self.requires_grad:
            raise RuntimeError("register_post_accumulate_grad_hook: the tensor does not require "
                               "grad, so backward() never stores its gradient")
        hooks = self.__dict__.get("_post_accumulate_hooks")
        if hooks is None:
            hooks = self._post_accumulate_hooks = {}
        return _HookHandle(hooks, hook)

    def __repr__(self):
        return "needle.Tensor(" + str(self.realize_cached_data()) + ")"

    def __str__(self):
        return str(self.realize_cached_data())

    def numpy(self):
        """A numpy copy of the data."""
        data = self.realize_cached_data()
        if _NUMPY_MODE:
            return numpy.array(data)
        host = self._host_copy
        if host is not None and host[0] is data:
            return host[1].copy()
        return data.numpy()

    # ------------------------------------------------------------------ operators
    def __add__(self, other):
        if isinstance(other, Tensor):
            return _om.EWiseAdd()(self, other)
        return _om.AddScalar(other)(self)

    def __mul__(self, other):
        if isinstance(other, Tensor):
            return _om.EWiseMul()(self, other)
        return _om.MulScalar(other)(self)

    def __pow__(self, other):
        if isinstance(other, Tensor):
            return _om.EWisePow()(self, other)
        return _om.PowerScalar(other)(self)

    def __sub__(self, other):
        if isinstance(other, Tensor):
            return _om.EWiseAdd()(self, _om.Negate()(other))
        return _om.AddScalar(-other)(self)

    def __rsub__(self, other):
        return _om.AddScalar(other)(_om.Negate()(self))

    def __truediv__(self, other):
        if isinstance(other, Tensor):
            return _om.EWiseDiv()(self, other)
        return _om.DivScalar(other)(self)

    def __rtruediv__(self, other):
        return _om.MulScalar(other)(_om.PowerScalar(-1)(self))

    def __matmul__(self, other):
        return _om.MatMul()(self, other)

    def matmul(self, other):
        """self @ other: (m, k) @ (k, n) -> (m, n), batched over leading dims."""
        return _om.MatMul()(self, other)

    def sum(self, axes=None):
        """Sum over `axes` (None: all), dropping them."""
        return _om.Summation(axes)(self)

    def broadcast_to(self, shape):
        """Broadcast to `shape` by numpy's rules."""
        return _om.BroadcastTo(shape)(self)

    def reshape(self, shape):
        return _om.Reshape(shape)(self)

    def __neg__(self):
        return _om.Negate()(self)

    def transpose(self, axes=None):
        """Swap two axes (default: the last two), as the contract's transpose op."""
        return _om.Transpose(axes)(self)

    __radd__ = __add__
    __rmul__ = __mul__


class TensorTuple(Value):
    """A node holding a tuple of arrays (the output of `make_tuple` / `split`)."""

    def __len__(self):
        return len(self.realize_cached_data())

    def __getitem__(self, index):
        return _ot.tuple_get_item(self, index)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def tuple(self):
        """The elements as a Python tuple of Tensors."""
        return tuple(self[i] for i in range(len(self)))

    def __repr__(self):
        return "needle.TensorTuple" + str(self.tuple())

    def __str__(self):
        return self.__repr__()

    def __add__(self, other):
        if not isinstance(other, TensorTuple) or len(self) != len(other):
            raise ValueError(f"TensorTuple add: need a TensorTuple of length {len(self)}, got "
                             f"{type(other).__name__}")
        return _ot.make_tuple(*[self[i] + other[i] for i in range(len(self))])

    def detach(self):
        """A constant TensorTuple sharing the arrays."""
        return TensorTuple.make_const(self.realize_cached_data())

    @property
    def device(self):
        data = self.realize_cached_data()
        if _NUMPY_MODE or not data:
            return cpu() if _NUMPY_MODE else default_device()
        return data[0].device


# The graph algorithms (topological sort, the reverse pass, gradient storage) live in
# autograd_graph; imported after the classes they use, before the ops that use these names.
from .autograd_graph import (  # noqa: E402
    _DERIVED, _differentiable, _GradSource, _HookHandle, _run_backward, _store_grad,
    compute_gradient_of_variables, find_topo_sort, queue_backward_end_callback)

# Imported last: the op modules subclass TensorOp / TensorTupleOp defined above.
from .ops import ops_mathematic as _om  # noqa: E402
from .ops import ops_tuple as _ot  # noqa: E402
