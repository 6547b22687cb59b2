"""In-place initialisers with torch's names (`kaiming_uniform_`, `xavier_uniform_`, `zeros_`, ...).

Each one overwrites the values of an existing Tensor / Parameter (its identity, and so the
optimizer's reference to it, is kept) and returns it. Random ones make exactly one draw of the
tensor's shape, from numpy's global stream or from `generator=`.

Fan convention: needle stores weights as (..., in, out) — Linear (in, out), Conv (K, K, Cin, Cout)
— where torch stores (out, in, ...). The fans are read from needle's layout:
fan_in = in * receptive field, fan_out = out * receptive field, receptive field = the product of
the leading axes. These are the numbers torch computes for the equivalent torch weight, so a
needle layer initialised with `kaiming_uniform_(w)` gets the same bound as the same torch layer.
"""
import math

from ..autograd import Tensor
from .init_basic import constant, rand, randn

__all__ = [
    "calculate_gain",
    "constant_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "normal_",
    "ones_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]

_LINEAR = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
           "conv_transpose3d", "sigmoid")


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for `nonlinearity` (torch's table): linear/conv/sigmoid 1,
    tanh 5/3, relu sqrt(2), leaky_relu sqrt(2 / (1 + slope^2)) (slope `param`, default 0.01),
    selu 3/4."""
    if nonlinearity in _LINEAR:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"calculate_gain: negative slope {param!r} is not a number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _check_tensor(tensor, where: str) -> Tensor:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{where}: expected a Tensor or Parameter, got {type(tensor).__name__}")
    return tensor


def _fans(tensor, where: str) -> tuple[int, int]:
    """(fan_in, fan_out) of a needle-layout weight (..., in, out)."""
    shape = tuple(tensor.shape)
    if len(shape) < 2:
        raise ValueError(f"{where}: fan in and fan out need a tensor of rank >= 2, got shape "
                         f"{shape}")
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _assign(tensor, values: Tensor) -> Tensor:
    tensor.data = values
    return tensor


def _kw(tensor):
    return {"device": tensor.device, "dtype": tensor.dtype}


def uniform_(tensor, a: float = 0.0, b: float = 1.0, generator=None):
    """Fill with U(a, b) (one `rand(*shape)` draw). Returns `tensor`."""
    _check_tensor(tensor, "uniform_")
    if not a <= b:
        raise ValueError(f"uniform_: need a <= b, got a={a}, b={b}")
    return _assign(tensor, rand(*tensor.shape, low=a, high=b, generator=generator, **_kw(tensor)))


def normal_(tensor, mean: float = 0.0, std: float = 1.0, generator=None):
    """Fill with N(mean, std^2) (one `randn(*shape)` draw). Returns `tensor`."""
    _check_tensor(tensor, "normal_")
    if std < 0:
        raise ValueError(f"normal_: std must be >= 0, got {std}")
    return _assign(tensor, randn(*tensor.shape, mean=mean, std=std, generator=generator,
                                 **_kw(tensor)))


def constant_(tensor, val: float):
    """Fill with `val` (no draw). Returns `tensor`."""
    _check_tensor(tensor, "constant_")
    if isinstance(val, bool) or not isinstance(val, (int, float)):
        raise TypeError(f"constant_: val must be a number, got {type(val).__name__}")
    return _assign(tensor, constant(*tensor.shape, c=float(val), **_kw(tensor)))


def zeros_(tensor):
    """Fill with 0. Returns `tensor`."""
    _check_tensor(tensor, "zeros_")
    return constant_(tensor, 0.0)


def ones_(tensor):
    """Fill with 1. Returns `tensor`."""
    _check_tensor(tensor, "ones_")
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor, gain: float = 1.0, generator=None):
    """U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)), fans from needle's (..., in, out)
    layout. Returns `tensor`."""
    fan_in, fan_out = _fans(_check_tensor(tensor, "xavier_uniform_"), "xavier_uniform_")
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -a, a, generator=generator)


def xavier_normal_(tensor, gain: float = 1.0, generator=None):
    """N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)). Returns `tensor`."""
    fan_in, fan_out = _fans(_check_tensor(tensor, "xavier_normal_"), "xavier_normal_")
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator=generator)


def _kaiming_std(tensor, a, mode, nonlinearity, where):
    _check_tensor(tensor, where)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"{where}: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _fans(tensor, where)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu", generator=None):
    """U(-b, b), b = gain * sqrt(3 / fan) (torch defaults: leaky_relu with a=0, i.e. gain
    sqrt(2), fan = fan_in). Returns `tensor`.

    Example:
        >>> lin = nn.Linear(4, 3)
        >>> nn.init.kaiming_uniform_(lin.weight, nonlinearity="relu")   # bound sqrt(6 / 4)
    """
    std = _kaiming_std(tensor, a, mode, nonlinearity, "kaiming_uniform_")
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator=generator)


def kaiming_normal_(tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", generator=None):
    """N(0, std^2), std = gain / sqrt(fan). Returns `tensor`."""
    std = _kaiming_std(tensor, a, mode, nonlinearity, "kaiming_normal_")
    return normal_(tensor, 0.0, std, generator=generator)
