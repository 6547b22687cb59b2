"""The optimizers' fused updates on NDArrays: one backend call per parameter.

The hyper-parameters sit in a small array on the parameter's device (`hyper_array`), which the
optimizer rewrites before each step; the kernels read them there. A replayed step (ndl.jit,
and on CUDA its graphs) therefore follows an lr schedule without re-recording any call. The
formulas, with their float32 rounding order, are in docs/backends.md and the numpy backend.
"""
import numpy as np

from .ndarray import NDArray

__all__ = ["hyper_array", "sgd_update", "sgd_torch_update", "adam_update", "SGD_HYPER",
           "ADAM_HYPER", "SGD_GRADIENT", "SGD_MOMENTUM", "SGD_NESTEROV", "ADAM_NO_DECAY",
           "ADAM_L2_DECAY", "ADAM_DECOUPLED_DECAY"]

# "dampening" is the gradient's factor in the buffer: 1 - momentum (contract), 1 - dampening (torch)
SGD_HYPER = ("momentum", "dampening", "neg_lr", "weight_decay")
ADAM_HYPER = ("lr", "beta1", "1-beta1", "beta2", "1-beta2", "eps", "weight_decay",
              "1-lr*weight_decay")
ADAM_NO_DECAY, ADAM_L2_DECAY, ADAM_DECOUPLED_DECAY = 0, 1, 2
# torch-mode SGD's step direction: the gradient (momentum 0), the momentum buffer, or Nesterov's
SGD_GRADIENT, SGD_MOMENTUM, SGD_NESTEROV = 0, 1, 2


def hyper_array(values, device):
    """`values` (numbers) as a compact float32 NDArray on `device`."""
    return NDArray(np.asarray(values, dtype=np.float32).reshape(-1), device=device)


def _check(op, w, named):
    for what, arr in named:
        if arr is None:
            continue
        if not isinstance(arr, NDArray):
            raise TypeError(f"{op}: {what} must be an NDArray, got {type(arr).__name__}")
        if arr.device != w.device:
            raise ValueError(f"{op}: {what} is on {arr.device}, the weights on {w.device}")
        if arr.shape != w.shape:
            raise ValueError(f"{op}: {what} of shape {arr.shape} for weights of shape {w.shape}")


def _small(op, what, arr, size, device):
    if not isinstance(arr, NDArray) or arr.size != size or arr.device != device:
        raise ValueError(f"{op}: {what} must be a {size}-element NDArray on {device}, got "
                         f"{getattr(arr, 'shape', type(arr).__name__)}")
    return arr.compact()


def _out(arr, like, in_place):
    """`arr` itself when it may be overwritten, else a new array shaped like `like`."""
    if in_place and arr is not None and arr.is_compact():
        return arr
    return NDArray.make(like.shape, device=like.device)


def sgd_update(w, grad, velocity, hyper, decay, in_place=False):
    """One SGD step for weights `w` (any shape), in one backend call.

    Args:
        w, grad: NDArrays of one shape; velocity: the same shape, or None (the first step).
        hyper: 4-element NDArray on w's device: [momentum, dampening, neg_lr, weight_decay].
        decay: whether to add weight_decay * w to the gradient (False skips reading it).
        in_place: overwrite w and velocity (when compact) instead of returning new arrays.

    Returns (new w, new velocity): g = grad + weight_decay * w (decay); v = momentum *
    velocity + dampening * g (dampening * g without a velocity); w' = w + neg_lr * v.
    """
    _check("sgd_step", w, (("grad", grad), ("velocity", velocity)))
    hyper = _small("sgd_step", "hyper", hyper, len(SGD_HYPER), w.device)
    w_out, v_out = _out(w, w, in_place), _out(velocity, w, in_place)
    g = grad.compact()
    v = g if velocity is None else velocity.compact()
    w.device.sgd_update(w.compact()._handle, g._handle, v._handle, w_out._handle, v_out._handle,
                        hyper._handle, bool(decay), velocity is not None)
    return w_out, v_out


