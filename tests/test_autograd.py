"""The autograd core (contract §4): Tensor API, graph structure, topological order, gradients,
TENSOR_COUNTER and memory, no_grad, and numpy mode (NEEDLE_BACKEND=np, in a subprocess)."""
import gc
import pathlib
import textwrap
import weakref

import numpy as np
import pytest

import needle as ndl
import needle.backend_ndarray as nd
from needle import autograd, ops
from needle.testing import assert_close, gradient_check

REPO = pathlib.Path(__file__).resolve().parents[1]


def randn(*shape):
    return np.random.randn(*shape).astype(np.float32)


# ---------------------------------------------------------------------------------- Tensor API
def test_construction_and_dtype(device):
    t = ndl.Tensor([[1, 2], [3, 4]], device=device)
    assert isinstance(t.cached_data, nd.NDArray)
    assert t.dtype == "float32" and t.shape == (2, 2) and t.device == device
    assert t.requires_grad and t.is_leaf() and t.op is None and t.inputs == []
    assert_close(t.numpy(), [[1, 2], [3, 4]])
    assert isinstance(t.numpy(), np.ndarray)
    for dtype in ("float32", np.float32, np.dtype("float32")):
        assert ndl.Tensor(np.arange(3.0), device=device, dtype=dtype).dtype == "float32"
    with pytest.raises(TypeError, match="float32"):
        ndl.Tensor([1.0], device=device, dtype="float64")


def test_tensor_from_tensor_shares_or_copies(device):
    a = ndl.Tensor(randn(3), device=device)
    b = ndl.Tensor(a)
    assert b.cached_data is a.cached_data and b.device == device
    other = ndl.cpu_numpy() if device != ndl.cpu_numpy() else ndl.cpu()
    c = ndl.Tensor(a, device=other)
    assert c.device == other and c.cached_data is not a.cached_data
    assert_close(c, a.numpy())
    d = ndl.Tensor(nd.array(a.numpy(), device=device), device=other)
    assert d.device == other
    assert_close(d, a.numpy())


def test_data_detach_and_setter(device):
    a = ndl.Tensor(randn(1, 3), device=device)
    y = a * 2.0
    d = y.detach()
    assert d.cached_data is y.cached_data and not d.requires_grad and d.op is None
    assert y.data.op is None and y.data.cached_data is y.cached_data
    a.data = ndl.Tensor(randn(3), device=device)  # shape is not checked (bias replacement)
    assert a.shape == (3,)


def test_repr_and_str(device):
    t = ndl.Tensor([1.0, 2.0], device=device)
    assert repr(t).startswith("needle.Tensor(") and "2." in repr(t)
    assert "1." in str(t)


def test_identity_eq_and_hash(device):
    a = ndl.Tensor([1.0], device=device)
    b = ndl.Tensor([1.0], device=device)
    same = a
    assert a == same and a != b and (a, b) != (b, a)
    assert len({a, b, a}) == 2 and {a: 1}[a] == 1
    assert hash(a) == object.__hash__(a)


def test_backward_default_ones_for_non_scalar(device):
    x = ndl.Tensor(randn(2, 3), device=device)
    y = x * 3.0
    y.backward()
    assert_close(x.grad, np.full((2, 3), 3.0))
    assert_close(y.grad, np.ones((2, 3)))
    assert not y.grad.requires_grad


def test_backward_with_out_grad_and_bad_out_grad(device):
    x = ndl.Tensor(randn(2, 3), device=device)
    y = ops.exp(x)
    g = randn(2, 3)
    y.backward(ndl.Tensor(g, device=device))
    assert_close(x.grad, g * np.exp(x.numpy()), rtol=1e-5)
    with pytest.raises(ValueError, match="backward"):
        y.backward(ndl.Tensor(randn(3, 2), device=device))


