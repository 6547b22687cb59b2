"""Special functions: erf (for the exact GELU).

No backend has an erf kernel, so `Erf.compute` composes the element-wise primitives every
backend has (maximum, exp, multiply, divide, >=): Abramowitz & Stegun formula 7.1.26,
    erf(|x|) = 1 - (a1 t + a2 t^2 + a3 t^3 + a4 t^4 + a5 t^5) exp(-x^2),  t = 1 / (1 + p |x|),
odd-extended by sign(x). Its absolute error is below 1.5e-7 in exact arithmetic; in float32 the
measured max |erf - torch.erf| is below 5e-7 (tests/test_losses.py).
"""
import math

from ..autograd import TensorOp
from ..backend_selection import BACKEND, array_api
from .ops_mathematic import exp

__all__ = ["Erf", "erf"]

_NUMPY_MODE = BACKEND == "np"
_P = 0.3275911
_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


class Erf(TensorOp):
    """The error function erf(a), element-wise; any shape (float32 error < 5e-7)."""
    def compute(self, a):
        absolute = array_api.maximum(a, -a)
        t = (absolute * _P + 1.0) ** -1.0
        poly = t * _A[4]
        for coef in reversed(_A[:4]):  # Horner: ((a5 t + a4) t + a3) t ...
            poly = (poly + coef) * t
        magnitude = 1.0 - poly * array_api.exp(-(a * a))
        sign = a >= 0
        if _NUMPY_MODE:
            sign = sign.astype(a.dtype)
        return magnitude * (sign * 2.0 - 1.0)

    def gradient(self, out_grad, node):
        x = node.inputs[0]
        return out_grad * exp(-(x * x)) * _TWO_OVER_SQRT_PI


def erf(a):
    """The error function, element-wise (max abs error < 5e-7 in float32; see the module doc)."""
    return Erf()(a)
