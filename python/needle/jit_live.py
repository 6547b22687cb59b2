"""What a jit replay re-reads from Python: live scalars and guards (see docs/jit.md).

A replay runs no Python, so every Python number a backend call received at capture time would
be frozen into the tape. Two ways out, both free in eager mode:

* **Live scalars.** `live(value, getter)` returns `value` unchanged outside a capture; inside
  one it returns a `LiveScalar`: a float that also carries `getter`, a function returning its
  current value. Arithmetic with plain numbers or other live scalars gives live results (their
  getters recompute the same expression), so `-lr` or `1 - lr * wd` stay live. The tape keeps
  the getters, and each replay re-reads them and writes the new values into the calls' args
  (`LiveArgs`). The optimizers pass their hyper-parameters this way.
* **Guards.** `guard(key, getter)` records `getter()` while a jitted function's Python runs
  (its eager call and captures). A capture is replayed only while every guard it recorded
  still returns the same value; otherwise the function is captured again for the new state
  (as torch.compile recompiles on a guard failure). `Module.__call__` guards `training`, the
  optimizers guard their parameter groups and the hyper-parameters that choose code paths.

This module imports nothing from needle: NDArray, nn and optim all use it.
"""
import functools
import operator

__all__ = ["LiveScalar", "live", "capturing_live", "in_jit", "guard", "guard_attr", "collect_guards", "guards_hold",
           "LiveArgs"]

_LIVE = []       # non-empty while a capture runs: live() makes LiveScalars
_COLLECTING = []  # the guard dict of the jitted call now running (eager call or capture)


class LiveScalar(float):
    """A float whose `getter()` gives its current value (at the next replay)."""

    __slots__ = ("getter",)

    def __new__(cls, value, getter):
        out = float.__new__(cls, value)
        out.getter = getter
        return out

    def __repr__(self):
        return f"live({float(self)!r})"

    def __reduce__(self):  # a copy or pickle is a plain number
        return float, (float(self),)

    def _binary(self, other, op, swap=False):
        if isinstance(other, LiveScalar):
            get_b = other.getter
        elif isinstance(other, (int, float)) and not isinstance(other, bool):
            def get_b(b=other):
                return b
        else:
            return NotImplemented
        get_a = self.getter
        a, b = float(self), float(other) if isinstance(other, LiveScalar) else other
        if swap:
            return LiveScalar(op(b, a), lambda: op(get_b(), get_a()))
        return LiveScalar(op(a, b), lambda: op(get_a(), get_b()))

    def __neg__(self):
        get = self.getter
        return LiveScalar(-float(self), lambda: -get())


def _operators(op):
    return (lambda self, other: self._binary(other, op),
            lambda self, other: self._binary(other, op, swap=True))


for _name in ("add", "sub", "mul", "truediv", "pow"):
    setattr(LiveScalar, f"__{_name}__", _operators(getattr(operator, _name))[0])
    setattr(LiveScalar, f"__r{_name}__", _operators(getattr(operator, _name))[1])


def capturing_live():
    """Whether live() makes LiveScalars now (a jit capture is running)."""
    return bool(_LIVE)


def live(value, getter):
    """`value`, or inside a jit capture a LiveScalar that a replay re-reads with `getter()`.

    Args:
        value: the number now (what `getter()` returns).
        getter: a function of no arguments returning the current value, e.g.
            `lambda: group["lr"]`.
    """
    if not _LIVE or isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return LiveScalar(value, getter)


def in_jit():
    """Whether a jitted function's Python is running (its eager call or a capture)."""
    return bool(_COLLECTING)


def guard(key, getter):
    """Record `getter()` as a condition of the capture being made (no-op outside jit).

    Args:
        key: identifies the guard within one call (a second guard with the same key is
            ignored), e.g. ("training", id(module)).
        getter: a function of no arguments; a capture replays only while it returns a value
            equal to the one recorded.
    """
    if _COLLECTING:
        guards = _COLLECTING[-1]
        if key not in guards:
            guards[key] = (getter, getter())


def guard_attr(obj, name):
    """guard() on `obj.<name>` (Module.__call__ guards `training` this way)."""
    if _COLLECTING:
        guard((name, id(obj)), functools.partial(getattr, obj, name))


class collect_guards:
    """Context: collect the guards of one jitted call (its dict: key -> (getter, value));
    with `live=True` (a capture) live() makes LiveScalars too."""

    def __init__(self, live=False):
        self.guards = {}
        self.live = live

    def __enter__(self):
        _COLLECTING.append(self.guards)
        if self.live:
            _LIVE.append(True)
        return self.guards

    def __exit__(self, *exc):
        _COLLECTING.pop()
        if self.live:
            _LIVE.pop()


def guards_hold(guards):
    """Whether every (getter, value) in `guards` (a list) still holds."""
    for getter, value in guards:
        if getter() != value:
            return False
    return True


class LiveArgs:
    """Where a tape's live scalars sit, and how to refresh them before a replay.

    Built from the recorded tape (entries whose args hold LiveScalars, at the same indices as
    the replay tape); `refresh(tape)` re-reads each distinct getter once and rewrites the
    args of the entries that hold one, only when some value changed since the last replay.
    """

    def __init__(self, recorded_args):
        self.getters, self.values, slot_of, self.entries = [], [], {}, []
        for index, args in enumerate(recorded_args):
            subs = []
            for pos, a in enumerate(args):
                if isinstance(a, LiveScalar):
                    slot = slot_of.setdefault(id(a.getter), len(self.getters))
                    if slot == len(self.getters):
                        self.getters.append(a.getter)
                        self.values.append(float(a))  # what the tape holds now
                    subs.append((pos, slot))
            if subs:
                self.entries.append((index, tuple(subs)))

    def __len__(self):
        return len(self.getters)

    def refresh(self, tape):
        """Write the current values into `tape` (a list of (fn, args)) where they changed."""
        values = [g() for g in self.getters]
        if values == self.values:
            return
        self.values = values
        for index, subs in self.entries:
            fn, args = tape[index]
            args = list(args)
            for pos, slot in subs:
                args[pos] = values[slot]
            tape[index] = (fn, tuple(args))


def plain(args):
    """`args` with every LiveScalar turned into a plain float (what a replay tape holds)."""
    return tuple(float(a) if isinstance(a, LiveScalar) else a for a in args)
