"""Optimizer base class: parameter groups, gradient clipping and state dicts.

All optimizer state is kept as detached Tensors with the parameter's dtype, so graphs never grow
across steps; parameters are updated by assigning `p.data`, never by editing `p.grad`.

Parameter groups follow torch: `opt.param_groups` is a list of dicts, each with a `"params"` list
and the hyper-parameters for those parameters (`"lr"`, `"weight_decay"`, ...). They can be read and
written between steps (`opt.param_groups[0]["lr"] = 0.1`), which is what the schedulers in
`needle.optim.lr_scheduler` do. The contract's attributes (`opt.lr`, `opt.params`, ...) stay: they
read the first group and write every group.
"""
import math
from numbers import Real

import numpy as np

from ..autograd import Tensor
from ..backend_ndarray.optim_update import hyper_array
from ..jit_capture import host_op
from ..jit_live import guard

__all__ = ["Optimizer"]


class _GroupHyper:
    """A host_op function: `values(group)`, one parameter group's hyper-parameters as the fused
    kernels read them. ndl.jit runs it again at every replay, so an lr schedule or `opt.lr = x`
    reaches a replayed step; two over the same group and `values` are equal (the jit compares
    the host functions of its two captures)."""

    def __init__(self, group, values):
        self.group, self.values = group, values

    def __eq__(self, other):
        return (isinstance(other, _GroupHyper) and other.group is self.group
                and other.values is self.values)

    __hash__ = None

    def __call__(self):
        return [np.asarray(self.values(self.group), dtype=np.float64)]


def _detached(value, like: Tensor) -> Tensor:
    """`value` as a constant Tensor with `like`'s device and dtype (no copy when they match)."""
    if isinstance(value, Tensor):
        value = value.detach()
        if value.dtype == like.dtype and value.device == like.device:
            return value
    return Tensor(value, device=like.device, dtype=like.dtype, requires_grad=False)


def _arrays(p: Tensor):
    """(weight, grad) raw arrays of a parameter, the grad converted to p's device and dtype.

    The updates run on raw arrays: each line is the same array arithmetic the Tensor ops would
    run, without building ~5 graph nodes per parameter per step."""
    w, grad = p.realize_cached_data(), p.grad
    if isinstance(grad, Tensor):  # the usual case: the grad's own array, as _detached gives it
        g = grad.realize_cached_data()
        if (type(g) is type(w) and g.dtype == w.dtype
                and getattr(g, "device", None) == getattr(w, "device", None)):
            return w, g
    return w, _detached(grad, p).realize_cached_data()


def _handle(p: Tensor):
    data = p.realize_cached_data()
    return getattr(data, "_handle", data)


def _in_place(old: dict, new: dict) -> dict:
    """`new`, its values written into `old`'s buffers where a parameter has one (a captured
    step, ndl.jit, keeps reading those buffers)."""
    out = {}
    for p, value in new.items():
        if p in old and old[p].shape == value.shape:
            old[p].realize_cached_data()[()] = value.realize_cached_data()
            value = old[p]
        out[p] = value
    return out


def _check_nonneg(owner: str, **values):
    for name, v in values.items():
        if isinstance(v, bool) or not (isinstance(v, Real) and v >= 0):
            raise ValueError(f"{owner}: {name} must be a non-negative number, got {v!r}")


def _hyper_property(key: str, doc: str):
    """Contract attribute `opt.<key>`: reads the first group, writes every group (and defaults)."""

    def fget(self):
        return self.param_groups[0][key] if self.param_groups else self.defaults[key]

    def fset(self, value):
        self.defaults[key] = value
        for group in self.param_groups:
            group[key] = value

    return property(fget, fset, doc=doc)


