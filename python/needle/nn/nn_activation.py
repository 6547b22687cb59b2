"""Activations with torch's names (GELU, SiLU, LeakyReLU) and channel dropout (Dropout2d).

ReLU, Tanh, Sigmoid, Identity and Dropout live in nn_basic (contract modules); Softmax and
LogSoftmax in nn_conv. Nothing here draws from a random stream except Dropout2d in training.
"""
import math

from .. import init, ops
from ..autograd import Tensor
from ..random import resolve_generator
from .nn_basic import Module

__all__ = ["GELU", "Dropout2d", "LeakyReLU", "SiLU"]


class GELU(Module):
    """y = x * Phi(x), Phi the standard normal CDF, any shape.

    approximate="none" (torch's default) uses erf: 0.5 x (1 + erf(x / sqrt 2)), with needle's
    `ops.erf` (max abs error < 5e-7 in float32). approximate="tanh" uses
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as torch does.
    """

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def extra_repr(self):
        return f"approximate={self.approximate!r}"

    def forward(self, x: Tensor) -> Tensor:
        if self.approximate == "tanh":
            inner = (x + x * x * x * 0.044715) * math.sqrt(2.0 / math.pi)
            return x * (ops.tanh(inner) + 1.0) * 0.5
        return x * (ops.erf(x * (1.0 / math.sqrt(2.0))) + 1.0) * 0.5


class SiLU(Module):
    """y = x * sigmoid(x) (a.k.a. swish), any shape."""

    def forward(self, x: Tensor) -> Tensor:
        return x * ops.sigmoid(x)


class LeakyReLU(Module):
    """y = x for x >= 0, negative_slope * x otherwise, any shape.

    At exactly x = 0 the gradient is 0 here (relu(x) - slope * relu(-x)); torch gives
    negative_slope there. Everywhere else the two agree.
    """

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)):
            raise TypeError(f"LeakyReLU: negative_slope must be a number, got "
                            f"{type(negative_slope).__name__}")
        self.negative_slope = float(negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"

    def forward(self, x: Tensor) -> Tensor:
        return ops.relu(x) - ops.relu(-x) * self.negative_slope


class Dropout2d(Module):
    """Zero whole channels: input N x C x H x W (or C x H x W); in training each (n, c) channel
    is kept with probability 1 - p and scaled by 1/(1-p).

    Draws (training only): one `rand(N, C)` (or `rand(C)`), from numpy's global stream or from
    `generator`; a channel is kept where the draw <= 1 - p, as `Dropout` does. Eval: identity.
    """

    def __init__(self, p: float = 0.5, generator=None):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout2d: p must be a number in [0, 1], got {p!r}")
        self.p = float(p)
        self.generator = (resolve_generator(generator, "Dropout2d")
                          if generator is not None else None)

    def extra_repr(self):
        return f"p={self.p}"

    def forward(self, x: Tensor) -> Tensor:
        if len(x.shape) not in (3, 4):
            raise ValueError(f"Dropout2d: expected N x C x H x W or C x H x W input, got "
                             f"{tuple(x.shape)}")
        if not self.training:
            return x
        channels = tuple(x.shape[:-2])
        mask = init.randb(*channels, p=1 - self.p, device=x.device, dtype=x.dtype,
                          generator=self.generator)
        mask = ops.broadcast_to(ops.reshape(mask, channels + (1, 1)), x.shape)
        if self.p == 1.0:
            return x * mask
        return x * mask / (1 - self.p)
