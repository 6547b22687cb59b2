"""apps.models: exact parameter counts, forward/backward on every device (against PyTorch when
installed), overfitting one small batch, and import side effects."""
import importlib
import sys

import needle as ndl
import numpy as np
import pytest
from needle import nn

import apps.models
from apps.models import VGG, LeNet, ResNet9, ResNet18


def n_params(model):
    return sum(int(np.prod(p.shape)) for p in model.parameters())


@pytest.mark.parametrize("build, count", [
    (lambda d: ResNet9(device=d), 431_946),
    (lambda d: LeNet(device=d), 61_706),
    (lambda d: LeNet(3, 100, input_size=32, device=d), 61_706 + 2 * 150 + 84 * 90 + 90),
    (lambda d: VGG(11, device=d), 9_225_610),
    (lambda d: VGG(11, batch_norm=True, device=d), 9_231_114),
    (lambda d: VGG(16, device=d), 14_719_818),
    (lambda d: VGG(16, batch_norm=True, device=d), 14_728_266),
    (lambda d: ResNet18(device=d), 11_173_962),
], ids=["resnet9", "lenet", "lenet-3ch-100", "vgg11", "vgg11-bn", "vgg16", "vgg16-bn", "resnet18"])
def test_parameter_counts(build, count):
    assert n_params(build(ndl.cpu_numpy())) == count


def test_resnet9_creation_order():
    """§10.3: parameters in creation order, each layer's weight drawn before its bias."""
    np.random.seed(0)
    model = ResNet9(device=ndl.cpu_numpy())
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes[:4] == [(7, 7, 3, 16), (16,), (16,), (16,)]  # conv w, conv b, bn w, bn b
    assert shapes[-4:] == [(128, 128), (1, 128), (128, 10), (1, 10)]
    np.random.seed(0)
    first = np.random.rand(7, 7, 3, 16)
    bound = np.sqrt(6 / (3 * 49))  # kaiming_uniform gain sqrt(2) * sqrt(3 / fan_in)
    np.testing.assert_allclose(model.parameters()[0].numpy(), (first * 2 - 1) * bound,
                               rtol=1e-5, atol=1e-7)


def test_bad_arguments():
    with pytest.raises(ValueError, match="LeNet.*input_size"):
        LeNet(input_size=30)
    with pytest.raises(ValueError, match="VGG.*depth"):
        VGG(12)


def test_import_reseeds_and_is_repeatable():
    np.random.seed(5)
    sys.modules.pop("apps.models")  # a first import of the course name again
    assert importlib.import_module("apps.models") is apps.models  # one copy: needle.apps.models
    assert np.random.rand() == np.random.RandomState(0).rand()
    import models as top_level  # the contract's second import path (./apps on sys.path)
    assert top_level.ResNet9 is apps.models.ResNet9
    assert n_params(top_level.ResNet9(device=ndl.cpu_numpy())) == 431_946


# --------------------------------------------------------------------------------- vs torch


