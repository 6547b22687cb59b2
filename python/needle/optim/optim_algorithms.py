"""SGD (dampened momentum by default, torch's with `dampening=` / `nesterov=`), Adam and AdamW.

Parameters and state are updated in place (their buffers are overwritten), never by editing
`p.grad`: fixed buffers are what a captured step (ndl.jit) replays.
"""
from numbers import Real

import numpy as np

from ..autograd import Tensor
from ..backend_ndarray import optim_update
from ..backend_ndarray.ndarray import NDArray
from .optim_basic import Optimizer, _arrays, _check_nonneg, _hyper_property

__all__ = ["SGD", "Adam", "AdamW"]


class SGD(Optimizer):
    """Stochastic gradient descent with momentum and L2 weight decay.

    Default (the needle contract, dampened momentum): for each parameter with a grad,
    g = grad + weight_decay * p; u = momentum * u + (1 - momentum) * g (u starts at 0, so the
    first step moves by lr * (1 - momentum) * g); p = p - lr * u.

    torch mode, when `dampening` is given or `nesterov=True` (exactly `torch.optim.SGD`):
    g = grad + weight_decay * p; u = g on the first step, then u = momentum * u + (1 - dampening)
    * g; the step direction is g + momentum * u with nesterov, else u; p = p - lr * direction.
    Pass `dampening=0.0` to get torch's default SGD.

    Args:
        params: Tensors, or parameter-group dicts (keys: params, lr, momentum, dampening,
            weight_decay, nesterov).
        lr, momentum, weight_decay: non-negative numbers.
        dampening: None (contract), or a non-negative number (torch mode).
        nesterov: bool; needs momentum > 0 and dampening 0 (as torch).

    State: `self.u`, a dict parameter -> Tensor (torch's "momentum_buffer").

    Example:
        >>> opt = SGD(model.parameters(), lr=0.1, momentum=0.9, dampening=0.0)  # torch's SGD
    """

    _hyper = ("lr", "momentum", "weight_decay")
    _buffers = ("u",)
    lr = _hyper_property("lr", "learning rate of the first group (setting it sets every group)")
    momentum = _hyper_property("momentum", "momentum of the first group")
    weight_decay = _hyper_property("weight_decay", "weight decay of the first group")
    dampening = _hyper_property("dampening", "None (contract) or torch's dampening")
    nesterov = _hyper_property("nesterov", "torch's Nesterov momentum flag")

    def __init__(self, params, lr=0.01, momentum=0.0, weight_decay=0.0, dampening=None,
                 nesterov=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov)
        self._check_group(defaults)
        super().__init__(params, defaults)
        self.u = {}

    def _check_group(self, group):
        _check_nonneg("SGD", lr=group["lr"], momentum=group["momentum"],
                      weight_decay=group["weight_decay"])
        if group["dampening"] is not None:
            _check_nonneg("SGD", dampening=group["dampening"])
        if not isinstance(group["nesterov"], bool):
            raise TypeError(f"SGD: nesterov must be a bool, got {group['nesterov']!r}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] not in (None, 0)):
            raise ValueError("SGD: nesterov momentum requires momentum > 0 and zero dampening, "
                             f"got momentum={group['momentum']}, "
                             f"dampening={group['dampening']}")

    def _code_path(self, group):
        return (group["dampening"] is None, group["nesterov"], group["momentum"] != 0,
                group["weight_decay"] != 0)

    def step(self):
        for index, group in enumerate(self.param_groups):
            torch_mode = group["dampening"] is not None or group["nesterov"]
            hyper = {}  # device -> the group's [momentum, dampening, neg_lr, wd] there
            for p in group["params"]:
                if p.grad is None:
                    continue
                w, g = _arrays(p)
                if not isinstance(w, NDArray):  # numpy mode: the formula as array arithmetic
                    arrays_step = (self._torch_step_arrays if torch_mode
                                   else self._dampened_step_arrays)
                    arrays_step(p, w, g, group)
                    continue
                if w.device not in hyper:
                    values = _sgd_torch_values if torch_mode else _sgd_values
                    hyper[w.device] = self._hyper_on_device(index, w.device, values)
                u_prev = self.u[p].realize_cached_data() if p in self.u else None
                if torch_mode:
                    w_new, u = optim_update.sgd_torch_update(
                        w, g, u_prev, hyper[w.device], group["weight_decay"] != 0,
                        _direction(group), in_place=True)
                else:
                    w_new, u = optim_update.sgd_update(w, g, u_prev, hyper[w.device],
                                                       group["weight_decay"] != 0, in_place=True)
                if u is not None and u is not u_prev:
                    self.u[p] = Tensor.make_const(u)
                if w_new is not w:
                    p.data = Tensor.make_const(w_new)
        self._guard_replay()

    def _dampened_step_arrays(self, p, w, g, group):
        momentum, weight_decay = group["momentum"], group["weight_decay"]
        if weight_decay:
            g = g + w * weight_decay
        if p in self.u:
            u = self.u[p].realize_cached_data() * momentum + g * (1 - momentum)
        else:
            u = g * (1 - momentum)
        self.u[p] = Tensor.make_const(u)
        # w + (-lr) * u is exactly w - lr * u
        p.data = Tensor.make_const(w + u * (-group["lr"]))

    def _torch_step_arrays(self, p, w, g, group):
        momentum, weight_decay = group["momentum"], group["weight_decay"]
        if weight_decay:
            g = g + w * weight_decay
        direction = g
        if momentum:
            if p in self.u:
                u = self.u[p].realize_cached_data() * momentum + g * (1 - (group["dampening"] or 0))
            else:  # torch starts the buffer at the first (undampened) gradient; a copy, as
                u = g * 1.0  # load_state_dict writes into the buffer, never into the user's grad
            self.u[p] = Tensor.make_const(u)
            direction = g + u * momentum if group["nesterov"] else u
        p.data = Tensor.make_const(w + direction * (-group["lr"]))


def _sgd_values(group):
    """What optim_update.sgd_update reads: [momentum, dampening, neg_lr, weight_decay]."""
    momentum = group["momentum"]
    return [momentum, 1 - momentum, -group["lr"], group["weight_decay"]]


def _sgd_torch_values(group):
    """What optim_update.sgd_torch_update reads: [momentum, 1 - dampening, neg_lr, weight_decay]
    (nesterov without dampening: torch's default 0)."""
    return [group["momentum"], 1 - (group["dampening"] or 0), -group["lr"],
            group["weight_decay"]]


def _direction(group):
    """torch-mode SGD's step direction (the momentum != 0 test is part of _code_path)."""
    if not group["momentum"]:
        return optim_update.SGD_GRADIENT
    return optim_update.SGD_NESTEROV if group["nesterov"] else optim_update.SGD_MOMENTUM


def _adam_values(group):
    """What optim_update.adam_update reads (ADAM_HYPER), the differences taken exactly."""
    lr, (b1, b2), wd = group["lr"], group["betas"], group["weight_decay"]
    return [lr, b1, 1 - b1, b2, 1 - b2, group["eps"], wd, 1 - lr * wd]


def _check_betas(owner, betas):
    if (not isinstance(betas, (tuple, list)) or len(betas) != 2
            or not all(isinstance(b, Real) and not isinstance(b, bool) for b in betas)):
        raise TypeError(f"{owner}: betas must be a pair of numbers, got {betas!r}")
    if not all(0 <= b < 1 for b in betas):
        raise ValueError(f"{owner}: betas must be in [0, 1), got {tuple(betas)}")


class Adam(Optimizer):
    """Adam with bias correction and L2-in-gradient weight decay (for decoupled decay: AdamW).

    Per step: t += 1 (once per call, shared by all parameters); per parameter with a grad:
    g = grad + weight_decay * p; m = beta1 * m + (1 - beta1) * g;
    v = beta2 * v + (1 - beta2) * g**2 (both start at 0);
    p = p - lr * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps).

    Args:
        params: Tensors, or parameter-group dicts (keys: params, lr, betas, eps, weight_decay).
        lr, eps, weight_decay: non-negative numbers.
        beta1, beta2: the contract's spelling of the decay rates, in [0, 1).
        betas: torch's spelling, a pair (beta1, beta2); give it or beta1/beta2, not both.

    State: `self.t` (int), `self.m`, `self.v` (dicts parameter -> Tensor).
    """

    _hyper = ("lr", "beta1", "beta2", "eps", "weight_decay")
    _buffers = ("m", "v")
    _decoupled = False  # AdamW: weight decay scales the weights instead of adding to g
    lr = _hyper_property("lr", "learning rate of the first group (setting it sets every group)")
    betas = _hyper_property("betas", "(beta1, beta2) of the first group")
    eps = _hyper_property("eps", "epsilon of the first group")
    weight_decay = _hyper_property("weight_decay", "weight decay of the first group")

    def __init__(self, params, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                 betas=None):
        name = type(self).__name__
        if betas is None:
            betas = (beta1, beta2)
        elif (beta1, beta2) != (0.9, 0.999):
            raise TypeError(f"{name}: give betas=(b1, b2) or beta1/beta2, not both")
        defaults = dict(lr=lr, betas=tuple(betas) if isinstance(betas, list) else betas,
                        eps=eps, weight_decay=weight_decay)
        self._check_group(defaults)
        super().__init__(params, defaults)
        self._t = 0  # steps taken, as of the last reset (see the `t` property)
        self._counter = None  # t as a one-element device array, once stepping starts
        self.m = {}
        self.v = {}

    @property
    def t(self):
        """Steps taken. Counted on the device once stepping starts, so that a captured step
        (ndl.jit), which runs no Python, still advances it; reading it reads the device."""
        if self._counter is None:
            return self._t
        return int(np.asarray(self._counter).reshape(-1)[0])

    @t.setter
    def t(self, value):
        self._t = int(value)
        if self._counter is not None:  # in place: a captured step (ndl.jit) counts on from it
            self._counter[()] = self._t

    def _device_scalar(self, value):
        like = self.params[0]  # its dtype: float64 in numpy mode stays float64
        return Tensor(np.full(1, value), device=like.device, dtype=like.dtype,
                      requires_grad=False).realize_cached_data()

    def _advance(self):
        """t += 1 on the device (in place, as m and v); returns t, or None without parameters."""
        if not self.params:
            self._t += 1
            return None
        if self._counter is None:
            self._counter = self._device_scalar(self._t)
        t = self._counter
        t[()] = t + 1
        return t

    def _check_group(self, group):
        name = type(self).__name__
        _check_betas(name, group["betas"])
        _check_nonneg(name, lr=group["lr"], eps=group["eps"], weight_decay=group["weight_decay"])

    @property
    def beta1(self):
        """The first group's beta1 (setting it sets every group's)."""
        return self.betas[0]

    @beta1.setter
    def beta1(self, value):
        for group in self.param_groups:
            group["betas"] = (value, group["betas"][1])
        self.defaults["betas"] = (value, self.defaults["betas"][1])

    @property
    def beta2(self):
        """The first group's beta2 (setting it sets every group's)."""
        return self.betas[1]

    @beta2.setter
    def beta2(self, value):
        for group in self.param_groups:
            group["betas"] = (group["betas"][0], value)
        self.defaults["betas"] = (self.defaults["betas"][0], value)

    def _code_path(self, group):
        return (group["weight_decay"] != 0,)

    def step(self):
        t = self._advance()
        decay = (optim_update.ADAM_DECOUPLED_DECAY if self._decoupled
                 else optim_update.ADAM_L2_DECAY)
        for index, group in enumerate(self.param_groups):
            hyper = {}  # device -> the group's ADAM_HYPER values there
            group_decay = decay if group["weight_decay"] else optim_update.ADAM_NO_DECAY
            for p in group["params"]:
                if p.grad is None:
                    continue
                w, g = _arrays(p)
                if not isinstance(w, NDArray):  # numpy mode: the formula as array arithmetic
                    self._step_arrays(p, w, g, group, t)
                    continue
                if w.device not in hyper:
                    hyper[w.device] = self._hyper_on_device(index, w.device, _adam_values)
                state = ((self.m[p].realize_cached_data(), self.v[p].realize_cached_data())
                         if p in self.m else (None, None))
                w_new, m, v = optim_update.adam_update(w, g, *state, hyper[w.device], t,
                                                       group_decay, in_place=True)
                for table, new_value, old_value in ((self.m, m, state[0]), (self.v, v, state[1])):
                    if new_value is not old_value:
                        table[p] = Tensor.make_const(new_value)
                if w_new is not w:
                    p.data = Tensor.make_const(w_new)
        self._guard_replay()

    def _step_arrays(self, p, w, g, group, t):
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        w_new = w
        if wd and self._decoupled:
            w_new = w * (1 - lr * wd)
        elif wd:
            g = g + w * wd
        if p in self.m:
            m = self.m[p].realize_cached_data() * b1 + g * (1 - b1)
            v = self.v[p].realize_cached_data() * b2 + (g * g) * (1 - b2)
        else:
            m, v = g * (1 - b1), (g * g) * (1 - b2)
        self.m[p], self.v[p] = Tensor.make_const(m), Tensor.make_const(v)
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        p.data = Tensor.make_const(w_new - m_hat * lr / (v_hat ** 0.5 + eps))


class AdamW(Adam):
    """Adam with decoupled weight decay (torch.optim.AdamW; Loshchilov & Hutter).

    Per parameter with a grad: p = p * (1 - lr * weight_decay), then the Adam update of `Adam`
    with g = grad (the decay does not enter m or v). Defaults are torch's: lr=1e-3,
    weight_decay=1e-2.

    Args:
        params: Tensors, or parameter-group dicts (keys: params, lr, betas, eps, weight_decay).
        lr, eps, weight_decay: non-negative numbers; betas: a pair in [0, 1).
    """

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, eps=eps, weight_decay=weight_decay, betas=betas)
