"""ndl.jit: capture a function's backend calls once, then replay them without the Python.

For each input signature (shapes, dtypes, devices, requires_grad of the Tensor arguments, the
values of the others, and whether grad mode is on) a jitted function goes through:
  call 1      eager (lazily made state, such as momentum buffers, comes into being);
  calls 2, 3  captured while they run eagerly (jit_capture.Recorder), then compared: a
              different call sequence, scalar or constant raises JitError;
  calls 4...  replayed: the tape of backend calls runs again on the new inputs (a data batch
              read in place, other inputs copied into the program's buffers; _InputSlots),
              with its live scalars (learning rates) re-read.
A capture also records guards (each module's `training`, the optimizer's parameter groups): a
call whose guards no longer hold is captured again for the new state (jit_live.py).
See docs/jit.md for what a replay assumes and which changes invalidate a capture.
"""
import functools
import gc
import sys
import weakref
from collections import OrderedDict

import numpy as np

from .autograd import Tensor, is_grad_enabled
from .backend_ndarray.ndarray import NDArray
from . import jit_graphs
from .jit_capture import Buf, JitError, Recorder, capturing as _capturing, mark_input
from .jit_live import LiveArgs, LiveScalar, collect_guards, guards_hold, plain

__all__ = ["jit", "JitFunction", "JitError"]


def jit(fn=None, *, max_cache=8):
    """Wrap `fn`, a function of Tensors (typically a whole training step), so that its
    backend calls are captured once per input signature and then replayed.

    Args:
        fn: the function. Its Tensor arguments are the inputs (top level, positional or
            keyword); any other argument must be hashable and is part of the signature.
            It returns None, a Tensor, or a tuple/list of them.
        max_cache: how many signatures keep a capture (least recently used dropped).
    Returns:
        A `JitFunction`; its results are fresh constant Tensors (no graph).

    Example:
        @ndl.jit
        def step(x, y):
            opt.reset_grad()
            loss = ndl.ops.softmax_cross_entropy(model(x), y)
            loss.backward(create_graph=False)
            opt.step()
            return loss
    """
    if fn is None:
        return lambda f: JitFunction(f, max_cache)
    return JitFunction(fn, max_cache)


