"""The optimizers' fused kernels, sgd_update, sgd_torch_update and adam_update, called directly
on every native module against the numpy reference module (the spec): bit for bit, in place,
and each validation path. Their hyper-parameters come from a device array (optim_update)."""
import importlib

import numpy as np
import pytest

from needle.backend_ndarray import ndarray_backend_numpy as REF

from test_backend_native import _native_modules, garbage, get, put

RNG = np.random.default_rng(2024)
F = np.float32


@pytest.fixture(params=_native_modules())
def mod(request):
    return importlib.import_module(f"needle.backend_ndarray.{request.param}")


def sgd_hyper(momentum, lr, wd):
    return [momentum, 1 - momentum, -lr, wd]


def adam_hyper(lr, b1, b2, eps, wd):
    return [lr, b1, 1 - b1, b2, 1 - b2, eps, wd, 1 - lr * wd]


@pytest.mark.parametrize("has_u", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_sgd_update(mod, has_u, weight_decay):
    n = 100_003  # past the parallel threshold, odd
    w, g, u = (RNG.standard_normal(n).astype(np.float32) for _ in range(3))
    hyper = sgd_hyper(0.9, 0.05, weight_decay)
    got = []
    for m in (REF, mod):
        w_out, u_out = garbage(m, n), garbage(m, n)
        m.sgd_update(put(m, w), put(m, g), put(m, u), w_out, u_out, put(m, hyper),
                     weight_decay != 0, has_u)
        got.append((get(m, w_out), get(m, u_out)))
    np.testing.assert_array_equal(got[0][0], got[1][0])
    np.testing.assert_array_equal(got[0][1], got[1][1])
    mom, damp, neg_lr, wd = (F(v) for v in hyper)
    grad = g + w * wd if weight_decay else g
    want_u = u * mom + grad * damp if has_u else grad * damp
    np.testing.assert_array_equal(got[1][1], want_u)
    np.testing.assert_array_equal(got[1][0], w + want_u * neg_lr)


def sgd_torch_hyper(momentum, dampening, lr, wd):
    return [momentum, 1 - dampening, -lr, wd]


def _sgd_torch_reference(w, g, u, momentum, dampening, lr, wd, direction):
    """torch.optim.SGD's step in float32, one rounding per operation (the kernels' order)."""
    mom, keep, neg_lr, wd = (F(v) for v in sgd_torch_hyper(momentum, dampening, lr, wd))
    grad = g + w * wd
    if direction == 0:
        return w + grad * neg_lr, None
    u_new = grad if u is None else u * mom + grad * keep
    step = grad + u_new * mom if direction == 2 else u_new
    return w + step * neg_lr, u_new


@pytest.mark.parametrize("direction", [0, 1, 2], ids=["gradient", "momentum", "nesterov"])
@pytest.mark.parametrize("has_u", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_sgd_torch_update(mod, direction, has_u, weight_decay):
    n = 100_003  # past the parallel threshold, odd
    w, g, u = (RNG.standard_normal(n).astype(np.float32) for _ in range(3))
    momentum, dampening, lr = 0.85, 0.0 if direction == 2 else 0.3, 0.05
    hyper = sgd_torch_hyper(momentum, dampening, lr, weight_decay)
    got = []
    for m in (REF, mod):
        w_out, u_out = garbage(m, n), garbage(m, n)
        m.sgd_torch_update(put(m, w), put(m, g), put(m, u), w_out, u_out, put(m, hyper),
                           weight_decay != 0, direction, has_u)
        got.append((get(m, w_out), get(m, u_out)))
    np.testing.assert_array_equal(got[0][0], got[1][0])
    np.testing.assert_array_equal(got[0][1], got[1][1])
    want_w, want_u = _sgd_torch_reference(w, g, u if has_u else None, momentum, dampening, lr,
                                          weight_decay, direction)
    np.testing.assert_array_equal(got[1][0], want_w)
    if direction == 0:  # no momentum buffer: u_out is not written
        np.testing.assert_array_equal(got[1][1], np.full(n, 7.0, np.float32))
    else:
        np.testing.assert_array_equal(got[1][1], want_u)


def _adam_reference(w, g, m, v, lr, b1, b2, eps, wd, t, decay):
    """Adam in float64 from the formula (not the kernels' float32 rounding order)."""
    w, g = w.astype(np.float64), g.astype(np.float64)
    if decay == 2:
        w_new = w * (1 - lr * wd)
    else:
        w_new = w
        if decay == 1:
            g = g + w * wd
    m = (0 if m is None else b1 * m) + (1 - b1) * g
    v = (0 if v is None else b2 * v) + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    return w_new - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


@pytest.mark.parametrize("decay", [0, 1, 2])
@pytest.mark.parametrize("has_state,t", [(False, 1), (True, 2), (True, 1000)])
def test_adam_update(mod, decay, has_state, t):
    n = 70_001
    w, g = (RNG.standard_normal(n).astype(np.float32) for _ in range(2))
    m0 = (RNG.standard_normal(n) * 0.1).astype(np.float32)
    v0 = (RNG.random(n) * 0.01).astype(np.float32)
    lr, b1, b2, eps, wd = 1e-3, 0.9, 0.999, 1e-8, 0.05 if decay else 0.0
    got = []
    for m in (REF, mod):
        outs = [garbage(m, n) for _ in range(3)]
        m.adam_update(put(m, w), put(m, g), put(m, m0), put(m, v0), *outs,
                      put(m, adam_hyper(lr, b1, b2, eps, wd)), put(m, [t]), decay, has_state)
        got.append([get(m, o) for o in outs])
    for ref, native in zip(*got):
        np.testing.assert_array_equal(ref, native)
    want = _adam_reference(w, g, m0 if has_state else None, v0 if has_state else None,
                           lr, b1, b2, eps, wd, t, decay)
    for name, have, exact in zip(("w", "m", "v"), got[1], want):
        np.testing.assert_allclose(have, exact, rtol=2e-5, atol=1e-7, err_msg=name)


def test_updates_in_place(mod):
    """w_out, u_out / m_out, v_out may be the input buffers themselves (the optimizers' use)."""
    n = 1031
    w, g, u, v = (RNG.standard_normal(n).astype(np.float32) for _ in range(4))
    v = np.abs(v)
    sgd = put(mod, sgd_hyper(0.9, 0.1, 0.01))
    adam = put(mod, adam_hyper(0.01, 0.9, 0.99, 1e-8, 0.02))
    out_of_place = [garbage(mod, n) for _ in range(2)]
    mod.sgd_update(put(mod, w), put(mod, g), put(mod, u), *out_of_place, sgd, True, True)
    bw, bu = put(mod, w), put(mod, u)
    mod.sgd_update(bw, put(mod, g), bu, bw, bu, sgd, True, True)
    for a, b in zip(out_of_place, (bw, bu)):
        np.testing.assert_array_equal(get(mod, a), get(mod, b))
    out_of_place = [garbage(mod, n) for _ in range(3)]
    mod.adam_update(put(mod, w), put(mod, g), put(mod, u), put(mod, v), *out_of_place, adam,
                    put(mod, [3]), 2, True)
    bw, bm, bv = put(mod, w), put(mod, u), put(mod, v)
    mod.adam_update(bw, put(mod, g), bm, bv, bw, bm, bv, adam, put(mod, [3]), 2, True)
    for a, b in zip(out_of_place, (bw, bm, bv)):
        np.testing.assert_array_equal(get(mod, a), get(mod, b))
    torch_sgd = put(mod, sgd_torch_hyper(0.9, 0.0, 0.1, 0.01))
    for direction in (1, 2):
        out_of_place = [garbage(mod, n) for _ in range(2)]
        mod.sgd_torch_update(put(mod, w), put(mod, g), put(mod, u), *out_of_place, torch_sgd,
                             True, direction, True)
        bw, bu = put(mod, w), put(mod, u)
        mod.sgd_torch_update(bw, put(mod, g), bu, bw, bu, torch_sgd, True, direction, True)
        for a, b in zip(out_of_place, (bw, bu)):
            np.testing.assert_array_equal(get(mod, a), get(mod, b))


def _a(m, n):
    return garbage(m, n)


BAD = [
    ("sgd_update", "w holds 4", lambda m: (_a(m, 4), _a(m, 5), _a(m, 5), _a(m, 5), _a(m, 5),
                                           _a(m, 4), False, False)),
    ("sgd_update", "u holds 4", lambda m: (_a(m, 5), _a(m, 5), _a(m, 4), _a(m, 5), _a(m, 5),
                                           _a(m, 4), False, True)),
    ("sgd_update", "hyper holds 3", lambda m: (_a(m, 5), _a(m, 5), _a(m, 5), _a(m, 5), _a(m, 5),
                                               _a(m, 3), True, True)),
    ("sgd_torch_update", "grad holds 4", lambda m: (_a(m, 5), _a(m, 4), _a(m, 5), _a(m, 5),
                                                    _a(m, 5), _a(m, 4), False, 0, False)),
    ("sgd_torch_update", "u holds 4", lambda m: (_a(m, 5), _a(m, 5), _a(m, 4), _a(m, 5),
                                                 _a(m, 5), _a(m, 4), False, 1, True)),
    ("sgd_torch_update", "u_out holds 4", lambda m: (_a(m, 5), _a(m, 5), _a(m, 5), _a(m, 5),
                                                     _a(m, 4), _a(m, 4), False, 2, False)),
    ("sgd_torch_update", "hyper holds 3", lambda m: (_a(m, 5), _a(m, 5), _a(m, 5), _a(m, 5),
                                                     _a(m, 5), _a(m, 3), True, 1, True)),
    ("sgd_torch_update", "direction must be", lambda m: (_a(m, 5), _a(m, 5), _a(m, 5), _a(m, 5),
                                                         _a(m, 5), _a(m, 4), False, 3, True)),
    ("adam_update", "grad holds 4", lambda m: (_a(m, 5), _a(m, 4), _a(m, 5), _a(m, 5), _a(m, 5),
                                               _a(m, 5), _a(m, 5), _a(m, 8), _a(m, 1), 0, True)),
    ("adam_update", "v holds 4", lambda m: (_a(m, 5), _a(m, 5), _a(m, 5), _a(m, 4), _a(m, 5),
                                            _a(m, 5), _a(m, 5), _a(m, 8), _a(m, 1), 0, True)),
    ("adam_update", "v_out holds 4", lambda m: (_a(m, 5), _a(m, 5), _a(m, 5), _a(m, 5), _a(m, 5),
                                                _a(m, 5), _a(m, 4), _a(m, 8), _a(m, 1), 0, False)),
    ("adam_update", "hyper holds 7", lambda m: (_a(m, 5), _a(m, 5), _a(m, 5), _a(m, 5), _a(m, 5),
                                                _a(m, 5), _a(m, 5), _a(m, 7), _a(m, 1), 0, True)),
    ("adam_update", "t holds 0", lambda m: (_a(m, 5), _a(m, 5), _a(m, 5), _a(m, 5), _a(m, 5),
                                            _a(m, 5), _a(m, 5), _a(m, 8), _a(m, 0), 0, True)),
    ("adam_update", "decay must be", lambda m: (_a(m, 5), _a(m, 5), _a(m, 5), _a(m, 5), _a(m, 5),
                                                _a(m, 5), _a(m, 5), _a(m, 8), _a(m, 1), 3, True)),
]


@pytest.mark.parametrize("fname,message,args", BAD, ids=[f"{b[0]}-{b[1]}" for b in BAD])
def test_bad_arguments_raise(mod, fname, message, args):
    for m in (REF, mod):
        with pytest.raises(ValueError, match=f"{fname}: {message}"):
            getattr(m, fname)(*args(m))


def test_sgd_torch_update_without_momentum_ignores_the_buffers(mod):
    """Direction 0 (momentum 0) neither reads u nor writes u_out: their sizes are not checked."""
    w, g = (RNG.standard_normal(9).astype(np.float32) for _ in range(2))
    hyper = sgd_torch_hyper(0.0, 0.0, 0.5, 0.0)
    got = []
    for m in (REF, mod):
        w_out = garbage(m, 9)
        m.sgd_torch_update(put(m, w), put(m, g), _a(m, 1), w_out, _a(m, 1), put(m, hyper), False,
                           0, True)
        got.append(get(m, w_out))
    np.testing.assert_array_equal(got[0], got[1])
    np.testing.assert_array_equal(got[1], w + g * F(-0.5))