def test_grad_is_overwritten_not_accumulated(device):
    x = ndl.Tensor([1.0, 2.0], device=device)
    (x * 2.0).sum().backward()
    (x * 5.0).sum().backward()
    assert_close(x.grad, [5.0, 5.0])


def test_constants_and_requires_grad(device):
    x = ndl.Tensor([1.0, 2.0], device=device, requires_grad=False)
    y = x * 2.0 + x
    assert not y.requires_grad and y.op is None and y.inputs == []  # detached constant
    w = ndl.Tensor([3.0, 4.0], device=device)
    z = x * w
    assert z.requires_grad and z.op is not None and z.inputs == [x, w]
    z.sum().backward()
    assert_close(w.grad, [1.0, 2.0])


def test_tensor_methods(device):
    x = randn(2, 3)
    t = ndl.Tensor(x, device=device)
    assert_close(t.sum(), np.array([x.sum()]).reshape(t.sum().shape), rtol=1e-5)
    assert_close(t.sum(axes=1), x.sum(1), rtol=1e-5)
    assert_close(t.reshape((3, 2)), x.reshape(3, 2))
    assert_close(t.transpose(), x.T)
    assert_close(t.reshape((2, 3, 1)).broadcast_to((2, 3, 4)),
                 np.broadcast_to(x[..., None], (2, 3, 4)))
    assert_close(t.matmul(ndl.Tensor(x.T, device=device)), x @ x.T, rtol=1e-5)


def test_scalar_arithmetic_both_sides(device):
    x = randn(3)
    t = ndl.Tensor(x, device=device)
    assert_close(2.0 + t, x + 2, rtol=1e-6)
    assert_close(2.0 * t, x * 2, rtol=1e-6)
    assert_close(2.0 - t, 2 - x, rtol=1e-6)
    assert_close(t - 2.0, x - 2, rtol=1e-6)
    assert_close(t / 4.0, x / 4, rtol=1e-6)
    assert_close(3.0 / (t * t + 1.0), 3 / (x * x + 1), rtol=1e-5)
    assert_close(t ** 2, x ** 2, rtol=1e-6)
    assert_close(-t, -x)


# ---------------------------------------------------------------------------------- node mapping
@pytest.mark.parametrize("expr,op_names", [
    (lambda t, u: t + u, ["EWiseAdd"]), (lambda t, u: t + 2.0, ["AddScalar"]),
    (lambda t, u: 2.0 + t, ["AddScalar"]), (lambda t, u: t * u, ["EWiseMul"]),
    (lambda t, u: t * 2.0, ["MulScalar"]), (lambda t, u: 2.0 * t, ["MulScalar"]),
    (lambda t, u: t ** u, ["EWisePow"]), (lambda t, u: t ** 2, ["PowerScalar"]),
    (lambda t, u: t - u, ["Negate", "EWiseAdd"]), (lambda t, u: t - 2.0, ["AddScalar"]),
    (lambda t, u: t / u, ["EWiseDiv"]), (lambda t, u: t / 2.0, ["DivScalar"]),
    (lambda t, u: t @ u, ["MatMul"]), (lambda t, u: -t, ["Negate"]),
], ids=["add", "add_s", "radd_s", "mul", "mul_s", "rmul_s", "pow", "pow_s", "sub", "sub_s",
        "div", "div_s", "matmul", "neg"])
def test_operator_to_node_mapping(expr, op_names):
    t = ndl.Tensor(np.ones((2, 2)) * 2, device=ndl.cpu_numpy())
    u = ndl.Tensor(np.ones((2, 2)) * 3, device=ndl.cpu_numpy())
    out = expr(t, u)
    new_nodes = [n for n in autograd.find_topo_sort([out]) if n is not t and n is not u]
    assert [type(n.op).__name__ for n in new_nodes] == op_names  # scalars never become nodes