class JitFunction:
    """A function with a cache of captured backend-call tapes, one per input signature and
    guarded state (train/eval, parameter groups...); `recaptures` counts the calls whose guards
    matched no capture (each ran eagerly)."""

    def __init__(self, fn, max_cache=8):
        if not callable(fn):
            raise TypeError(f"jit: expected a function, got {type(fn).__name__}")
        if max_cache < 1:
            raise ValueError(f"jit: max_cache must be >= 1, got {max_cache}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.max_cache = max_cache
        self._cache = OrderedDict()  # signature -> [_Signature], one per guarded state
        self.recaptures = 0  # calls whose guards matched no capture: run eagerly (docs/jit.md)

    def __call__(self, *args, **kwargs):
        if _capturing():  # a replay inside a capture would bypass its recording
            raise JitError("jit: a jitted function was called while another one was being "
                           "captured; nest plain functions inside one jitted step instead")
        sig, tensors = _signature(args, kwargs)
        variants = self._cache.get(sig)
        if variants is None:
            variants = self._cache[sig] = []
            if len(self._cache) > self.max_cache:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(sig)
        entry = self._variant(variants)
        if entry.program is not None:
            return entry.program.replay(tensors)
        try:
            result = entry.advance(self.fn, args, kwargs, tensors)
        except JitError:
            variants.remove(entry)
            raise
        if entry.calls == 1 and any(v.program is not None and v.recorded() == entry.recorded()
                                    for v in variants):
            variants.remove(entry)  # the step itself restored a captured state (model.train())
        return result

    def _variant(self, variants):
        """The signature's capture whose guards hold now (most recent first), else a new one
        (torch.compile recompiles on a guard failure the same way)."""
        for entry in variants:
            if guards_hold(entry.guards):
                if entry is not variants[0]:
                    variants.remove(entry)
                    variants.insert(0, entry)
                return entry
        if variants:
            self.recaptures += 1
        variants.insert(0, _Signature())
        del variants[self.max_cache:]
        return variants[0]

    def reset(self):
        """Drop every capture: the next calls run eagerly and capture again. Needed after
        changing state that no guard watches (docs/jit.md), e.g. `model.load_state_dict`."""
        self._cache.clear()

    def replaying(self, *args, **kwargs):
        """Whether a call with these arguments would replay a capture."""
        return self._program_for(args, kwargs) is not None

    def graph_info(self, *args, **kwargs):
        """How the replay of a call with these arguments uses CUDA graphs (docs/jit.md): None
        if it does not replay or runs no graphs (CPU, NEEDLE_JIT_GRAPHS=0), else a dict:
        captured (after the first replay), graphs, nodes, plain_calls and fallbacks (why each
        plain call could not be captured)."""
        program = self._program_for(args, kwargs)
        return None if program is None or program.graphs is None else program.graphs.info()

    def _program_for(self, args, kwargs):
        """The program a call with these arguments would replay, or None (it would not)."""
        for entry in self._cache.get(_signature(args, kwargs)[0], ()):
            if guards_hold(entry.guards):
                return entry.program
        return None


def _signature(args, kwargs):
    parts, tensors = [], []
    for key, a in list(enumerate(args)) + sorted(kwargs.items()):
        if isinstance(a, Tensor):
            data = a.realize_cached_data()
            if not isinstance(data, NDArray):
                raise JitError("jit: needs NDArray mode (NEEDLE_BACKEND=nd); numpy mode has no "
                               "backend calls to capture")
            parts.append((key, "tensor", data.shape, a.dtype, data.device.name,
                          bool(a.requires_grad)))
            tensors.append(a)
        else:
            try:
                hash(a)
            except TypeError:
                raise TypeError(f"jit: argument {key!r} is a {type(a).__name__}, neither a Tensor "
                                f"nor hashable; pass Tensors, or hashable settings") from None
            parts.append((key, "value", type(a), a))
    parts.append(("grad", is_grad_enabled()))
    return tuple(parts), tensors


def _host_copy(t):
    """Tensor t's host copy (Tensor.from_host) if it still matches its data, else None."""
    host = t._host_copy
    return host[1] if host is not None and host[0] is t.realize_cached_data() else None


def _host_of(t):
    """The numpy values of Tensor t: its host copy when it has one, else read."""
    host = _host_copy(t)
    return host if host is not None else t.realize_cached_data().numpy()


def _flatten(result, out):
    if result is None:
        return None
    if isinstance(result, Tensor):
        out.append(result.realize_cached_data())
        return "tensor"
    if isinstance(result, (tuple, list)):
        return type(result), [_flatten(r, out) for r in result]
    raise JitError(f"jit: the function returned a {type(result).__name__}; a replay can only "
                   f"return Tensors (None, a Tensor, or a tuple/list of them)")


def _unflatten(tree, leaves):
    if tree is None:
        return None
    if tree == "tensor":
        return next(leaves)
    kind, items = tree
    return kind(_unflatten(t, leaves) for t in items)


def _copy_out(dev, handle, shape, strides, offset):
    # A fresh array per call: a result kept by the caller is not overwritten by the next replay.
    out = NDArray.make(shape, device=dev)
    dev.compact(handle, out._handle, shape, strides, offset)
    return Tensor.make_const(out)


class _Signature:
    """The state of one input signature: eager call, two captures, then a replay program."""

    def __init__(self):
        self.calls = 0
        self.first = None    # capture 1: (Recorder, {alloc index: weak ref} of what it left)
        self.program = None
        self.guards = []     # [(getter, value)] recorded by the last call (jit_live.guard)
        self.keys = ()       # the guards' keys, in the same order

    def recorded(self):
        """{guard key: value recorded}."""
        return dict(zip(self.keys, (value for _, value in self.guards)))

    def advance(self, fn, args, kwargs, tensors):
        self.calls += 1
        if self.calls == 1:
            with collect_guards() as guards:
                result = fn(*args, **kwargs)
            self.keys, self.guards = tuple(guards), list(guards.values())
            return result
        arrays, in_place = _capture_arrays(tensors)
        prev = None
        if self.first is not None:
            prev = {id(ref()): (i, ref) for i, ref in self.first[1].items()
                    if ref() is not None}
        rec = Recorder([a._handle for a in arrays], [a.shape for a in arrays], prev)
        jit_tensors = []
        for k, (t, arr) in enumerate(zip(tensors, arrays)):
            jt = Tensor.make_const(arr, requires_grad=t.requires_grad)
            host = _host_copy(t)
            if host is not None:  # Tensor.numpy() returns it, marked as input k's values
                rec.input_host[k] = host
                jt._host_copy = (arr, mark_input(host, k))
            jit_tensors.append(jt)
        it = iter(jit_tensors)
        jit_args = [next(it) if isinstance(a, Tensor) else a for a in args]
        jit_kwargs = {key: (next(it) if isinstance(a, Tensor) else a)
                      for key, a in sorted(kwargs.items())}
        rec.install()
        try:
            with collect_guards(live=True) as guards:
                result = fn(*jit_args, **jit_kwargs)
        finally:
            rec.uninstall()
        self.keys, self.guards = tuple(guards), list(guards.values())
        outs = []
        tree = _flatten(result, outs)
        del result, jit_tensors, jit_args, jit_kwargs, it
        gc.collect()  # graph cycles (create_graph=True) would keep temporaries looking alive
        alive = rec.alive()
        results = [_copy_out(a.device, a._handle, a.shape, a.strides, a._offset) for a in outs]
        if self.first is None:
            del arrays
            # weak references: what capture 1 leaves behind (its gradients, results) may be
            # freed during capture 2, as in eager mode
            self.first = (rec, {i: weakref.ref(h) for i, h in alive.items()})
            del alive, outs
        else:
            _verify(self.first[0], rec)
            self.program = _Program(arrays, in_place, self.first[1], rec, alive, outs, tree)
            self.first[0].release()
            rec.release()
            self.first = None
        return _unflatten(tree, iter(results))


def _capture_arrays(tensors):
    """The arrays a capture reads its inputs from: a data batch's own array (no gradient,
    compact, not passed twice), so that capturing holds no copy of it and peaks no higher than
    an eager step; else a copy. A replay copies every input into the program's own buffers."""
    datas = [t.realize_cached_data() for t in tensors]
    distinct = len({id(d._handle) for d in datas}) == len(datas)
    arrays, in_place = [], []
    for t, data in zip(tensors, datas):
        in_place.append(distinct and not t.requires_grad and data.is_compact())
        if in_place[-1]:
            arrays.append(data)
        else:
            arr = NDArray.make(t.shape, device=t.device)
            _load_inputs([arr], [t])
            arrays.append(arr)
    return arrays, in_place


class _InputSlots:
    """Where a replay tape reads its inputs. A data batch read in place by the captures (see
    _capture_arrays) is read in place by every replay too: its buffer is written into the
    tape's argument slots, no copy (an eager step's memory). Other inputs, and every input of
    a program with CUDA graphs (a graph keeps the pointers it was captured with), are copied
    into a buffer of the program's own at each replay."""

    def __init__(self, tape, arrays, in_place, outs):
        handles = [a._handle for a in arrays]
        self.slots = [[(i, j) for i, (_, args) in enumerate(tape) for j, a in enumerate(args)
                       if a is h] for h in handles]
        self.current = handles  # the buffer each input's slots hold now
        # an output that is an input buffer would be a copy of a stale batch: copy instead
        self.in_place = [ok and not any(o[1] is h for o in outs)
                         for ok, h in zip(in_place, handles)]
        self.own = [None] * len(handles)
        self.shapes = [(a.shape, a.device) for a in arrays]

    def copy_always(self, tape):
        """Own buffers for every input from now on (before CUDA graphs are planned)."""
        self.in_place = [False] * len(self.in_place)
        for k in range(len(self.shapes)):
            self._point(tape, k, self._own(k)._handle)

    def load(self, tape, tensors):
        """Point the tape at this call's inputs (in place) or copy them into own buffers."""
        for k, t in enumerate(tensors):
            data = t.realize_cached_data()
            if self.in_place[k] and data.is_compact():
                handle = data._handle
            else:
                _load_inputs([self._own(k)], [t])
                handle = self.own[k]._handle
            if handle is not self.current[k]:
                self._point(tape, k, handle)

    def _own(self, k):
        if self.own[k] is None:
            shape, device = self.shapes[k]
            self.own[k] = NDArray.make(shape, device=device)
        return self.own[k]

    def _point(self, tape, k, handle):
        for i, j in self.slots[k]:
            fn, args = tape[i]
            tape[i] = (fn, args[:j] + (handle,) + args[j + 1:])
        self.current[k] = handle


def _load_inputs(inputs, tensors):
    """Copy each Tensor's data into the jit's input buffer."""
    for arr, t in zip(inputs, tensors):
        data = t.realize_cached_data()
        arr.device.compact(data._handle, arr._handle, data.shape, data.strides, data._offset)


def _describe(entry):
    kind, _dev, name, args = entry[:4]
    shown = ", ".join(f"{a[0]}#{a[1]}" if isinstance(a, Buf) else
                      ("<host data>" if isinstance(a, np.ndarray) else repr(a)) for a in args)
    return f"{name}({shown})" if kind == "call" else f"{kind} {name}({shown})"


def _verify(a, b):
    """Raise JitError unless captures a and b made the same calls with the same constants
    (b may read, as state, buffers that a allocated where a read older ones)."""
    hint = ("its Python control flow or numbers depend on more than the input signature (data "
            "read on the host, a step counter, a Python-side random choice); make the step "
            "fixed, or call it without ndl.jit")
    for pos, (ea, eb) in enumerate(zip(a.tape, b.tape)):
        if ea[0] != eb[0] or ea[2] != eb[2] or len(ea[3]) != len(eb[3]):
            raise JitError(f"jit: the backend call sequence changed between two calls with the "
                           f"same input signature at call #{pos}: {_describe(ea)} then "
                           f"{_describe(eb)}; {hint}")
        for n, (x, y) in enumerate(zip(ea[3], eb[3])):
            if isinstance(x, Buf) or isinstance(y, Buf):
                if not _same_buffer(a, b, x, y):
                    raise JitError(f"jit: call #{pos} ({eb[2]}) used a different buffer as "
                                   f"argument {n} on two calls with the same input signature "
                                   f"({x[0]}#{x[1]} then {y[0]}#{y[1]}); {hint}")
            elif isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
                if not np.array_equal(x, y):
                    raise JitError(f"jit: call #{pos} uploads host data (from_numpy) that changed "
                                   f"between two calls with the same input signature; {hint}")
            elif isinstance(x, LiveScalar) or isinstance(y, LiveScalar):
                _check_live(pos, n, eb[2], x, y)
            elif x != y:
                raise JitError(f"jit: argument {n} of call #{pos} ({eb[2]}) changed from {x!r} "
                               f"to {y!r} between two calls with the same input signature: a "
                               f"Python value would be frozen into the capture; {hint}")
    if len(a.tape) != len(b.tape):
        pos = min(len(a.tape), len(b.tape))
        raise JitError(f"jit: the backend call sequence changed between two calls with the same "
                       f"input signature: {len(a.tape)} calls then {len(b.tape)} (they agree "
                       f"up to call #{pos}); {hint}")
    if [s for _, s in a.alloc_sizes] != [s for _, s in b.alloc_sizes]:
        raise JitError(f"jit: the buffers allocated changed between two calls with the same "
                       f"input signature; {hint}")


def _check_live(pos, n, name, x, y):
    """A live scalar (jit_live.live) may change value between captures, not stop being live."""
    if not (isinstance(x, LiveScalar) and isinstance(y, LiveScalar)):
        raise JitError(f"jit: argument {n} of call #{pos} ({name}) was a live scalar in one "
                       f"capture and a plain number ({x!r}, {y!r}) in the other")


def _same_buffer(a, b, x, y):
    if not (isinstance(x, Buf) and isinstance(y, Buf)):
        return False
    if x[0] == "old" and y[0] == "old":
        return a.old[x[1]] is b.old[y[1]]
    if x[0] == "old" and y[0] == "prev":  # state: b reads what a (or an eager call) wrote
        return True
    return x == y


class _Program:
    """A replayable tape: backend calls with their buffers resolved and temporaries planned."""

    def __init__(self, inputs, in_place, first_alive, rec, alive, outs, tree):
        self.tree = tree
        self.host = {}
        temps = _plan_temporaries(rec, alive)
        distinct = {id(h): h.size for h in temps.values()}
        self.memory = {"temporaries": len(temps), "buffers": len(distinct),
                       "bytes": 4 * sum(distinct.values())}  # planned temporaries only
        self.state_copies = []  # (device, live state buffer, buffer the tape reads it from)
        reads = {}

        def resolve(tok):
            kind, i = tok
            if kind == "in":
                return inputs[i]._handle
            if kind == "new":
                return alive[i] if i in alive else temps[i]
            if kind == "old":
                return rec.old[i]
            live = alive.get(i)  # "prev": capture 1's buffer i; capture 2's buffer i is live
            if live is None:
                raise JitError(f"jit: the step reads a buffer made by the previous call (#{i}) "
                               f"that this call does not remake as state; a replay could not "
                               f"feed it the latest value")
            if i not in reads:  # capture 1's buffer, or a new one if it was freed since
                dev = rec.alloc_sizes[i][0]
                reads[i] = first_alive[i]() or dev.Array(live.size)
                self.state_copies.append((dev, live, reads[i]))
            return reads[i]

        def res(args):
            return plain(resolve(a) if isinstance(a, Buf) else a for a in args)

        self.tape = []
        for kind, dev, name, args, fn in rec.tape:
            if kind == "call":
                self.tape.append((fn, res(args)))
            elif kind == "upload":
                self.tape.append((fn, res(args)))
            elif kind == "upload_input":
                k, shape, tok = args
                self.host[k] = None
                self.tape.append((_upload_input, (fn, self.host, k, shape, resolve(tok))))
            elif kind in ("rand", "randn"):
                shape, _, tok = args
                self.tape.append((_draw, (dev, getattr(np.random, kind), shape, resolve(tok))))
            elif kind == "host":
                self.tape.append((_host_op, (dev,) + args[:2] + tuple(map(resolve, args[2:]))))
            else:  # one_hot
                n, shape, k, tok = args
                self.host[k] = None
                self.tape.append((_one_hot, (dev, self.host, n, k, shape, resolve(tok))))
        # live scalars (learning rates...): re-read before each replay; entries of rec.tape
        # and self.tape correspond one to one
        self.live = LiveArgs([entry[3] for entry in rec.tape])
        self.outs = [(a.device, resolve(rec.token(a._handle)), a.shape, a.strides, a._offset)
                     for a in outs]
        self.inputs = _InputSlots(self.tape, inputs, in_place, self.outs)
        kinds = [entry[:2] for entry in rec.tape]
        if jit_graphs.applies(kinds):
            self.inputs.copy_always(self.tape)
        # CUDA graphs of the runs of calls (jit_graphs; None: plain replay, as on the CPU)
        # (calls taking a live scalar stay out of the graphs: a graph freezes its arguments)
        self.graphs = jit_graphs.plan(self.tape, kinds,
                                      {index for index, _ in self.live.entries})
        self.state_copies = [(dev, live, read, (live.size,)) for dev, live, read in
                             self.state_copies]
        # References this program holds to each live state buffer; a replay finding no more
        # than these means Python has moved that state to another buffer since (see replay).
        for pos, (dev, live, read, shape) in enumerate(self.state_copies):
            held = 1 + sum(a is live for _, args in self.tape for a in args)
            held += sum(o[1] is live for o in self.outs)
            self.state_copies[pos] = (dev, live, read, shape, held)

    def replay(self, tensors):
        self.inputs.load(self.tape, tensors)
        for k in self.host:
            self.host[k] = _host_of(tensors[k])
        for dev, live, read, shape, held in self.state_copies:
            if sys.getrefcount(live) <= held + 2:  # + this loop's variable and the argument
                raise JitError(
                    "jit: state that this capture replaces (a buffer the step rebinds, e.g. "
                    "`p.data = ...`) was rebound elsewhere since its last replay (another input "
                    "signature's capture or eager call, or code outside the step); the replay "
                    "would read a stale value. Update such state in place, or call reset()")
            dev.compact(live, read, shape, (1,), 0)
        if self.live:
            self.live.refresh(self.tape)
        if self.graphs is not None:
            self.graphs.run()
        else:
            for fn, args in self.tape:
                fn(*args)
        return _unflatten(self.tree, iter([_copy_out(*o) for o in self.outs]))



# Tape entries other than backend calls (module functions, not bound methods: the tape holds
# no reference back to its program). `host` maps input k to its host values for this replay.
def _upload_input(fn, host, k, shape, handle):
    fn(np.ascontiguousarray(np.reshape(host[k], shape), dtype=np.float32), handle)


def _one_hot(dev, host, n, k, shape, handle):
    values = np.reshape(host[k], shape)
    labels = values.astype(np.int64)
    if np.any(labels != values):
        raise ValueError(f"jit: input {k} holds non-integer labels for one_hot")
    arr = dev.one_hot(n, labels)
    dev.compact(arr._handle, handle, (arr.size,), (1,), 0)


def _host_op(dev, fn, layout, *handles):
    # jit_capture.host_op again: read the inputs, run fn, write its results into the outputs
    views, shapes = layout
    results = fn(*[dev.to_numpy(h, *view) for h, view in zip(handles, views)])
    for h, shape, r in zip(handles[len(views):], shapes, results):
        dev.from_numpy(np.ascontiguousarray(np.reshape(r, shape), dtype=np.float32), h)


def _draw(dev, draw, shape, handle):
    # The same numpy call eager makes (device.rand / randn): the same numbers, same order.
    dev.from_numpy(np.ascontiguousarray(draw(*shape), dtype=np.float32), handle)


def _plan_temporaries(rec, alive):
    """Buffers for the capture's temporaries: one allocation per lifetime slot, reused by
    later temporaries of the same size once every call using the earlier one has run."""
    first, last = {}, {}
    for pos, entry in enumerate(rec.tape):
        for a in entry[3]:
            if isinstance(a, Buf) and a[0] == "new" and a[1] not in alive:
                first.setdefault(a[1], pos)
                last[a[1]] = pos
    starts, ends = {}, {}
    for i, pos in first.items():
        starts.setdefault(pos, []).append(i)
        ends.setdefault(last[i], []).append(i)
    free, out = {}, {}
    for pos in sorted(set(starts) | set(ends)):
        for i in starts.get(pos, ()):
            dev, size = rec.alloc_sizes[i]
            spare = free.get((dev, size))
            out[i] = spare.pop() if spare else dev.Array(size)
        for i in ends.get(pos, ()):
            free.setdefault(rec.alloc_sizes[i], []).append(out[i])
    return out