class Optimizer:
    """Base class: parameter groups; `step()` updates, `reset_grad()` / `zero_grad()` clear grads.

    Args:
        params: an iterable of Tensors, or of dicts `{"params": [...], "lr": ..., ...}` (one per
            parameter group; keys left out take the optimizer's defaults).
        defaults: hyper-parameter defaults for every group (subclasses pass theirs).

    Raises:
        TypeError: `params` is a single Tensor, or holds something that is not a Tensor / dict.
        ValueError: a parameter appears in two groups, or a group has an unknown key.
    """

    # names of the per-parameter buffers (dicts parameter -> Tensor) saved by state_dict()
    _buffers = ()
    # contract attributes saved under state_dict()["hyper"] (the format before param groups)
    _hyper = ()

    def __init__(self, params, defaults=None):
        self.defaults = dict(defaults or {})
        self.param_groups = []
        self._hyper_arrays = {}  # (group index, device) -> the fused kernels' hyper-parameters
        name = type(self).__name__
        if isinstance(params, Tensor):
            raise TypeError(f"{name}: params must be an iterable of Tensors or dicts, got a Tensor")
        if isinstance(params, dict):
            params = [params]
        params = list(params)
        if params and all(isinstance(g, dict) for g in params):
            for group in params:
                self.add_param_group(group)
        else:
            self.add_param_group({"params": params})

    def add_param_group(self, param_group: dict) -> None:
        """Append a group `{"params": [...], key: value, ...}`; missing keys take the defaults."""
        name = type(self).__name__
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise TypeError(f"{name}.add_param_group: expected a dict with a 'params' key, "
                            f"got {type(param_group).__name__}")
        group = dict(param_group)
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: parameters must be Tensors, got {type(p).__name__}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or any(id(p) in seen for p in params):
            raise ValueError(f"{name}: some parameters appear more than once in the parameter "
                             "groups")
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise ValueError(f"{name}: unknown parameter-group keys {sorted(unknown)}; "
                             f"known: {sorted(self.defaults)}")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        group["params"] = params
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group: dict) -> None:
        """Validate one group's hyper-parameters (subclasses raise ValueError naming themselves)."""

    def _hyper_on_device(self, index, device, values):
        """Group `index`'s `values(group)` written into its small array on `device` (kept
        between steps), which the fused update kernels read. The write is a host_op: under
        ndl.jit each replay writes the group's values as they are then."""
        group = self.param_groups[index]
        arr = self._hyper_arrays.get((index, device))
        if arr is None:
            arr = self._hyper_arrays[(index, device)] = hyper_array(values(group), device)
        host_op(_GroupHyper(group, values), [], [arr])
        return arr

    @property
    def params(self):
        """Every parameter, group by group (the contract's flat list)."""
        return [p for g in self.param_groups for p in g["params"]]

    @params.setter
    def params(self, params):
        if len(self.param_groups) != 1:
            raise ValueError(f"{type(self).__name__}.params: cannot replace the parameters of "
                             f"{len(self.param_groups)} groups; edit param_groups instead")
        self.param_groups[0]["params"] = list(params)

    def step(self):
        raise NotImplementedError(f"{type(self).__name__}.step is not implemented")

    def _guard_replay(self):
        """Under ndl.jit, at the end of step(): a capture of the step replays only while
        `_replay_state()` is unchanged (otherwise the step is captured again)."""
        guard(("optimizer", id(self)), self._replay_state)

    def _replay_state(self):
        """What a replay freezes besides numbers: each group's parameters, their buffers (a
        `p.data = ...` rebinding) and requires_grad, and the hyper-parameters that choose a
        code path (`_code_path`). Its buffers' handles outlive the capture: ids stay unique."""
        return tuple((tuple((id(p), id(_handle(p)), p.requires_grad) for p in g["params"]),
                      self._code_path(g)) for g in self.param_groups)

    def _code_path(self, group):
        """The hyper-parameters of `group` that decide which array calls step() makes."""
        return ()

    def reset_grad(self):
        """Set every parameter's `.grad` to None."""
        for p in self.params:
            p.grad = None

    def zero_grad(self, set_to_none: bool = True):
        """torch's name for `reset_grad()`; grads always become None (`set_to_none` must be True)."""
        if set_to_none is not True:
            raise ValueError(f"{type(self).__name__}.zero_grad: only set_to_none=True is "
                             "supported (needle never edits a grad in place)")
        self.reset_grad()

    def clip_grad_norm(self, max_norm=0.25):
        """Scale all grads by min(max_norm / (total_norm + 1e-6), 1); returns total_norm.

        total_norm is the L2 norm over every parameter's grad (as torch.nn.utils.clip_grad_norm_).
        Grads are replaced by new tensors, not edited in place. (The contract names it on
        SGD; every optimizer has it here.)
        """
        grads = [p for p in self.params if p.grad is not None]
        total = math.sqrt(sum(float(np.sum(p.grad.numpy().astype(np.float64) ** 2))
                              for p in grads))
        scale = min(max_norm / (total + 1e-6), 1.0)
        if scale < 1.0:
            for p in grads:
                p.grad = _detached(p.grad.detach() * scale, p)
        return total

    # -- state dicts -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The optimizer's state as plain Python values and numpy arrays (torch-like layout).

        Returns a dict with
            "state": {parameter index: {buffer name: numpy array}} (index over `self.params`),
            "param_groups": [{hyper-parameter: value, ..., "params": [indices]}, ...],
            "type": the class name, "t": the step count (Adam), and
            "hyper": the first group's contract attributes (the format before param groups).
        `load_state_dict` of this dict resumes bit-exactly.
        """
        index = {id(p): i for i, p in enumerate(self.params)}
        state = {}
        for buf in self._buffers:
            for p, value in getattr(self, buf).items():
                state.setdefault(index[id(p)], {})[buf] = value.numpy()
        groups = []
        for g in self.param_groups:
            saved = {k: v for k, v in g.items() if k != "params"}
            saved["params"] = [index[id(p)] for p in g["params"]]
            groups.append(saved)
        return {
            "type": type(self).__name__,
            "hyper": {k: getattr(self, k) for k in self._hyper},
            "t": getattr(self, "t", 0),
            "state": state,
            "param_groups": groups,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what `state_dict()` produced, for the same parameters in the same groups.

        Raises:
            TypeError: `state_dict` is not a dict.
            ValueError: wrong optimizer type, different group count or group sizes, parameter
                index out of range, unknown buffer or hyper-parameter, or a buffer whose shape
                differs from its parameter's.
        """
        name = type(self).__name__
        if not isinstance(state_dict, dict):
            raise TypeError(f"{name}.load_state_dict: expected a dict, got "
                            f"{type(state_dict).__name__}")
        if state_dict.get("type") != name:
            raise ValueError(f"{name}.load_state_dict: state is for {state_dict.get('type')!r}")
        groups = state_dict.get("param_groups")
        unknown = set(state_dict.get("hyper", {})) - set(self._hyper)
        if unknown:
            raise ValueError(f"{name}.load_state_dict: unknown hyper-parameters {sorted(unknown)}")
        params = self.params
        new = {buf: {} for buf in self._buffers}
        for i, bufs in state_dict.get("state", {}).items():
            i = int(i)
            if not 0 <= i < len(params):
                raise ValueError(
                    f"{name}.load_state_dict: parameter index {i} out of range for "
                    f"{len(params)} parameters"
                )
            p = params[i]
            for buf, value in bufs.items():
                if buf not in new:
                    raise ValueError(f"{name}.load_state_dict: unknown buffer {buf!r}")
                arr = np.asarray(value.numpy() if isinstance(value, Tensor) else value)
                if tuple(arr.shape) != tuple(p.shape):
                    raise ValueError(
                        f"{name}.load_state_dict: buffer {buf!r} of parameter {i} has shape "
                        f"{tuple(arr.shape)}, parameter has {tuple(p.shape)}"
                    )
                new[buf][p] = _detached(arr, p)
        if groups is not None:
            self._check_groups_match(groups)
            self._check_hyper_agrees(state_dict.get("hyper", {}), groups[0])
            updated = [dict(g, **{k: v for k, v in saved.items() if k != "params"})
                       for g, saved in zip(self.param_groups, groups)]
            for group in updated:
                self._check_group(group)
            for group, values in zip(self.param_groups, updated):
                group.update(values)
        else:  # the format before param groups: one set of hyper-parameters for all
            for k, v in state_dict.get("hyper", {}).items():
                setattr(self, k, v)
        if hasattr(self, "t"):
            self.t = int(state_dict.get("t", 0))
        for buf, table in new.items():
            setattr(self, buf, _in_place(getattr(self, buf), table))

    def _check_hyper_agrees(self, hyper, group) -> None:
        """The legacy "hyper" entry must say what the first saved group says (an edited or
        crafted state must not load half of itself)."""
        for k, v in hyper.items():
            if k in ("beta1", "beta2"):
                have = group.get("betas", (None, None))[k == "beta2"]
            else:
                have = group.get(k)
            if v != have:
                raise ValueError(f"{type(self).__name__}.load_state_dict: hyper-parameter {k} "
                                 f"{v!r} disagrees with param_groups[0] ({have!r})")

    def _check_groups_match(self, groups) -> None:
        name = type(self).__name__
        if not isinstance(groups, (list, tuple)) or len(groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: the state has "
                             f"{len(groups) if isinstance(groups, (list, tuple)) else groups!r} "
                             f"parameter groups, the optimizer has {len(self.param_groups)}")
        for k, (mine, saved) in enumerate(zip(self.param_groups, groups)):
            if not isinstance(saved, dict) or len(saved.get("params", ())) != len(mine["params"]):
                raise ValueError(f"{name}.load_state_dict: parameter group {k} of the state "
                                 f"does not match the optimizer's ({len(mine['params'])} "
                                 "parameters)")
