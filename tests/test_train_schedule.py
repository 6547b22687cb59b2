"""apps.train --schedule / --warmup-epochs: the lr sequences against torch's schedulers, the
replay on resume, the app end to end, and one-line errors."""
import argparse
import re

import needle as ndl
import numpy as np
import pytest
from needle import nn

from apps import train
from apps.train_schedule import make_scheduler

SPE = 7  # steps per epoch


def _args(schedule, warmup=0, epochs=5, lr=0.1):
    return argparse.Namespace(schedule=schedule, warmup_epochs=warmup, epochs=epochs, lr=lr)


def _opt(lr=0.1):
    return ndl.optim.SGD([nn.Parameter(ndl.Tensor(np.zeros(2, np.float32)))], lr=lr,
                         momentum=0.9)


def _lrs(opt, sched, steps):
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        sched.step()
    return out


def _torch_lrs(schedule, warmup, total):
    torch = pytest.importorskip("torch")
    sch = torch.optim.lr_scheduler
    topt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.9)
    warm = warmup * SPE
    if schedule == "onecycle":
        s = sch.OneCycleLR(topt, max_lr=0.1, total_steps=total,
                           pct_start=warm / total if warm else 0.3)
    else:
        main = {"step": lambda: sch.StepLR(topt, step_size=(total - warm) // 3, gamma=0.1),
                "cosine": lambda: sch.CosineAnnealingLR(topt, T_max=total - warm),
                "none": lambda: None}[schedule]()
        if warm:
            w = sch.LinearLR(topt, start_factor=0.1, total_iters=warm)
            s = w if main is None else sch.SequentialLR(topt, [w, main], milestones=[warm])
        else:
            s = main
    out = []
    for _ in range(total):
        out.append(topt.param_groups[0]["lr"])
        topt.step()
        s.step()
    return out


@pytest.mark.parametrize("schedule,warmup", [("step", 0), ("cosine", 0), ("onecycle", 0),
                                             ("none", 1), ("step", 1), ("cosine", 2),
                                             ("onecycle", 1)])
def test_app_schedules_equal_torch(schedule, warmup):
    total = 5 * SPE
    opt = _opt()
    ours = _lrs(opt, make_scheduler(_args(schedule, warmup), opt, SPE), total)
    theirs = _torch_lrs(schedule, warmup, total)
    print(f"{schedule} warmup={warmup}: max lr difference "
          f"{max(abs(a - b) for a, b in zip(ours, theirs))}")
    assert ours == theirs


def test_none_without_warmup_is_constant():
    assert make_scheduler(_args("none"), _opt(), SPE) is None


@pytest.mark.parametrize("schedule", ["step", "cosine", "onecycle"])
def test_resume_replays_the_schedule(schedule):
    """A resumed run (optimizer state from the checkpoint, --lr not typed, so the app's args.lr
    is the checkpoint's current lr) continues the uninterrupted run's lrs exactly."""
    total, cut = 5 * SPE, 12
    opt = _opt()
    full = _lrs(opt, make_scheduler(_args(schedule, 1), opt, SPE), total)
    stopped = _opt()
    _lrs(stopped, make_scheduler(_args(schedule, 1), stopped, SPE), cut)
    resumed_opt = _opt()
    resumed_opt.load_state_dict(stopped.state_dict())
    args = _args(schedule, 1, lr=resumed_opt.lr)
    args.lr_given = False
    sched = make_scheduler(args, resumed_opt, SPE, start_step=cut)
    assert _lrs(resumed_opt, sched, total - cut) == full[cut:]
    explicit = _opt()  # an explicit --lr restarts the schedule from it
    explicit.load_state_dict(stopped.state_dict())
    args = _args(schedule, 1, lr=0.05)
    args.lr_given = True
    assert _lrs(explicit, make_scheduler(args, explicit, SPE), 3) == [
        x / 2 for x in full[:3]]


def test_make_scheduler_errors():
    with pytest.raises(ValueError, match=r"--warmup-epochs 5 leaves no steps for --schedule "
                                         r"cosine"):
        make_scheduler(_args("cosine", 5), _opt(), SPE)
    with pytest.raises(ValueError, match=r"make_scheduler: unknown schedule 'linear'"):
        make_scheduler(_args("linear"), _opt(), SPE)
    with pytest.raises(ValueError, match=r"make_scheduler: steps_per_epoch must be an int"):
        make_scheduler(_args("cosine"), _opt(), 0)


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_app_trains_with_warmup(schedule, tmp_path, capsys):
    code = train.main(["--model", "mlp", "--dataset", "digits", "--epochs", "2",
                       "--max-steps", "6", "--schedule", schedule, "--warmup-epochs", "1",
                       "--out", str(tmp_path / "a")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert re.search(r"^final: test_acc=", out, re.MULTILINE)


@pytest.mark.parametrize("argv,pattern", [
    (["--warmup-epochs", "-1"], r"--warmup-epochs.*expected an integer >= 0, got -1"),
    (["--schedule", "poly"], r"--schedule.*invalid choice: 'poly'"),
    (["--schedule", "cosine", "--warmup-epochs", "3", "--epochs", "3"],
     r"--warmup-epochs 3 leaves no steps for --schedule cosine"),
])
def test_app_schedule_errors(argv, pattern, tmp_path, capsys):
    code = train.main(["--model", "mlp", "--dataset", "digits", "--out", str(tmp_path / "b"),
                       *argv])
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_app_resume_mid_schedule_is_bit_exact(schedule, tmp_path, capsys):
    """--max-steps stops in the second epoch, after the warm-up; --resume continues the same
    schedule, so the loss curve equals the uninterrupted run's bit for bit."""
    import json
    common = ["--model", "mlp", "--dataset", "digits", "--batch-size", "256", "--seed", "1",
              "--epochs", "3", "--optimizer", "sgd", "--schedule", schedule,  # no --lr: the
              "--warmup-epochs", "1"]  # resume keeps the checkpoint's base lr
    assert train.main([*common, "--out", str(tmp_path / "full")]) == 0
    assert train.main([*common, "--max-steps", "8", "--out", str(tmp_path / "part")]) == 0
    assert train.main([*common, "--resume", "--out", str(tmp_path / "part")]) == 0
    capsys.readouterr()
    full, part = (json.loads((tmp_path / d / "metrics.json").read_text())["epochs"]
                  for d in ("full", "part"))
    assert [e["step_losses"] for e in full] == [e["step_losses"] for e in part]
