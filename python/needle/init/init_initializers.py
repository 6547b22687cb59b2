"""Weight initialisers (Xavier / Kaiming); each makes exactly one numpy draw."""
import math

from .init_basic import rand, randn

__all__ = ["xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"]


def xavier_uniform(fan_in, fan_out, gain=1.0, **kwargs):
    """fan_in x fan_out tensor ~ U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))."""
    a = gain * math.sqrt(6 / (fan_in + fan_out))
    return rand(fan_in, fan_out, low=-a, high=a, **kwargs)


def xavier_normal(fan_in, fan_out, gain=1.0, **kwargs):
    """fan_in x fan_out tensor ~ N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    std = gain * math.sqrt(2 / (fan_in + fan_out))
    return randn(fan_in, fan_out, mean=0.0, std=std, **kwargs)


def _relu_gain(nonlinearity):
    if nonlinearity != "relu":
        raise ValueError(f"kaiming init: only nonlinearity='relu' is supported, "
                         f"got {nonlinearity!r}")
    return math.sqrt(2)


def kaiming_uniform(fan_in, fan_out, shape=None, nonlinearity="relu", **kwargs):
    """U(-b, b), b = sqrt(2) * sqrt(3 / fan_in), of shape `shape` (default fan_in x fan_out).

    fan_in is the given fan_in even when `shape` is given (e.g. conv weights K x K x Cin x Cout).
    """
    bound = _relu_gain(nonlinearity) * math.sqrt(3 / fan_in)
    if shape is None:
        shape = (fan_in, fan_out)
    return rand(*shape, low=-bound, high=bound, **kwargs)


def kaiming_normal(fan_in, fan_out, nonlinearity="relu", **kwargs):
    """fan_in x fan_out tensor ~ N(0, std^2), std = sqrt(2) / sqrt(fan_in)."""
    std = _relu_gain(nonlinearity) / math.sqrt(fan_in)
    return randn(fan_in, fan_out, mean=0.0, std=std, **kwargs)
