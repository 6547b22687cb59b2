"""Model summaries and checkpoint files.

* `summary(model, input_shape)`: per-layer output shapes, parameters, multiply-adds and
  activation memory, from one forward pass on zeros.
* `save_checkpoint(path, obj)` / `load_checkpoint(path)`: a checksummed pickle of numpy arrays and
  plain Python values (e.g. `model.state_dict()`, `opt.state_dict()`), written atomically.
* `load_torch_state_dict(model, sd)`: load a torch `state_dict` of the same architecture.
"""
import hashlib
import io
import pickle
import re

import numpy as np

from .autograd import Tensor, no_grad
from .data.data_download import atomic_open
from .nn import Conv2d, ConvTranspose2d, Linear, Parameter

__all__ = [
    "Summary",
    "atomic_write",
    "load_checkpoint",
    "load_torch_state_dict",
    "save_checkpoint",
    "summary",
]


# ---------------------------------------------------------------------------------------------
# Checkpoint files

_MAGIC = b"NEEDLE-CHECKPOINT-1\n"
# The only globals a checkpoint may reference: numpy arrays, scalars, dtypes, OrderedDict.
_ALLOWED = {
    (mod, name)
    for mod in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray",
                "numpy.core.numeric", "numpy._core.numeric")
    for name in ("ndarray", "dtype", "_reconstruct", "scalar", "_frombuffer")
} | {("collections", "OrderedDict")}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a checkpoint")
        return super().find_class(module, name)


def atomic_write(path, data):
    """Write bytes to `path` atomically: a crash never leaves a half-written file there."""
    with atomic_open(path) as f:
        f.write(data)


