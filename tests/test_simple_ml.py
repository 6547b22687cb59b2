"""apps.simple_ml: MNIST helpers against numpy, CIFAR-style loops on small synthetic data."""
import os
import textwrap

import numpy as np
import pytest

import needle as ndl
from needle import data, nn

import apps.simple_ml as sm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_side_effects():
    assert sm.device == ndl.cpu()
    assert sm.nn is nn and sm.ndl is ndl and sm.np is np
    ns = {}
    exec("from simple_ml import *", ns)  # noqa: S102  (the top-level form, ./apps on sys.path)
    assert ns["device"] == ndl.cpu() and ns["nn"] is nn and ns["np"] is np
    assert callable(ns["parse_mnist"]) and "ResNet9" in ns


def test_parse_mnist_real_file(mnist_dir):
    X, y = sm.parse_mnist(os.path.join(mnist_dir, "t10k-images-idx3-ubyte.gz"),
                          os.path.join(mnist_dir, "t10k-labels-idx1-ubyte.gz"))
    assert X.shape == (10000, 784) and X.dtype == np.float32
    assert y.shape == (10000,) and y.dtype == np.uint8
    assert X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_allclose(np.linalg.norm(X[:10]), 27.792037, rtol=1e-5)
    np.testing.assert_array_equal(np.bincount(y)[:3], [980, 1135, 1032])


def one_hot(y, k):
    out = np.zeros((len(y), k), np.float32)
    out[np.arange(len(y)), y] = 1
    return out


def test_softmax_loss(device):
    Z = np.random.randn(7, 4).astype(np.float32) * 3
    y = np.random.randint(0, 4, 7)
    Zt = ndl.Tensor(Z, device=device)
    loss = sm.softmax_loss(Zt, ndl.Tensor(one_hot(y, 4), device=device))
    lse = np.log(np.exp(Z.astype(np.float64)).sum(1))
    np.testing.assert_allclose(loss.numpy().reshape(()), np.mean(lse - Z[np.arange(7), y]),
                               rtol=1e-5)
    loss.backward()
    p = np.exp(Z - lse[:, None])
    np.testing.assert_allclose(Zt.grad.numpy(), (p - one_hot(y, 4)) / 7, rtol=1e-4, atol=1e-6)


def nn_epoch_ref(X, y, W1, W2, lr, batch):
    W1, W2 = W1.astype(np.float64), W2.astype(np.float64)
    for s in range(0, len(X), batch):
        Xb, yb = X[s:s + batch], y[s:s + batch]
        Z1 = np.maximum(Xb @ W1, 0)
        logits = Z1 @ W2
        P = np.exp(logits - logits.max(1, keepdims=True))
        P /= P.sum(1, keepdims=True)
        G2 = (P - one_hot(yb, W2.shape[1])) / len(Xb)
        G1 = (Z1 > 0) * (G2 @ W2.T)
        W1, W2 = W1 - lr * Xb.T @ G1, W2 - lr * Z1.T @ G2
    return W1, W2


def test_nn_epoch_matches_numpy():
    X = np.random.randn(50, 6).astype(np.float32)
    y = np.random.randint(0, 3, 50).astype(np.uint8)
    W1 = (np.random.randn(6, 8) / np.sqrt(8)).astype(np.float32)
    W2 = (np.random.randn(8, 3) / np.sqrt(3)).astype(np.float32)
    T1, T2 = sm.nn_epoch(X, y, ndl.Tensor(W1), ndl.Tensor(W2), lr=0.2, batch=20)
    R1, R2 = nn_epoch_ref(X, y, W1, W2, 0.2, 20)
    np.testing.assert_allclose(T1.numpy(), R1, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(T2.numpy(), R2, rtol=1e-4, atol=1e-5)
    assert not np.allclose(T1.numpy(), W1)


def test_loss_err():
    Z = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 5.0, 0.0]], np.float32)
    y = np.array([0, 1, 1], np.uint8)
    loss, err = sm.loss_err(ndl.Tensor(Z), y)
    lse = np.log(np.exp(Z.astype(np.float64)).sum(1))
    np.testing.assert_allclose(np.asarray(loss).reshape(()),
                               np.mean(lse - Z[np.arange(3), y]), rtol=1e-5)
    assert err == pytest.approx(1 / 3)


