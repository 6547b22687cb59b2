"""Train an image classifier with needle and report held-out accuracy.

    python -m apps.train --model lenet --dataset digits --epochs 3
    python -m apps.train --model lenet --dataset mnist-t10k-split --data-dir ../shared/data \\
        --epochs 4 --batch-size 32 --lr 2e-3 --target-acc 0.97

Each epoch trains (tqdm bar with loss, accuracy, images/s), evaluates on the test split and
writes `checkpoint.pkl`, `metrics.json` and `curves.png` into --out (atomically). `--resume`
continues from the checkpoint bit for bit. Bad input (unknown model or dataset, missing or
truncated data, a foreign or corrupted checkpoint, --device cuda without a GPU) prints one
`error: ...` line on stderr and exits with code 2; a final accuracy below --target-acc exits 1.
"""
import argparse
import io
import json
import os
import sys
import time

import needle as ndl
import numpy as np
from needle import nn
from needle.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR10Dataset,
    DataLoader,
    DigitsDataset,
    MNISTDataset,
    NDArrayDataset,
    Normalize,
    RandomCrop,
    RandomFlipHorizontal,
    ensure_cifar10,
    ensure_mnist,
)
from needle.utils import atomic_write, load_checkpoint, save_checkpoint

from apps.mlp_resnet import MLPResNet
from apps.models import VGG, LeNet, ResNet9, ResNet18
from apps.train_schedule import add_arguments as add_schedule_arguments, make_scheduler

MODELS = ("lenet", "vgg11", "vgg16", "resnet9", "resnet18", "mlp")
DATASETS = ("digits", "mnist", "mnist-t10k-split", "cifar10")
DEVICES = ("cpu", "cuda", "cpu_numpy")
DEFAULT_LR = {"adam": 1e-3, "sgd": 0.05}
CHECKPOINT_FORMAT = "needle-apps-train-1"
# mnist-t10k-split: the 10,000 t10k images, first 8,000 for training, last 2,000 held out.
T10K_SPLIT = 8000
NUM_CLASSES = 10  # every dataset here has ten classes


