"""Losses, activations and ops.erf against torch (forward value and input gradient).

Each test prints `max|diff|` so the figures can be quoted; run with `-s` to see them.
"""
import needle as ndl
import numpy as np
import pytest
from needle import nn

torch = pytest.importorskip("torch")


def _report(what, ours, ref, tol):
    """Assert max|ours - ref| <= tol * max(1, max|ref|) (float32 sums of large values)."""
    ref = np.asarray(ref, np.float64)
    diff = float(np.max(np.abs(np.asarray(ours, dtype=np.float64) - ref)))
    print(f"{what}: max|diff| = {diff:.3g}")
    bound = tol * max(1.0, float(np.max(np.abs(ref))))
    assert diff <= bound, f"{what}: max|diff| {diff} > {bound}"
    return diff


def _pair(x, device):
    """(needle Tensor, torch tensor with grad) holding the same float32 values."""
    return (ndl.Tensor(x, device=device, dtype="float32"),
            torch.tensor(x, dtype=torch.float32, requires_grad=True))


def _check(name, ours_fn, torch_fn, x, device, tol=1e-5):
    a, t = _pair(x, device)
    out = ours_fn(a)
    ref = torch_fn(t)
    _report(f"{name} forward", out.numpy(), ref.detach().numpy(), tol)
    cot = np.asarray(np.random.RandomState(1).randn(*ref.shape), dtype=np.float32)
    # a full reduction is shape (1,) in NDArray mode (() in numpy mode and torch)
    (out * ndl.Tensor(cot.reshape(out.shape), device=device)).sum().backward()
    (ref * torch.tensor(cot)).sum().backward()
    _report(f"{name} grad", a.grad.numpy(), t.grad.numpy(), tol)


def test_erf_matches_torch(device):
    x = np.linspace(-6, 6, 20001).astype(np.float32)
    _check("erf", ndl.erf, torch.erf, x, device, tol=1e-6)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch(device, approximate):
    x = np.random.randn(64, 33).astype(np.float32) * 3
    _check(f"GELU({approximate})", nn.GELU(approximate), torch.nn.GELU(approximate), x, device,
           tol=2e-6)


def test_silu_leaky_relu_sigmoid_match_torch(device):
    x = np.random.randn(50, 7).astype(np.float32) * 4
    _check("SiLU", nn.SiLU(), torch.nn.SiLU(), x, device)
    _check("LeakyReLU", nn.LeakyReLU(0.2), torch.nn.LeakyReLU(0.2), x, device)
    _check("Sigmoid", nn.Sigmoid(), torch.nn.Sigmoid(), x, device)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_matches_torch(device, reduction, smoothing):
    x = np.random.randn(16, 10).astype(np.float32) * 3
    y = np.random.randint(0, 10, 16)
    loss = nn.CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing)
    ref = torch.nn.CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing)
    _check(f"CrossEntropyLoss({reduction}, {smoothing})", lambda a: loss(a, y),
           lambda t: ref(t, torch.tensor(y)), x, device)


def test_cross_entropy_probability_targets_and_tensor_labels(device):
    x = np.random.randn(8, 5).astype(np.float32)
    p = np.random.dirichlet(np.ones(5), 8).astype(np.float32)
    loss = nn.CrossEntropyLoss(label_smoothing=0.2)
    ref = torch.nn.CrossEntropyLoss(label_smoothing=0.2)
    _check("CrossEntropyLoss(probs)", lambda a: loss(a, ndl.Tensor(p, device=device)),
           lambda t: ref(t, torch.tensor(p)), x, device)
    y = np.random.randint(0, 5, 8)
    ours = nn.CrossEntropyLoss()(ndl.Tensor(x, device=device), ndl.Tensor(y, device=device))
    _report("CrossEntropyLoss(Tensor labels)", ours.numpy(),
            torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(y)).numpy(), 1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_after_log_softmax_matches_torch(device, reduction):
    x = np.random.randn(12, 6).astype(np.float32)
    y = np.random.randint(0, 6, 12)
    ours = nn.Sequential(nn.LogSoftmax(axis=1))
    _check(f"NLLLoss({reduction})", lambda a: nn.NLLLoss(reduction)(ours(a), y),
           lambda t: torch.nn.NLLLoss(reduction=reduction)(torch.log_softmax(t, 1),
                                                          torch.tensor(y)), x, device)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_l1_match_torch(device, reduction):
    x = np.random.randn(9, 4).astype(np.float32)
    target = np.random.randn(9, 4).astype(np.float32)
    for ours, ref in ((nn.MSELoss(reduction), torch.nn.MSELoss(reduction=reduction)),
                      (nn.L1Loss(reduction), torch.nn.L1Loss(reduction=reduction))):
        _check(f"{type(ours).__name__}({reduction})",
               lambda a, ours=ours: ours(a, ndl.Tensor(target, device=device)),
               lambda t, ref=ref: ref(t, torch.tensor(target)), x, device)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_matches_torch_and_is_stable(device, reduction):
    x = np.concatenate([np.random.randn(40) * 5, [-200.0, -80.0, 0.0, 80.0, 200.0]])
    x = x.astype(np.float32).reshape(5, 9)
    y = np.random.rand(5, 9).astype(np.float32)
    _check(f"BCEWithLogitsLoss({reduction})",
           lambda a: nn.BCEWithLogitsLoss(reduction)(a, ndl.Tensor(y, device=device)),
           lambda t: torch.nn.BCEWithLogitsLoss(reduction=reduction)(t, torch.tensor(y)),
           x, device, tol=2e-5)
    w = np.random.rand(9).astype(np.float32) + 0.5
    _check(f"BCEWithLogitsLoss(pos_weight, {reduction})",
           lambda a: nn.BCEWithLogitsLoss(reduction, pos_weight=ndl.Tensor(w, device=device))(
               a, ndl.Tensor(y, device=device)),
           lambda t: torch.nn.BCEWithLogitsLoss(reduction=reduction, pos_weight=torch.tensor(w))(
               t, torch.tensor(y)), x, device, tol=5e-5)


