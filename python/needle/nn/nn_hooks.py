"""Module plumbing kept out of nn_basic: forward-hook tables and their handles, what
`Module.load_state_dict` returns or raises, and the index check of the list containers."""
import numpy as np

__all__ = ["IncompatibleKeys", "RemovableHandle", "StateDictKeyError"]


class _Hooks:
    """Hook callables by id. Deliberately not a dict: the attribute walk must not enter it (a
    hook may be a Module)."""

    def __init__(self):
        self.by_id = {}


class RemovableHandle:
    """Returned by `register_forward_hook` / `register_forward_pre_hook`; `.remove()` detaches
    the hook (idempotent). Usable as a context manager."""

    _next_id = 0

    def __init__(self, hooks: _Hooks):
        self._hooks = hooks
        self.id = RemovableHandle._next_id
        RemovableHandle._next_id += 1

    def remove(self) -> None:
        self._hooks.by_id.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class IncompatibleKeys:
    """What `load_state_dict` returns: lists `missing_keys` and `unexpected_keys` (torch's
    named tuple; unpacks as (missing, unexpected))."""

    def __init__(self, missing_keys, unexpected_keys):
        self.missing_keys = list(missing_keys)
        self.unexpected_keys = list(unexpected_keys)

    def __iter__(self):
        return iter((self.missing_keys, self.unexpected_keys))

    def __repr__(self):
        return (f"IncompatibleKeys(missing_keys={self.missing_keys}, "
                f"unexpected_keys={self.unexpected_keys})")


class StateDictKeyError(RuntimeError, KeyError):
    """Missing or unexpected keys in a strict `load_state_dict` (a RuntimeError, as in torch;
    also a KeyError, which this project raised before)."""

    def __str__(self):
        return str(self.args[0])


def list_index(owner: str, idx, n: int) -> int:
    """`idx` (an int, negative allowed) as a position in a container of `n` modules;
    TypeError / IndexError naming `owner` otherwise."""
    if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)):
        raise TypeError(f"{owner}: index must be an int or a slice, got {type(idx).__name__}")
    if not -n <= idx < n:
        raise IndexError(f"{owner}: index {idx} out of range for {n} modules")
    return int(idx) % n
