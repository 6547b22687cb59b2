"""The training app's file formats: safetensors checkpoints (read by torch and numpy, round
trips, corruption, resuming an earlier version's pickle checkpoint) and --tensorboard logs."""
import json
import os
import struct
import sys

import numpy as np
import pytest
import safetensors.numpy
from needle.utils import save_checkpoint
from test_train_app import assert_one_error_line, run_app

from apps import train
from apps.train_checkpoint import LEGACY_CHECKPOINT, read_checkpoint
from apps.train_safetensors import load_safetensors, save_safetensors
from apps.train_tensorboard import EPOCH_SCALARS

COMMON = ["--model", "lenet", "--dataset", "digits", "--batch-size", "128", "--seed", "5"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 2-epoch run, and the same run stopped after 5 steps (inside epoch 1)."""
    root = tmp_path_factory.mktemp("runs")
    assert train.main([*COMMON, "--epochs", "2", "--out", str(root / "full")]) == 0
    assert train.main([*COMMON, "--epochs", "2", "--max-steps", "5",
                       "--out", str(root / "part")]) == 0
    return root


def test_torch_and_numpy_read_the_weights(runs):
    """Names `model_state/<state_dict key>`, needle's shapes, the saved values."""
    torch_st = pytest.importorskip("safetensors.torch")
    path = runs / "full" / "checkpoint.safetensors"
    ckpt = read_checkpoint(path)
    weights = ckpt["model_state"]
    model, *_ = train.setup(train.parse_args(COMMON + ["--out", str(runs / "x")]), train.ndl.cpu())
    assert list(weights) == list(model.state_dict())  # every entry, in order
    for loaded in (safetensors.numpy.load_file(str(path)), torch_st.load_file(str(path))):
        for name, value in weights.items():
            tensor = loaded[f"model_state/{name}"]
            array = tensor.numpy() if hasattr(tensor, "detach") else tensor
            assert array.shape == tuple(model.state_dict()[name].shape), name
            np.testing.assert_array_equal(array, value, err_msg=name)
        assert {k.split("/")[0] for k in loaded} == {"model_state", "optimizer", "rng_state"}
    meta = safetensors.safe_open(str(path), framework="np").metadata()
    assert json.loads(meta["needle"])["epoch"] == 2  # plain JSON beside the tensors


def test_round_trip_of_nested_values(tmp_path):
    obj = {"a": np.arange(6, dtype=np.int64).reshape(2, 3), "state": {0: {"m": np.ones(3)},
           7: {"m": np.zeros((0, 2), np.float32)}}, "t": ("MT19937", np.arange(4, dtype=np.uint32),
           3, 0, 0.0), "f": [1.5, float("nan"), float("inf"), None, True, "/abs/path"],
           "s": np.float32(0.25), "i": np.int64(-3), "flags": np.array([True, False]),
           "tricky": {"__tensor__": "not a tensor"}}
    path = tmp_path / "x.safetensors"
    save_safetensors(path, obj)
    back = load_safetensors(path)
    assert back.keys() == obj.keys() and back["state"].keys() == {0, 7}
    np.testing.assert_array_equal(back["a"], obj["a"])
    assert back["state"][7]["m"].shape == (0, 2) and back["state"][7]["m"].dtype == np.float32
    assert isinstance(back["t"], tuple) and back["t"][0] == "MT19937"
    np.testing.assert_array_equal(back["t"][1], obj["t"][1])
    assert back["t"][1].dtype == np.uint32
    assert back["f"][0] == 1.5 and np.isnan(back["f"][1]) and back["f"][2:] == obj["f"][2:]
    assert type(back["s"]) is np.float32 and back["s"] == 0.25 and type(back["i"]) is np.int64
    assert back["flags"].dtype == bool and back["tricky"] == obj["tricky"]


def test_unsaveable_values_are_refused(tmp_path):
    with pytest.raises(TypeError, match="model/w is a object"):
        save_safetensors(tmp_path / "x.safetensors", {"model": {"w": object()}})
    with pytest.raises(TypeError, match="two entries are named 'd/1'"):
        save_safetensors(tmp_path / "y.safetensors", {"d": {1: np.ones(1), "1": np.ones(1)}})
    assert os.listdir(tmp_path) == []


def test_corrupted_files(tmp_path):
    path = tmp_path / "x.safetensors"
    save_safetensors(path, {"w": np.arange(1000, dtype=np.float32), "epoch": 3})
    raw = bytearray(path.read_bytes())
    raw[-50] ^= 0x10  # inside the tensor data: safetensors alone would not notice
    (tmp_path / "flip.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="flip.safetensors is corrupted.*checksum"):
        load_safetensors(tmp_path / "flip.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ValueError, match="cut.safetensors is corrupted or truncated"):
        load_safetensors(tmp_path / "cut.safetensors")
    safetensors.numpy.save_file({"w": np.ones(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ValueError, match="not a needle checkpoint"):
        load_safetensors(tmp_path / "foreign.safetensors")


def _as_legacy_run(ckpt, folder):
    """What the earlier version left in --out: checkpoint.pkl written by save_checkpoint (the
    pickle format with its sha256 line), from the same checkpoint dict."""
    folder.mkdir()
    save_checkpoint(folder / LEGACY_CHECKPOINT, ckpt)
    assert (folder / LEGACY_CHECKPOINT).read_bytes().startswith(b"NEEDLE-CHECKPOINT-1\n")


def test_resume_from_an_earlier_versions_pickle_checkpoint(runs, tmp_path, capsys):
    """--resume finds OUT/checkpoint.pkl and continues it bit for bit, writing safetensors."""
    old = tmp_path / "old"
    _as_legacy_run(read_checkpoint(runs / "part" / "checkpoint.safetensors"), old)
    code, _, err = run_app(capsys, *COMMON, "--max-steps", "3", "--out", old)
    assert_one_error_line(code, err, r"already holds a run \(checkpoint.pkl\)")
    code, out, err = run_app(capsys, *COMMON, "--epochs", "2", "--out", old, "--resume")
    assert code == 0 and "epoch 2/2" in out, out + err
    full = read_checkpoint(runs / "full" / "checkpoint.safetensors")
    resumed = read_checkpoint(old / "checkpoint.safetensors")
    assert resumed["step"] == full["step"]
    for name, value in full["model_state"].items():
        np.testing.assert_array_equal(resumed["model_state"][name], value, err_msg=name)


def test_tensorboard_scalars(tmp_path, capsys):
    pytest.importorskip("tensorboardX")
    from tensorboardX.proto.event_pb2 import Event
    logdir = tmp_path / "tb"
    code, _, err = run_app(capsys, *COMMON, "--epochs", "2", "--schedule", "cosine",
                           "--out", tmp_path / "run", "--tensorboard", logdir)
    assert code == 0, err
    scalars = {}
    for name in os.listdir(logdir):
        for record in _tfrecords(logdir / name):
            event = Event.FromString(record)
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    epochs = json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"]
    losses = [x for e in epochs for x in e["step_losses"]]
    lrs = [x for e in epochs for x in e["step_lrs"]]
    assert [s for s, _ in scalars["step/loss"]] == list(range(1, len(losses) + 1))
    np.testing.assert_allclose([v for _, v in scalars["step/loss"]], losses, rtol=1e-6)
    np.testing.assert_allclose([v for _, v in scalars["step/lr"]], lrs, rtol=1e-6)
    for key in EPOCH_SCALARS:
        assert [s for s, _ in scalars[f"epoch/{key}"]] == [1, 2]
        np.testing.assert_allclose([v for _, v in scalars[f"epoch/{key}"]],
                                   [e[key] for e in epochs], rtol=1e-6)


def _tfrecords(path):
    """The records of a TensorBoard event file (TFRecord framing: a u64 length and a u32 crc,
    the data, a u32 crc; the crcs are not checked here)."""
    raw = path.read_bytes()
    at = 0
    while at < len(raw):
        (length,) = struct.unpack("<Q", raw[at:at + 8])
        assert at + 16 + length <= len(raw), f"{path}: truncated record at byte {at}"
        yield raw[at + 12:at + 12 + length]
        at += 16 + length


def test_tensorboard_without_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import tensorboardX now fails
    code, _, err = run_app(capsys, "--max-steps", "1", "--out", tmp_path / "run",
                           "--tensorboard", tmp_path / "tb")
    assert_one_error_line(code, err, r"--tensorboard needs tensorboardX: pip install "
                                     r"'needle-dl\[tensorboard\]'")
    assert not (tmp_path / "tb").exists()


def test_tensorboard_dir_that_cannot_be_written(tmp_path, capsys):
    pytest.importorskip("tensorboardX")
    (tmp_path / "file").write_text("x")
    code, _, err = run_app(capsys, "--max-steps", "1", "--out", tmp_path / "run",
                           "--tensorboard", tmp_path / "file" / "tb")
    assert_one_error_line(code, err, r"--tensorboard .*file/tb: cannot write there")
