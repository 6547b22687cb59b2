"""Recording a function's backend calls (used by needle.jit; see docs/jit.md).

While a `Recorder` is installed, every function of each device's backend table (the flat
function table of docs/backends.md, which a `BackendDevice` binds into its instance dict) is
replaced by a wrapper that appends the call to a tape, then runs it. Uninstalling puts the
original functions back, so eager code pays nothing when no capture is running.

A tape entry is (kind, device, name, args) with every buffer argument replaced by a token:
    ("in", k)   the jit's own buffer for input k
    ("new", i)  the i-th buffer allocated during this capture
    ("old", j)  the j-th buffer that existed before it (parameters, optimizer state)
    ("prev", i) the i-th buffer allocated by the previous capture that is still alive
Buffers allocated during the capture are tracked by weak reference, so the capture frees
temporaries as eagerly as plain eager code does; those still alive at its end are state.

Kinds: "call" (a backend function), "upload" (host data that did not come from an input:
a constant), "rand" / "randn" (a draw from the global numpy RNG, redrawn on every replay),
"one_hot" (from the labels of input k, recomputed from the new input on every replay),
"host" (`host_op`: a Python function of some arrays' host values, run again on every replay,
e.g. DDP's gradient all-reduce).
"""
import weakref

import numpy as np

from .backend_ndarray import device as _device_mod
from .backend_ndarray.ndarray import NDArray

__all__ = ["JitError", "InputHost", "Buf", "Recorder", "capturing", "mark_input", "host_op"]


class JitError(RuntimeError):
    """A function cannot be captured, or its capture cannot be replayed faithfully."""


class InputHost(np.ndarray):
    """A host copy of jit input `k`: numpy views and casts of it keep the mark, so a one_hot
    built from it (a loss reading its labels) is recomputed from each new input."""

    jit_input = None

    def __array_finalize__(self, obj):
        self.jit_input = getattr(obj, "jit_input", None)


class Buf(tuple):
    """A buffer token in a tape entry: (kind, index), told apart from shape tuples."""

    __slots__ = ()


def mark_input(host, k):
    out = np.asarray(host).view(InputHost)
    out.jit_input = k
    return out


# Device methods that build arrays from host data: wrapped as single tape entries.
_SOURCES = ("rand", "randn", "one_hot")

_ACTIVE = []  # the installed Recorder, if any


def capturing():
    """Whether a Recorder is installed."""
    return bool(_ACTIVE)


def host_op(fn, inputs, outputs):
    """Run `fn` on the host values of `inputs` and write its results into `outputs`; under an
    ndl.jit capture, recorded as one tape entry that every replay runs again (the only Python
    a replay runs, e.g. an MPI all-reduce of gradients).

    Args:
        fn: fn(*arrays) -> a sequence of numpy arrays, one per output (same sizes); it must
            be the same function (or an equal bound method) on every call.
        inputs: NDArrays read to the host (any strides), in order.
        outputs: compact float32 NDArrays written in place.
    """
    for out in outputs:
        if not out.is_compact():
            raise ValueError(f"host_op: outputs must be compact, got shape {out.shape} with "
                             f"strides {out.strides}")
    if _ACTIVE:
        return _ACTIVE[-1].host_op(fn, inputs, outputs)
    _write_host(fn(*[a.numpy() for a in inputs]), outputs,
                lambda out, data: out.device.from_numpy(data, out._handle))


def _write_host(results, outputs, write):
    results = list(results)
    if len(results) != len(outputs):
        raise ValueError(f"host_op: the function returned {len(results)} arrays for "
                         f"{len(outputs)} outputs")
    for out, r in zip(outputs, results):
        if np.size(r) != out.size:
            raise ValueError(f"host_op: a result of {np.size(r)} values for an output of shape "
                             f"{out.shape}")
        write(out, np.ascontiguousarray(np.reshape(r, out.shape), dtype=np.float32))