def _torch_twin(name):
    """The same architecture in PyTorch (parameters in the same order)."""
    torch = pytest.importorskip("torch")
    tnn = torch.nn

    class Residual(tnn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def forward(self, x):
            return self.fn(x) + x

    class Block(tnn.Module):
        def __init__(self, cin, c, s):
            super().__init__()
            self.conv1, self.bn1 = tnn.Conv2d(cin, c, 3, s, 1, bias=False), tnn.BatchNorm2d(c)
            self.conv2, self.bn2 = tnn.Conv2d(c, c, 3, 1, 1, bias=False), tnn.BatchNorm2d(c)
            self.short = tnn.Identity() if s == 1 and cin == c else tnn.Sequential(
                tnn.Conv2d(cin, c, 1, s, bias=False), tnn.BatchNorm2d(c))

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(out)) + self.short(x))

    def cbn(a, b, k, s):
        return tnn.Sequential(tnn.Conv2d(a, b, k, s, k // 2), tnn.BatchNorm2d(b), tnn.ReLU())

    if name == "lenet":
        return tnn.Sequential(tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
                              tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
                              tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(),
                              tnn.Linear(84, 10))
    if name == "resnet9":
        return tnn.Sequential(
            cbn(3, 16, 7, 4), cbn(16, 32, 3, 2),
            Residual(tnn.Sequential(cbn(32, 32, 3, 1), cbn(32, 32, 3, 1))),
            cbn(32, 64, 3, 2), cbn(64, 128, 3, 2),
            Residual(tnn.Sequential(cbn(128, 128, 3, 1), cbn(128, 128, 3, 1))),
            tnn.Flatten(), tnn.Linear(128, 128), tnn.ReLU(), tnn.Linear(128, 10))
    if name == "vgg11":
        layers, c = [], 3
        for v in apps.models.VGG_CONFIGS[11]:
            layers += [tnn.MaxPool2d(2)] if v == "M" else [tnn.Conv2d(c, v, 3, padding=1),
                                                           tnn.ReLU()]
            c = c if v == "M" else v
        return tnn.Sequential(*layers, tnn.Flatten(), tnn.Linear(512, 10))
    blocks, c = [], 64
    for planes, s in ((64, 1), (128, 2), (256, 2), (512, 2)):
        blocks += [Block(c, planes, s), Block(planes, planes, 1)]
        c = planes
    return tnn.Sequential(tnn.Conv2d(3, 64, 3, 1, 1, bias=False), tnn.BatchNorm2d(64),
                          tnn.ReLU(), *blocks, tnn.AdaptiveAvgPool2d(1), tnn.Flatten(),
                          tnn.Linear(512, 10))


def _to_torch(p):
    """needle parameter layout -> torch: conv K,K,Cin,Cout -> Cout,Cin,K,K; linear transposed."""
    a = p.numpy()
    if a.ndim == 4:
        return a.transpose(3, 2, 0, 1)
    if a.ndim == 2 and a.shape[0] != 1:
        return a.T
    return a.reshape(-1)


BUILDERS = {
    "lenet": (lambda d: LeNet(device=d), (2, 1, 28, 28)),
    "resnet9": (lambda d: ResNet9(device=d), (2, 3, 32, 32)),
    "vgg11": (lambda d: VGG(11, device=d), (1, 3, 32, 32)),
    "resnet18": (lambda d: ResNet18(device=d), (2, 3, 16, 16)),  # 16 x 16 keeps it quick
}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_forward_backward(name, device):
    build, shape = BUILDERS[name]
    model = build(device)
    x_np = np.random.randn(*shape).astype(np.float32)
    y_np = np.arange(shape[0]) % 10
    x = ndl.Tensor(x_np, device=device, requires_grad=True)
    logits = model(x)
    assert logits.shape == (shape[0], 10) and logits.device == device
    loss = nn.SoftmaxLoss()(logits, ndl.Tensor(y_np, device=device))
    loss.backward()
    params = model.parameters()
    for p in params:
        assert p.grad is not None and p.grad.shape == p.shape
        assert np.isfinite(p.grad.numpy()).all()
    assert np.abs(params[0].grad.numpy()).sum() > 0 and x.grad.shape == x.shape

    torch = pytest.importorskip("torch")
    # The reference runs in float64: with tiny batches BatchNorm is ill-conditioned enough that
    # float32 torch itself strays ~1e-3 (relative) from it on the input gradient.
    twin = _torch_twin(name).double()
    tparams = list(twin.parameters())
    assert [t.numel() for t in tparams] == [int(np.prod(p.shape)) for p in params]
    with torch.no_grad():
        for t, p in zip(tparams, params):
            t.copy_(torch.tensor(_to_torch(p)).reshape(t.shape))
    tx = torch.tensor(x_np, dtype=torch.float64, requires_grad=True)
    tlogits = twin(tx)  # train mode: BatchNorm uses batch statistics in both
    torch.nn.functional.cross_entropy(tlogits, torch.tensor(y_np)).backward()
    checks = [("forward", logits.numpy(), tlogits.detach().numpy()),
              ("grad of input", x.grad.numpy(), tx.grad.numpy())]
    checks += [(f"grad of parameter {i}", _to_torch(params[i].grad),
                tparams[i].grad.numpy().reshape(_to_torch(params[i].grad).shape))
               for i in (0, len(params) - 2)]
    for what, ours, ref in checks:
        np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-4 * np.abs(ref).max(),
                                   err_msg=f"{name}: {what}")


# -------------------------------------------------------------------------------- overfitting


@pytest.mark.parametrize("name, shape, steps, lr", [
    ("resnet9", (8, 3, 32, 32), 12, 3e-3),
    ("vgg11", (4, 3, 32, 32), 4, 3e-4),
    ("resnet18", (4, 3, 16, 16), 4, 1e-3),
], ids=["resnet9", "vgg11-bn", "resnet18"])
def test_overfits_one_batch(name, shape, steps, lr):
    device = ndl.cpu()
    np.random.seed(1)
    model = {"resnet9": lambda: ResNet9(device=device),
             "vgg11": lambda: VGG(11, batch_norm=True, device=device),
             "resnet18": lambda: ResNet18(device=device)}[name]()
    x = ndl.Tensor(np.random.randn(*shape), device=device)
    y = ndl.Tensor(np.arange(shape[0]) % 10, device=device)
    opt = ndl.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.SoftmaxLoss()
    losses = []
    for _ in range(steps):
        loss = loss_fn(model(x), y)
        opt.reset_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.numpy().item()))
    assert losses[0] > 1.0 and losses[-1] < 0.05, f"{name} losses {losses}"