def save_checkpoint(path, obj):
    """Save `obj` (dicts/lists/tuples of numpy arrays and plain Python values) atomically.

    Format: a magic line, the sha256 of the payload (hex, one line), then the pickle payload.
    Tensors are not accepted: convert them first (`model.state_dict()`, `opt.state_dict()`).

    Example:
        >>> save_checkpoint("run/ckpt.pkl", {"model": model.state_dict(), "epoch": 3})
    """
    try:
        payload = pickle.dumps(obj, protocol=4)
        # Reject what the loader would refuse (Tensors, arbitrary classes) before writing.
        _Unpickler(io.BytesIO(payload)).load()
    except (pickle.PicklingError, pickle.UnpicklingError, TypeError, AttributeError) as e:
        raise TypeError(f"save_checkpoint: {path}: object cannot be saved ({e})") from None
    atomic_write(path, _MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def load_checkpoint(path):
    """Load an object saved by `save_checkpoint`.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: naming the file when it is not a needle checkpoint, is truncated or
            corrupted (checksum mismatch), or holds disallowed objects.
    """
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(_MAGIC):
        raise ValueError(f"load_checkpoint: {path} is not a needle checkpoint (bad header)")
    digest, sep, payload = data[len(_MAGIC):].partition(b"\n")
    if not sep or hashlib.sha256(payload).hexdigest().encode() != digest:
        raise ValueError(f"load_checkpoint: {path} is corrupted or truncated (checksum mismatch)")
    try:
        return _Unpickler(io.BytesIO(payload)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise ValueError(f"load_checkpoint: {path} cannot be read ({e})") from None


# ---------------------------------------------------------------------------------------------
# torch checkpoints


def _own_tensors(module) -> list[str]:
    """Attribute names of the Parameters and buffers `module` holds directly, in order."""
    buffers = module.__dict__.get("_buffer_names", ())
    return [k for k, v in module.__dict__.items()
            if isinstance(v, Parameter) or (k in buffers and isinstance(v, Tensor))]


def _torch_to_needle(module, attr, value: np.ndarray) -> np.ndarray:
    """A torch tensor of `module`'s parameter `attr`, in needle's layout."""
    if attr == "weight":
        if isinstance(module, Linear):
            return value.T  # torch (out, in) -> (in, out)
        if isinstance(module, ConvTranspose2d):
            return value.transpose(2, 3, 0, 1)  # (in, out/g, KH, KW) -> (KH, KW, in, out/g)
        if isinstance(module, Conv2d):
            return value.transpose(2, 3, 1, 0)  # OIHW -> (KH, KW, in/g, out)
    return value


def load_torch_state_dict(model, state_dict, strict: bool = True):
    """Copy a torch `state_dict` into the needle `model` of the same architecture.

    Modules are paired in order: the needle modules that hold parameters or buffers (in
    `named_modules()` order) with the torch modules named by the key prefixes (in the
    state_dict's order), so names need not match (needle's `Sequential` says "modules.0",
    torch's "0"). Within a module, entries are matched by attribute name. Layouts are
    converted: Linear weight (out, in) -> (in, out); Conv2d OIHW -> (K, K, Cin, Cout);
    ConvTranspose2d (Cin, Cout, K, K) -> (K, K, Cin, Cout); a bias goes to the needle bias's
    shape (Linear: (1, out)); BatchNorm running statistics are copied; torch's
    `num_batches_tracked` is ignored.

    Args:
        model: a needle `nn.Module`.
        state_dict: a mapping of name -> torch tensor (or numpy array), e.g.
            `torch_model.state_dict()`.
        strict: passed to `model.load_state_dict` after conversion.
    Returns: what `model.load_state_dict` returns (missing / unexpected keys).
    Raises:
        TypeError for a non-Module model or a non-mapping state_dict; ValueError naming both
        keys when the module counts, the entry names or the shapes disagree.

    Example:
        >>> load_torch_state_dict(needle_lenet, torch_lenet.state_dict())
        >>> needle_lenet.eval()
    """
    from .nn import Module  # the nn package is imported already (above)

    if not isinstance(model, Module):
        raise TypeError(f"load_torch_state_dict: model must be a needle nn.Module, got "
                        f"{type(model).__name__}")
    if not hasattr(state_dict, "items"):
        raise TypeError(f"load_torch_state_dict: state_dict must be a mapping, got "
                        f"{type(state_dict).__name__}")
    groups = {}  # torch module prefix -> {attr: array}, in state_dict order
    for key, value in state_dict.items():
        prefix, _, attr = key.rpartition(".")
        if attr == "num_batches_tracked":
            continue
        array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        groups.setdefault(prefix, {})[attr] = array
    ours = [(name, m) for name, m in model.named_modules() if _own_tensors(m)]
    if len(ours) != len(groups):
        raise ValueError(
            f"load_torch_state_dict: the needle model has {len(ours)} modules with parameters, "
            f"the state_dict {len(groups)} ({list(groups)[:6]}...)")
    converted = {}
    for (name, module), (prefix, entries) in zip(ours, groups.items()):
        attrs = _own_tensors(module)
        if set(attrs) != set(entries):
            raise ValueError(
                f"load_torch_state_dict: needle module {name or '(root)'} "
                f"({type(module).__name__}) holds {attrs}, torch module {prefix!r} holds "
                f"{list(entries)}")
        for attr in attrs:
            target = getattr(module, attr)
            value = _torch_to_needle(module, attr, entries[attr])
            if value.size != int(np.prod(target.shape)) or (
                    value.ndim == len(target.shape) and value.shape != tuple(target.shape)):
                raise ValueError(
                    f"load_torch_state_dict: {prefix}.{attr} has shape {entries[attr].shape}, "
                    f"which does not fit needle's {name}.{attr} of shape {tuple(target.shape)}")
            converted[f"{name}.{attr}" if name else attr] = value.reshape(target.shape)
    return model.load_state_dict(converted, strict=strict)


# ---------------------------------------------------------------------------------------------
# Summary


def _macs(module, x, out_size):
    """Multiply-adds of one call on input `x` producing `out_size` elements:
    conv N*Ho*Wo*Cout*K*K*Cin/groups, transposed conv N*H*W*Cin*K*K*Cout/groups,
    linear N*in*out, anything else 0."""
    if isinstance(module, (Conv2d, ConvTranspose2d)):
        k = module.kernel_size
        kh, kw = (k, k) if isinstance(k, int) else k
        if isinstance(module, Conv2d):
            return out_size * kh * kw * module.in_channels // module.groups
        return int(np.prod(x.shape)) * kh * kw * module.out_channels // module.groups
    if isinstance(module, Linear):
        return out_size * module.in_features
    return 0


def _shapes(out):
    """Output shapes of a module call (a Tensor, or a tuple/list of them)."""
    if isinstance(out, Tensor):
        return [tuple(out.shape)]
    if isinstance(out, (list, tuple)):
        return [s for o in out for s in _shapes(o)]
    return []


class Summary:
    """Result of `summary`: `rows` (dicts with name, type, depth, leaf, output_shape, params,
    macs, activation_bytes), totals `params`, `macs`, `activation_bytes`, and `table` (str).

    Totals sum the leaf layers (modules without child modules), so `params` equals the model's
    parameter count and `activation_bytes` the memory of every leaf output of one forward pass.
    """

    def __init__(self, model, input_shape, rows):
        self.model_name = type(model).__name__
        self.input_shape = tuple(input_shape)
        self.rows = rows
        leaves = [r for r in rows if r["leaf"]]
        self.params = sum(r["params"] for r in rows)
        self.macs = sum(r["macs"] for r in leaves)
        self.activation_bytes = sum(r["activation_bytes"] for r in leaves)
        self.table = self._format()

    def _format(self):
        header = ("layer", "type", "output shape", "params", "mult-adds", "act. memory")
        lines = []
        for r in self.rows:
            shape = " ".join(str(s).replace(" ", "") for s in r["output_shape"]) or "-"
            lines.append(("  " * r["depth"] + (r["name"] or "(model)"), r["type"], shape,
                          f"{r['params']:,}" if r["params"] else "-",
                          f"{r['macs']:,}" if r["macs"] else "-",
                          _fmt_bytes(r["activation_bytes"])))
        widths = [max(len(x[i]) for x in [header] + lines) for i in range(len(header))]

        def fmt(cols):
            return "  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cols, widths))).rstrip()

        rule = "-" * len(fmt(header))
        return "\n".join(
            [f"{self.model_name} on input {self.input_shape}", rule, fmt(header), rule]
            + [fmt(x) for x in lines]
            + [rule,
               f"total parameters: {self.params:,}",
               f"total mult-adds:  {self.macs:,}",
               (f"activation memory (leaf outputs): {_fmt_bytes(self.activation_bytes)} "
                f"({self.activation_bytes:,} bytes)")])

    def __str__(self):
        return self.table

    __repr__ = __str__


def _fmt_bytes(n):
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _module_tree(model):
    """[(display name, module, depth, own parameter count, is leaf)] in pre-order.

    Built from `Module.named_modules()`: a module's parent is its longest proper name prefix
    that is itself a module. Display names drop Sequential's ".modules" list
    ("model.modules.0.modules.1" shows as "model.0.1").
    """
    entries = []
    for name, module in model.named_modules():
        if any(module is m for _, m in entries):
            continue  # a module reachable twice is listed (and counted) once
        entries.append((name, module))
    names = {name for name, _ in entries}

    def parent(name):
        parts = name.split(".")
        for k in range(len(parts) - 1, 0, -1):
            if ".".join(parts[:k]) in names:
                return ".".join(parts[:k])
        return "" if name else None

    def n_params(module):  # a shared parameter counts once
        return sum(int(np.prod(p.shape)) for p in {id(p): p for p in module.parameters()}.values())

    count = {name: n_params(m) for name, m in entries}
    children = {name: [c for c in names if parent(c) == name] for name in names}
    tree = []
    for name, module in entries:
        depth, p = 0, parent(name)
        while p is not None:
            depth, p = depth + 1, parent(p)
        own = count[name] - sum(count[c] for c in children[name])
        display = re.sub(r"(^|\.)modules\.", r"\1", name)
        tree.append((display, module, depth, own, not children[name]))
    return tree


def summary(model, input_shape, device=None, dtype="float32"):
    """Run one forward pass on zeros and tabulate every module call.

    Module `forward`s are wrapped by instance attributes for the duration of the call and the
    model runs in eval mode (no BatchNorm statistics updated, no dropout draws) without
    building a graph; modes and forwards are restored afterwards, so the model is left exactly
    as it was.

    Args:
        model: an nn.Module.
        input_shape: full input shape including the batch, e.g. (1, 3, 32, 32) for N x C x H x W.
        device: device of the zeros input (default: the device of the first parameter).
        dtype: input dtype.

    Returns:
        a `Summary`; `print(summary(model, shape))` prints the table. Per row: layer path
        (Sequential children by index), type, output shape, own parameters, multiply-adds
        (conv: N*Ho*Wo*Cout*K*K*Cin/groups, linear: N*in*out) and output bytes.

    Example:
        >>> print(summary(ResNet9(), (1, 3, 32, 32)))
    """
    if device is None:
        params = model.parameters()
        device = params[0].device if params else None
    tree = _module_tree(model)
    saved = [(m, m.training, m.__dict__.get("forward")) for _, m, *_ in tree]
    rows = []

    def wrap(name, module, depth, own, leaf):
        original = module.forward  # the bound method (or an existing instance attribute)

        def forward(*args, **kwargs):
            # Parameters are counted at the first call only (a module may run several times).
            first = not any(r["module"] is module for r in rows)
            row = {"name": name, "type": type(module).__name__, "depth": depth, "leaf": leaf,
                   "params": own if first else 0, "module": module}
            rows.append(row)
            out = original(*args, **kwargs)
            shapes = _shapes(out)
            size = sum(int(np.prod(s)) for s in shapes)
            row.update(output_shape=shapes, macs=_macs(module, args[0] if args else None, size),
                       activation_bytes=size * np.dtype(dtype).itemsize)
            return out

        return forward

    try:
        model.eval()
        for entry in tree:
            entry[1].forward = wrap(*entry)
        x = Tensor(np.zeros(input_shape, dtype=dtype), device=device, dtype=dtype,
                   requires_grad=False)
        with no_grad():
            model(x)
    finally:
        for module, training, forward in saved:
            module.training = training
            if forward is None:
                module.__dict__.pop("forward", None)
            else:
                module.forward = forward
    for row in rows:
        del row["module"]
    return Summary(model, input_shape, rows)
