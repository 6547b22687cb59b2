"""Basic modules: the Module machinery, Linear, activations, SoftmaxLoss, Dropout (the
normalisation modules, BatchNorm1d and LayerNorm1d, are in nn_norm).

Every module is built from `needle.ops` and `needle.init` only. Random draws follow the
RNG-order contract: Linear draws weight then bias; Dropout draws one `rand(*x.shape)` per
training forward; nothing else here draws.
"""
import math
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from .. import init, ops
from ..autograd import Tensor
from ..jit_live import guard_attr
from ..random import resolve_generator
from .nn_hooks import IncompatibleKeys, RemovableHandle, StateDictKeyError, _Hooks, list_index

__all__ = [
    "Dropout",
    "Flatten",
    "Identity",
    "IncompatibleKeys",
    "Linear",
    "Module",
    "Parameter",
    "ReLU",
    "RemovableHandle",
    "Residual",
    "Sequential",
    "Sigmoid",
    "SoftmaxLoss",
    "StateDictKeyError",
    "Tanh",
]


class Parameter(Tensor):
    """A Tensor that `Module.parameters()` collects.

    Unlike a plain Tensor, its `.grad` accumulates across `backward()` calls (as in torch,
    for gradient accumulation) until the optimizer's `reset_grad()` / `zero_grad()` or
    `Module.zero_grad()` sets it to None.
    """

    _accumulate_grad = True


# ---------------------------------------------------------------------------------------------
# The attribute walk shared by parameters(), train()/eval(), state_dict() and __repr__.


def _walk(value, prefix, ancestors):
    """Yield (dotted_name, kind, obj) for everything reachable from `value`.

    kind is "module", "param" or "buffer". Modules are entered, as are lists, tuples and dicts
    (dict keys become name parts). `ancestors` guards against a module that refers back to one
    of its parents.
    """
    if isinstance(value, Parameter):
        yield prefix, "param", value
    elif isinstance(value, Module):
        if any(value is a for a in ancestors):
            return
        yield prefix, "module", value
        buffers = value.__dict__.get("_buffer_names", ())
        inner = ancestors + (value,)
        for key, item in value.__dict__.items():
            name = f"{prefix}.{key}" if prefix else key
            if key == _CONTAINER_ATTR:  # ModuleList / ModuleDict: children named "0", "fc"
                name = prefix
            if key in buffers and isinstance(item, Tensor) and not isinstance(item, Parameter):
                yield name, "buffer", item
            else:
                yield from _walk(item, name, inner)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{prefix}.{key}" if prefix else str(key), ancestors)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _walk(item, f"{prefix}.{i}" if prefix else str(i), ancestors)


# The attribute of ModuleList / ModuleDict holding their children; it adds no name part.
_CONTAINER_ATTR = "_modules"


def _join(name, key):
    return f"{name}.{key}" if name else str(key)


def _direct_children(module) -> list[tuple[str, "Module"]]:
    """(name, module) for the modules one level below `module` (through containers)."""
    out = []

    def visit(value, name):
        if isinstance(value, Module):
            out.append((name, value))
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(item, _join(name, key))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(item, _join(name, i))

    for key, item in module.__dict__.items():
        if item is not module:
            visit(item, "" if key == _CONTAINER_ATTR else key)
    return out


def _to_numpy(value) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.numpy()
    return np.asarray(value)