def test_dropout2d_zeroes_whole_channels(device):
    x = ndl.Tensor(np.ones((4, 6, 3, 3), np.float32), device=device)
    g = ndl.Generator(3)
    out = nn.Dropout2d(0.5, generator=g)(x).numpy()
    per_channel = out.reshape(4, 6, 9)
    assert np.all((per_channel == 0).all(axis=2) | (per_channel == 2.0).all(axis=2))
    keep = np.random.RandomState(3).rand(4, 6) <= 0.5
    np.testing.assert_array_equal(per_channel[:, :, 0] != 0, keep)
    assert nn.Dropout2d(0.5).eval()(x) is x


def test_loss_and_activation_arguments_are_validated():
    x = ndl.Tensor(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="CrossEntropyLoss: reduction"):
        nn.CrossEntropyLoss(reduction="avg")
    with pytest.raises(ValueError, match="CrossEntropyLoss: label_smoothing"):
        nn.CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: labels must be integers in \[0, 4\)"):
        nn.CrossEntropyLoss()(x, np.array([0, 1, 4]))
    with pytest.raises(ValueError, match="NLLLoss: expected labels of shape"):
        nn.NLLLoss()(x, np.array([0, 1]))
    with pytest.raises(ValueError, match="MSELoss: input"):
        nn.MSELoss()(x, ndl.Tensor(np.zeros((4, 3), np.float32)))
    with pytest.raises(TypeError, match="L1Loss: target must be a Tensor"):
        nn.L1Loss()(x, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="BCEWithLogitsLoss: pos_weight must have shape"):
        nn.BCEWithLogitsLoss(pos_weight=ndl.Tensor(np.ones(3, np.float32)))(x, x)
    with pytest.raises(ValueError, match="GELU: approximate"):
        nn.GELU("fast")
    with pytest.raises(TypeError, match="LeakyReLU: negative_slope"):
        nn.LeakyReLU("0.1")
    with pytest.raises(ValueError, match="Dropout2d: p"):
        nn.Dropout2d(2)
    with pytest.raises(ValueError, match="Dropout2d: expected"):
        nn.Dropout2d()(x)


NUMPY_MODE_SCRIPT = """
import numpy as np, torch
import needle as ndl
from needle import nn
x = np.random.RandomState(0).randn(6, 5)          # float64 stays float64 in numpy mode
t = ndl.Tensor(x)
y = nn.GELU()(t)
y.sum().backward()
ref = torch.tensor(x, requires_grad=True)
torch.nn.functional.gelu(ref).sum().backward()
assert y.dtype == np.float64 and np.abs(y.numpy() - torch.nn.functional.gelu(ref).detach().numpy()).max() < 1e-6
assert np.abs(t.grad.numpy() - ref.grad.numpy()).max() < 1e-6
labels = np.array([0, 1, 2, 3, 4, 0])
ce = nn.CrossEntropyLoss(label_smoothing=0.1)(t, labels)
want = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(labels), label_smoothing=0.1)
assert ce.shape == () and abs(float(ce.numpy()) - want.item()) < 1e-12
target = np.random.RandomState(1).rand(6, 5)
bce = nn.BCEWithLogitsLoss()(t, ndl.Tensor(target))
want = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor(x), torch.tensor(target))
assert abs(float(bce.numpy()) - want.item()) < 1e-12
print("numpy-mode losses OK")
"""


def test_losses_and_gelu_in_numpy_mode(run_numpy_mode):
    run_numpy_mode(NUMPY_MODE_SCRIPT, "numpy-mode losses OK", timeout=120)
