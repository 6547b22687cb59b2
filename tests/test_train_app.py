"""The training app (python -m apps.train): the README command, LeNet on the shared MNIST split,
outputs, bit-for-bit resume, and one-line errors with exit code 2 for bad input."""
import gzip
import json
import os
import pathlib
import re
import subprocess
import sys

import needle as ndl
import numpy as np
import pytest
from needle.data import data_download
from test_cifar import cifar_md5s, write_cifar_batches

from apps import train
from apps.train_checkpoint import read_checkpoint

REPO = pathlib.Path(__file__).resolve().parents[1]
FINAL = re.compile(r"^final: test_acc=(\d\.\d{4}) train_loss=\S+ images/s=\d+ wall=\S+s$",
                   re.MULTILINE)


def run_app(capsys, *argv):
    """main(argv) in-process -> (exit code, stdout, stderr)."""
    code = train.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _readme_main_job():
    """The training command of the README's first block (after the installs)."""
    block = re.search(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    command = block.group(1).strip().split(" && ")[-1].split()
    assert command[0] == "needle-train", command
    return command[1:]


def test_readme_command_digits(tmp_path):
    """The README's main job, as a user runs it (plus --out to keep the tree clean): LeNet on
    the writer-disjoint digits split reaches 95%."""
    args = _readme_main_job()
    epochs = int(args[args.index("--epochs") + 1])
    cmd = [sys.executable, "-m", "needle.apps.train", *args, "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    final = FINAL.search(proc.stdout)
    assert final, proc.stdout
    assert float(final.group(1)) >= 0.95, proc.stdout
    assert len(re.findall(rf"^epoch \d+/{epochs}: train_loss=", proc.stdout, re.MULTILINE)) \
        == epochs
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == list(range(1, epochs + 1))
    assert metrics["epochs"][-1]["test_acc"] == pytest.approx(float(final.group(1)), abs=1e-4)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpt = read_checkpoint(tmp_path / "checkpoint.safetensors")
    assert (ckpt["model"], ckpt["dataset"], ckpt["epoch"]) == ("lenet", "digits", epochs)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.safetensors", "curves.png",
                                            "metrics.json"]


def test_lenet_mnist_t10k_split_reaches_97(mnist_dir, tmp_path, capsys):
    """LeNet trained on the first 8,000 t10k images, evaluated on the last 2,000."""
    code, out, err = run_app(capsys, "--model", "lenet", "--dataset", "mnist-t10k-split",
                             "--data-dir", mnist_dir, "--device", "cpu", "--epochs", "4",
                             "--batch-size", "32", "--lr", "2e-3", "--target-acc", "0.97",
                             "--out", tmp_path)
    final = FINAL.search(out)
    assert final, out + err
    assert code == 0 and float(final.group(1)) >= 0.97, out + err


def test_resume_continues_the_same_loss_curve(tmp_path, capsys):
    common = ["--model", "lenet", "--dataset", "digits", "--batch-size", "128", "--seed", "3"]
    assert run_app(capsys, *common, "--epochs", "2", "--out", tmp_path / "full")[0] == 0
    assert run_app(capsys, *common, "--epochs", "1", "--out", tmp_path / "part")[0] == 0
    code, out, _ = run_app(capsys, *common, "--epochs", "2", "--out", tmp_path / "part",
                           "--resume")
    assert code == 0 and "epoch 2/2" in out and "epoch 1/2" not in out
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())["epochs"]
    part = json.loads((tmp_path / "part" / "metrics.json").read_text())["epochs"]
    assert len(full) == len(part) == 2
    for a, b in zip(full, part):
        assert a["step_losses"] == b["step_losses"]  # bit for bit, not approximately
        assert (a["test_loss"], a["test_acc"]) == (b["test_loss"], b["test_acc"])
    ckpt = read_checkpoint(tmp_path / "part" / "checkpoint.safetensors")
    assert ckpt["epoch"] == 2 and ckpt["step"] == 2 * 12  # 1,438 images / 128 per batch


