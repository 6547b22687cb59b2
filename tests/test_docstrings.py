"""Every public name has a docstring (the API reference is generated from them)."""
import inspect

import pytest

import needle as ndl
import needle.backend_ndarray as nd
import needle.data
import needle.distributed
import needle.init
import needle.nn
import needle.ops
import needle.optim

MODULES = [ndl.autograd, needle.ops, needle.nn, needle.init, needle.optim, needle.data,
           needle.distributed, nd, ndl.backend_selection]


def _public(module):
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in dir(module) if not n.startswith("_")]
    for name in names:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj):
            yield f"{module.__name__}.{name}", obj


def _undocumented():
    missing = []
    for module in MODULES:
        for name, obj in _public(module):
            if not (obj.__doc__ or "").strip():
                missing.append(name)
    for name, member in vars(ndl.Tensor).items():
        if name.startswith("_") or not (callable(member) or isinstance(member, property)):
            continue
        if not (getattr(member, "__doc__", None) or "").strip():
            missing.append(f"Tensor.{name}")
    return sorted(set(missing))


def test_every_public_name_has_a_docstring():
    missing = _undocumented()
    assert not missing, f"{len(missing)} public names without a docstring: {missing}"
