"""The training app's run lifecycle (issue 12): --lr on resume, bit-exact resume from inside an
epoch, Ctrl-C, NaN loss, strict JSON, bad hyper-parameters, an unwritable --out, malformed
checkpoints, leftover .part files and an existing run folder."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from needle.utils import load_checkpoint, save_checkpoint
from test_train_app import REPO, assert_one_error_line, run_app

from apps import train
from apps.train_checkpoint import read_checkpoint, write_checkpoint, write_json

COMMON = ["--model", "lenet", "--dataset", "digits", "--batch-size", "128", "--seed", "3"]


def _strict_json(path):
    def refuse(token):
        raise AssertionError(f"{path}: non-standard JSON token {token}")
    return json.loads(path.read_text(), parse_constant=refuse)


def _assert_same_weights(ckpt_a, ckpt_b):
    a, b = read_checkpoint(ckpt_a)["model_state"], read_checkpoint(ckpt_b)["model_state"]
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)  # bit for bit


def _same_curves(run_a, run_b):
    ea, eb = (_strict_json(r / "metrics.json")["epochs"] for r in (run_a, run_b))
    keys = ("epoch", "steps", "train_loss", "train_acc", "test_loss", "test_acc", "step_losses")
    return [{k: e[k] for k in keys} for e in ea] == [{k: e[k] for k in keys} for e in eb]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """Two uninterrupted epochs (12 steps each), the reference for the resume tests."""
    out = tmp_path_factory.mktemp("full")
    assert train.main([*COMMON, "--epochs", "2", "--out", str(out), "--overwrite"]) == 0
    return out


def test_max_steps_then_resume_is_bit_exact(full_run, tmp_path, capsys):
    part = tmp_path / "part"
    code, _, _ = run_app(capsys, *COMMON, "--epochs", "2", "--max-steps", "5", "--out", part)
    assert code == 0
    ckpt = read_checkpoint(part / "checkpoint.safetensors")
    assert (ckpt["epoch"], ckpt["step"], ckpt["in_epoch"]["done"]) == (0, 5, 5)
    assert _strict_json(part / "metrics.json")["epochs"][0]["partial"] is True
    code, out, _ = run_app(capsys, *COMMON, "--epochs", "2", "--out", part, "--resume")
    assert code == 0 and "epoch 1/2" in out and "epoch 2/2" in out, out
    _assert_same_weights(full_run / "checkpoint.safetensors", part / "checkpoint.safetensors")
    assert _same_curves(full_run, part)


def test_resume_with_a_new_lr_uses_it(tmp_path, capsys):
    assert run_app(capsys, *COMMON, "--max-steps", "2", "--out", tmp_path)[0] == 0
    code, out, _ = run_app(capsys, *COMMON, "--max-steps", "3", "--out", tmp_path, "--resume",
                           "--lr", "0.5")
    assert code == 0
    assert [ln for ln in out.splitlines() if "--lr" in ln] == [
        "resuming with --lr 0.5 (the checkpoint had 0.001)"]
    ckpt = read_checkpoint(tmp_path / "checkpoint.safetensors")
    assert ckpt["optimizer"]["hyper"]["lr"] == 0.5 and ckpt["args"]["lr"] == 0.5
    # without --lr, the checkpoint's lr is kept, silently
    code, out, _ = run_app(capsys, *COMMON, "--max-steps", "4", "--out", tmp_path, "--resume")
    assert code == 0 and "--lr" not in out
    assert read_checkpoint(tmp_path / "checkpoint.safetensors")["optimizer"]["hyper"]["lr"] == 0.5


def test_ctrl_c_saves_the_current_step_and_resumes_bit_exact(full_run, tmp_path, capsys):
    part = tmp_path / "part"
    cmd = [sys.executable, "-m", "apps.train", *COMMON, "--batch-size", "16", "--epochs", "2",
           "--out", str(part)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    # 90 steps per epoch: the signal lands inside epoch 2, between or during steps
    line = proc.stdout.readline()
    assert line.startswith("epoch 1/2"), line + proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, out + err
    assert len(err.strip().splitlines()) == 1 and err.startswith("interrupted: saved step"), err
    ckpt = read_checkpoint(part / "checkpoint.safetensors")
    assert ckpt["epoch"] == 1 and 90 < ckpt["step"] < 180 and ckpt["in_epoch"]["done"] > 0
    code, out, err = run_app(capsys, *COMMON, "--batch-size", "16", "--epochs", "2", "--out",
                             part, "--resume")
    assert code == 0, err
    ref = tmp_path / "ref"
    assert run_app(capsys, *COMMON, "--batch-size", "16", "--epochs", "2", "--out", ref)[0] == 0
    _assert_same_weights(ref / "checkpoint.safetensors", part / "checkpoint.safetensors")
    assert _same_curves(ref, part)


def test_nan_loss_stops_with_an_error(tmp_path, capsys):
    code, _, err = run_app(capsys, "--dataset", "digits", "--optimizer", "sgd", "--lr", "1e6",
                           "--momentum", "0", "--max-steps", "10", "--out", tmp_path)
    assert code == 3, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the loss is nan at step"), err
    assert "lower --lr" in lines[0]


def test_metrics_json_is_strict(tmp_path):
    write_json(tmp_path / "m.json", {"epochs": [{"test_loss": float("nan"),
                                                 "step_losses": [1.0, float("inf")]}]})
    assert _strict_json(tmp_path / "m.json") == {"epochs": [{"test_loss": None,
                                                             "step_losses": [1.0, None]}]}


@pytest.mark.parametrize("argv, pattern", [
    (["--lr", "-1"], r"--lr must be > 0, got -1"),
    (["--lr", "0"], r"--lr must be > 0"),
    (["--lr", "nan"], r"--lr must be > 0, got nan"),
    (["--lr", "inf"], r"--lr must be > 0"),
    (["--momentum", "1.5"], r"--momentum must be in \[0, 1\)"),
    (["--weight-decay", "-0.1"], r"--weight-decay must be >= 0"),
])
def test_bad_hyper_parameters(argv, pattern, tmp_path, capsys):
    code, _, err = run_app(capsys, *argv, "--out", tmp_path / "out")
    assert_one_error_line(code, err, pattern)
    assert not (tmp_path / "out").exists()


def test_unwritable_out(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = run_app(capsys, "--max-steps", "1", "--out", tmp_path / "file" / "run")
    assert_one_error_line(code, err, r"--out .*file/run: cannot write there")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    assert train.main(["--dataset", "digits", "--max-steps", "1", "--out", str(out)]) == 0
    return read_checkpoint(out / "checkpoint.safetensors")


def _without(d, key):
    return {k: v for k, v in d.items() if k != key}


@pytest.mark.parametrize("edit, pattern", [
    (lambda c: _without(c, "model_state"), r"not a usable apps.train checkpoint \(no 'model_state'\)"),
    (lambda c: _without(c, "rng_state"), r"no 'rng_state'"),
    (lambda c: dict(c, epoch="3"), r"'epoch' is a str"),
    (lambda c: dict(c, step=-4), r"step -4"),
    (lambda c: dict(c, metrics={"a": 1}), r"'metrics' is a dict"),
    (lambda c: dict(c, metrics=[1, 2]), r"'metrics' is not a list of dicts"),
    (lambda c: dict(c, model_state={"bogus": np.zeros(3)}), r"cannot resume from .*ckpt\."),
    (lambda c: dict(c, rng_state=("MT19937", np.zeros(3))), r"cannot resume from .*ckpt\."),
    (lambda c: dict(c, optimizer=dict(c["optimizer"], hyper={"lr": "fast"})), r"lr 'fast'"),
    (lambda c: dict(c, in_epoch={"order": "abc"}), r"'in_epoch' has no valid 'order'"),
    (lambda c: dict(c, in_epoch=[1]), r"'in_epoch' is a list"),
    (lambda c: "a string", r"not an apps.train checkpoint"),
])
@pytest.mark.parametrize("suffix, write", [(".safetensors", write_checkpoint),
                                           (".pkl", save_checkpoint)])  # the old format
def test_checkpoint_with_valid_checksum_but_bad_contents(checkpoint, edit, pattern, suffix, write,
                                                         tmp_path, capsys):
    path = tmp_path / f"ckpt{suffix}"
    write(path, edit(dict(checkpoint)))
    code, _, err = run_app(capsys, "--dataset", "digits", "--max-steps", "2", "--resume", path,
                           "--out", tmp_path / "out")
    assert_one_error_line(code, err, pattern)


def test_leftover_part_files_are_removed(tmp_path, capsys):
    assert run_app(capsys, *COMMON, "--max-steps", "1", "--out", tmp_path)[0] == 0
    leftovers = [".checkpoint.safetensors.q7.part", ".checkpoint.pkl.k3j9.part", ".metrics.json.x1.part", ".curves.png.abc.part"]
    for name in leftovers + ["notes.part"]:
        (tmp_path / name).write_bytes(b"half a file")
    code, out, _ = run_app(capsys, *COMMON, "--max-steps", "2", "--out", tmp_path, "--resume")
    assert code == 0 and "removed unfinished files" in out
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.safetensors", "curves.png",
                                            "metrics.json", "notes.part"]  # not ours: kept


def test_existing_run_folder_needs_resume_or_overwrite(tmp_path, capsys):
    assert run_app(capsys, *COMMON, "--max-steps", "1", "--out", tmp_path)[0] == 0
    before = (tmp_path / "checkpoint.safetensors").read_bytes()
    code, _, err = run_app(capsys, *COMMON, "--max-steps", "1", "--out", tmp_path)
    assert_one_error_line(code, err, r"already holds a run .*--resume .*--overwrite")
    assert (tmp_path / "checkpoint.safetensors").read_bytes() == before
    code, _, _ = run_app(capsys, *COMMON, "--max-steps", "2", "--out", tmp_path, "--overwrite")
    assert code == 0 and read_checkpoint(tmp_path / "checkpoint.safetensors")["step"] == 2
