"""The numpy reference backend's optimizer updates (part of ndarray_backend_numpy's table).

Hyper-parameters arrive in a small device array, not as call arguments, so that a replayed
step (ndl.jit, CUDA graphs) reads the values the optimizer wrote before it. Every product and
sum is a float32 operation of its own, in the order below: the C++ and CUDA kernels do the same
operations without fused multiply-adds, so all three agree bit for bit.
"""
import numpy as np

from . import ndarray_backend_numpy as _spec  # its size check (read at call time: it imports us)

_F = np.float32


def _holds(fn, what, arr, need):
    _spec._check_size(fn, what, arr, need)


def _sgd_gradient(fn, w, g, hyper, decay, n):
    """Both SGD updates' start: hyper's 4 values, w, and g + w*weight_decay (when `decay`)."""
    _holds(fn, "hyper", hyper, 4)
    values = hyper.array[:4]
    wa, grad = w.array[:n], g.array[:n]
    return values, wa, (grad + wa * values[3] if decay else grad)


def sgd_update(w, g, u, w_out, u_out, hyper, decay, has_u):
    """One SGD step over n = w_out.size elements; hyper = [momentum, dampening, neg_lr,
    weight_decay]: g' = g + w*wd (when `decay`); u' = u*momentum + g'*dampening (g'*dampening
    without `has_u`; `u` is then not read); w' = w + u'*neg_lr."""
    n = w_out.size
    for what, arr in (("w", w), ("grad", g), ("u_out", u_out)) + ((("u", u),) if has_u else ()):
        _holds("sgd_update", what, arr, n)
    values, wa, grad = _sgd_gradient("sgd_update", w, g, hyper, decay, n)
    momentum, dampening, neg_lr, _ = values
    step = grad * dampening
    u_new = u.array[:n] * momentum + step if has_u else step
    u_out.array[:n] = u_new
    w_out.array[:n] = wa + u_new * neg_lr


def sgd_torch_update(w, g, u, w_out, u_out, hyper, decay, direction, has_u):
    """One step of torch.optim.SGD over n = w_out.size elements; hyper = [momentum,
    1-dampening, neg_lr, weight_decay]: g' = g + w*wd (when `decay`); direction 0: d = g'
    (no momentum: u and u_out are not touched); else u' = u*momentum + g'*(1-dampening)
    (g' itself without `has_u`: torch starts the buffer at the undampened gradient; `u` is then
    not read) and d = u' (direction 1) or g' + u'*momentum (2, Nesterov); w' = w + d*neg_lr."""
    n = w_out.size
    if direction not in (0, 1, 2):
        raise ValueError(f"sgd_torch_update: direction must be 0 (gradient), 1 (momentum) or 2 "
                         f"(nesterov), got {direction}")
    needs = (("w", w), ("grad", g))
    if direction:
        needs += (("u_out", u_out),) + ((("u", u),) if has_u else ())
    for what, arr in needs:
        _holds("sgd_torch_update", what, arr, n)
    values, wa, grad = _sgd_gradient("sgd_torch_update", w, g, hyper, decay, n)
    momentum, keep, neg_lr, _ = values
    step = grad
    if direction:
        u_new = u.array[:n] * momentum + grad * keep if has_u else grad
        u_out.array[:n] = u_new
        step = grad + u_new * momentum if direction == 2 else u_new
    w_out.array[:n] = wa + step * neg_lr


def adam_update(w, g, m, v, w_out, m_out, v_out, hyper, t, decay, has_state):
    """One Adam step over n = w_out.size elements.

    hyper = [lr, b1, 1-b1, b2, 1-b2, eps, wd, 1-lr*wd] (the differences rounded once, from
    the exact values); t[0] the step count (>= 1); decay 0: none, 1: L2 in the gradient (Adam),
    2: decoupled (AdamW). With c1 = 1/(1 - b1**t), c2 = 1/(1 - b2**t):
    w0 = w*(1-lr*wd) if decoupled else w; g' = g + w*wd if L2 else g;
    m' = m*b1 + g'*(1-b1); v' = v*b2 + (g'*g')*(1-b2) (without `has_state` the second terms
    alone, and m, v are not read); w' = w0 - ((m'*c1)*lr) / (sqrt(v'*c2) + eps).
    """
    n = w_out.size
    for what, arr in (("w", w), ("grad", g), ("m_out", m_out), ("v_out", v_out)) + (
            (("m", m), ("v", v)) if has_state else ()):
        _holds("adam_update", what, arr, n)
    _holds("adam_update", "hyper", hyper, 8)
    _holds("adam_update", "t", t, 1)
    if decay not in (0, 1, 2):
        raise ValueError(f"adam_update: decay must be 0 (none), 1 (L2) or 2 (decoupled), got "
                         f"{decay}")
    lr, b1, omb1, b2, omb2, eps, wd, keep = hyper.array[:8]
    step = t.array[0]
    c1 = _F(1) / (_F(1) - b1 ** step)
    c2 = _F(1) / (_F(1) - b2 ** step)
    wa, grad = w.array[:n], g.array[:n]
    w0 = wa * keep if decay == 2 else wa
    if decay == 1:
        grad = grad + wa * wd
    m_new, v_new = grad * omb1, (grad * grad) * omb2
    if has_state:
        m_new = m.array[:n] * b1 + m_new
        v_new = v.array[:n] * b2 + v_new
    update = ((m_new * c1) * lr) / (np.sqrt(v_new * c2) + eps)
    m_out.array[:n] = m_new
    v_out.array[:n] = v_new
    w_out.array[:n] = w0 - update