def test_max_steps_and_target_acc(tmp_path, capsys):
    code, out, err = run_app(capsys, "--dataset", "digits", "--epochs", "5", "--max-steps", "3",
                             "--target-acc", "0.99", "--out", tmp_path)
    assert code == 1 and FINAL.search(out) and "target" in err
    metrics = json.loads((tmp_path / "metrics.json").read_text())["epochs"]
    assert len(metrics) == 1 and metrics[0]["steps"] == 3 and len(metrics[0]["step_losses"]) == 3


@pytest.mark.parametrize("model", ["lenet", "vgg11", "resnet9", "resnet18", "mlp"])
def test_every_model_trains_on_cifar_format_data(model, tmp_path, capsys, monkeypatch):
    """The cifar10 pipeline (augmentation, Normalize) with each model, on a tiny fixture."""
    write_cifar_batches(str(tmp_path / "cifar-10-batches-py"))
    monkeypatch.setattr(data_download, "CIFAR10_FILES",
                        cifar_md5s(str(tmp_path / "cifar-10-batches-py")))
    code, out, err = run_app(capsys, "--model", model, "--dataset", "cifar10", "--data-dir",
                             tmp_path, "--batch-size", "4", "--max-steps", "1",
                             "--out", tmp_path / "out")
    assert code == 0 and FINAL.search(out), out + err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())["epochs"]
    assert metrics[0]["steps"] == 1 and np.isfinite(metrics[0]["step_losses"]).all()


def test_full_mnist_layout(tmp_path, mnist_dir, capsys):
    """--dataset mnist reads train-* and t10k-*; the t10k files stand in for the train files."""
    for split in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            os.symlink(mnist_dir / f"t10k-{kind}-ubyte.gz", tmp_path / f"{split}-{kind}-ubyte.gz")
    code, out, err = run_app(capsys, "--dataset", "mnist", "--data-dir", tmp_path,
                             "--batch-size", "100", "--max-steps", "2", "--out", tmp_path / "o")
    assert code == 0 and FINAL.search(out), out + err
    assert "test_acc" in json.loads((tmp_path / "o" / "metrics.json").read_text())["epochs"][0]


# ------------------------------------------------------------------------------- bad input


def assert_one_error_line(code, err, pattern):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.parametrize("argv, pattern", [
    (["--model", "alexnet2"], r"--model.*invalid choice: 'alexnet2'"),
    (["--dataset", "imagenet"], r"--dataset.*invalid choice"),
    (["--epochs", "0"], r"--epochs must be >= 1"),
    (["--batch-size", "x"], r"--batch-size.*invalid int"),
])
def test_bad_arguments(argv, pattern, capsys):
    code, _, err = run_app(capsys, *argv)
    assert_one_error_line(code, err, pattern)


