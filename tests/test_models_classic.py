"""AlexNet and GoogLeNet (apps/models.py): parameter counts against torchvision's published
figures and against the same architectures built from torch.nn layers, forward/backward shapes,
the training app's registry, and one epoch on digits."""
import numpy as np
import pytest

import needle as ndl
from needle.utils import summary

from apps import train
from apps.models import AlexNet, GoogLeNet

# torchvision.models.alexnet() and googlenet(aux_logits=False, init_weights=True) for 1000
# classes (the counts torchvision's model docs list: 61,100,840 and 6,624,904)
TORCHVISION_ALEXNET = 61_100_840
TORCHVISION_GOOGLENET = 6_624_904


def n_params(model):
    return sum(int(np.prod(p.shape)) for p in model.parameters())


def _torch_alexnet(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Conv2d(64, 192, 5, padding=2),
        nn.ReLU(), nn.MaxPool2d(3, 2), nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(), nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(3, 2), nn.AdaptiveAvgPool2d((6, 6)), nn.Flatten(), nn.Dropout(),
        nn.Linear(9216, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(),
        nn.Linear(4096, 1000))


def _torch_googlenet(torch):
    """torchvision's GoogLeNet layout (BasicConv2d = conv no bias + BN), rebuilt layer by layer."""
    nn = torch.nn

    def basic(a, b, k, **kw):
        return [nn.Conv2d(a, b, k, bias=False, **kw), nn.BatchNorm2d(b, eps=1e-3)]

    layers = basic(3, 64, 7, stride=2, padding=3) + basic(64, 64, 1) + basic(64, 192, 3, padding=1)
    for cin, c1, r3, c3, r5, c5, pp in (b for b in _blocks() if b != "M"):
        layers += (basic(cin, c1, 1) + basic(cin, r3, 1) + basic(r3, c3, 3, padding=1)
                   + basic(cin, r5, 1) + basic(r5, c5, 3, padding=1) + basic(cin, pp, 1))
    return nn.Sequential(*layers, nn.Linear(1024, 1000))


def _blocks():
    from apps.models import GOOGLENET_BLOCKS
    return GOOGLENET_BLOCKS


def test_imagenet_configurations_match_torchvision_counts():
    dev = ndl.cpu()
    alex = AlexNet(1000, imagenet=True, device=dev)
    goog = GoogLeNet(1000, imagenet=True, device=dev)
    assert n_params(alex) == TORCHVISION_ALEXNET
    assert n_params(goog) == TORCHVISION_GOOGLENET
    torch = pytest.importorskip("torch")
    assert sum(p.numel() for p in _torch_alexnet(torch).parameters()) == TORCHVISION_ALEXNET
    assert sum(p.numel() for p in _torch_googlenet(torch).parameters()) == TORCHVISION_GOOGLENET


def test_summary_counts_the_cifar_variants():
    dev = ndl.cpu()
    for model, count, classes in ((AlexNet(device=dev), 5_871_434, 10),
                                  (GoogLeNet(device=dev), 5_490_986, 10)):
        table = summary(model, (1, 3, 32, 32), device=dev)
        assert n_params(model) == count
        assert f"{count:,}" in str(table), str(table)[-400:]
        out = model(ndl.init.zeros(2, 3, 32, 32, device=dev))
        assert out.shape == (2, classes)


def test_summary_of_the_imagenet_googlenet():
    dev = ndl.cpu()
    table = summary(GoogLeNet(1000, imagenet=True, device=dev), (1, 3, 224, 224), device=dev)
    assert f"{TORCHVISION_GOOGLENET:,}" in str(table)


def test_paper_five_by_five_branch_and_bad_input():
    assert n_params(GoogLeNet(1000, imagenet=True, five=5, device=ndl.cpu())) == 7_005_832
    with pytest.raises(ValueError, match=r"AlexNet: expected N x C x 32 x 32"):
        AlexNet(device=ndl.cpu())(ndl.init.zeros(1, 3, 28, 28, device=ndl.cpu()))


@pytest.mark.parametrize("model", ["alexnet", "googlenet"])
def test_training_app_registry_takes_one_step(model, tmp_path, capsys):
    code = train.main(["--model", model, "--dataset", "digits", "--batch-size", "4",
                       "--max-steps", "1", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "test" in out


@pytest.mark.slow
@pytest.mark.parametrize("build", [
    lambda d: AlexNet(in_channels=1, hidden=256, dropout=0.0, device=d),
    lambda d: GoogLeNet(in_channels=1, width=0.25, device=d)],
                         ids=["alexnet-hidden256", "googlenet-width0.25"])
def test_one_epoch_on_digits_learns(build):
    """One epoch over the 1,438 training digits at 32 x 32 (small widths to keep it short):
    test accuracy well above chance (10%)."""
    from needle.data import DigitsDataset
    dev = ndl.cpu()
    np.random.seed(0)
    model = build(dev)
    opt = ndl.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = ndl.nn.SoftmaxLoss()
    train_ds, test_ds = DigitsDataset(True, 32), DigitsDataset(False, 32)
    model.train()
    order = np.random.permutation(len(train_ds))
    for i in range(0, len(order), 32):
        X, y = train_ds[order[i:i + 32]]
        loss = loss_fn(model(ndl.Tensor(X, device=dev)), ndl.Tensor(y.astype(np.float32),
                                                                   device=dev))
        opt.reset_grad()
        loss.backward()
        opt.step()
    model.eval()
    X, y = test_ds[np.arange(len(test_ds))]
    acc = (model(ndl.Tensor(X, device=dev)).numpy().argmax(1) == y).mean()
    assert acc > 0.5, acc
