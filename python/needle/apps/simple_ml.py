"""Training helpers: the MNIST two-layer-network helpers and the CIFAR-10 epoch/train/evaluate loops.

Importable as `apps.simple_ml` and as top-level `simple_ml` (with ./apps on sys.path). Module
globals `device`, `nn`, `ndl`, `np` (and the model classes of `apps.models`) are part of the
contract: `from simple_ml import *` re-exports them.
"""
import numpy as np

import needle as ndl
from needle import nn
from needle.data.data_mnist import parse_mnist as _parse_mnist_files

# The contract re-exports the models from here (`from simple_ml import *` gives ResNet9, ...).
from needle.apps.models import *  # noqa: F403

device = ndl.cpu()


# ---------------------------------------------------------------------------------------------
# MNIST helpers (a two-layer network trained by hand)


def parse_mnist(image_filename, label_filename):
    """Read gzipped MNIST IDX files.

    Returns:
        X: float32 numpy array N x 784, values in [0, 1].
        y: uint8 numpy array (N,).
    """
    return _parse_mnist_files(image_filename, label_filename)


def softmax_loss(Z, y_one_hot):
    """Average softmax (cross-entropy) loss.

    Args:
        Z: Tensor n x k of logits.
        y_one_hot: Tensor n x k, one-hot rows of the true labels.
    Returns:
        a scalar Tensor (shape () in numpy mode): mean_i (log sum_j exp Z[i, j] - Z[i, y_i]).
    """
    n = Z.shape[0]
    lse = ndl.summation(ndl.logsumexp(Z, axes=(1,)))
    picked = ndl.summation(Z * y_one_hot)
    return (lse - picked) / n


def _one_hot_rows(y, k):
    y_one_hot = np.zeros((y.shape[0], k))
    y_one_hot[np.arange(y.size), y] = 1
    return y_one_hot


def nn_epoch(X, y, W1, W2, lr=0.1, batch=100):
    """One epoch of SGD on logits = relu(X @ W1) @ W2, consecutive minibatches, no shuffling.

    Args:
        X: numpy array N x d; y: numpy integer labels (N,).
        W1: Tensor d x hidden; W2: Tensor hidden x k.
        lr: step size; batch: minibatch length (the last may be short).
    Returns:
        (W1, W2): new Tensors after the epoch (updated with numpy arithmetic).
    """
    k = W2.shape[1]
    for start in range(0, X.shape[0], batch):
        Xb = ndl.Tensor(X[start:start + batch], requires_grad=False)
        yb = y[start:start + batch]
        logits = ndl.relu(Xb @ W1) @ W2
        loss = softmax_loss(logits, ndl.Tensor(_one_hot_rows(yb, k), requires_grad=False))
        loss.backward(create_graph=False)
        W1 = ndl.Tensor(W1.numpy() - lr * W1.grad.numpy())
        W2 = ndl.Tensor(W2.numpy() - lr * W2.grad.numpy())
    return W1, W2


def loss_err(h, y):
    """(softmax loss, error rate) of logits Tensor h (n x k) against numpy labels y (n,)."""
    y_one_hot = ndl.Tensor(_one_hot_rows(y, h.shape[-1]), requires_grad=False)
    return softmax_loss(h, y_one_hot).numpy(), np.mean(h.numpy().argmax(axis=1) != y)


# ---------------------------------------------------------------------------------------------
# CIFAR-10 loops


def epoch_general_cifar10(dataloader, model, loss_fn=nn.SoftmaxLoss(), opt=None):  # noqa: B008
    """One pass over `dataloader`; trains when `opt` is given, else evaluates.

    Args:
        dataloader: yields (X N x 3 x 32 x 32, y (N,)) Tensors.
        model: maps X to logits N x classes.
        loss_fn: a loss module instance.
        opt: optimizer, or None for evaluation (model.eval()).
    Returns:
        (average accuracy, average per-sample loss).
    """
    np.random.seed(4)
    if opt is not None:
        model.train()
    else:
        model.eval()
    correct, total_loss, count = 0.0, 0.0, 0
    for X, y in dataloader:
        logits = model(X)
        loss = loss_fn(logits, y)
        if opt is not None:
            opt.reset_grad()
            loss.backward(create_graph=False)
            opt.step()
        n = X.shape[0]
        correct += float(np.sum(logits.numpy().argmax(axis=1) == y.numpy()))
        total_loss += float(loss.numpy().reshape(-1)[0]) * n
        count += n
    if count == 0:
        raise ValueError("epoch_general_cifar10: the dataloader yielded no batches")
    return correct / count, total_loss / count