def test_subtraction_is_add_of_negate():
    t = ndl.Tensor([1.0], device=ndl.cpu_numpy())
    u = ndl.Tensor([2.0], device=ndl.cpu_numpy())
    out = t - u
    assert isinstance(out.op, ops.EWiseAdd) and out.inputs[0] is t
    assert isinstance(out.inputs[1].op, ops.Negate) and out.inputs[1].inputs == [u]
    assert (t - 2.0).op.scalar == -2.0


# ---------------------------------------------------------------------------------- topo sort
def test_topo_sort_example_1():
    a = ndl.Tensor(np.array([[0.88282157]]), device=ndl.cpu_numpy())
    b = ndl.Tensor(np.array([[0.90170084]]), device=ndl.cpu_numpy())
    c = 3 * a * a + 4 * b * a - a
    order = autograd.find_topo_sort([c])
    assert len(order) == 9
    assert order[0] is a and order[3] is b and order[-1] is c
    names = [type(n.op).__name__ if n.op else "leaf" for n in order]
    assert names == ["leaf", "MulScalar", "EWiseMul", "leaf", "MulScalar", "EWiseMul", "EWiseAdd",
                     "Negate", "EWiseAdd"]
    assert order[2].inputs == [order[1], a] and order[5].inputs == [order[4], a]
    assert order[7].inputs == [a]
    expected = 3 * 0.88282157 ** 2 + 4 * 0.90170084 * 0.88282157 - 0.88282157
    assert_close(c, [[expected]], rtol=1e-6)


def test_topo_sort_example_2():
    a = ndl.Tensor(randn(2, 2), device=ndl.cpu_numpy())
    b = ndl.Tensor(randn(2, 2), device=ndl.cpu_numpy())
    e = (a @ b + b - a) @ a
    order = autograd.find_topo_sort([e])
    ab = order[2]
    assert len(order) == 7 and order[0] is a and order[1] is b and order[-1] is e
    assert isinstance(ab.op, ops.MatMul) and ab.inputs == [a, b]
    assert order[3].inputs == [ab, b]
    assert isinstance(order[4].op, ops.Negate) and order[4].inputs == [a]
    assert order[5].inputs == [order[3], order[4]] and e.inputs == [order[5], a]


def test_topo_sort_multiple_roots_and_deep_graph():
    x = ndl.Tensor([1.0], device=ndl.cpu_numpy())
    y = x
    for _ in range(3000):  # deeper than Python's recursion limit
        y = y + 1.0
    order = autograd.find_topo_sort([y, x])
    assert len(order) == 3001 and order[0] is x and order[-1] is y
    y.backward()
    assert_close(x.grad, [1.0])


# ---------------------------------------------------------------------------------- gradients
def test_second_order_contract_example(device):
    x2 = ndl.Tensor([6.0], device=device)
    x3 = ndl.Tensor([0.0], device=device)
    y = x2 * x2 + x2 * x3
    y.backward()
    grad_x2 = x2.grad
    assert_close(grad_x2, [12.0])  # 2 * x2 + x3
    grad_x2.backward()
    assert_close(x2.grad, [2.0])  # overwritten, not 2*x2 + x3 + 2
    assert_close(x3.grad, [1.0])


def test_create_graph_gradients_are_needle_graphs(device):
    x = ndl.Tensor(randn(3), device=device)
    y = (ops.exp(x) * x).sum()
    y.backward(create_graph=True)
    assert isinstance(x.grad, ndl.Tensor) and x.grad.requires_grad and x.grad.op is not None
    assert isinstance(x.grad.cached_data, nd.NDArray)


def test_plain_backward_gradients_are_constants(device):
    x = ndl.Tensor(randn(3), device=device)
    y = (ops.exp(x) * x).sum()
    y.backward()
    assert isinstance(x.grad, ndl.Tensor) and not x.grad.requires_grad and x.grad.op is None
    assert_close(x.grad, np.exp(x.numpy()) * (x.numpy() + 1), rtol=1e-5)


