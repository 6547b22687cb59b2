"""apps.mlp_resnet: structure, parameter counts, RNG order, epoch/train_mnist, and real MNIST."""
import gzip
import os
import struct
import textwrap
import time

import numpy as np
import pytest

import needle as ndl
from needle import data, nn

from apps.mlp_resnet import MLPResNet, ResidualBlock, epoch, main, train_mnist

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def num_params(model):
    return sum(int(np.prod(p.shape)) for p in model.parameters())


@pytest.mark.parametrize("build,count", [
    (lambda: ResidualBlock(15, 2, nn.BatchNorm1d), 111),
    (lambda: ResidualBlock(784, 100, nn.LayerNorm1d), 159452),
    (lambda: MLPResNet(150, 100, 5, 10, nn.LayerNorm1d), 68360),
    (lambda: MLPResNet(10, 100, 1, 100, nn.BatchNorm1d), 21650),
])
def test_parameter_counts(build, count):
    assert num_params(build()) == count


def test_residual_block_structure():
    block = ResidualBlock(6, 4, nn.LayerNorm1d, drop_prob=0.3)
    assert isinstance(block, nn.Sequential) and len(block.modules) == 2
    res, relu = block.modules
    assert isinstance(res, nn.Residual) and isinstance(relu, nn.ReLU)
    inner = res.fn.modules
    assert [type(m) for m in inner] == [nn.Linear, nn.LayerNorm1d, nn.ReLU, nn.Dropout,
                                        nn.Linear, nn.LayerNorm1d]
    assert inner[3].p == 0.3 and inner[0].weight.shape == (6, 4)