class Module:
    """Base class of all layers.

    Subclasses set attributes in `__init__` (after `super().__init__()`) and implement
    `forward`. Parameters are found by walking the attributes in insertion order, descending
    into modules, lists, tuples and dicts. Non-parameter state that belongs in `state_dict`
    (running statistics) is declared with `register_buffer`.
    """

    def __init__(self):
        self.training = True

    # -- structure ------------------------------------------------------------------------
    def register_buffer(self, name: str, tensor: Tensor) -> None:
        """Store `tensor` as attribute `name` and include it in `state_dict()` (not a parameter)."""
        if "_buffer_names" not in self.__dict__:
            self._buffer_names = []
        if name not in self._buffer_names:
            self._buffer_names.append(name)
        setattr(self, name, tensor)

    def parameters(self) -> list[Parameter]:
        """All Parameters reachable from this module, in attribute insertion order, each once.

        A Parameter reached twice (tied weights: `dec.weight = enc.weight`) is listed at its
        first place only, so an optimizer updates it once per step, as in torch.
        """
        return [obj for _, obj in self.named_parameters()]

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """Yield (dotted name, Parameter), e.g. ("modules.0.weight", W), in parameters() order."""
        seen = set()
        for name, kind, obj in _walk(self, "", ()):
            if kind == "param" and id(obj) not in seen:
                seen.add(id(obj))
                yield name, obj

    def zero_grad(self) -> None:
        """Set every parameter's `.grad` to None (gradients accumulate on Parameters until
        then, as in torch, whose default also sets them to None)."""
        for p in self.parameters():
            p.grad = None

    def named_buffers(self) -> Iterator[tuple[str, Tensor]]:
        """Yield (dotted name, Tensor) for registered buffers (e.g. BatchNorm running stats)."""
        for name, kind, obj in _walk(self, "", ()):
            if kind == "buffer":
                yield name, obj

    def named_modules(self) -> Iterator[tuple[str, "Module"]]:
        """Yield (dotted name, Module) for self (name "") and every nested module."""
        for name, kind, obj in _walk(self, "", ()):
            if kind == "module":
                yield name, obj

    def modules(self) -> Iterator["Module"]:
        """Yield self and every nested module (on `Sequential`, `.modules` is the contract's
        list attribute instead: use `named_modules()` there)."""
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        """Yield (name, module) for the modules one level below self (through lists/dicts)."""
        yield from _direct_children(self)

    def children(self) -> Iterator["Module"]:
        """Yield the modules one level below self."""
        for _, m in _direct_children(self):
            yield m

    def apply(self, fn):
        """Call `fn(module)` on every child (recursively, children first) and then on self, as
        torch does; returns self. E.g. `model.apply(init_weights)`."""
        if not callable(fn):
            raise TypeError(f"Module.apply: fn must be callable, got {type(fn).__name__}")
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def _children(self) -> list["Module"]:
        return [m for name, m in self.named_modules() if m is not self]

    def eval(self):
        """Put self and every nested module in evaluation mode; returns self."""
        return self.train(False)

    def train(self, mode: bool = True):
        """Set training mode (`mode=True`) or evaluation mode on self and every nested module;
        returns self."""
        if not isinstance(mode, bool):
            raise TypeError(f"Module.train: mode must be a bool, got {type(mode).__name__}")
        self.training = mode
        for m in self._children():
            m.training = mode
        return self

    # -- hooks ----------------------------------------------------------------------------
    def _add_hook(self, table_name: str, hook, where: str) -> RemovableHandle:
        if not callable(hook):
            raise TypeError(f"Module.{where}: hook must be callable, got {type(hook).__name__}")
        if table_name not in self.__dict__:
            self.__dict__[table_name] = _Hooks()
        table = self.__dict__[table_name]
        handle = RemovableHandle(table)
        table.by_id[handle.id] = hook
        return handle

    def register_forward_pre_hook(self, hook) -> RemovableHandle:
        """Call `hook(module, args)` before each forward. If it returns something other than
        None, that becomes the positional input (a non-tuple is wrapped in a 1-tuple).
        Returns a handle whose `.remove()` detaches the hook."""
        return self._add_hook("_forward_pre_hooks", hook, "register_forward_pre_hook")

    def register_forward_hook(self, hook) -> RemovableHandle:
        """Call `hook(module, args, output)` after each forward. If it returns something other
        than None, that replaces the output. Returns a handle with `.remove()`."""
        return self._add_hook("_forward_hooks", hook, "register_forward_hook")

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Parameters and buffers as an OrderedDict of dotted name -> numpy copy."""
        sd = OrderedDict()
        for name, kind, obj in _walk(self, "", ()):
            if kind in ("param", "buffer"):
                sd[name] = obj.numpy()
        return sd

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy values from `state_dict` (name -> numpy array / Tensor) into this module.

        Returns:
            IncompatibleKeys with `.missing_keys` and `.unexpected_keys` (both empty after a
            strict load); with strict=False the matching entries are loaded, the rest ignored.
        Raises:
            StateDictKeyError (a RuntimeError and a KeyError): with strict=True, if names are
                missing or unexpected (all are listed).
            ValueError: if an entry's shape differs from the current tensor's shape.
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError("Module.load_state_dict: expected a mapping of name -> array, got "
                            f"{type(state_dict).__name__}")
        targets = OrderedDict(
            (name, obj) for name, kind, obj in _walk(self, "", ()) if kind in ("param", "buffer")
        )
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        if strict and (missing or unexpected):
            raise StateDictKeyError(
                f"{type(self).__name__}.load_state_dict: missing keys {missing}, "
                f"unexpected keys {unexpected}"
            )
        values = {}
        bad = []
        for name, target in targets.items():
            if name not in state_dict:
                continue
            arr = _to_numpy(state_dict[name])
            if tuple(arr.shape) != tuple(target.shape):
                bad.append(f"{name}: expected {tuple(target.shape)}, got {tuple(arr.shape)}")
            values[name] = arr
        if bad:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: shape mismatch for " + "; ".join(bad)
            )
        # Assign only after every check passed, so a failed load leaves the module untouched.
        for name, arr in values.items():
            target = targets[name]
            target.data = Tensor(
                arr, device=target.device, dtype=target.dtype, requires_grad=False
            )
        return IncompatibleKeys(missing, unexpected)

    # -- calling and printing -------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}.forward is not implemented")

    def __call__(self, *args, **kwargs):
        guard_attr(self, "training")  # under ndl.jit: replay only in the mode captured
        pre = self.__dict__.get("_forward_pre_hooks")
        if pre is not None:
            for hook in list(pre.by_id.values()):
                result = hook(self, args)
                if result is not None:
                    args = result if isinstance(result, tuple) else (result,)
        out = self.forward(*args, **kwargs)
        post = self.__dict__.get("_forward_hooks")
        if post is not None:
            for hook in list(post.by_id.values()):
                result = hook(self, args, out)
                if result is not None:
                    out = result
        return out

    def extra_repr(self) -> str:
        """Hyper-parameters shown inside the parentheses of `repr(module)`."""
        return ""

    def __repr__(self):
        head = f"{type(self).__name__}({self.extra_repr()}"
        children = _direct_children(self)
        if not children:
            return head + ")"
        lines = [f"  ({name}): " + repr(m).replace("\n", "\n  ") for name, m in children]
        return head + "\n" + "\n".join(lines) + "\n)"


# ---------------------------------------------------------------------------------------------
# Stateless modules


class Identity(Module):
    """y = x, any shape."""

    def forward(self, x):
        return x


class ReLU(Module):
    """y = max(x, 0), any shape."""

    def forward(self, x: Tensor) -> Tensor:
        return ops.relu(x)


class Tanh(Module):
    """y = tanh(x), any shape (an extension: the reference has no nn.Tanh)."""

    def forward(self, x: Tensor) -> Tensor:
        return ops.tanh(x)


class Sigmoid(Module):
    """y = 1 / (1 + exp(-x)), any shape (finite value and gradient for large |x|)."""

    def forward(self, x: Tensor) -> Tensor:
        return ops.sigmoid(x)


class Flatten(Module):
    """(B, d1, d2, ...) -> (B, d1*d2*...); input rank must be >= 2."""

    def forward(self, x: Tensor) -> Tensor:
        if len(x.shape) < 2:
            raise ValueError(f"Flatten: expected input of rank >= 2 (B, ...), got {x.shape}")
        return ops.reshape(x, (x.shape[0], math.prod(x.shape[1:])))


class Residual(Module):
    """y = fn(x) + x."""

    def __init__(self, fn: Module):
        super().__init__()
        if not isinstance(fn, Module):
            raise TypeError(f"Residual: fn must be a Module, got {type(fn).__name__}")
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x) + x


class Sequential(Module):
    """Apply `modules` in order; they are kept in the list attribute `.modules`.

    Like torch: `len(seq)`, `seq[i]` (negative too), `seq[a:b]` (a new Sequential sharing the
    layers) and `for layer in seq`.
    """

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: argument {i} is a {type(m).__name__}, not a Module")
        self.modules = list(modules)

    def __len__(self) -> int:
        return len(self.modules)

    def __iter__(self):
        return iter(self.modules)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return Sequential(*self.modules[idx])
        return self.modules[list_index("Sequential", idx, len(self.modules))]

    def forward(self, x):
        for module in self.modules:
            x = module(x)
        return x


# ---------------------------------------------------------------------------------------------
# Layers with parameters


class Linear(Module):
    """y = x @ weight + bias.

    Args:
        in_features, out_features: sizes of the last axis of input and output.
        bias: whether to add a bias (shape 1 x out_features).
    Shapes: x (..., in_features) -> y (..., out_features); any number of leading axes.
    Draws: weight `rand(in, out)` then bias `rand(out, 1)` (kaiming uniform, fan_in = in for the
    weight and out for the bias, as in the reference).

    Example:
        >>> layer = nn.Linear(784, 100)
        >>> layer(ndl.Tensor(np.zeros((32, 784)))).shape
        (32, 100)
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype="float32"):
        super().__init__()
        for what, n in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"Linear: {what} must be a positive int, got {n!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(
            init.kaiming_uniform(in_features, out_features, device=device, dtype=dtype,
                                 requires_grad=True)
        )
        self.bias = None
        if bias:
            b = init.kaiming_uniform(out_features, 1, device=device, dtype=dtype,
                                     requires_grad=True)
            self.bias = Parameter(ops.reshape(b, (1, out_features)))

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")

    def forward(self, X: Tensor) -> Tensor:
        shape = tuple(X.shape)
        if len(shape) < 1 or shape[-1] != self.in_features:
            raise ValueError(
                f"Linear: expected input (..., {self.in_features}), got {shape}"
            )
        lead = shape[:-1]
        flat = X if len(shape) == 2 else ops.reshape(X, (math.prod(lead), self.in_features))
        out = ops.matmul(flat, self.weight)
        if self.bias is not None:
            # The bias may have been replaced by a (out,) tensor; reshape covers both layouts.
            b = ops.reshape(self.bias, (1, self.out_features))
            out = out + ops.broadcast_to(b, out.shape)
        if len(shape) != 2:
            out = ops.reshape(out, lead + (self.out_features,))
        return out