def test_compute_gradient_sums_contributions(device):
    x = ndl.Tensor(randn(2, 2), device=device)
    y = x * x + x * 3.0 + x
    autograd.compute_gradient_of_variables(y, ndl.Tensor(np.ones((2, 2)), device=device))
    assert_close(x.grad, 2 * x.numpy() + 4, rtol=1e-6)


def test_gradient_as_tuple_is_public():
    a = ndl.Tensor(randn(2, 3), device=ndl.cpu_numpy())
    b = ndl.Tensor(randn(3, 4), device=ndl.cpu_numpy())
    out = a @ b
    c = randn(2, 4)
    ga, gb = out.op.gradient_as_tuple(ndl.Tensor(c, device=ndl.cpu_numpy()), out)
    assert_close(ga, c @ b.numpy().T, rtol=1e-5)
    assert_close(gb, a.numpy().T @ c, rtol=1e-5)
    (gx,) = ops.Negate().gradient_as_tuple(ndl.Tensor(c, device=ndl.cpu_numpy()), -a)
    assert_close(gx, -c)


# ---------------------------------------------------------------------------------- no_grad
def test_no_grad(device):
    w = ndl.Tensor(randn(3), device=device)
    with ndl.no_grad():
        assert not autograd.is_grad_enabled()
        y = (w * 2.0).sum()
        assert not y.requires_grad and y.op is None and y.inputs == []
        with autograd.no_grad():
            pass
        assert not autograd.is_grad_enabled()  # nesting restores the outer state
    assert autograd.is_grad_enabled()
    z = (w * 2.0).sum()
    assert z.requires_grad and z.op is not None

    @ndl.no_grad()
    def f(t):
        return t * 3.0

    assert not f(w).requires_grad and autograd.is_grad_enabled()


def test_no_grad_restores_after_exception():
    with pytest.raises(RuntimeError), ndl.no_grad():
        raise RuntimeError("boom")
    assert autograd.is_grad_enabled()


# ---------------------------------------------------------------------------------- counter/memory
def test_tensor_counter_counts_every_value(device):
    gc.collect()
    before = autograd.TENSOR_COUNTER
    a = ndl.Tensor([1.0], device=device)
    assert autograd.TENSOR_COUNTER == before + 1
    b = a.detach()
    c = ndl.Tensor([2.0], device=device, requires_grad=False) * 2.0  # constant result
    tt = ops.make_tuple(a, b)
    assert autograd.TENSOR_COUNTER == before + 4
    del a, b, c, tt
    gc.collect()
    assert autograd.TENSOR_COUNTER == before


def test_activations_freed_after_step(device):
    gc.collect()
    baseline = autograd.TENSOR_COUNTER
    w = ndl.Tensor(randn(4, 3), device=device)
    x = ndl.Tensor(randn(5, 4), device=device, requires_grad=False)
    hidden = ops.relu(x @ w)
    probe = weakref.ref(hidden.cached_data)
    loss = ops.logsumexp(hidden, axes=(1,)).sum()
    loss.backward()
    # grads on every node form cycles (contract §4.4), so the graph lives on until collected.
    w.data = w.data - w.grad * 0.1
    w.grad = None
    # x (the batch) also holds a grad (contract: every node); the next batch replaces it.
    del hidden, loss, x
    gc.collect()
    assert probe() is None
    assert autograd.TENSOR_COUNTER == baseline + 1  # only w remains


