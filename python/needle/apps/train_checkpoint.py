"""The training app's run folder and checkpoints (used by apps/train.py).

A run folder (--out) holds `checkpoint.safetensors`, `metrics.json` and `curves.png`, each
written atomically (a temp `.NAME.*.part` file moved into place). A checkpoint records the
completed epochs and, when training stopped inside an epoch (--max-steps, Ctrl-C), that epoch's
batch order and how far it got, so that `--resume` continues bit for bit.

Checkpoints are safetensors files (apps/train_safetensors.py): weights, optimizer buffers, the
RNG key and the epoch's batch order as tensors, the rest as JSON metadata. `--resume` also reads
`checkpoint.pkl` files of earlier versions, through needle.utils' allow-list unpickler.
"""
import json
import math
import os
import tempfile

import numpy as np
from needle.utils import atomic_write, load_checkpoint

from needle.apps.train_safetensors import is_safetensors, load_safetensors, save_safetensors

__all__ = ["AppError", "CHECKPOINT_FORMAT", "OUTPUTS", "checkpoint_path", "check_run_folder",
           "prepare_run_folder", "read_checkpoint", "write_checkpoint", "save_state",
           "restore_state", "new_epoch", "epoch_batches", "write_json"]

CHECKPOINT_FORMAT = "needle-apps-train-1"
OUTPUTS = ("checkpoint.safetensors", "metrics.json", "curves.png")
LEGACY_CHECKPOINT = "checkpoint.pkl"  # written by earlier versions; --resume still reads it


class AppError(Exception):
    """Bad user input: reported as one `error: ...` line and exit code 2."""


# ------------------------------------------------------------------------------ run folder


def checkpoint_path(args):
    """The checkpoint --resume reads: its argument, else OUT/checkpoint.safetensors, else an
    earlier version's OUT/checkpoint.pkl when only that one exists."""
    if args.resume:
        return args.resume
    path = os.path.join(args.out, OUTPUTS[0])
    legacy = os.path.join(args.out, LEGACY_CHECKPOINT)
    return legacy if not os.path.exists(path) and os.path.exists(legacy) else path


def check_run_folder(args):
    """Refuse to replace an earlier run in --out unless --resume or --overwrite (writes nothing)."""
    if args.resume is not None or args.overwrite:
        return
    found = [n for n in (*OUTPUTS[:2], LEGACY_CHECKPOINT)
             if os.path.exists(os.path.join(args.out, n))]
    if found:
        raise AppError(f"--out {args.out} already holds a run ({', '.join(found)}); pass --resume "
                       f"to continue it or --overwrite to replace it")


def prepare_run_folder(args):
    """Create --out, check that it is writable, and remove the `.part` files that a save killed
    midway (kill -9) left behind. Returns the number of files removed."""
    try:
        os.makedirs(args.out, exist_ok=True)
        with tempfile.TemporaryFile(dir=args.out):
            pass
    except OSError as e:
        raise AppError(f"--out {args.out}: cannot write there ({e.strerror or e})") from None
    removed = 0
    for name in os.listdir(args.out):
        # only the temp names atomic_open gives our own outputs: .metrics.json.XXXX.part
        if name.endswith(".part") and any(name.startswith(f".{out}.")
                                          for out in (*OUTPUTS, LEGACY_CHECKPOINT)):
            try:
                os.remove(os.path.join(args.out, name))
                removed += 1
            except OSError:
                pass
    return removed


# ------------------------------------------------------------------------------ epoch position


def new_epoch(num_items):
    """The state of an epoch about to start: its shuffled order (one np.random.permutation draw,
    as DataLoader(shuffle=True) makes) and running totals."""
    return {"order": np.random.permutation(num_items), "done": 0, "losses": [], "total": 0.0,
            "correct": 0, "seen": 0, "seconds": 0.0}


def epoch_batches(epoch_state, batch_size):
    """The epoch's batches of indices (the last may be shorter), as DataLoader splits them."""
    order = epoch_state["order"]
    return np.array_split(order, range(batch_size, len(order), batch_size)) if len(order) else []


# ------------------------------------------------------------------------------ checkpoints


def write_checkpoint(path, ckpt):
    """Write the checkpoint dict `ckpt` (as `save_state` builds it) as a safetensors file."""
    save_safetensors(path, ckpt)


def read_checkpoint(path):
    """The checkpoint dict from a safetensors checkpoint or an earlier version's pickle one.

    Raises:
        OSError: the file cannot be read; ValueError: naming the file when it is neither
            format, truncated or corrupted.
    """
    if is_safetensors(path):
        return load_safetensors(path)
    return load_checkpoint(path)  # the old format: magic line, sha256, allow-list unpickler