class Recorder:
    """Records the backend calls made between `install()` and `uninstall()`.

    Args:
        inputs: the jit's input buffers (handles), in order; input_shapes: their shapes.
        prev: {id(handle): (alloc index, weak reference)} of the previous capture's live
            buffers.
    """

    def __init__(self, inputs, input_shapes, prev=None):
        self.tape = []
        self.input_shapes = list(input_shapes)
        self.alloc_sizes = []   # (device, size) per buffer allocated during the capture
        self.alloc_refs = []    # weak references to them
        self.old = []           # buffers that existed before the capture (strong references)
        self.prev = prev or {}
        self.ids = {id(h): Buf(("in", k)) for k, h in enumerate(inputs)}
        self.inputs = list(inputs)
        self.input_host = {}    # k -> host values of input k (its host copy, or read lazily)
        self.depth = 0          # > 0 inside a source method: its inner calls are not recorded
        self.devices = []

    # ------------------------------------------------------------ install / uninstall
    def install(self):
        if _ACTIVE:
            raise JitError("jit: a jitted function was called while another one was being "
                           "captured; nest plain functions inside one jitted step instead")
        devices = [d for d in _device_mod._DEVICES.values() if d.enabled()]
        self.array_types = tuple({d.mod.Array for d in devices})
        for dev in devices:
            saved = {name: dev.__dict__[name] for name in dev.__dict__
                     if name not in ("name", "mod") and callable(dev.__dict__[name])}
            self.devices.append((dev, saved))
            for name, fn in saved.items():
                dev.__dict__[name] = self._wrapper(dev, name, fn)
            for name in _SOURCES:
                dev.__dict__[name] = self._source(dev, name, getattr(type(dev), name))
        _ACTIVE.append(self)

    def uninstall(self):
        for dev, saved in self.devices:
            dev.__dict__.update(saved)
            for name in _SOURCES:
                dev.__dict__.pop(name, None)
        self.devices = []
        if _ACTIVE and _ACTIVE[-1] is self:
            _ACTIVE.pop()

    # ------------------------------------------------------------ tokens
    def token(self, handle):
        tok = self.ids.get(id(handle))
        if tok is None:
            hit = self.prev.get(id(handle))
            if hit is not None and hit[1]() is handle:
                tok = Buf(("prev", hit[0]))
            else:
                tok = Buf(("old", len(self.old)))
                self.old.append(handle)
            self.ids[id(handle)] = tok
        return tok

    def _tokens(self, args):
        types = self.array_types
        return tuple(self.token(a) if isinstance(a, types) else a for a in args)

    def _forget(self, key):
        def callback(_ref):
            self.ids.pop(key, None)
        return callback

    # ------------------------------------------------------------ wrappers
    def _wrapper(self, dev, name, fn):
        if name == "Array":
            def alloc(size):
                handle = fn(size)
                tok = Buf(("new", len(self.alloc_sizes)))
                self.alloc_sizes.append((dev, int(size)))
                self.alloc_refs.append(weakref.ref(handle, self._forget(id(handle))))
                self.ids[id(handle)] = tok
                return handle
            return alloc
        if name == "to_numpy":
            def to_numpy(handle, shape, strides, offset):
                return self._read_to_host(fn, handle, shape, strides, offset)
            return to_numpy
        if name == "from_numpy":
            def from_numpy(data, handle):
                if not self.depth:
                    self._record_upload(dev, fn, data, handle)
                return fn(data, handle)
            return from_numpy

        def call(*args):
            if not self.depth:
                self.tape.append(("call", dev, name, self._tokens(args), fn))
            return fn(*args)
        return call

    def _source(self, dev, name, method):
        def source(*args, **kwargs):
            if name == "one_hot":
                n, idx = args[0], args[1]
                if isinstance(idx, NDArray):
                    idx = idx.numpy()  # an input's labels come back marked; else an error
                k = getattr(idx, "jit_input", None)
                if k is None:  # the mark is lost by np.asarray: match the values instead
                    k = self._input_with_values(idx)
                if k is None:  # constant labels: recorded as an upload of the result
                    return method(dev, n, np.asarray(idx), *args[2:], **kwargs)
                self._check_derived(k, idx, "one_hot")
                args = (n, np.asarray(idx)) + tuple(args[2:])
                extra = (int(n), tuple(np.shape(idx)))
            else:
                extra = (tuple(int(s) for s in args),)
            self.depth += 1
            try:
                out = method(dev, *args, **kwargs)
            finally:
                self.depth -= 1
            key = k if name == "one_hot" else None
            self.tape.append((name, dev, name, extra + (key, self.token(out._handle)), None))
            return out
        return source

    def _read_to_host(self, fn, handle, shape, strides, offset):
        tok = self.ids.get(id(handle))
        data = fn(handle, shape, strides, offset)
        if tok is not None and tok[0] == "in" and offset == 0 and tuple(shape) == \
                tuple(self.input_shapes[tok[1]]) and np.prod(shape) == handle.size:
            if tuple(strides) == tuple(_compact(shape)):
                return mark_input(data, tok[1])
        raise JitError(
            "jit: the function reads a device array to the host (NDArray.numpy / Tensor.numpy, "
            "or a Python `if`/`float()` on tensor data) while it is being captured; a replay "
            "runs no Python, so that value would be frozen. Move the read out of the jitted "
            "function (only an input's own values, e.g. labels for a loss, may be read)")

    def _record_upload(self, dev, fn, data, handle):
        k = getattr(data, "jit_input", None)
        tok = self.token(handle)
        if k is not None:
            self._check_derived(k, data, "upload")
            self.tape.append(("upload_input", dev, "from_numpy",
                              (k, tuple(np.shape(data)), tok), fn))
        else:
            self.tape.append(("upload", dev, "from_numpy", (np.array(data, copy=True), tok), fn))

    def host_op(self, fn, inputs, outputs):
        """host_op under this capture: run with the original (unrecorded) device functions and
        recorded as one "host" entry: (fn, (input views, output shapes), *buffer tokens)."""
        dev = (inputs or outputs)[0].device
        original = dict(self.devices)[dev]
        values = [original["to_numpy"](a._handle, a.shape, a.strides, a._offset) for a in inputs]
        _write_host(fn(*values), outputs,
                    lambda out, data: original["from_numpy"](data, out._handle))
        views = tuple((a.shape, a.strides, a._offset) for a in inputs)
        tokens = tuple(self.token(a._handle) for a in list(inputs) + list(outputs))
        self.tape.append(("host", dev, getattr(fn, "__name__", "host_op"),
                          (fn, (views, tuple(a.shape for a in outputs))) + tokens, None))

    def host(self, k):
        """The values of input k on the host: its host copy, else read once (only a loss's
        labels are needed, so an image batch is not copied to the host for nothing)."""
        if k not in self.input_host:
            handle, shape = self.inputs[k], self.input_shapes[k]
            dev = next(d for d, _ in self.devices if isinstance(handle, d.mod.Array))
            read = dict(self.devices)[dev]["to_numpy"]  # the original, not the recording hook
            self.input_host[k] = read(handle, shape, _compact(shape), 0)
        return np.asarray(self.input_host[k])

    def _input_with_values(self, value):
        """The first input whose host values, reshaped and cast, are `value` (or None);
        comparing the two captures catches a constant that only happened to match."""
        value = np.asarray(value)
        for k in range(len(self.inputs)):
            if int(np.prod(self.input_shapes[k])) != value.size:
                continue  # not read: an image batch is never the labels
            host = self.host(k)
            if host.size == value.size and np.array_equal(
                    host.reshape(value.shape).astype(value.dtype), value):
                return k
        return None

    def _check_derived(self, k, value, what):
        """Host data marked as input k must be that input's values, reshaped and cast."""
        host = self.host(k)
        value = np.asarray(value)
        if host.size != value.size or not np.array_equal(
                host.reshape(value.shape).astype(value.dtype), value):
            raise JitError(f"jit: {what} of host data computed from input {k} by more than a "
                           f"reshape or cast; a replay could not recompute it. Do that "
                           f"computation on tensors, or outside the jitted function")

    # ------------------------------------------------------------ after the capture
    def release(self):
        """Drop the recording (its weak-reference callbacks point back here: a cycle)."""
        self.tape, self.alloc_refs, self.old, self.ids, self.prev = [], [], [], {}, {}
        self.input_host = {}

    def alive(self):
        """{alloc index: handle} of the buffers allocated during the capture still alive."""
        out = {}
        for i, ref in enumerate(self.alloc_refs):
            handle = ref()
            if handle is not None:
                out[i] = handle
        return out


def _compact(shape):
    stride, out = 1, []
    for n in reversed(tuple(shape)):
        out.append(stride)
        stride *= n
    return tuple(reversed(out))
