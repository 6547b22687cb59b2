"""needle.torch: needle's conv as a torch.autograd.Function / nn.Module. gradcheck in float64
(through the float64 reference), float32 against F.conv2d (needle's kernels), the module
against torch.nn.Conv2d with the same parameters, and the errors."""
import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from needle.torch import Conv2d, Conv2dFunction  # noqa: E402

CONFIGS = list(itertools.product((1, 3), (1, 2), (0, 1, 2)))  # kernel, stride, padding


@pytest.mark.parametrize("k, s, p", CONFIGS)
def test_gradcheck_float64(k, s, p):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, k, k, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: Conv2dFunction.apply(x, w, b, s, p),
                                    (x, w, b))


@pytest.mark.parametrize("k, s, p", CONFIGS + [((3, 5), (2, 1), (1, 2))])
def test_float32_matches_f_conv2d(k, s, p):
    torch.manual_seed(1)
    kk = (k, k) if isinstance(k, int) else k
    x = torch.randn(2, 3, 9, 8, requires_grad=True)
    w = torch.randn(5, 3, *kk, requires_grad=True)
    b = torch.randn(5, requires_grad=True)
    y = Conv2dFunction.apply(x, w, b, s, p)
    x2, w2, b2 = (t.detach().clone().requires_grad_() for t in (x, w, b))
    y2 = F.conv2d(x2, w2, b2, stride=s, padding=p)
    torch.testing.assert_close(y, y2, rtol=1e-4, atol=1e-4)
    g = torch.randn_like(y)
    y.backward(g)
    y2.backward(g)
    for a, e, name in ((x, x2, "x"), (w, w2, "w"), (b, b2, "b")):
        torch.testing.assert_close(a.grad, e.grad, rtol=1e-4, atol=1e-3, msg=f"grad of {name}")


def test_module_matches_torch_conv2d_and_trains():
    torch.manual_seed(2)
    ours = Conv2d(3, 6, 3, stride=2, padding=1)
    ref = torch.nn.Conv2d(3, 6, 3, stride=2, padding=1)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(4, 3, 10, 10)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-4)
    opt = torch.optim.SGD(ours.parameters(), lr=0.1)
    target = torch.randn(4, 6, 5, 5)
    losses = []
    for _ in range(5):
        loss = ((ours(x) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert "kernel_size=(3, 3)" in repr(ours)


def test_errors():
    with pytest.raises(ValueError, match=r"needle.torch.Conv2d: expected N x 3 x H x W"):
        Conv2d(3, 4, 3)(torch.randn(3, 8, 8))
    with pytest.raises(TypeError, match="float32 .* or all float64"):
        Conv2dFunction.apply(torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="larger than the padded input"):
        Conv2dFunction.apply(torch.randn(1, 2, 2, 2), torch.randn(3, 2, 3, 3))
