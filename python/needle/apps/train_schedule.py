"""Learning-rate schedules for `apps.train`: `--schedule {none,step,cosine,onecycle}` and
`--warmup-epochs N`, built from `needle.optim.lr_scheduler` and stepped once per batch.

    python -m apps.train --model lenet --dataset digits --epochs 6 --schedule cosine \\
        --warmup-epochs 1

* none: the constant --lr (after the warm-up, if any).
* step: lr x 0.1 after each third of the post-warm-up steps (StepLR).
* cosine: cosine annealing from --lr to 0 over the post-warm-up steps (CosineAnnealingLR).
* onecycle: OneCycleLR with max_lr = --lr over all steps; --warmup-epochs sets its rising phase
  (pct_start), 0.3 of the steps by default. It also cycles SGD's momentum / Adam's beta1.
* --warmup-epochs N (none/step/cosine): LinearLR from lr/10 up to lr over N epochs, then the
  schedule (SequentialLR).

The schedule is a pure function of the step count, so `--resume` replays it from --lr up to the
checkpoint's step: the resumed lrs equal the uninterrupted run's.
"""
import argparse

from needle.optim import lr_scheduler

__all__ = ["SCHEDULES", "add_arguments", "make_scheduler"]

SCHEDULES = ("none", "step", "cosine", "onecycle")
WARMUP_START_FACTOR = 0.1


def _nonneg_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def add_arguments(parser):
    """Add --schedule and --warmup-epochs to the training app's parser."""
    parser.add_argument("--schedule", default="none", choices=SCHEDULES,
                        help="learning-rate schedule, stepped per batch (see apps/train_schedule)")
    parser.add_argument("--warmup-epochs", type=_nonneg_int, default=0,
                        help="linear warm-up epochs from lr/10 (onecycle: its rising phase)")


def make_scheduler(args, opt, steps_per_epoch, start_step=0):
    """The scheduler for `args.schedule` / `args.warmup_epochs`, or None for a constant lr.

    Args:
        args: needs schedule, warmup_epochs, epochs and lr (and lr_given: False when --lr was
            not typed, so that a resumed run keeps its checkpoint's base lr).
        opt: the needle optimizer (its groups' lr are reset to args.lr first).
        steps_per_epoch: batches per epoch (>= 1).
        start_step: optimizer steps already taken (a resumed run): the schedule is replayed
            up to it.

    Raises:
        ValueError: an unknown schedule, or a warm-up that leaves no steps for the schedule.
    """
    if args.schedule not in SCHEDULES:
        raise ValueError(f"make_scheduler: unknown schedule {args.schedule!r}; "
                         f"choose from {SCHEDULES}")
    if not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise ValueError(f"make_scheduler: steps_per_epoch must be an int >= 1, got "
                         f"{steps_per_epoch!r}")
    if args.schedule == "none" and args.warmup_epochs == 0:
        return None
    # planned over every epoch, also under --max-steps: a stopped run resumes the same schedule
    total = args.epochs * steps_per_epoch
    warm = min(args.warmup_epochs * steps_per_epoch, total)
    if args.schedule != "none" and args.warmup_epochs and warm >= total:
        raise ValueError(f"--warmup-epochs {args.warmup_epochs} leaves no steps for "
                         f"--schedule {args.schedule} ({total} steps in all)")
    # The schedule's base lr: --lr, except on a resume without an explicit --lr, where the
    # checkpoint's groups hold the base the schedule started from (their "lr" is wherever
    # the schedule had got to).
    saved = [g.get("max_lr", g.get("initial_lr")) for g in opt.param_groups]
    explicit = getattr(args, "lr_given", True)
    base = saved[0] if saved and not explicit and None not in saved else args.lr
    for group in opt.param_groups:  # a fresh start from the base (a resume replays below)
        for key in ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum"):
            group.pop(key, None)
        group["lr"] = base
    sched = _build(args.schedule, opt, total, warm)
    for _ in range(start_step):
        sched.step()
    return sched


def _build(schedule, opt, total, warm):
    if schedule == "onecycle":
        pct = warm / total if warm else 0.3
        return lr_scheduler.OneCycleLR(opt, max_lr=opt.param_groups[0]["lr"], total_steps=total,
                                       pct_start=pct)
    main_steps = total - warm
    if schedule == "step":
        main = lr_scheduler.StepLR(opt, step_size=max(1, main_steps // 3), gamma=0.1)
    elif schedule == "cosine":
        main = lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, main_steps))
    else:
        main = None
    if not warm:
        return main
    warmup = lr_scheduler.LinearLR(opt, start_factor=WARMUP_START_FACTOR, total_iters=warm)
    if main is None:
        return warmup
    return lr_scheduler.SequentialLR(opt, [warmup, main], milestones=[warm])