# ---------------------------------------------------------------------------------------------
# CIFAR-10 loops on a small separable stand-in (N x 3 x 4 x 4 images, 3 classes)


def tiny_image_data(n=60):
    X = np.random.randn(n, 3, 4, 4).astype(np.float32)
    y = X.reshape(n, -1)[:, :3].argmax(1).astype(np.float32)
    return X, y


def tiny_model(device):
    return nn.Sequential(nn.Flatten(), nn.Linear(48, 16, device=device), nn.ReLU(),
                         nn.Dropout(0.1), nn.Linear(16, 3, device=device))


def test_evaluate_cifar10_reports_accuracy_and_reseeds(device):
    X, y = tiny_image_data()
    model = tiny_model(device)
    loader = data.DataLoader(data.NDArrayDataset(X, y), batch_size=16, device=device)
    np.random.seed(123)
    acc, loss = sm.evaluate_cifar10(model, loader)
    assert np.random.rand() == np.random.RandomState(4).rand()  # seed(4), then no draws
    assert not model.training
    logits = model(ndl.Tensor(X, device=device)).numpy()
    assert acc == pytest.approx(np.mean(logits.argmax(1) == y))  # accuracy, not error
    lse = np.log(np.exp(logits.astype(np.float64)).sum(1))
    assert loss == pytest.approx(np.mean(lse - logits[np.arange(len(y)), y.astype(int)]),
                                 rel=1e-4)


def test_train_cifar10_learns_and_draws_in_order(device):
    X, y = tiny_image_data()
    model = tiny_model(device)
    loader = data.DataLoader(data.NDArrayDataset(X, y), batch_size=20, shuffle=True,
                             device=device)
    acc0, _ = sm.evaluate_cifar10(model, data.DataLoader(data.NDArrayDataset(X, y), 20,
                                                         device=device))
    acc, _ = sm.train_cifar10(model, loader, n_epochs=15, lr=0.02)
    assert model.training
    assert acc > max(acc0, 0.8), (acc0, acc)
    # reseeds to 4 at the start of every epoch: the last epoch's draws follow seed(4)
    expected = np.random.RandomState(4)
    expected.permutation(len(X))
    for _ in range(3):
        expected.rand(20, 16)
    assert np.random.rand() == expected.rand()


def test_epoch_general_cifar10_with_optimizer(device):
    X, y = tiny_image_data(20)
    model = tiny_model(device)
    opt = ndl.optim.SGD(model.parameters(), lr=0.1)
    before = [p.numpy() for p in model.parameters()]
    loader = data.DataLoader(data.NDArrayDataset(X, y), batch_size=8, device=device)
    acc, loss = sm.epoch_general_cifar10(loader, model, nn.SoftmaxLoss(), opt)
    assert 0.0 <= acc <= 1.0 and loss > 0
    assert all(not np.allclose(b, p.numpy()) for b, p in zip(before, model.parameters()))


NP_MODE_SCRIPT = textwrap.dedent("""
    import numpy as np
    import needle as ndl
    import apps.simple_ml as sm
    assert ndl.BACKEND == "np"
    np.random.seed(0)
    Z = ndl.Tensor(np.random.randn(5, 3).astype(np.float32))
    y = np.array([0, 2, 1, 1, 0], dtype=np.uint8)
    loss, err = sm.loss_err(Z, y)
    assert np.asarray(loss).shape == (), np.asarray(loss).shape
    assert np.array((loss, err)).shape == (2,)
    X = np.random.randn(30, 4).astype(np.float32)
    W1 = ndl.Tensor(np.random.randn(4, 6).astype(np.float32))
    W2 = ndl.Tensor(np.random.randn(6, 3).astype(np.float32))
    W1, W2 = sm.nn_epoch(X, np.random.randint(0, 3, 30), W1, W2, lr=0.1, batch=10)
    assert isinstance(W1.cached_data, np.ndarray) and W1.shape == (4, 6)
    print("np-mode simple_ml OK")
""")


def test_numpy_mode_subprocess(run_numpy_mode):
    run_numpy_mode(NP_MODE_SCRIPT, "np-mode simple_ml OK")
