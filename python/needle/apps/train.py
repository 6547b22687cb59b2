"""Train an image classifier with needle and report held-out accuracy.

    python -m apps.train --model lenet --dataset digits --epochs 3
    python -m apps.train --model lenet --dataset mnist-t10k-split --data-dir ../shared/data \\
        --epochs 4 --batch-size 32 --lr 2e-3 --target-acc 0.97

Each epoch trains (tqdm bar with loss, accuracy, images/s), evaluates on the test split and
writes `checkpoint.safetensors`, `metrics.json` and `curves.png` into --out (atomically).
`--resume` continues from the checkpoint bit for bit, also from inside an epoch (--max-steps, Ctrl-C); an
--lr given with --resume replaces the checkpoint's. An --out that already holds a run needs
--resume or --overwrite.

Exit codes: 0 done; 1 final accuracy below --target-acc; 2 bad input (unknown model or dataset,
bad hyper-parameters, missing or truncated data, a foreign, corrupted or malformed checkpoint,
an unwritable --out, --device cuda without a GPU), as one `error: ...` line on stderr;
3 the loss became NaN or infinite; 130 Ctrl-C (a checkpoint of the current step is saved).
"""
import argparse
import contextlib
import io
import math
import os
import signal
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
from needle.utils import atomic_write

from needle.apps import train_distributed
from needle.apps.mlp_resnet import MLPResNet
from needle.apps.models import VGG, AlexNet, GoogLeNet, LeNet, ResNet9, ResNet18
from needle.apps.train_schedule import add_arguments as add_schedule_arguments, make_scheduler
from needle.apps.train_step import make_train_step
from needle.apps.train_tensorboard import open_log as open_tensorboard_log
from needle.apps.train_checkpoint import (
    AppError,
    check_run_folder,
    checkpoint_path,
    epoch_batches,
    new_epoch,
    prepare_run_folder,
    restore_state,
    save_state,
    write_json,
)

MODELS = ("lenet", "vgg11", "vgg16", "resnet9", "resnet18", "alexnet", "googlenet", "mlp")
DATASETS = ("digits", "mnist", "mnist-t10k-split", "cifar10")
DEVICES = ("cpu", "cuda", "cpu_numpy")
DEFAULT_LR = {"adam": 1e-3, "sgd": 0.05}
# mnist-t10k-split: the 10,000 t10k images, first 8,000 for training, last 2,000 held out.
T10K_SPLIT = 8000
NUM_CLASSES = 10  # every dataset here has ten classes


class Diverged(Exception):
    """The loss became NaN or infinite: one `error: ...` line and exit code 3."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise AppError(message)


def parse_args(argv=None):
    p = _Parser(prog="needle-train", description=__doc__.splitlines()[0],
                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
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
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                   help="digits: random shifts of up to 2 pixels in training")
    p.add_argument("--no-jit", action="store_true",
                   help="run every step eagerly (default: ndl.jit captures and replays it)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many optimizer steps in total (then evaluate)")
    p.add_argument("--target-acc", type=float, default=None,
                   help="exit with code 1 if the final test accuracy is below this")
    p.add_argument("--out", default=None, help="output folder (default: runs/MODEL-DATASET)")
    p.add_argument("--data-dir", default=None,
                   help="data folder (default: $NEEDLE_DATA, then the user cache folder)")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="CHECKPOINT",
                   help="continue from CHECKPOINT (default: OUT/checkpoint.safetensors; "
                        "an earlier version's checkpoint.pkl is read too)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (without it, such an --out is refused)")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the ranks of mpiexec; --batch-size is the global "
                        "batch (see apps/train_distributed.py)")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="also write TensorBoard scalars to DIR (the [tensorboard] extra)")
    add_schedule_arguments(p)  # --schedule, --warmup-epochs
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "max_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise AppError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    for name, ok, rule in (("lr", args.lr is None or 0 < args.lr < math.inf, "> 0"),
                           ("momentum", 0 <= args.momentum < 1, "in [0, 1)"),
                           ("weight_decay", 0 <= args.weight_decay < math.inf, ">= 0")):
        if not ok:  # NaN fails every comparison
            raise AppError(f"--{name.replace('_', '-')} must be {rule}, got "
                           f"{getattr(args, name)}")
    args.lr_given = args.lr is not None
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
        # shifts by up to 2 pixels (grayscale models): the test writers are not in training
        augment = args.augment and channels == 1
        train = DigitsDataset(train=True, image_size=size,
                              transforms=[RandomCrop(2)] if augment else None)
        test = DigitsDataset(train=False, image_size=size)
        if not augment:
            train = _grayscale(train.images, train.labels, size, channels)
        return train, _grayscale(test.images, test.labels, size, channels)
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
    if name == "alexnet":
        return AlexNet(num_classes, in_channels=channels, device=device)
    if name == "googlenet":
        return GoogLeNet(num_classes, in_channels=channels, device=device)
    return nn.Sequential(nn.Flatten(), MLPResNet(channels * size * size, hidden_dim=128,
                                                 num_classes=num_classes, device=device))


def build_optimizer(args, params):
    if args.optimizer == "sgd":
        return ndl.optim.SGD(params, lr=args.lr, momentum=args.momentum,
                             weight_decay=args.weight_decay)
    return ndl.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)


def setup(args, device):
    """Everything that depends on user input; any failure becomes an AppError."""
    size = image_size(args.model, args.dataset)
    data_channels = 3 if args.dataset == "cifar10" else 1
    channels = 3 if args.model == "resnet9" else data_channels
    try:
        train_ds, test_ds = load_data(args, size, channels)
    except (OSError, ValueError, ImportError) as e:
        raise AppError(str(e)) from None
    model = build_model(args.model, channels, size, device)
    opt = build_optimizer(args, model.parameters())
    return model, opt, train_ds, test_ds


def _smooth(values, weight=0.9):
    """Exponential moving average with bias correction (TensorBoard's smoothing)."""
    out, avg = [], 0.0
    for i, v in enumerate(values):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** (i + 1)))
    return out