def train_cifar10(model, dataloader, n_epochs=1, optimizer=ndl.optim.Adam, lr=0.001,
                  weight_decay=0.001, loss_fn=nn.SoftmaxLoss):
    """Train `model` for `n_epochs`; returns (average accuracy, average loss) of the last epoch.

    `optimizer` and `loss_fn` are classes, instantiated here.
    """
    np.random.seed(4)
    opt = optimizer(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss = loss_fn()
    avg_acc, avg_loss = 0.0, 0.0
    for _ in range(n_epochs):
        avg_acc, avg_loss = epoch_general_cifar10(dataloader, model, loss, opt)
    return avg_acc, avg_loss


def evaluate_cifar10(model, dataloader, loss_fn=nn.SoftmaxLoss):
    """Evaluate `model` (eval mode); returns (average accuracy, average loss).

    `loss_fn` is a class, instantiated here.
    """
    np.random.seed(4)
    return epoch_general_cifar10(dataloader, model, loss_fn(), None)


# ---------------------------------------------------------------------------------------------
# Penn Treebank loops


def _detach_state(h):
    """Cut the graph behind a recurrent state: a Tensor, a tuple of Tensors, or None."""
    if h is None:
        return None
    if isinstance(h, (tuple, list)):
        return tuple(t.detach() for t in h)
    return h.detach()


def epoch_general_ptb(data, model, seq_len=40, loss_fn=nn.SoftmaxLoss(),  # noqa: B008
                      opt=None, clip=None, device=None, dtype="float32"):
    """One pass over batchified PTB data; trains when `opt` is given, else evaluates.

    Args:
        data: numpy array nbatch x bs of word ids (from `ndl.data.batchify`).
        model: a LanguageModel-like module, model(X (L x bs), h) -> (logits (L*bs) x V, h).
        seq_len: rows per step (truncated BPTT length); loss_fn: a loss module instance.
        opt: optimizer or None (evaluation, model.eval()); clip: max gradient norm or None.
        device, dtype: where the batches are placed.
    Walks i = 0, seq_len, 2*seq_len, ... < nbatch - 1; the hidden state is carried across
    steps, detached.
    Returns:
        (average accuracy, average per-token loss).
    """
    np.random.seed(4)
    if opt is not None:
        model.train()
    else:
        model.eval()
    nbatch = data.shape[0]
    correct, total_loss, count = 0.0, 0.0, 0
    h = None
    for i in range(0, nbatch - 1, seq_len):
        X, y = ndl.data.get_batch(data, i, seq_len, device=device, dtype=dtype)
        logits, h = model(X, h)
        h = _detach_state(h)
        loss = loss_fn(logits, y)
        if opt is not None:
            opt.reset_grad()
            loss.backward(create_graph=False)
            if clip is not None:
                opt.clip_grad_norm(clip)
            opt.step()
        n = y.shape[0]
        correct += float(np.sum(logits.numpy().argmax(axis=1) == y.numpy()))
        total_loss += float(loss.numpy().reshape(-1)[0]) * n
        count += n
    if count == 0:
        raise ValueError(f"epoch_general_ptb: data of shape {data.shape} gives no batches "
                         f"(need at least 2 rows)")
    return correct / count, total_loss / count


def train_ptb(model, data, seq_len=40, n_epochs=1, optimizer=ndl.optim.SGD, lr=4.0,
              weight_decay=0.0, loss_fn=nn.SoftmaxLoss, clip=None, device=None, dtype="float32"):
    """Train a language model for `n_epochs` on batchified data (nbatch x bs).

    `optimizer` and `loss_fn` are classes, instantiated here.
    Returns:
        (average accuracy, average loss) of the last epoch.
    """
    np.random.seed(4)
    opt = optimizer(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss = loss_fn()
    avg_acc, avg_loss = 0.0, 0.0
    for _ in range(n_epochs):
        avg_acc, avg_loss = epoch_general_ptb(data, model, seq_len, loss, opt, clip, device,
                                              dtype)
    return avg_acc, avg_loss


def evaluate_ptb(model, data, seq_len=40, loss_fn=nn.SoftmaxLoss, device=None, dtype="float32"):
    """Evaluate a language model (eval mode) on batchified data (nbatch x bs).

    Returns:
        (average accuracy, average loss).
    """
    np.random.seed(4)
    return epoch_general_ptb(data, model, seq_len, loss_fn(), None, None, device, dtype)
