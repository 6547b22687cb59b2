"""MLPResNet on MNIST: the model, one epoch of training/evaluation, and `train_mnist`.

Importable as `apps.mlp_resnet` and as top-level `mlp_resnet`. Importing it seeds numpy's
global RNG with 0 (part of the RNG contract). Run as a script to train:

    python apps/mlp_resnet.py --data-dir ~/.needle/data --epochs 2 --target-acc 0.95
"""
import argparse
import os
import sys
import time

import numpy as np

import needle as ndl
from needle import nn
from needle.data import DataLoader, MNISTDataset, find_data_dir
from needle.data.data_mnist import mnist_files


def ResidualBlock(dim, hidden_dim, norm=nn.BatchNorm1d, drop_prob=0.1, device=None,
                  dtype="float32"):
    """Residual(Linear -> norm -> ReLU -> Dropout -> Linear -> norm) followed by ReLU.

    Shapes: N x dim -> N x dim. `device`/`dtype` (extensions) go to the Linear and norm layers.
    """
    kw = {"device": device, "dtype": dtype}
    return nn.Sequential(
        nn.Residual(
            nn.Sequential(
                nn.Linear(dim, hidden_dim, **kw),
                norm(hidden_dim, **kw),
                nn.ReLU(),
                nn.Dropout(drop_prob),
                nn.Linear(hidden_dim, dim, **kw),
                norm(dim, **kw),
            )
        ),
        nn.ReLU(),
    )


def MLPResNet(dim, hidden_dim=100, num_blocks=3, num_classes=10, norm=nn.BatchNorm1d,
              drop_prob=0.1, device=None, dtype="float32"):
    """Linear(dim, hidden) -> ReLU -> num_blocks x ResidualBlock(hidden, hidden//2) -> Linear.

    Shapes: N x dim -> N x num_classes. Modules are created (and draw) in that order.
    `device`/`dtype` (extensions) go to every layer.
    """
    kw = {"device": device, "dtype": dtype}
    return nn.Sequential(
        nn.Linear(dim, hidden_dim, **kw),
        nn.ReLU(),
        *[ResidualBlock(hidden_dim, hidden_dim // 2, norm, drop_prob, **kw)
          for _ in range(num_blocks)],
        nn.Linear(hidden_dim, num_classes, **kw),
    )


def epoch(dataloader, model, opt=None):
    """One pass over `dataloader`: trains (model.train()) with `opt`, else evaluates.

    Args:
        dataloader: yields (X (B, 784) or (B, ...), y (B,)) Tensors.
        model: maps B x 784 to B x classes logits.
        opt: optimizer or None.
    Returns:
        (error rate, average per-sample loss) over the dataset.
    """
    np.random.seed(4)
    if opt is not None:
        model.train()
    else:
        model.eval()
    loss_fn = nn.SoftmaxLoss()
    errors, total_loss, count = 0.0, 0.0, 0
    for X, y in dataloader:
        if len(X.shape) != 2:
            X = ndl.reshape(X, (X.shape[0], int(np.prod(X.shape[1:]))))
        logits = model(X)
        loss = loss_fn(logits, y)
        if opt is not None:
            opt.reset_grad()
            loss.backward(create_graph=False)
            opt.step()
        n = X.shape[0]
        errors += float(np.sum(logits.numpy().argmax(axis=1) != y.numpy()))
        total_loss += float(np.asarray(loss.numpy()).reshape(-1)[0]) * n
        count += n
    if count == 0:
        raise ValueError("epoch: the dataloader yielded no batches")
    return errors / count, total_loss / count


def train_mnist(batch_size=100, epochs=10, optimizer=ndl.optim.Adam, lr=0.001,
                weight_decay=0.001, hidden_dim=100, data_dir="data"):
    """Train MLPResNet(784, hidden_dim) on MNIST; evaluate on the t10k set.

    `data_dir` holds train-*/t10k-* IDX files (directly or in a `mnist/` subfolder); when it
    does not exist, $NEEDLE_DATA and then the user cache folder are used (see `find_data_dir`).
    Returns (train_err, train_loss, test_err, test_loss) of the last epoch.
    """
    np.random.seed(4)
    if not os.path.isdir(data_dir):
        data_dir = find_data_dir(must_exist=True)
    train_set = MNISTDataset(*mnist_files(data_dir, "train"))
    test_set = MNISTDataset(*mnist_files(data_dir, "t10k"))
    train_loader = DataLoader(train_set, batch_size, shuffle=True)
    test_loader = DataLoader(test_set, batch_size)
    model = MLPResNet(784, hidden_dim)
    opt = optimizer(model.parameters(), lr=lr, weight_decay=weight_decay)
    train_err, train_loss = 0.0, 0.0
    for _ in range(epochs):
        train_err, train_loss = epoch(train_loader, model, opt)
    test_err, test_loss = epoch(test_loader, model)
    return train_err, train_loss, test_err, test_loss


def main(argv=None):
    """CLI: train on MNIST and exit non-zero if test accuracy is below --target-acc."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="default: $NEEDLE_DATA or the user cache folder")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--hidden-dim", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--target-acc", type=float, default=0.0)
    args = parser.parse_args(argv)
    start = time.time()
    train_err, train_loss, test_err, test_loss = train_mnist(
        args.batch_size, args.epochs, lr=args.lr, hidden_dim=args.hidden_dim,
        data_dir=find_data_dir(args.data_dir, must_exist=True),
    )
    print(f"train err {train_err:.4f} loss {train_loss:.4f} | test err {test_err:.4f} "
          f"loss {test_loss:.4f} | {time.time() - start:.1f}s")
    return 0 if 1 - test_err >= args.target_acc else 1


if __name__ == "__main__":
    sys.exit(main())
