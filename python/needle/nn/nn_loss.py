"""Losses with torch's names and reductions: CrossEntropyLoss, NLLLoss, MSELoss, L1Loss,
BCEWithLogitsLoss. (The contract's SoftmaxLoss lives in nn_basic.)

Every loss takes `reduction` = "mean" (default), "sum" or "none" (per-sample values).
Labels for CrossEntropyLoss / NLLLoss are integer class ids given as a numpy array or a Tensor
(any int/uint/float dtype holding integers), as for SoftmaxLoss.
"""
from typing import Optional

import numpy as np

from .. import init, ops
from ..autograd import Tensor
from .nn_basic import Module

__all__ = ["BCEWithLogitsLoss", "CrossEntropyLoss", "L1Loss", "MSELoss", "NLLLoss"]

_REDUCTIONS = ("mean", "sum", "none")


class _Loss(Module):
    """Base of the losses here: validates and stores `reduction`."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {_REDUCTIONS}, "
                             f"got {reduction!r}")
        self.reduction = reduction

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


def _reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return values
    total = ops.summation(values)
    if reduction == "sum":
        return total
    return total / max(int(np.prod(values.shape)), 1)


def _labels(name: str, y, n: int, k: int) -> np.ndarray:
    """Integer class ids (n,) in [0, k) as int64, or ValueError naming the loss."""
    labels = y.numpy() if isinstance(y, Tensor) else np.asarray(y)
    if labels.shape != (n,):
        raise ValueError(f"{name}: expected labels of shape ({n},) for input {(n, k)}, got "
                         f"{tuple(labels.shape)}")
    if n and (not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels))
              or labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"{name}: labels must be integers in [0, {k}), got values in "
                         f"[{labels.min()}, {labels.max()}]")
    return labels.astype(np.int64)


def _check_2d(name: str, x: Tensor, what: str = "input") -> tuple[int, int]:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: {what} must be a Tensor, got {type(x).__name__}")
    if len(x.shape) != 2:
        raise ValueError(f"{name}: expected {what} of shape (N, C), got {tuple(x.shape)}")
    return x.shape


def _picked(name: str, logp: Tensor, y) -> Tensor:
    """(N,) -logp[i, y[i]]."""
    n, k = logp.shape
    onehot = init.one_hot(k, _labels(name, y, n, k), device=logp.device, dtype=logp.dtype)
    return -ops.summation(logp * onehot, axes=(1,))


class NLLLoss(_Loss):
    """Negative log-likelihood of integer labels given log-probabilities.

    Shapes: input (N, C) log-probabilities (e.g. from `nn.LogSoftmax()`), target (N,) ids.
    Returns -input[i, target[i]] reduced by `reduction` ("none": shape (N,)).
    """

    def forward(self, input: Tensor, target) -> Tensor:
        _check_2d("NLLLoss", input)
        return _reduce(_picked("NLLLoss", input, target), self.reduction)


class CrossEntropyLoss(_Loss):
    """Cross-entropy of logits against class ids (or class probabilities), torch semantics.

    Args:
        reduction: "mean" | "sum" | "none".
        label_smoothing: eps in [0, 1]; the target becomes (1 - eps) * onehot + eps / C.
    Shapes: input (N, C) logits; target (N,) integer ids, or (N, C) probabilities (a Tensor).
    Returns a scalar, or (N,) with reduction="none".

    Example:
        >>> loss = nn.CrossEntropyLoss(label_smoothing=0.1)(logits, labels)
    """

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(reduction)
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
                or not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got "
                             f"{label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def extra_repr(self):
        return f"{super().extra_repr()}, label_smoothing={self.label_smoothing}"

    def forward(self, input: Tensor, target) -> Tensor:
        n, k = _check_2d("CrossEntropyLoss", input)
        logp = ops.log_softmax(input, axis=1)
        eps = self.label_smoothing
        if isinstance(target, Tensor) and len(target.shape) == 2:  # class probabilities
            if tuple(target.shape) != (n, k):
                raise ValueError(f"CrossEntropyLoss: probability targets must have the input's "
                                 f"shape {(n, k)}, got {tuple(target.shape)}")
            probs = target * (1 - eps) + eps / k if eps else target
            per_sample = -ops.summation(logp * probs, axes=(1,))
        else:
            per_sample = _picked("CrossEntropyLoss", logp, target)
            if eps:
                uniform = -ops.summation(logp, axes=(1,)) / k
                per_sample = per_sample * (1 - eps) + uniform * eps
        return _reduce(per_sample, self.reduction)


def _nonnegative_mask(x: Tensor) -> Tensor:
    """A constant Tensor, 1.0 where x >= 0 and 0.0 elsewhere (no gradient flows through it)."""
    mask = x.realize_cached_data() >= 0
    if isinstance(mask, np.ndarray):  # numpy mode: bool -> x's float dtype
        mask = mask.astype(x.dtype)
    return Tensor.make_const(mask)


def _check_pair(name: str, input, target) -> None:
    for what, t in (("input", input), ("target", target)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: {what} must be a Tensor, got {type(t).__name__}")
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(f"{name}: input {tuple(input.shape)} and target "
                         f"{tuple(target.shape)} must have the same shape")


class MSELoss(_Loss):
    """(input - target)^2, element-wise, reduced ("mean" over all elements). Same shapes."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        _check_pair("MSELoss", input, target)
        diff = input - target
        return _reduce(diff * diff, self.reduction)


class L1Loss(_Loss):
    """|input - target|, element-wise, reduced. Same shapes. (Gradient 0 where equal.)"""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        _check_pair("L1Loss", input, target)
        diff = input - target
        return _reduce(ops.relu(diff) + ops.relu(-diff), self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits x with targets y in [0, 1], same shapes, computed stably:
        loss = max(x, 0) - x * y + log(1 + exp(-|x|))
    (no overflow for any finite x). With `pos_weight` w (broadcast over the last axis, as in
    torch): loss = (1 - y) x + (1 + (w - 1) y) (log(1 + exp(-|x|)) + max(-x, 0)).
    """

    def __init__(self, reduction: str = "mean", pos_weight: Optional[Tensor] = None):
        super().__init__(reduction)
        if pos_weight is not None and not isinstance(pos_weight, Tensor):
            raise TypeError(f"BCEWithLogitsLoss: pos_weight must be a Tensor or None, got "
                            f"{type(pos_weight).__name__}")
        self.pos_weight = pos_weight

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        _check_pair("BCEWithLogitsLoss", input, target)
        x, y = input, target
        # Branch on the sign with a constant mask m = [x >= 0], so that max(x, 0) = x m and
        # |x| = x (2m - 1) are the smooth branch formulas: the gradient at x = 0 is then
        # sigmoid(0) - y, as torch gives (relu's 0-subgradient would drop the 1/2).
        m = _nonnegative_mask(x)
        softplus_neg_abs = ops.log(ops.exp(-(x * (m * 2.0 - 1.0))) + 1.0)
        if self.pos_weight is None:
            loss = x * m - x * y + softplus_neg_abs
        else:
            w = self.pos_weight
            if len(w.shape) != 1 or w.shape[0] != x.shape[-1]:
                raise ValueError(f"BCEWithLogitsLoss: pos_weight must have shape "
                                 f"({x.shape[-1]},), got {tuple(w.shape)}")
            w = ops.broadcast_to(ops.reshape(w, (1,) * (len(x.shape) - 1) + (x.shape[-1],)),
                                 x.shape)
            loss = (1.0 - y) * x + ((w - 1.0) * y + 1.0) * (softplus_neg_abs - x * (1.0 - m))
        return _reduce(loss, self.reduction)
