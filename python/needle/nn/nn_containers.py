"""Module containers with torch's names: ModuleList and ModuleDict.

Both keep their children in the attribute `_modules`, which adds no part to parameter names,
so a ModuleList's parameters are named "0.weight", "1.bias", ... as in torch. Neither has a
`forward`: they hold modules for a parent module's `forward` to call.
"""
from collections.abc import Iterable, Mapping
from typing import Optional

from .nn_basic import Module
from .nn_hooks import list_index

__all__ = ["ModuleDict", "ModuleList"]


def _check_module(owner: str, m, where) -> Module:
    if not isinstance(m, Module):
        raise TypeError(f"{owner}: {where} is a {type(m).__name__}, not a Module")
    return m


class ModuleList(Module):
    """A list of modules whose parameters the parent module collects.

    Supports `len`, iteration, `ml[i]`, `ml[a:b]` (a new ModuleList), `ml[i] = m`, `append`,
    `extend` and `insert`.

    Example:
        >>> blocks = nn.ModuleList([nn.Linear(8, 8) for _ in range(3)])
        >>> for block in blocks: x = block(x)
    """

    def __init__(self, modules: Optional[Iterable] = None):
        super().__init__()
        self._modules = []
        if modules is not None:
            self.extend(modules)

    def _index(self, idx) -> int:
        return list_index("ModuleList", idx, len(self._modules))

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return ModuleList(self._modules[idx])
        return self._modules[self._index(idx)]

    def __setitem__(self, idx, module) -> None:
        self._modules[self._index(idx)] = _check_module("ModuleList", module, "the new item")

    def __delitem__(self, idx) -> None:
        if isinstance(idx, slice):
            del self._modules[idx]
        else:
            del self._modules[self._index(idx)]

    def append(self, module) -> "ModuleList":
        """Add `module` at the end; returns self."""
        self._modules.append(_check_module("ModuleList", module, "the appended item"))
        return self

    def extend(self, modules: Iterable) -> "ModuleList":
        """Append every module of `modules`; returns self."""
        if isinstance(modules, Module) or not isinstance(modules, Iterable):
            raise TypeError(f"ModuleList.extend: expected an iterable of Modules, got "
                            f"{type(modules).__name__}")
        for i, m in enumerate(modules):
            self._modules.append(_check_module("ModuleList", m, f"item {i}"))
        return self

    def insert(self, index: int, module) -> None:
        """Insert `module` before position `index`."""
        self._modules.insert(index, _check_module("ModuleList", module, "the inserted item"))

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList has no forward: iterate over it in the parent's "
                                  "forward")


class ModuleDict(Module):
    """An ordered dict of name -> module whose parameters the parent module collects.

    Keys are strings (they become parameter-name parts: `md["fc"].weight` is "fc.weight").
    Supports `len`, iteration over keys, `in`, `md[key]`, `md[key] = m`, `del`, `keys()`,
    `values()`, `items()`, `update()` and `pop()`.
    """

    def __init__(self, modules: Optional[Mapping] = None):
        super().__init__()
        self._modules = {}
        if modules is not None:
            self.update(modules)

    @staticmethod
    def _key(key) -> str:
        if not isinstance(key, str):
            raise TypeError(f"ModuleDict: keys must be str, got {type(key).__name__}")
        if not key or "." in key:
            raise ValueError(f"ModuleDict: key {key!r} must be non-empty and contain no '.'")
        return key

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key) -> bool:
        return key in self._modules

    def __getitem__(self, key) -> Module:
        if key not in self._modules:
            raise KeyError(f"ModuleDict: no module named {key!r}")
        return self._modules[key]

    def __setitem__(self, key, module) -> None:
        self._modules[self._key(key)] = _check_module("ModuleDict", module, f"value of {key!r}")

    def __delitem__(self, key) -> None:
        self.pop(key)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def pop(self, key) -> Module:
        """Remove and return the module under `key`."""
        if key not in self._modules:
            raise KeyError(f"ModuleDict.pop: no module named {key!r}")
        return self._modules.pop(key)

    def update(self, modules) -> None:
        """Add (name, module) pairs from a mapping or an iterable of pairs."""
        pairs = modules.items() if isinstance(modules, Mapping) else modules
        for pair in pairs:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"ModuleDict.update: expected (name, module) pairs, got {pair!r}")
            self[pair[0]] = pair[1]

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleDict has no forward: look modules up in the parent's "
                                  "forward")