def write_outputs(args, history):
    """metrics.json (strict JSON) and curves.png in --out, each written atomically."""
    write_json(os.path.join(args.out, "metrics.json"),
               {"model": args.model, "dataset": args.dataset, "args": vars(args),
                "epochs": history})
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        print("warning: matplotlib is not installed; curves.png skipped", file=sys.stderr)
        return
    epochs = [h["epoch"] for h in history]
    lrs = [lr for h in history for lr in h.get("step_lrs", [])]
    fig, axes = plt.subplots(1, 3 if lrs else 2, figsize=(12 if lrs else 9, 3.6), dpi=150)
    ax_loss, ax_acc = axes[0], axes[1]
    # step losses on an epoch axis: step i of epoch e (n steps) sits at e - 1 + (i + 1) / n
    xs, ys = [], []
    for h in history:
        n = len(h["step_losses"])
        xs += [h["epoch"] - 1 + (i + 1) / n for i in range(n)]
        ys += h["step_losses"]
    if ys:
        ax_loss.plot(xs, ys, color="0.8", lw=0.6, label="train step")
        ax_loss.plot(xs, _smooth(ys), color="C0", lw=1.2, label="train step (smoothed)")
    for split, color in (("train", "C0"), ("test", "C1")):
        ax_loss.plot(epochs, [h[f"{split}_loss"] for h in history], "o-", color=color,
                     mfc="white" if split == "train" else color, label=f"{split} (epoch)")
        ax_acc.plot(epochs, [h[f"{split}_acc"] for h in history], "o-", color=color,
                    label=split)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss", yscale="log" if ys else "linear")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    if lrs:
        ax_lr = axes[2]
        ax_lr.plot([x for x in xs[-len(lrs):]], lrs, color="C2")
        ax_lr.set(xlabel="epoch", ylabel="learning rate", title=f"lr ({args.schedule})")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0 if ys else None, max(epochs) + 0.05 if epochs else None)
        ax.grid(alpha=0.3)
    ax_loss.legend(fontsize=7)
    ax_acc.legend(fontsize=7)
    fig.suptitle(f"{args.model} on {args.dataset}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write(os.path.join(args.out, "curves.png"), buf.getvalue())


# ---------------------------------------------------------------------------------- training


def _progress(loader, desc, total, initial):
    try:
        from tqdm import tqdm
    except ImportError:
        return loader
    # disable=None: a bar on terminals only, so logs and CI output stay clean.
    return tqdm(loader, total=total, initial=initial, desc=desc, unit="batch", leave=False,
                disable=None)


def _correct(logits, y):
    """Number of rows of `logits` whose argmax equals the label in `y`."""
    return int((logits.numpy().argmax(axis=1) == y.numpy()).sum())


class _Interrupt:
    """Ctrl-C sets `requested`; training stops at the next step boundary (a consistent state
    to save). A second Ctrl-C interrupts at once."""

    def __init__(self):
        self.requested = False

    def __call__(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


@contextlib.contextmanager
def _catch_sigint():
    flag = _Interrupt()
    try:
        previous = signal.signal(signal.SIGINT, flag)
    except ValueError:  # not the main thread: leave Ctrl-C alone
        yield flag
        return
    try:
        yield flag
    finally:  # None: the previous handler was not set from Python
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)


def train_epoch(model, loader, opt, loss_fn, state, desc, steps_left, interrupt, step=None,
                sched=None):
    """Train on the epoch's remaining batches, updating `state` (from `new_epoch`) after each
    step. Stops early after `steps_left` steps or on Ctrl-C; returns the steps taken.
    `step`: a make_train_step function (default: an eager one); `sched`: an lr schedule stepped
    after every batch."""
    step = step or make_train_step(model, opt, loss_fn, use_jit=False)

    def finite(loss):
        value = float(loss.numpy().item())
        if not math.isfinite(value):  # eager: before the update, so the weights stay finite
            raise Diverged(f"the loss is {value} at step {state['done'] + 1} of {desc}; "
                           f"stopping (try a lower --lr)")
        return value
    model.train()
    batches = epoch_batches(state, loader.batch_size)
    loader.ordering = batches[state["done"]:]  # shuffle=False: iter() walks this order
    start, taken = time.perf_counter(), 0
    bar = _progress(loader, desc, len(batches), state["done"])
    for X, y in bar:
        loss, logits = step(X, y, finite)
        value = finite(loss)
        if sched is not None:
            state.setdefault("lrs", []).append(float(opt.lr))  # the lr this step used
            sched.step()
        taken += 1
        state["done"] += 1
        state["losses"].append(value)
        state["total"] += value * X.shape[0]
        state["correct"] += _correct(logits, y)
        state["seen"] += X.shape[0]
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{value:.4f}", acc=f"{state['correct'] / state['seen']:.4f}")
        if (steps_left is not None and taken >= steps_left) or interrupt.requested:
            break
    if hasattr(bar, "close"):
        bar.close()
    state["seconds"] += time.perf_counter() - start
    return taken


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


def _summary_table(history, rate, train_seconds, wall):
    """The run at a glance: best epoch by test accuracy, the last epoch, time and speed."""
    best = max(history, key=lambda h: h["test_acc"])
    last = history[-1]
    rows = [("best epoch", f"{best['epoch']} (test_acc {best['test_acc']:.4f})"),
            ("last epoch", f"{last['epoch']} (test_acc {last['test_acc']:.4f}, "
                           f"train_loss {last['train_loss']:.4f})"),
            ("training time", f"{train_seconds:.1f} s of {wall:.1f} s wall"),
            ("images/s", f"{rate:.0f}")]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def _epoch_record(epoch, step, state, test_loss, test_acc, complete):
    seen, seconds = state["seen"], state["seconds"]
    record = {"epoch": epoch, "steps": step, "train_loss": state["total"] / seen,
              "train_acc": state["correct"] / seen, "test_loss": test_loss, "test_acc": test_acc,
              "images_per_s": seen / seconds if seconds else 0.0, "train_seconds": seconds,
              "step_losses": list(state["losses"])}
    if state.get("lrs"):
        record["step_lrs"] = list(state["lrs"])  # with --schedule: the lr of each step
    if not complete:
        record["partial"] = True  # stopped by --max-steps; --resume finishes this epoch
    return record


def run(args):
    t0 = time.perf_counter()
    device = get_device(args.device)
    check_run_folder(args)
    np.random.seed(args.seed)
    model, opt, train_ds, test_ds = setup(args, device)
    epoch, step, history, state = 0, 0, [], None
    if args.resume is not None:
        epoch, step, history, state = restore_state(args, model, opt, len(train_ds))
    if prepare_run_folder(args):
        print(f"removed unfinished files of an interrupted save from {args.out}", flush=True)
    loss_fn = nn.SoftmaxLoss()
    # --distributed: DDP model, this rank's share of each batch, rank 0 alone writes
    # (apps/train_distributed.py)
    dp = train_distributed.setup(args, model, train_ds, device, AppError)
    train_model, main_rank = (dp.model, dp.is_main) if dp else (model, True)
    try:  # rank 0 alone writes (apps/train_tensorboard.py)
        tb = open_tensorboard_log(args.tensorboard if main_rank else None)
    except (ImportError, OSError) as e:
        raise AppError(str(e)) from None
    loader = DataLoader(train_ds, args.batch_size // (dp.size if dp else 1), shuffle=False,
                        device=device)
    if dp and state is not None:  # a resumed partial epoch: this rank's share of its order
        state["order"] = dp.epoch_order(epoch + 1)
    try:  # per-batch lr schedule, replayed up to `step` on --resume (apps/train_schedule.py)
        sched = make_scheduler(args, opt, -(-len(train_ds) // args.batch_size), start_step=step)
    except ValueError as e:
        raise AppError(str(e)) from None
    # ndl.jit replays the step (a replay re-reads the scheduled lr and runs DDP's all-reduce:
    # docs/jit.md)
    step_fn = make_train_step(train_model, opt, loss_fn, use_jit=not args.no_jit)
    images, train_seconds, last = 0, 0.0, history[-1] if history else None
    with _catch_sigint() as interrupt:
        while epoch < args.epochs and (args.max_steps is None or step < args.max_steps):
            if state is None:
                state = new_epoch(len(train_ds))  # draws the epoch's permutation
                if dp:
                    state["order"] = dp.epoch_order(epoch + 1)
            desc = f"epoch {epoch + 1}/{args.epochs}"
            seen0, seconds0 = state["seen"], state["seconds"]
            steps_left = None if args.max_steps is None else args.max_steps - step
            step0, done0 = step, state["done"]
            step += train_epoch(train_model, loader, opt, loss_fn, state, desc, steps_left,
                                interrupt, step_fn, sched)
            tb.log_steps(step0, state, done0, opt.lr)
            images += (state["seen"] - seen0) * (dp.size if dp else 1)  # the whole job's
            train_seconds += state["seconds"] - seconds0
            if interrupt.requested:
                tb.close()
                if main_rank:
                    save_state(args, model, opt, epoch, step, history, state)
                    print(f"interrupted: saved step {step} to {checkpoint_path(args)}; continue "
                          f"with --resume", file=sys.stderr, flush=True)
                return 130
            complete = state["done"] == len(epoch_batches(state, loader.batch_size))
            test_loss, test_acc = evaluate(model, test_ds, args.batch_size, device, loss_fn)
            last = _epoch_record(epoch + 1, step, state, test_loss, test_acc, complete)
            if dp:
                last["images_per_s"] *= dp.size
            if complete:
                epoch, state = epoch + 1, None
                history.append(last)
            if not main_rank:
                continue
            print(f"{desc}: train_loss={last['train_loss']:.4f} "
                  f"train_acc={last['train_acc']:.4f} test_loss={test_loss:.4f} "
                  f"test_acc={test_acc:.4f} images/s={last['images_per_s']:.0f} "
                  f"({last['train_seconds']:.1f}s)", flush=True)
            # the checkpoint keeps completed epochs; metrics.json also shows a partial one
            save_state(args, model, opt, epoch, step, history, state)
            write_outputs(args, history if complete else history + [last])
            tb.log_epoch(last)
    tb.close()
    if last is None:
        raise AppError(f"nothing to do: {checkpoint_path(args)} is already at step {step} "
                       f"(--max-steps {args.max_steps})")
    rate = images / train_seconds if train_seconds else 0.0
    if not main_rank:
        return 0 if args.target_acc is None or last["test_acc"] >= args.target_acc else 1
    wall = time.perf_counter() - t0
    print(_summary_table(history or [last], rate, train_seconds, wall), flush=True)
    print(f"final: test_acc={last['test_acc']:.4f} train_loss={last['train_loss']:.4f} "
          f"images/s={rate:.0f} wall={wall:.1f}s", flush=True)
    if args.target_acc is not None and last["test_acc"] < args.target_acc:
        print(f"target not reached: test_acc {last['test_acc']:.4f} < {args.target_acc}",
              file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    """Entry point; returns the exit code (see the module docstring)."""
    try:
        return run(parse_args(argv))
    except AppError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Diverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the training loop
        print("interrupted (nothing saved since the last checkpoint)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