class SoftmaxLoss(Module):
    """Mean cross-entropy of integer labels under softmax(logits).

    Shapes: logits (n, k), y (n,) with integer values in [0, k) of any int/uint/float dtype
    (a Tensor or a numpy array). Returns a scalar Tensor:
    mean_i (logsumexp(logits[i]) - logits[i, y[i]]).
    """

    def forward(self, logits: Tensor, y) -> Tensor:
        if len(logits.shape) != 2:
            raise ValueError(f"SoftmaxLoss: expected logits (n, k), got {tuple(logits.shape)}")
        n, k = logits.shape
        labels = _to_numpy(y)
        if labels.shape != (n,):
            raise ValueError(
                f"SoftmaxLoss: expected labels of shape ({n},) for logits {(n, k)}, "
                f"got {tuple(labels.shape)}"
            )
        if n and (not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels))
                  or labels.min() < 0 or labels.max() >= k):
            raise ValueError(
                f"SoftmaxLoss: labels must be integers in [0, {k}) for logits {(n, k)}, "
                f"got values in [{labels.min()}, {labels.max()}]"
            )
        # Fused op: one stable log-softmax pass forward, (softmax - onehot) / n backward.
        return ops.softmax_cross_entropy(logits, labels)


class Dropout(Module):
    """Zero each element with probability p in training, scaling survivors by 1/(1-p).

    One `np.random.rand(*x.shape)` draw per training forward (from `generator` instead when
    one is given); an element is kept where the draw <= 1 - p. Identity (and no draw) in eval mode. Shapes: any -> same.
    """

    def __init__(self, p=0.5, generator=None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p
        # None: numpy's global stream (the contract); else an ndl.Generator of its own.
        self.generator = (resolve_generator(generator, "Dropout")
                          if generator is not None else None)

    def extra_repr(self):
        return f"p={self.p}"

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        mask = init.randb(*x.shape, p=1 - self.p, device=x.device, dtype=x.dtype,
                          generator=self.generator)
        if self.p == 1.0:
            return x * mask
        return x * mask / (1 - self.p)
