"""NDArray's fused kernels: batch norm (forward, backward, running statistics) and the softmax
family along any axis, one backend call each. NDArray binds these functions as its methods
(`x.batch_norm(w, b)`), as it binds the element-wise ones of ndarray_ewise.py.
"""
from . import ndarray as _nd
from . import ndarray_ewise as _ew
from .checks import as_scalar as _as_scalar

__all__ = ["batch_norm", "batch_norm_backward", "batch_norm_running_update", "softmax",
           "log_softmax", "softmax_backward"]


def _norm_layout(a, weight, op):
    if a.ndim < 2 or a._shape[0] * _nd.prod(a._shape[2:]) == 0 or a._shape[1] == 0:
        raise ValueError(f"{op}: input must be N x C x ... with N * H * W > 0, got shape "
                         f"{a._shape}")
    c = a._shape[1]
    if weight.size != c:
        raise ValueError(f"{op}: weight of shape {weight.shape} for {c} channels (input "
                         f"{a._shape})")
    return a._shape[0], c, _nd.prod(a._shape[2:])


def _norm_operand(a):
    """(x, strides): `a` itself when it is dense (e.g. an N x C x H x W view of an NHWC buffer,
    a conv's output) and its spatial dims lie row-major among themselves, else its row-major
    copy; `strides` the (row, channel, inner) strides of x viewed N x C x (H*W), which the
    `_strided` kernels read it through."""
    spatial = [(n, s) for n, s in zip(a._shape[2:], a._strides[2:]) if n != 1]
    if not _ew.is_dense(a) or any(s != s_in * n_in for (_, s), (n_in, s_in) in zip(spatial,
                                                                                   spatial[1:])):
        a = a.compact()
        spatial = [(n, s) for n, s in zip(a._shape[2:], a._strides[2:]) if n != 1]
    return a, (a._strides[0], a._strides[1], spatial[-1][1] if spatial else 1)


def batch_norm(a, weight, bias, eps=1e-5):
    """Training batch norm of N x C (x ...) over every axis but 1, in one kernel call.

    Returns (out, mean (C,), var (C,)), var biased: out (a's shape, row-major) =
    (a - mean) * weight / sqrt(var + eps) + bias. A dense `a` in another
    layout (a conv's channels-last output) is read in place, not copied row-major first.
    """
    rows, c, inner = _norm_layout(a, weight, "batch_norm")
    if bias.size != c:
        raise ValueError(f"batch_norm: bias of shape {bias.shape} for {c} channels")
    x, strides = _norm_operand(a)
    out = _nd.NDArray._new(a._shape, a._device)
    mean, var = _nd.NDArray._new((c,), a._device), _nd.NDArray._new((c,), a._device)
    a.device.batch_norm_forward_strided(x._handle, weight.compact()._handle,
                                        bias.compact()._handle, out._handle, mean._handle,
                                        var._handle, rows, c, inner, strides, float(eps))
    return out, mean, var


def batch_norm_running_update(a, running_var, mean, var, momentum):
    """In place, `a` being the running mean (C,): a = a * (1 - momentum) + mean * momentum,
    and likewise running_var with var, in one backend call (the rounding of the separate
    array ops)."""
    c = a.size
    for what, arr in (("running_var", running_var), ("mean", mean), ("var", var)):
        if arr.size != c:
            raise ValueError(f"batch_norm_running_update: {what} of shape {arr.shape} for a "
                             f"running mean of shape {a._shape}")
    for what, arr in (("running mean", a), ("running_var", running_var)):
        if not arr.is_compact():
            raise ValueError(f"batch_norm_running_update: the {what} must be compact")
    m = _as_scalar(momentum, "batch_norm_running_update")
    a.device.batch_norm_running_update(mean.compact()._handle, var.compact()._handle,
                                       a._handle, running_var._handle, m, 1 - m)


def batch_norm_backward(a, out_grad, weight, mean, var, eps=1e-5):
    """Gradients of `batch_norm` at input a (N x C x ...) given its mean and var (C,).

    Returns (d input (row-major, a's shape), d weight (C,), d bias (C,)); `a` is read in place
    as `batch_norm` reads it.
    """
    rows, c, inner = _norm_layout(a, weight, "batch_norm_backward")
    if out_grad.shape != a._shape or mean.size != c or var.size != c:
        raise ValueError(f"batch_norm_backward: out_grad {out_grad.shape}, mean {mean.shape}, "
                         f"var {var.shape} do not match input {a._shape}")
    x, strides = _norm_operand(a)
    dx = _nd.NDArray._new(a._shape, a._device)
    dw, db = _nd.NDArray._new((c,), a._device), _nd.NDArray._new((c,), a._device)
    a.device.batch_norm_backward_strided(
        x._handle, out_grad.compact()._handle, weight.compact()._handle, mean.compact()._handle,
        var.compact()._handle, dx._handle, dw._handle, db._handle, rows, c, inner, strides,
        float(eps))
    return dx, dw, db


def _rowwise(a, axis, func, op, *others):
    """func(rows of a, *rows of others, out rows, row size) with `axis` moved last; `others`
    are arrays of a's shape, moved the same way."""
    (axis,) = _nd._normalize_axes(axis, a.ndim, op)
    order = tuple(i for i in range(a.ndim) if i != axis) + (axis,)
    moved = [x.permute(order).compact() for x in (a,) + others]
    out = _nd.NDArray._new(moved[0]._shape, a._device)
    if out.size:
        func(*[x._handle for x in moved], out._handle, a._shape[axis])
    inverse = tuple([order.index(i) for i in range(a.ndim)])
    return out.permute(inverse).compact()


def softmax(a, axis=-1):
    """Numerically stable softmax along `axis`."""
    return _rowwise(a, axis, a.device.softmax_rows, "softmax")


def log_softmax(a, axis=-1):
    """Numerically stable log-softmax along `axis`."""
    return _rowwise(a, axis, a.device.log_softmax_rows, "log_softmax")


def softmax_backward(a, out_grad, axis=-1):
    """Gradient of softmax along `axis` at output a: a * (g - sum(g * a, axis)),
    in one backend call. `out_grad` has a's shape."""
    if not isinstance(out_grad, _nd.NDArray) or out_grad.shape != a._shape:
        raise ValueError(f"softmax_backward: out_grad {getattr(out_grad, 'shape', out_grad)} "
                         f"for an output of shape {a._shape}")
    return _rowwise(a, axis, a.device.softmax_rows_backward, "softmax_backward", out_grad)