def save_state(args, model, opt, epoch, step, history, in_epoch):
    """Write OUT/checkpoint.safetensors: `epoch` completed epochs, `step` optimizer steps in
    all, and `in_epoch` (the started epoch's state from `new_epoch`, or None at an epoch
    boundary)."""
    write_checkpoint(os.path.join(args.out, OUTPUTS[0]), {
        "format": CHECKPOINT_FORMAT,
        "model": args.model,
        "dataset": args.dataset,
        "batch_size": args.batch_size,
        "epoch": epoch,
        "step": step,
        "in_epoch": in_epoch,
        "model_state": dict(model.state_dict()),
        "optimizer": opt.state_dict(),
        "rng_state": np.random.get_state(),
        "metrics": history,
        "args": vars(args),
    })


_INT = (int, np.integer)
_REAL = (int, float, np.integer, np.floating)
_KEYS = {"format": str, "model": str, "dataset": str, "epoch": _INT, "step": _INT,
         "model_state": dict, "optimizer": dict, "rng_state": tuple, "metrics": list}
_EPOCH_KEYS = {"order": np.ndarray, "done": _INT, "losses": list, "total": _REAL,
               "correct": _INT, "seen": _INT, "seconds": _REAL}


def _check_schema(ckpt, path):
    """AppError naming the first missing key or wrong type of a (checksum-valid) checkpoint."""
    def bad(what):
        return AppError(f"cannot resume: {path} is not a usable apps.train checkpoint ({what})")

    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise AppError(f"cannot resume: {path} is not an apps.train checkpoint")
    for key, kind in _KEYS.items():
        if key not in ckpt:
            raise bad(f"no {key!r}")
        if not isinstance(ckpt[key], kind) or isinstance(ckpt[key], bool):
            raise bad(f"{key!r} is a {type(ckpt[key]).__name__}")
    if ckpt["epoch"] < 0 or ckpt["step"] < 0:
        raise bad(f"epoch {ckpt['epoch']}, step {ckpt['step']}")
    if not all(isinstance(h, dict) for h in ckpt["metrics"]):
        raise bad("'metrics' is not a list of dicts")
    in_epoch = ckpt.get("in_epoch")
    if in_epoch is not None:
        if not isinstance(in_epoch, dict):
            raise bad(f"'in_epoch' is a {type(in_epoch).__name__}")
        for key, kind in _EPOCH_KEYS.items():
            if not isinstance(in_epoch.get(key), kind) or isinstance(in_epoch.get(key), bool):
                raise bad(f"'in_epoch' has no valid {key!r}")
        if in_epoch["order"].ndim != 1 or in_epoch["order"].dtype.kind not in "iu":
            raise bad("'in_epoch' order is not a 1-D index array")


def restore_state(args, model, opt, num_items):
    """Load the checkpoint into model / optimizer / RNG; returns (epoch, step, history,
    in_epoch). Any problem with the file becomes an AppError."""
    path = checkpoint_path(args)
    try:
        ckpt = read_checkpoint(path)
    except (OSError, ValueError) as e:
        raise AppError(f"cannot resume: {e}") from None
    _check_schema(ckpt, path)
    for key in ("model", "dataset"):
        if ckpt[key] != getattr(args, key):
            raise AppError(f"cannot resume: {path} was trained with --{key} {ckpt[key]}, "
                           f"not --{key} {getattr(args, key)}")
    in_epoch = ckpt.get("in_epoch")
    if in_epoch is not None:
        if ckpt.get("batch_size") != args.batch_size:
            raise AppError(f"cannot resume: {path} stopped inside an epoch with --batch-size "
                           f"{ckpt.get('batch_size')}, not --batch-size {args.batch_size}")
        if len(in_epoch["order"]) != num_items:
            raise AppError(f"cannot resume: {path} stopped inside an epoch over "
                           f"{len(in_epoch['order'])} images; the dataset has {num_items}")
    try:
        model.load_state_dict(ckpt["model_state"])
        opt.load_state_dict(ckpt["optimizer"])
        np.random.set_state(ckpt["rng_state"])
    except (KeyError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise AppError(f"cannot resume from {path}: {e}") from None
    _resume_lr(args, opt)
    return int(ckpt["epoch"]), int(ckpt["step"]), ckpt["metrics"], in_epoch


def _resume_lr(args, opt):
    """An --lr given on the command line wins over the checkpoint's, and says so; without one,
    the checkpoint's lr is kept (and recorded in args)."""
    saved = getattr(opt, "lr", None)
    if saved is not None and (not isinstance(saved, _REAL) or not 0 < saved < math.inf):
        raise AppError(f"cannot resume: the checkpoint's lr {saved!r} is not a positive number")
    if args.lr_given and saved != args.lr:
        opt.lr = args.lr
        print(f"resuming with --lr {args.lr:g} (the checkpoint had {saved:g})", flush=True)
    elif saved is not None:
        args.lr = saved


# ------------------------------------------------------------------------------ metrics


def _finite_or_none(obj):
    """NaN / inf -> None (JSON null), recursively: metrics.json is always strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def write_json(path, obj):
    """Write `obj` as strict JSON (no NaN / Infinity tokens), atomically."""
    atomic_write(path, json.dumps(_finite_or_none(obj), indent=1, allow_nan=False).encode())