def test_backward_without_graph_frees_activations_without_gc(device):
    """create_graph=False: same gradient values, constant grads, and no reference cycles, so
    dropping the loss frees the activations by reference counting alone."""
    w = ndl.Tensor(randn(4, 3), device=device)
    x = ndl.Tensor(randn(5, 4), device=device, requires_grad=False)

    def run(create_graph):
        hidden = ops.relu(x @ w)
        loss = ops.logsumexp(hidden * hidden, axes=(1,)).sum()
        loss.backward(create_graph=create_graph)
        return hidden, loss

    hidden, loss = run(True)
    want_w, want_h = w.grad.numpy(), hidden.grad.numpy()
    assert w.grad.op is not None  # the contract's default: grads are graph nodes
    del hidden, loss
    w.grad = None
    gc.collect()

    gc.disable()
    try:
        hidden, loss = run(False)
        np.testing.assert_array_equal(w.grad.numpy(), want_w)
        np.testing.assert_array_equal(hidden.grad.numpy(), want_h)
        assert w.grad.op is None and not w.grad.requires_grad
        assert autograd.is_grad_enabled()  # no_grad inside backward is undone
        probe = weakref.ref(hidden.cached_data)
        w.grad = None
        del hidden, loss
        assert probe() is None  # freed at once: nothing waits for the collector
    finally:
        gc.enable()


def test_optimizer_style_loop_does_not_grow(device):
    w = ndl.Tensor(randn(3, 2), device=device)
    x = ndl.Tensor(randn(4, 3), device=device, requires_grad=False)
    counts = []
    for _ in range(4):
        loss = ops.summation(ops.power_scalar(x @ w, 2))
        loss.backward()
        w.data = w.data - w.grad.data * 0.01
        w.grad = None
        del loss
        gc.collect()
        counts.append(autograd.TENSOR_COUNTER)
    assert counts[1] == counts[2] == counts[3]


# ---------------------------------------------------------------------------------- errors
def test_lazy_mode_flag_exists():
    assert autograd.LAZY_MODE is False


def test_tensor_tuple_is_exported():
    tt = ops.make_tuple(ndl.Tensor([1.0], device=ndl.cpu_numpy()))
    assert isinstance(tt, ndl.TensorTuple) and isinstance(tt.tuple(), tuple)


