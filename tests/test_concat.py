"""concat / narrow (the Inception blocks' channel join) on every device: values against numpy,
gradients by finite differences and against torch.cat."""
import numpy as np
import pytest

import needle as ndl
from needle.testing import assert_close, gradient_check


def T(x, device):
    return ndl.Tensor(np.asarray(x, dtype=np.float32), device=device, requires_grad=True)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat_matches_numpy_and_gradients(device, axis):
    parts = [np.random.randn(2, 3, 4), np.random.randn(2, 3, 4)]
    parts[1] = np.concatenate([parts[1], parts[1]], axis=axis)  # differ along the axis
    out = ndl.ops.concat([T(p, device) for p in parts], axis)
    assert_close(out, np.concatenate(parts, axis), what="concat")
    gradient_check(lambda a, b: ndl.ops.concat([a, b], axis), *[T(p, device) for p in parts],
                   tol=2e-2, op_name="concat")
    gradient_check(lambda a: ndl.ops.narrow(a, axis, 1, 2), T(parts[1], device), tol=2e-2,
                   op_name="narrow")


def test_concat_against_torch(device):
    torch = pytest.importorskip("torch")
    xs = [np.random.randn(2, c, 3, 3) for c in (1, 4, 2)]
    go = np.random.randn(2, 7, 3, 3)
    tx = [torch.tensor(x, requires_grad=True) for x in xs]
    torch.cat(tx, 1).backward(torch.tensor(go))
    nx = [T(x, device) for x in xs]
    ndl.ops.concat(nx, 1).backward(ndl.Tensor(go.astype(np.float32), device=device))
    for a, b in zip(nx, tx):
        assert_close(a.grad, b.grad.numpy(), what="grad")


def test_bad_shapes():
    with pytest.raises(ValueError, match="concat: shapes"):
        ndl.ops.concat([T(np.zeros((2, 3)), None), T(np.zeros((3, 3)), None)], 1)
    with pytest.raises(ValueError, match="narrow: .*outside"):
        ndl.ops.narrow(T(np.zeros((2, 3)), None), 1, 2, 2)
