"""Optimizers: SGD (dampened momentum) and Adam (bias-corrected, L2-in-gradient weight decay).

All state is kept as detached Tensors with the parameter's dtype, so graphs never grow across
steps; parameters are updated by assigning `p.data`, never by editing `p.grad`.
"""
import math

import numpy as np

from .autograd import Tensor

__all__ = ["SGD", "Adam", "Optimizer"]


def _detached(value, like: Tensor) -> Tensor:
    """`value` as a constant Tensor with `like`'s device and dtype (no copy when they match)."""
    if isinstance(value, Tensor):
        value = value.detach()
        if value.dtype == like.dtype and value.device == like.device:
            return value
    return Tensor(value, device=like.device, dtype=like.dtype, requires_grad=False)


def _arrays(p: Tensor):
    """(weight, grad) raw arrays of a parameter, the grad converted to p's device and dtype.

    The updates below run on raw arrays: each line is the same array arithmetic the
    Tensor ops would run, without building ~5 graph nodes per parameter per step."""
    return p.realize_cached_data(), _detached(p.grad, p).realize_cached_data()


def _check_nonneg(owner: str, **values):
    for name, v in values.items():
        if not (isinstance(v, (int, float)) and v >= 0):
            raise ValueError(f"{owner}: {name} must be a non-negative number, got {v!r}")


class Optimizer:
    """Base class: keeps the parameter list; `step()` updates, `reset_grad()` clears grads."""

    def __init__(self, params):
        self.params = list(params)

    def step(self):
        raise NotImplementedError(f"{type(self).__name__}.step is not implemented")

    def reset_grad(self):
        """Set every parameter's `.grad` to None."""
        for p in self.params:
            p.grad = None

    zero_grad = reset_grad

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

    # -- state_dict helpers ----------------------------------------------------------------
    _hyper = ()
    _buffers = ()

    def state_dict(self) -> dict:
        """Hyper-parameters, step count and per-parameter buffers (keyed by parameter index).

        Returns a dict {"type", "hyper": {...}, "t", "state": {index: {buffer: numpy array}}}.
        """
        index = {id(p): i for i, p in enumerate(self.params)}
        state = {}
        for buf in self._buffers:
            for p, value in getattr(self, buf).items():
                state.setdefault(index[id(p)], {})[buf] = value.numpy()
        return {
            "type": type(self).__name__,
            "hyper": {k: getattr(self, k) for k in self._hyper},
            "t": getattr(self, "t", 0),
            "state": state,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what `state_dict()` produced, for the same parameter list.

        Raises:
            ValueError: wrong optimizer type, parameter index out of range, unknown buffer, or a
                buffer whose shape differs from its parameter's.
        """
        name = type(self).__name__
        if state_dict.get("type") != name:
            raise ValueError(f"{name}.load_state_dict: state is for {state_dict.get('type')!r}")
        unknown = set(state_dict.get("hyper", {})) - set(self._hyper)
        if unknown:
            raise ValueError(f"{name}.load_state_dict: unknown hyper-parameters {sorted(unknown)}")
        new = {buf: {} for buf in self._buffers}
        for i, bufs in state_dict.get("state", {}).items():
            i = int(i)
            if not 0 <= i < len(self.params):
                raise ValueError(
                    f"{name}.load_state_dict: parameter index {i} out of range for "
                    f"{len(self.params)} parameters"
                )
            p = self.params[i]
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
        for k, v in state_dict.get("hyper", {}).items():
            setattr(self, k, v)
        if hasattr(self, "t"):
            self.t = int(state_dict.get("t", 0))
        for buf, table in new.items():
            setattr(self, buf, table)


class SGD(Optimizer):
    """Stochastic gradient descent with dampened momentum and L2 weight decay.

    For each parameter with a grad: g = grad + weight_decay * p;
    u = momentum * u + (1 - momentum) * g (u starts at 0); p = p - lr * u.
    State: `self.u`, a dict parameter -> Tensor.
    """

    _hyper = ("lr", "momentum", "weight_decay")
    _buffers = ("u",)

    def __init__(self, params, lr=0.01, momentum=0.0, weight_decay=0.0):
        super().__init__(params)
        _check_nonneg("SGD", lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.u = {}

    def step(self):
        for p in self.params:
            if p.grad is None:
                continue
            w, g = _arrays(p)
            u_prev = self.u[p].realize_cached_data() if p in self.u else None
            if hasattr(w, "sgd_step"):  # NDArray: the lines below in one backend call
                w, u = w.sgd_step(g, u_prev, self.momentum, -self.lr, self.weight_decay)
                self.u[p] = Tensor.make_const(u)
                p.data = Tensor.make_const(w)
                continue
            if self.weight_decay:
                g = g + w * self.weight_decay
            if u_prev is not None:
                u = u_prev * self.momentum + g * (1 - self.momentum)
            else:
                u = g * (1 - self.momentum)
            self.u[p] = Tensor.make_const(u)
            # w + (-lr) * u is exactly w - lr * u
            p.data = Tensor.make_const(w + u * (-self.lr))


class Adam(Optimizer):
    """Adam with bias correction and L2-in-gradient weight decay (not decoupled AdamW).

    Per step: t += 1; per parameter with a grad: g = grad + weight_decay * p;
    m = beta1 * m + (1 - beta1) * g; v = beta2 * v + (1 - beta2) * g**2 (both start at 0);
    p = p - lr * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps).
    State: `self.t` (int), `self.m`, `self.v` (dicts parameter -> Tensor).
    """

    _hyper = ("lr", "beta1", "beta2", "eps", "weight_decay")
    _buffers = ("m", "v")

    def __init__(self, params, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(params)
        _check_nonneg("Adam", lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                      weight_decay=weight_decay)
        if beta1 >= 1 or beta2 >= 1:
            raise ValueError(f"Adam: betas must be < 1, got beta1={beta1}, beta2={beta2}")
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weight_decay = weight_decay
        self.t = 0
        self.m = {}
        self.v = {}

    def step(self):
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        c1 = 1 - b1 ** self.t
        c2 = 1 - b2 ** self.t
        for p in self.params:
            if p.grad is None:
                continue
            w, g = _arrays(p)
            if self.weight_decay:
                g = g + w * self.weight_decay
            if p in self.m:
                m = self.m[p].realize_cached_data() * b1 + g * (1 - b1)
                v = self.v[p].realize_cached_data() * b2 + (g * g) * (1 - b2)
            else:
                m = g * (1 - b1)
                v = (g * g) * (1 - b2)
            self.m[p] = Tensor.make_const(m)
            self.v[p] = Tensor.make_const(v)
            m_hat = m / c1
            v_hat = v / c2
            p.data = Tensor.make_const(w - m_hat * self.lr / (v_hat ** 0.5 + self.eps))