# ---------------------------------------------------------------------------------- numpy mode
NUMPY_MODE_SCRIPT = textwrap.dedent("""
    import numpy as np
    import needle as ndl
    from needle import autograd, ops
    from needle.testing import gradient_check, assert_close

    assert ndl.BACKEND == "np"
    # dtypes are kept
    assert ndl.Tensor([1.5]).dtype == np.float64
    assert ndl.Tensor([6]).dtype == np.int64
    assert ndl.Tensor(np.zeros(2, dtype=np.uint8)).dtype == np.uint8
    assert ndl.Tensor(np.zeros(2, dtype=np.float32)).dtype == np.float32
    assert ndl.Tensor([1, 2], dtype="float32").dtype == np.float32
    t = ndl.Tensor([[1.0, 2.0]])
    try:
        t.data = ndl.Tensor([[1, 2]])
        raise SystemExit("the .data setter must assert equal dtypes")
    except AssertionError:
        pass
    assert type(t.cached_data) is np.ndarray and t.realize_cached_data() is t.cached_data
    assert repr(t.device) == "needle.cpu()"
    # in-place edits of the raw array change the tensor
    t.realize_cached_data().flat[1] += 1.0
    assert t.numpy()[0, 1] == 3.0
    # float32 params x float64 inputs -> float64; python scalars do not upcast float32
    w = ndl.init.ones(2, 2)
    assert w.dtype == np.float32 and (w * 0.5).dtype == np.float32
    assert (ndl.Tensor(np.ones((3, 2))) @ w).dtype == np.float64
    # implicit broadcasting (1,3) with (3,), gradients reduced to the input shapes
    a = ndl.Tensor(np.random.randn(1, 3))
    b = ndl.Tensor(np.random.randn(3))
    assert (a + b).shape == (1, 3)
    gradient_check(lambda a, b: a * b + a / (b * b + 1.0), a, b)
    assert a.grad.shape == (1, 3) and b.grad.shape == (3,)
    # power with an integer exponent tensor and implicit broadcasting
    base = ndl.Tensor(np.random.uniform(0.5, 2.0, (2, 3)))
    ex = ndl.Tensor(np.array([1, 2, 3]))
    assert_close(ops.power(base, ex), base.numpy() ** np.array([1, 2, 3]))
    gradient_check(lambda x: ops.power(x, ex), base)
    # autograd on integer tensors
    x = ndl.Tensor([6])
    y = x * x + x * 2
    y.backward()
    assert x.grad.dtype == np.int64 and x.grad.numpy().tolist() == [14]
    # full reductions give shape ()
    s = ops.summation(ndl.Tensor(np.ones((2, 3))))
    assert s.shape == () and type(s.cached_data) is np.ndarray
    assert ops.logsumexp(ndl.Tensor(np.ones((2, 3)))).shape == ()
    # divide_scalar by a 1-element numpy array
    assert_close(ops.divide_scalar(ndl.Tensor(np.ones(3)), np.array([4.0])), np.full(3, 0.25))
    # every op checked in float64 at tight tolerance
    r = np.random.randn
    checks = [
        (ops.logsoftmax, [r(3, 4)]), (lambda z: ops.logsumexp(z, (0, 2)), [r(2, 3, 4)]),
        (ops.tanh, [r(3)]), (ops.exp, [r(3)]), (ops.sigmoid, [r(3)]),
        (lambda z: ops.log(z * z + 1.0), [r(4)]), (lambda p, q: p @ q, [r(2, 3, 4), r(4, 2)]),
        (lambda p, q: p @ q, [r(4), r(4, 2)]), (lambda p, q: p @ q, [r(3, 4), r(4)]),
        (lambda p, q: ops.divide(p, q * q + 1.0), [r(2, 3), r(2, 3)]),
        (lambda z: ops.broadcast_to(z, (2, 3, 4)), [r(3, 1)]),
        (lambda z: ops.summation(z, (0, 2)), [r(2, 3, 4)]),
        (lambda z: ops.transpose(z, (0, 2)), [r(2, 3, 4)]),
        (lambda z: ops.reshape(z, (4, 3)), [r(2, 6)]),
        (lambda z: ops.stack([z, z * 2.0], 1), [r(2, 3)]),
        (lambda z: ops.split(z, 1)[2], [r(2, 3)]),
        (lambda z: ops.relu(z) * 1.0, [np.array([-1.0, 0.5, 2.0])]),
        (lambda z: ops.flip(z, (1,)), [r(2, 3)]),
        (lambda z: ops.dilate(z, (0,), 1), [r(2, 3)]),
        (lambda z: ops.power_scalar(z * z + 1.0, -1.5), [r(3)]),
    ]
    for f, arrays in checks:
        gradient_check(f, *[ndl.Tensor(a) for a in arrays], tol=1e-5)
    # bad input names the op and the shapes, with the usual exception types
    for bad, name in [(lambda: ndl.Tensor(np.ones((2, 3))) + ndl.Tensor(np.ones(4)), "EWiseAdd"),
                      (lambda: ops.summation(ndl.Tensor(np.ones((2, 3))), axes=5), "Summation"),
                      (lambda: ops.reshape(ndl.Tensor(np.ones((2, 3))), (4,)), "Reshape")]:
        try:
            bad()
            raise SystemExit(name + " did not raise")
        except ValueError as e:
            assert name in str(e) and "(2, 3)" in str(e), str(e)
    # second order in float64
    x2, x3 = ndl.Tensor([6.0]), ndl.Tensor([0.0])
    y = x2 * x2 + x2 * x3
    y.backward()
    x2.grad.backward()
    assert x2.grad.numpy().tolist() == [2.0] and x3.grad.numpy().tolist() == [1.0]
    print("numpy-mode OK")
""")


def test_numpy_mode_in_subprocess(run_numpy_mode):
    run_numpy_mode(NUMPY_MODE_SCRIPT, "numpy-mode OK")