def test_bad_argument_in_a_real_process():
    proc = subprocess.run([sys.executable, "-m", "apps.train", "--model", "alexnet2"], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("error: argument --model")


def test_missing_data_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(data_download, "MNIST_MIRRORS", ("http://127.0.0.1:9/",))
    monkeypatch.setattr(data_download, "DOWNLOAD_RETRIES", 0)
    code, _, err = run_app(capsys, "--dataset", "mnist-t10k-split", "--data-dir", tmp_path,
                           "--out", tmp_path / "out")
    assert_one_error_line(code, err, "no network access.*put the files in " +
                          re.escape(str(tmp_path / "mnist")))
    assert not (tmp_path / "out").exists()


def test_truncated_data(tmp_path, mnist_dir, capsys):
    folder = tmp_path / "mnist"
    folder.mkdir()
    os.symlink(mnist_dir / "t10k-labels-idx1-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz")
    with gzip.open(mnist_dir / "t10k-images-idx3-ubyte.gz", "rb") as f:
        head = f.read(16 + 784 * 100)  # the header promises 10,000 images, 100 follow
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(head))
    code, _, err = run_app(capsys, "--dataset", "mnist-t10k-split", "--data-dir", tmp_path)
    assert_one_error_line(code, err, "t10k-images-idx3-ubyte.gz.*truncated")
    raw = (mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes()
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(raw[: len(raw) // 3])
    code, _, err = run_app(capsys, "--dataset", "mnist-t10k-split", "--data-dir", tmp_path)
    assert_one_error_line(code, err, "t10k-images-idx3-ubyte.gz")


@pytest.fixture
def lenet_checkpoint(tmp_path, capsys):
    code, _, _ = run_app(capsys, "--dataset", "digits", "--max-steps", "1", "--out", tmp_path)
    assert code == 0
    return tmp_path / "checkpoint.safetensors"


def test_checkpoint_from_another_model(lenet_checkpoint, capsys):
    code, _, err = run_app(capsys, "--model", "mlp", "--dataset", "digits", "--resume",
                           lenet_checkpoint, "--out", lenet_checkpoint.parent / "mlp")
    assert_one_error_line(code, err, "trained with --model lenet, not --model mlp")


def test_corrupted_checkpoint(lenet_checkpoint, capsys):
    raw = bytearray(lenet_checkpoint.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    bad = lenet_checkpoint.parent / "bad.safetensors"
    bad.write_bytes(bytes(raw))
    code, _, err = run_app(capsys, "--dataset", "digits", "--resume", bad)
    assert_one_error_line(code, err, "bad.safetensors is corrupted or truncated")
    short = bad.parent / "short.safetensors"
    short.write_bytes(lenet_checkpoint.read_bytes()[:-100])
    code, _, err = run_app(capsys, "--dataset", "digits", "--resume", short)
    assert_one_error_line(code, err, "short.safetensors is corrupted or truncated")
    code, _, err = run_app(capsys, "--dataset", "digits", "--resume", bad.parent / "none.pkl")
    assert_one_error_line(code, err, "cannot resume.*none.pkl")
    np.save(bad.parent / "arr.npy", np.zeros(3))
    code, _, err = run_app(capsys, "--dataset", "digits", "--resume", bad.parent / "arr.npy")
    assert_one_error_line(code, err, "not a needle checkpoint")


def test_cuda_without_gpu(monkeypatch, capsys):
    if ndl.cuda().enabled():  # exercise the same path on a GPU machine
        monkeypatch.setattr(ndl, "cuda", lambda: type("Off", (), {"enabled": lambda s: False})())
    code, _, err = run_app(capsys, "--device", "cuda")
    assert_one_error_line(code, err, "--device cuda: not available")


def _png_dpi(path):
    """Horizontal dots per inch from a PNG's pHYs chunk (None without one)."""
    import struct
    data = pathlib.Path(path).read_bytes()
    at = data.find(b"pHYs")
    if at < 0:
        return None
    per_metre, _, unit = struct.unpack(">IIB", data[at + 4:at + 13])
    return per_metre * 0.0254 if unit == 1 else None


def test_curves_show_step_losses_lr_and_a_summary(tmp_path, capsys):
    code, out, _ = run_app(capsys, "--model", "lenet", "--dataset", "digits", "--epochs", "2",
                           "--schedule", "cosine", "--out", tmp_path / "run")
    assert code == 0
    assert re.search(r"^  best epoch +\d \(test_acc 0\.\d{4}\)$", out, re.MULTILINE), out
    assert re.search(r"^  images/s +\d+$", out, re.MULTILINE), out
    epochs = json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"]
    lrs = [lr for e in epochs for lr in e["step_lrs"]]
    assert len(lrs) == sum(len(e["step_losses"]) for e in epochs)
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] < lrs[0] / 10  # cosine down to ~0
    assert _png_dpi(tmp_path / "run" / "curves.png") >= 150