class AppError(Exception):
    """Bad user input: reported as one `error: ...` line and exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise AppError(message)


def parse_args(argv=None):
    p = _Parser(prog="python -m apps.train", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="lenet", choices=MODELS)
    p.add_argument("--dataset", default="digits", choices=DATASETS,
                   help="digits: scikit-learn's 8x8 digits (offline); mnist: train/t10k; "
                        "mnist-t10k-split: t10k only, 8,000 train / 2,000 test; cifar10")
    p.add_argument("--device", default="cpu", choices=DEVICES)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", default="adam", choices=("adam", "sgd"))
    p.add_argument("--lr", type=float, default=None, help="default: adam 1e-3, sgd 0.05")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD only")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many optimizer steps in total (then evaluate)")
    p.add_argument("--target-acc", type=float, default=None,
                   help="exit with code 1 if the final test accuracy is below this")
    p.add_argument("--out", default=None, help="output folder (default: runs/MODEL-DATASET)")
    p.add_argument("--data-dir", default=None,
                   help="data folder (default: $NEEDLE_DATA, then ~/.needle/data)")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="CHECKPOINT",
                   help="continue from CHECKPOINT (default: OUT/checkpoint.pkl)")
    add_schedule_arguments(p)  # --schedule, --warmup-epochs
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "max_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise AppError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.lr is None:
        args.lr = DEFAULT_LR[args.optimizer]
    if args.out is None:
        args.out = os.path.join("runs", f"{args.model}-{args.dataset}")
    return args


# ------------------------------------------------------------------------------------- setup


def get_device(name):
    device = {"cpu": ndl.cpu, "cuda": ndl.cuda, "cpu_numpy": ndl.cpu_numpy}[name]()
    if not device.enabled():
        raise AppError(f"--device {name}: not available (needle was built without it, or no "
                       "GPU is visible); use --device cpu")
    return device


def image_size(model, dataset):
    """Input side the model gets: LeNet and the MLP take 28 x 28 digits; the rest need 32."""
    if dataset == "cifar10" or model not in ("lenet", "mlp"):
        return 32
    return 28


def _grayscale(X, y, size, channels):
    """Array dataset from N x 1 x H x W images: zero-pad to `size`, repeat to `channels`."""
    pad = (size - X.shape[-1]) // 2
    if pad > 0:
        X = np.pad(X, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    if channels != X.shape[1]:
        X = np.repeat(X, channels, axis=1)
    return NDArrayDataset(np.ascontiguousarray(X, dtype=np.float32), y)


def load_data(args, size, channels):
    """-> (train dataset, test dataset); items are (C x H x W image, label)."""
    if args.dataset == "cifar10":
        folder = ensure_cifar10(args.data_dir)
        norm = Normalize(CIFAR10_MEAN, CIFAR10_STD)
        train = CIFAR10Dataset(folder, train=True,
                               transforms=[RandomCrop(4), RandomFlipHorizontal(), norm])
        return train, CIFAR10Dataset(folder, train=False, transforms=[norm])
    if args.dataset == "digits":
        parts = [DigitsDataset(train=t, image_size=size) for t in (True, False)]
        return tuple(_grayscale(d.images, d.labels, size, channels) for d in parts)
    if args.dataset == "mnist":
        files = ensure_mnist(args.data_dir, ("train", "t10k"))
        parts = [MNISTDataset(*files[s]) for s in ("train", "t10k")]
        arrays = [(d.images.reshape(-1, 1, 28, 28), d.labels) for d in parts]
    else:
        d = MNISTDataset(*ensure_mnist(args.data_dir, ("t10k",))["t10k"])
        X = d.images.reshape(-1, 1, 28, 28)
        arrays = [(X[:T10K_SPLIT], d.labels[:T10K_SPLIT]), (X[T10K_SPLIT:], d.labels[T10K_SPLIT:])]
    return tuple(_grayscale(X, y, size, channels) for X, y in arrays)


def build_model(name, channels, size, device, num_classes=NUM_CLASSES):
    if name == "lenet":
        return LeNet(channels, num_classes, input_size=size, device=device)
    if name in ("vgg11", "vgg16"):
        return VGG(int(name[3:]), batch_norm=True, num_classes=num_classes,
                   in_channels=channels, device=device)
    if name == "resnet9":
        return ResNet9(device=device)
    if name == "resnet18":
        return ResNet18(num_classes, in_channels=channels, device=device)
    return nn.Sequential(nn.Flatten(), MLPResNet(channels * size * size, hidden_dim=128,
                                                 num_classes=num_classes, device=device))


def build_optimizer(args, params):
    if args.optimizer == "sgd":
        return ndl.optim.SGD(params, lr=args.lr, momentum=args.momentum,
                             weight_decay=args.weight_decay)
    return ndl.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)


def setup(args):
    """Everything that depends on user input; any failure becomes an AppError."""
    device = get_device(args.device)
    size = image_size(args.model, args.dataset)
    data_channels = 3 if args.dataset == "cifar10" else 1
    channels = 3 if args.model == "resnet9" else data_channels
    try:
        train_ds, test_ds = load_data(args, size, channels)
    except (OSError, ValueError, ImportError) as e:
        raise AppError(str(e)) from None
    model = build_model(args.model, channels, size, device)
    opt = build_optimizer(args, model.parameters())
    return device, model, opt, train_ds, test_ds


# ------------------------------------------------------------------------------ checkpoints


def checkpoint_path(args):
    return args.resume or os.path.join(args.out, "checkpoint.pkl")


def save_state(args, model, opt, epoch, step, history):
    save_checkpoint(os.path.join(args.out, "checkpoint.pkl"), {
        "format": CHECKPOINT_FORMAT,
        "model": args.model,
        "dataset": args.dataset,
        "epoch": epoch,
        "step": step,
        "model_state": dict(model.state_dict()),
        "optimizer": opt.state_dict(),
        "rng_state": np.random.get_state(),
        "metrics": history,
        "args": vars(args),
    })


def restore_state(args, model, opt):
    """Load the checkpoint into model/optimizer/RNG; returns (epoch, step, history)."""
    path = checkpoint_path(args)
    try:
        ckpt = load_checkpoint(path)
    except (OSError, ValueError) as e:
        raise AppError(f"cannot resume: {e}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise AppError(f"cannot resume: {path} is not an apps.train checkpoint")
    for key in ("model", "dataset"):
        if ckpt[key] != getattr(args, key):
            raise AppError(f"cannot resume: {path} was trained with --{key} {ckpt[key]}, "
                           f"not --{key} {getattr(args, key)}")
    try:
        model.load_state_dict(ckpt["model_state"])
        opt.load_state_dict(ckpt["optimizer"])
        np.random.set_state(ckpt["rng_state"])
    except (KeyError, ValueError, TypeError) as e:
        raise AppError(f"cannot resume from {path}: {e}") from None
    return ckpt["epoch"], ckpt["step"], ckpt["metrics"]


def write_outputs(args, history):
    """metrics.json and curves.png in --out, each written atomically."""
    atomic_write(os.path.join(args.out, "metrics.json"),
                 json.dumps({"model": args.model, "dataset": args.dataset, "args": vars(args),
                             "epochs": history}, indent=1).encode())
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        print("warning: matplotlib is not installed; curves.png skipped", file=sys.stderr)
        return
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(8, 3), dpi=80)
    for split in ("train", "test"):
        ax_loss.plot(epochs, [h[f"{split}_loss"] for h in history], "o-", label=split)
        ax_acc.plot(epochs, [h[f"{split}_acc"] for h in history], "o-", label=split)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{args.model} on {args.dataset}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write(os.path.join(args.out, "curves.png"), buf.getvalue())


# ---------------------------------------------------------------------------------- training


def _progress(loader, desc):
    try:
        from tqdm import tqdm
    except ImportError:
        return loader
    # disable=None: a bar on terminals only, so logs and CI output stay clean.
    return tqdm(loader, total=len(loader), desc=desc, unit="batch", leave=False, disable=None)


def _correct(logits, y):
    """Number of rows of `logits` whose argmax equals the label in `y`."""
    return int((logits.numpy().argmax(axis=1) == y.numpy()).sum())


def train_epoch(model, loader, opt, loss_fn, desc, steps_left, sched=None):
    """One pass of training; returns (mean loss, accuracy, images, seconds, step losses)."""
    model.train()
    losses, total, correct, seen = [], 0.0, 0, 0
    start = time.perf_counter()
    bar = _progress(loader, desc)
    for X, y in bar:
        logits = model(X)
        loss = loss_fn(logits, y)
        opt.reset_grad()
        loss.backward(create_graph=False)
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(float(loss.numpy().item()))
        total += losses[-1] * X.shape[0]
        correct += _correct(logits, y)
        seen += X.shape[0]
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{losses[-1]:.4f}", acc=f"{correct / seen:.4f}",
                            img_s=f"{seen / (time.perf_counter() - start):.0f}")
        if steps_left is not None and len(losses) >= steps_left:
            break
    if hasattr(bar, "close"):
        bar.close()
    seconds = time.perf_counter() - start
    return total / seen, correct / seen, seen, seconds, losses


def evaluate(model, dataset, batch_size, device, loss_fn):
    """-> (mean per-sample loss, accuracy) over `dataset`, in eval mode, without a graph."""
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    with ndl.autograd.no_grad():
        for X, y in DataLoader(dataset, batch_size, shuffle=False, device=device):
            logits = model(X)
            total_loss += float(loss_fn(logits, y).numpy().item()) * X.shape[0]
            correct += _correct(logits, y)
            seen += X.shape[0]
    return total_loss / seen, correct / seen


def run(args):
    t0 = time.perf_counter()
    np.random.seed(args.seed)
    device, model, opt, train_ds, test_ds = setup(args)
    epoch, step, history = 0, 0, []
    if args.resume is not None:
        epoch, step, history = restore_state(args, model, opt)
    os.makedirs(args.out, exist_ok=True)
    loss_fn = nn.SoftmaxLoss()
    loader = DataLoader(train_ds, args.batch_size, shuffle=True, device=device)
    try:
        sched = make_scheduler(args, opt, len(loader), start_step=step)
    except ValueError as e:
        raise AppError(str(e)) from None
    images, train_seconds = 0, 0.0
    while epoch < args.epochs and (args.max_steps is None or step < args.max_steps):
        epoch += 1
        steps_left = None if args.max_steps is None else args.max_steps - step
        train_loss, train_acc, seen, seconds, losses = train_epoch(
            model, loader, opt, loss_fn, f"epoch {epoch}/{args.epochs}", steps_left, sched)
        step += len(losses)
        images, train_seconds = images + seen, train_seconds + seconds
        test_loss, test_acc = evaluate(model, test_ds, args.batch_size, device, loss_fn)
        history.append({"epoch": epoch, "steps": step, "train_loss": train_loss,
                        "train_acc": train_acc, "test_loss": test_loss, "test_acc": test_acc,
                        "images_per_s": seen / seconds, "train_seconds": seconds,
                        "step_losses": losses})
        print(f"epoch {epoch}/{args.epochs}: train_loss={train_loss:.4f} "
              f"train_acc={train_acc:.4f} test_loss={test_loss:.4f} test_acc={test_acc:.4f} "
              f"images/s={seen / seconds:.0f} ({seconds:.1f}s)", flush=True)
        save_state(args, model, opt, epoch, step, history)
        write_outputs(args, history)
    last = history[-1]
    rate = images / train_seconds if train_seconds else 0.0
    print(f"final: test_acc={last['test_acc']:.4f} train_loss={last['train_loss']:.4f} "
          f"images/s={rate:.0f} wall={time.perf_counter() - t0:.1f}s", flush=True)
    if args.target_acc is not None and last["test_acc"] < args.target_acc:
        print(f"target not reached: test_acc {last['test_acc']:.4f} < {args.target_acc}",
              file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    """Entry point; returns the exit code (0 ok, 1 below --target-acc, 2 bad input)."""
    try:
        return run(parse_args(argv))
    except AppError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