def sgd_torch_update(w, grad, velocity, hyper, decay, direction, in_place=False):
    """One step of torch.optim.SGD for weights `w` (any shape), in one backend call.

    Args:
        w, grad: NDArrays of one shape; velocity: the momentum buffer (same shape), or None
            (the first step, or SGD_GRADIENT, which keeps no buffer).
        hyper: 4-element NDArray on w's device: [momentum, 1 - dampening, neg_lr, weight_decay].
        decay: whether to add weight_decay * w to the gradient (False skips reading it).
        direction: SGD_GRADIENT (momentum 0), SGD_MOMENTUM or SGD_NESTEROV.
        in_place: overwrite w and velocity (when compact) instead of returning new arrays.

    Returns (new w, new velocity; None with SGD_GRADIENT): g = grad + weight_decay * w (decay);
    v = momentum * velocity + (1 - dampening) * g (g itself without a velocity: torch starts
    the buffer at the undampened gradient); w' = w + neg_lr * d with d = g (SGD_GRADIENT), v
    (SGD_MOMENTUM) or g + momentum * v (SGD_NESTEROV).
    """
    _check("sgd_torch_step", w, (("grad", grad), ("velocity", velocity)))
    if direction not in (SGD_GRADIENT, SGD_MOMENTUM, SGD_NESTEROV):
        raise ValueError(f"sgd_torch_step: direction must be 0, 1 or 2, got {direction!r}")
    hyper = _small("sgd_torch_step", "hyper", hyper, len(SGD_HYPER), w.device)
    w_out = _out(w, w, in_place)
    # without a buffer (SGD_GRADIENT) the kernel neither reads u nor writes u_out
    v_out = _out(velocity, w, in_place) if direction != SGD_GRADIENT else None
    g = grad.compact()
    v = g if velocity is None else velocity.compact()
    w.device.sgd_torch_update(w.compact()._handle, g._handle, v._handle, w_out._handle,
                              (w_out if v_out is None else v_out)._handle, hyper._handle,
                              bool(decay), int(direction), velocity is not None)
    return w_out, v_out


def adam_update(w, grad, m, v, hyper, t, decay, in_place=False):
    """One Adam / AdamW step for weights `w` (any shape), in one backend call.

    Args:
        w, grad: NDArrays of one shape; m, v: the moments (same shape), or both None (the
            first step).
        hyper: 8-element NDArray on w's device, ADAM_HYPER's values
            [lr, b1, 1-b1, b2, 1-b2, eps, wd, 1-lr*wd].
        t: 1-element NDArray, the step count (>= 1) for the bias corrections.
        decay: ADAM_NO_DECAY, ADAM_L2_DECAY (g + wd * w, Adam) or ADAM_DECOUPLED_DECAY
            (w * (1 - lr * wd), AdamW).
        in_place: overwrite w, m and v (when compact) instead of returning new arrays.

    Returns (new w, new m, new v); see docs/backends.md for the formula and rounding order.
    """
    _check("adam_step", w, (("grad", grad), ("m", m), ("v", v)))
    if (m is None) != (v is None):
        raise ValueError("adam_step: give both moments m and v, or neither (first step)")
    if decay not in (ADAM_NO_DECAY, ADAM_L2_DECAY, ADAM_DECOUPLED_DECAY):
        raise ValueError(f"adam_step: decay must be 0, 1 or 2, got {decay!r}")
    hyper = _small("adam_step", "hyper", hyper, len(ADAM_HYPER), w.device)
    t = _small("adam_step", "t", t, 1, w.device)
    outs = [_out(a, w, in_place) for a in (w, m, v)]
    g = grad.compact()
    m_in, v_in = (g, g) if m is None else (m.compact(), v.compact())
    w.device.adam_update(w.compact()._handle, g._handle, m_in._handle, v_in._handle,
                         *(o._handle for o in outs), hyper._handle, t._handle, int(decay),
                         m is not None)
    return tuple(outs)
