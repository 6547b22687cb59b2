"""needle.testing: numerical gradient checks and comparison helpers shared by the test-suite.

    from needle.testing import gradient_check, assert_close, check_op

`gradient_check` never touches numpy's global RNG (the contract reserves it for the framework's
own draws): its random output cotangent comes from a private `np.random.default_rng(seed)`.
"""
import numpy as np

from .autograd import Tensor, TensorTuple

__all__ = ["gradient_check", "assert_close", "check_op", "to_numpy"]


def to_numpy(x):
    """A numpy array from a Tensor, NDArray, numpy array or nested list."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, Tensor) or hasattr(x, "numpy"):
        return np.asarray(x.numpy())
    return np.asarray(x)


def assert_close(actual, expected, rtol=1e-5, atol=1e-6, what="value"):
    """Assert equal shapes and |actual - expected| <= atol + rtol * |expected| element-wise.

    The AssertionError names `what`, the worst element's index and both values. NaNs must match.
    """
    a = to_numpy(actual)
    e = to_numpy(expected)
    if tuple(a.shape) != tuple(e.shape):
        raise AssertionError(f"{what}: shape {tuple(a.shape)} != expected {tuple(e.shape)}")
    a64 = a.astype(np.float64)
    e64 = e.astype(np.float64)
    ok = np.isclose(a64, e64, rtol=rtol, atol=atol, equal_nan=True)
    if not ok.all():
        excess = np.where(ok, 0.0, np.abs(a64 - e64) - rtol * np.abs(e64))
        excess = np.where(np.isnan(excess), np.inf, excess)
        idx = np.unravel_index(int(np.argmax(excess)), a.shape) if a.ndim else ()
        raise AssertionError(
            f"{what}: {int((~ok).sum())} of {ok.size} elements differ (rtol={rtol}, atol={atol}); "
            f"worst at index {idx}: got {a64[idx]!r}, expected {e64[idx]!r}")


def _is_float(dtype):
    return np.issubdtype(np.dtype(dtype), np.floating)


def _objective(out, cotangent):
    return float(np.sum(to_numpy(out).astype(np.float64) * cotangent))


def gradient_check(f, *args, tol=None, backward=True, eps=None, out_grad=None, seed=0,
                   op_name=None, **kwargs):
    """Check autograd's gradients of `f` at `args` against central differences.

    The checked scalar is sum(f(*args) * C) for an output cotangent C: `out_grad` if given, else
    standard normal values from a private `np.random.default_rng(seed)` (the global numpy RNG is
    never used). Float inputs are perturbed one element at a time, on copies of the inputs
    rebuilt on each input's device, so every device works (cpu_numpy, cpu, cuda). Integer inputs
    (numpy mode) are held fixed and not checked.

    Args:
        f: callable taking Tensors (plus **kwargs) and returning one Tensor.
        *args: the input Tensors (their `.grad` is set when backward=True).
        tol: pass when |numerical - autograd| <= tol * (1 + |autograd|) for every element;
            default 1e-5 for float64 computations, 2e-2 for float32.
        backward: True -> `f(*args).backward(C)` and read `args[i].grad`; False -> call
            `out.op.gradient_as_tuple(C, out)` (f must be a single op of exactly these inputs).
        eps: finite-difference step; default 1e-6 (float64) or 1e-2 (float32).
        out_grad: optional explicit cotangent (numpy array or Tensor of the output's shape).
        op_name: name used in failure messages (default `f.__name__`).

    Returns:
        list of the autograd gradients as numpy arrays, one per argument.

    Raises:
        AssertionError: naming the op, the argument index and the worst element with both
            values.
    """
    name = op_name or getattr(f, "__name__", type(f).__name__)
    tensors = list(args)
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"gradient_check({name}): argument {i} is {type(t).__name__}, "
                            f"expected a Tensor")
    out = f(*tensors, **kwargs)
    if isinstance(out, TensorTuple) or not isinstance(out, Tensor):
        raise TypeError(f"gradient_check({name}): f must return one Tensor, got "
                        f"{type(out).__name__}")
    out_dtype = np.dtype(out.dtype) if _is_float(out.dtype) else np.dtype("float64")
    low_precision = out_dtype == np.float32 or any(np.dtype(t.dtype) == np.float32 for t in tensors)
    if tol is None:
        tol = 2e-2 if low_precision else 1e-5
    if eps is None:
        eps = 1e-2 if low_precision else 1e-6

    if out_grad is None:
        cot = np.random.default_rng(seed).standard_normal(out.shape)
    else:
        cot = to_numpy(out_grad)
    cot = np.asarray(cot).astype(out_dtype if _is_float(out.dtype) else np.float64)
    cot_tensor = Tensor(cot.astype(out_dtype) if _is_float(out.dtype) else cot.astype(out.dtype),
                        device=out.device, dtype=out.dtype if _is_float(out.dtype) else None,
                        requires_grad=False)
    cot64 = to_numpy(cot_tensor).astype(np.float64)

    # Autograd side.
    if backward:
        for t in tensors:
            t.grad = None  # a Parameter's .grad would otherwise add to an earlier one
        out.backward(cot_tensor)
        computed = [t.grad for t in tensors]
    else:
        computed = list(out.op.gradient_as_tuple(cot_tensor, out))
    computed = [np.zeros(t.shape) if g is None else to_numpy(g) for g, t in zip(computed, tensors)]

    # Numerical side, on perturbed copies (the caller's tensors are not modified).
    bases = [to_numpy(t).copy() for t in tensors]
    for i, t in enumerate(tensors):
        if not _is_float(t.dtype):
            continue
        if tuple(computed[i].shape) != tuple(bases[i].shape):
            raise AssertionError(f"gradient_check({name}): grad of input {i} has shape "
                                 f"{tuple(computed[i].shape)}, expected {tuple(bases[i].shape)}")
        numerical = np.zeros(bases[i].shape, dtype=np.float64)
        # requires_grad=True so that an f which differentiates internally still works.
        inputs = [Tensor(b, device=x.device, dtype=x.dtype) for b, x in zip(bases, tensors)]
        for j in range(bases[i].size):
            values = []
            for sign in (1.0, -1.0):
                pert = bases[i].astype(np.float64)
                pert.flat[j] += sign * eps
                pert = pert.astype(bases[i].dtype)
                values.append(float(pert.flat[j]))
                inputs[i] = Tensor(pert, device=t.device, dtype=t.dtype)
                values.append(_objective(f(*inputs, **kwargs), cot64))
            x_plus, j_plus, x_minus, j_minus = values
            numerical.flat[j] = (j_plus - j_minus) / (x_plus - x_minus)
        got = computed[i].astype(np.float64)
        err = np.abs(got - numerical) / (1.0 + np.abs(got))
        if not (err <= tol).all():
            err = np.where(np.isnan(err), np.inf, err)
            idx = np.unravel_index(int(np.argmax(err)), err.shape) if err.ndim else ()
            raise AssertionError(
                f"gradient_check({name}): grad of input {i} (shape {tuple(got.shape)}) wrong at "
                f"index {idx}: autograd {got[idx]!r}, numerical {numerical[idx]!r} "
                f"(relative error {err[idx]:.3g} > tol {tol})")
    return computed


def check_op(f, reference, *arrays, device=None, rtol=1e-5, atol=1e-5, grad=True, tol=None,
             eps=None, requires_grad=None, **kwargs):
    """Check one op forward against a numpy reference and backward by `gradient_check`.

    Args:
        f: needle callable taking Tensors (+ **kwargs).
        reference: numpy callable taking the same arrays (+ **kwargs), computed in float64.
        *arrays: numpy input arrays; they become Tensors on `device` (numpy mode keeps dtypes).
        grad: also run gradient_check (backward=True).
        requires_grad: per-input flags (default all True).
    Failures are labelled "forward" or "grad of input i".

    Returns:
        (output Tensor, list of gradients or None).
    """
    flags = requires_grad or [True] * len(arrays)
    tensors = [Tensor(a, device=device, requires_grad=r) for a, r in zip(arrays, flags)]
    out = f(*tensors, **kwargs)
    expected = reference(*[np.asarray(a, dtype=np.float64) if _is_float(np.asarray(a).dtype)
                           else np.asarray(a) for a in arrays], **kwargs)
    name = getattr(f, "__name__", type(f).__name__)
    expected = np.asarray(expected)
    if expected.shape == () and tuple(out.shape) == (1,):
        expected = expected.reshape(1)  # NDArray mode's full reductions have shape (1,)
    assert_close(out, expected, rtol=rtol, atol=atol, what=f"{name} forward")
    grads = None
    if grad:
        grads = gradient_check(f, *tensors, tol=tol, eps=eps, op_name=name, **kwargs)
    return out, grads