def test_mlpresnet_draw_order():
    np.random.seed(2)
    model = MLPResNet(10, 8, num_blocks=2, num_classes=3)
    np.random.seed(2)
    linears = [m for _, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert [lin.weight.shape for lin in linears] == [(10, 8), (8, 4), (4, 8), (8, 4), (4, 8),
                                                     (8, 3)]
    for lin in linears:  # each Linear: weight rand(in, out), then bias rand(out, 1)
        fan_in, fan_out = lin.weight.shape
        bw, bb = np.sqrt(6 / fan_in), np.sqrt(6 / fan_out)
        w = np.random.rand(fan_in, fan_out).astype(np.float32) * 2 * bw - bw
        b = np.random.rand(fan_out, 1).astype(np.float32) * 2 * bb - bb
        np.testing.assert_allclose(lin.weight.numpy(), w, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(lin.bias.numpy(), b.reshape(1, -1), rtol=1e-6, atol=1e-6)


def small_loader(device, n=50, bs=16, shape=(12,), shuffle=False):
    X = np.random.rand(n, *shape).astype(np.float32)
    y = (X.reshape(n, -1)[:, 0] > 0.5).astype(np.float32)
    return data.DataLoader(data.NDArrayDataset(X, y), bs, shuffle=shuffle, device=device), X, y


def test_epoch_eval_returns_error_rate_and_mean_loss(device):
    loader, X, y = small_loader(device, shape=(3, 4))  # flattened to 12 inside epoch
    model = MLPResNet(12, 8, num_blocks=1, num_classes=2, device=device)
    np.random.seed(99)
    err, loss = epoch(loader, model)
    assert np.random.rand() == np.random.RandomState(4).rand()  # seed(4), no draws in eval
    assert not model.training
    logits = model(ndl.Tensor(X.reshape(len(X), -1), device=device)).numpy()
    assert err == pytest.approx(np.mean(logits.argmax(1) != y))
    lse = np.log(np.exp(logits.astype(np.float64)).sum(1))
    assert loss == pytest.approx(np.mean(lse - logits[np.arange(len(y)), y.astype(int)]),
                                 rel=1e-4)


def test_epoch_training_is_reproducible(device):
    results = []
    for junk in (1, 2):
        np.random.seed(0)
        model = MLPResNet(12, 8, num_blocks=2, num_classes=2, drop_prob=0.5, device=device)
        loader, _, _ = small_loader(device, shuffle=True)
        opt = ndl.optim.Adam(model.parameters(), lr=0.01)
        np.random.seed(junk)  # epoch reseeds 4 first, so this must not matter
        err, loss = epoch(loader, model, opt)
        assert model.training
        results.append((err, loss, [p.numpy() for p in model.parameters()]))
    assert results[0][:2] == results[1][:2]
    for a, b in zip(results[0][2], results[1][2]):
        np.testing.assert_array_equal(a, b)


def write_idx(path, magic, dims, payload):
    raw = struct.pack(">I", magic) + struct.pack(">" + "I" * len(dims), *dims) + payload
    path.write_bytes(gzip.compress(raw))


@pytest.fixture
def fake_mnist_dir(tmp_path):
    """A tiny MNIST look-alike: the label is which half of the image is bright."""
    rng = np.random.RandomState(0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    for split, n in (("train", 120), ("t10k", 40)):
        labels = rng.randint(0, 2, n).astype(np.uint8)
        imgs = rng.randint(0, 60, (n, 28, 28)).astype(np.uint8)
        imgs[labels == 1, :14] += 150  # label 1: top half bright
        imgs[labels == 0, 14:] += 150  # label 0: bottom half bright
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", 2051, (n, 28, 28), imgs.tobytes())
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", 2049, (n,), labels.tobytes())
    return tmp_path


def test_train_mnist_on_small_files(fake_mnist_dir):
    kw = dict(batch_size=40, lr=0.01, hidden_dim=16, data_dir=str(fake_mnist_dir))
    short = train_mnist(epochs=1, **kw)
    assert len(short) == 4 and all(np.isfinite(v) for v in short)
    assert train_mnist(epochs=1, **kw) == short, "train_mnist reseeds 4 first: identical runs"
    train_err, train_loss, test_err, _ = train_mnist(epochs=12, **kw)
    assert train_loss < short[1] and train_err <= 0.05
    # the held-out split is learnt once the BatchNorm running statistics have settled
    assert test_err <= 0.1, test_err


def test_train_mnist_missing_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NEEDLE_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="NEEDLE_DATA"):
        train_mnist(epochs=1, data_dir=str(tmp_path / "missing"))


def test_cli_exit_code(fake_mnist_dir, capsys):
    args = ["--data-dir", str(fake_mnist_dir), "--epochs", "1", "--hidden-dim", "8",
            "--batch-size", "60"]
    assert main(args + ["--target-acc", "1.01"]) == 1
    assert main(args + ["--target-acc", "0.0"]) == 0
    assert "test err" in capsys.readouterr().out


@pytest.mark.slow
def test_mlpresnet_reaches_95_percent_on_real_mnist(mnist_dir):
    """Train on the first 8,000 t10k images, evaluate on the last 2,000 (the cpu device)."""
    ds = data.MNISTDataset(os.path.join(mnist_dir, "t10k-images-idx3-ubyte.gz"),
                           os.path.join(mnist_dir, "t10k-labels-idx1-ubyte.gz"))
    train = data.NDArrayDataset(ds.images[:8000], ds.labels[:8000])
    test = data.NDArrayDataset(ds.images[8000:], ds.labels[8000:])
    np.random.seed(4)
    model = MLPResNet(784, 256)
    opt = ndl.optim.Adam(model.parameters(), lr=0.002)
    train_loader = data.DataLoader(train, batch_size=100, shuffle=True, device=ndl.cpu())
    test_loader = data.DataLoader(test, batch_size=500, device=ndl.cpu())
    start = time.time()
    for _ in range(4):
        train_err, _ = epoch(train_loader, model, opt)
        opt.lr *= 0.5
    test_err, _ = epoch(test_loader, model)
    elapsed = time.time() - start
    print(f"MLPResNet real MNIST: train err {train_err:.4f}, test acc {1 - test_err:.4f}, "
          f"{elapsed:.1f}s")
    assert 1 - test_err >= 0.95, (train_err, test_err)


NP_MODE_SCRIPT = textwrap.dedent("""
    import numpy as np
    import needle as ndl
    from needle import data
    from apps.mlp_resnet import MLPResNet, epoch
    assert ndl.BACKEND == "np"
    model = MLPResNet(12, 8, num_blocks=1, num_classes=2)
    assert sum(int(np.prod(p.shape)) for p in model.parameters()) == 222
    X = np.random.rand(30, 12).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(np.uint8)
    loader = data.DataLoader(data.NDArrayDataset(X, y), 10, shuffle=True)
    err, loss = epoch(loader, model, ndl.optim.Adam(model.parameters(), lr=0.01))
    assert 0 <= err <= 1 and np.isfinite(loss)
    for p in model.parameters():
        assert p.dtype == np.float32 and isinstance(p.cached_data, np.ndarray)
    print("np-mode mlp_resnet OK")
""")


def test_numpy_mode_subprocess(run_numpy_mode):
    run_numpy_mode(NP_MODE_SCRIPT, "np-mode mlp_resnet OK")
