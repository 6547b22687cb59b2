"""Normalisation modules: BatchNorm1d (batch statistics, running buffers) and LayerNorm1d.

Both are built from `needle.ops` and `needle.init` only and draw no random numbers. BatchNorm2d
(nn_conv) reshapes its input to N x C and reuses `BatchNorm1d.forward`.
"""
import math

import numpy as np

from .. import init, ops
from ..autograd import Tensor
from ..jit_live import guard_attr
from .nn_basic import Module, Parameter

__all__ = ["BatchNorm1d", "LayerNorm1d"]


def _real(x):
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _positive(x):
    return _real(x) and x > 0


class BatchNorm1d(Module):
    """Batch normalisation over axis 0 of an N x dim input.

    Train: y = weight * (x - mean) / sqrt(var + eps) + bias with the batch mean and the biased
    batch variance; running = (1 - momentum) * running + momentum * batch_stat (detached).
    Eval: the same formula with the running statistics.
    Parameters `weight` (dim,) ones, `bias` (dim,) zeros; buffers `running_mean` (dim,) zeros,
    `running_var` (dim,) ones. Subclasses (BatchNorm2d) reshape to N x dim and call
    `BatchNorm1d.forward`.
    """

    def __init__(self, dim, eps=1e-5, momentum=0.1, device=None, dtype="float32"):
        super().__init__()
        if not _positive(eps) or not _real(momentum) or not 0 <= momentum <= 1:  # NaN fails too
            raise ValueError(f"{type(self).__name__}: need eps > 0 and 0 <= momentum <= 1, got "
                             f"eps={eps!r}, momentum={momentum!r}")
        self.dim = dim
        self.eps = eps
        self.momentum = momentum
        self.weight = Parameter(init.ones(dim, device=device, dtype=dtype, requires_grad=True))
        self.bias = Parameter(init.zeros(dim, device=device, dtype=dtype, requires_grad=True))
        self.register_buffer("running_mean", init.zeros(dim, device=device, dtype=dtype))
        self.register_buffer("running_var", init.ones(dim, device=device, dtype=dtype))

    def extra_repr(self):
        return f"{self.dim}, eps={self.eps}, momentum={self.momentum}"

    def _update_running_stats(self, batch_mean, batch_var) -> None:
        """running = (1 - momentum) * running + momentum * batch_stat for the mean and the
        variance, in place (a captured step, ndl.jit, replays it), on raw arrays: the arithmetic
        of the equivalent Tensor ops, in one backend call, without making graph nodes."""
        guard_attr(self, "momentum")  # ndl.jit: a changed momentum or eps recaptures the step
        guard_attr(self, "eps")
        running_mean = self.running_mean.realize_cached_data()
        running_var = self.running_var.realize_cached_data()
        mean, var = batch_mean, batch_var  # raw (C,) arrays
        if hasattr(running_mean, "batch_norm_running_update"):  # NDArray
            running_mean.batch_norm_running_update(running_var, mean, var, self.momentum)
            return
        m = self.momentum  # numpy mode: in place, cast to the buffer's dtype
        running_mean[()] = running_mean * (1 - m) + mean * m
        running_var[()] = running_var * (1 - m) + var * m

    def forward(self, x: Tensor) -> Tensor:
        if len(x.shape) != 2 or x.shape[1] != self.dim:
            raise ValueError(
                f"{type(self).__name__}: expected input (N, {self.dim}), got {tuple(x.shape)}"
            )
        return self._normalize(x)

    def _normalize(self, x: Tensor) -> Tensor:
        """Normalise x (N x dim x ...) per channel (axis 1)."""
        if self.training:
            if x.shape[0] * math.prod(x.shape[2:]) <= 1:  # a variance of one value is 0
                raise ValueError(f"{type(self).__name__}: expected more than 1 value per channel "
                                 f"when training, got input of shape {tuple(x.shape)}")
            # One fused op (ops.batch_norm); its closed-form gradient flows through mean and var.
            y, stats = ops.batch_norm(x, self.weight, self.bias, self.eps)
            self._update_running_stats(stats.batch_mean, stats.batch_var)
            return y
        cshape = (1, self.dim) + (1,) * (len(x.shape) - 2)

        def per_channel(t):
            return ops.broadcast_to(ops.reshape(t, cshape), x.shape)

        scale = ops.reshape(self.weight, (self.dim,)) / ops.power_scalar(self.running_var + self.eps,
                                                                         0.5)
        shift = ops.reshape(self.bias, (self.dim,)) - self.running_mean * scale
        return x * per_channel(scale) + per_channel(shift)


class LayerNorm1d(Module):
    """Layer normalisation over the last axis.

    Shapes: x (..., dim) (the contract case is N x dim) -> same shape.
    y = weight * (x - mean) / sqrt(var + eps) + bias, biased mean/var over the last axis.
    """

    def __init__(self, dim, eps=1e-5, device=None, dtype="float32"):
        super().__init__()
        self.dim = dim
        if not _positive(eps):
            raise ValueError(f"LayerNorm1d: need eps > 0, got eps={eps!r}")
        self.eps = eps
        self.weight = Parameter(init.ones(dim, device=device, dtype=dtype, requires_grad=True))
        self.bias = Parameter(init.zeros(dim, device=device, dtype=dtype, requires_grad=True))

    def extra_repr(self):
        return f"{self.dim}, eps={self.eps}"

    def forward(self, x: Tensor) -> Tensor:
        shape = tuple(x.shape)
        if len(shape) < 1 or shape[-1] != self.dim:
            raise ValueError(f"LayerNorm1d: expected input (..., {self.dim}), got {shape}")
        if len(shape) != 2:
            x = ops.reshape(x, (math.prod(shape[:-1]), self.dim))
        n = x.shape[0]
        col = (n, 1)
        mean = ops.summation(x, axes=(1,)) / self.dim
        centered = x - ops.broadcast_to(ops.reshape(mean, col), x.shape)
        var = ops.summation(centered * centered, axes=(1,)) / self.dim
        std = ops.power_scalar(ops.reshape(var, col) + self.eps, 0.5)
        normed = centered / ops.broadcast_to(std, x.shape)
        w = ops.broadcast_to(ops.reshape(self.weight, (1, self.dim)), x.shape)
        b = ops.broadcast_to(ops.reshape(self.bias, (1, self.dim)), x.shape)
        out = normed * w + b
        return out if len(shape) == 2 else ops.reshape(out, shape)