def test_failed_construction_and_failed_ops_keep_counter_exact(device):
    gc.collect()
    before = autograd.TENSOR_COUNTER
    a = ndl.Tensor(randn(2, 3), device=device)
    for _ in range(3):
        with pytest.raises(TypeError):
            ndl.Tensor([1.0], device=device, dtype="float64")
        with pytest.raises(ValueError):
            a + ndl.Tensor(randn(3, 2), device=device)
    del a
    gc.collect()
    assert autograd.TENSOR_COUNTER == before


# ---------------------------------------------------------------------------------- gradient_check
class _WrongGradExp(autograd.TensorOp):
    """exp with a deliberately wrong gradient (2x too large), to prove gradient_check can fail."""

    def compute(self, a):
        return a.exp() if ndl.BACKEND == "nd" else np.exp(a)

    def gradient(self, out_grad, node):
        return out_grad * node * 2.0


def wrong_exp(a):
    return _WrongGradExp()(a)


def test_gradient_check_catches_a_wrong_gradient(device):
    x = ndl.Tensor(randn(2, 3), device=device)
    with pytest.raises(AssertionError, match=r"gradient_check\(wrong_exp\): grad of input 0"):
        gradient_check(wrong_exp, x)


class _ForgetfulSum(autograd.TensorOp):
    """Sum whose gradient forgets to broadcast back to the input shape."""

    def compute(self, a):
        return a.sum() if ndl.BACKEND == "nd" else np.asarray(np.sum(a))

    def gradient(self, out_grad, node):
        return out_grad


def test_gradient_check_catches_a_wrong_grad_shape(device):
    x = ndl.Tensor(randn(2, 3), device=device)
    with pytest.raises(AssertionError, match=r"grad of input 0 has shape"):
        gradient_check(_ForgetfulSum(), x, op_name="forgetful_sum")


def test_gradient_check_leaves_global_rng_alone(device):
    np.random.seed(11)
    expected = np.random.rand()
    x = ndl.Tensor(randn(3), device=device)
    np.random.seed(11)
    grads = gradient_check(ops.tanh, x)
    assert np.random.rand() == expected
    assert grads[0].shape == (3,)


@pytest.mark.parametrize("create_graph", [True, False])
def test_data_batch_grad_is_deferred_but_exact(device, create_graph):
    """conv's input gradient for a leaf that wants none is built only when read; it is the
    same node and the same values as the eager one."""
    rng = np.random.default_rng(5)
    x_np = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)
    w_np = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    w = ndl.Tensor(w_np, device=device)
    x = ndl.Tensor(x_np, device=device, requires_grad=False)
    ndl.conv(x, w, stride=2, padding=1).sum().backward(create_graph=create_graph)
    assert x.grad is not None and x.grad.cached_data is None  # not computed yet
    eager_x = ndl.Tensor(x_np, device=device)
    ndl.conv(eager_x, w, stride=2, padding=1).sum().backward()
    if device.name == "cuda":  # col2im adds with atomics, whose order varies from run to run
        np.testing.assert_allclose(x.grad.numpy(), eager_x.grad.numpy(), rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_array_equal(x.grad.numpy(), eager_x.grad.numpy())
    assert x.grad.shape == x.shape
    # once read, a no-graph gradient is a plain constant (nothing else kept alive)
    assert (x.grad.op is None) == (not create_graph)


def test_make_deferred_computes_once(device):
    a = ndl.Tensor(randn(3, 2), device=device)
    calls = []

    class Probe(ops.EWiseAdd):
        def compute(self, x, y):
            calls.append(1)
            return super().compute(x, y)

    t = ndl.Tensor.make_deferred(Probe(), [a, a])
    assert calls == [] and t.requires_grad
    np.testing.assert_allclose(t.numpy(), 2 * a.numpy())
    t.numpy()
    assert calls == [1] and t.op is not None  # requires grad: stays a graph node
