"""needle.utils: summary() against hand-computed LeNet / ResNet9 figures, and checkpoint files."""
import os
import pickle

import needle as ndl
import numpy as np
import pytest
from needle import nn
from needle.utils import load_checkpoint, save_checkpoint, summary

from apps.models import LeNet, ResNet9


def test_summary_lenet_hand_computed(device):
    model = LeNet(device=device)
    s = summary(model, (2, 1, 28, 28))
    rows = {r["name"]: r for r in s.rows}
    # conv1: 6 x (5*5*1) weights + 6 biases; N*Ho*Wo*Cout*K*K*Cin = 2*28*28*6*25.
    conv1, conv2 = rows["model.0"], rows["model.3"]
    assert conv1["type"] == "Conv2d" and conv1["output_shape"] == [(2, 6, 28, 28)]
    assert (conv1["params"], conv1["macs"]) == (156, 2 * 28 * 28 * 6 * 25)
    assert conv1["activation_bytes"] == 2 * 6 * 28 * 28 * 4
    assert rows["model.2"]["output_shape"] == [(2, 6, 14, 14)]
    assert (conv2["params"], conv2["macs"]) == (6 * 25 * 16 + 16, 2 * 10 * 10 * 16 * 25 * 6)
    fc = [rows[f"model.{i}"] for i in (7, 9, 11)]
    assert [(r["params"], r["macs"]) for r in fc] == [
        (400 * 120 + 120, 2 * 400 * 120), (120 * 84 + 84, 2 * 120 * 84), (84 * 10 + 10, 2 * 840)]
    assert s.params == 61706
    assert s.macs == 2 * (117600 + 240000 + 48000 + 10080 + 840)
    leaf_elems = 2 * (4704 * 2 + 1176 + 1600 * 2 + 400 * 2 + 120 * 2 + 84 * 2 + 10)
    assert s.activation_bytes == 4 * leaf_elems
    assert "total parameters: 61,706" in s.table and str(s) == s.table
    assert s.table.count("\n") == len(s.rows) + 7


def test_summary_resnet9_totals_and_no_side_effects():
    model = ResNet9(device=ndl.cpu_numpy())
    bn = model.model.modules[0].modules[1]
    before = bn.running_mean.numpy().copy(), bn.running_var.numpy().copy()
    assert model.training
    s = summary(model, (1, 3, 32, 32))
    assert s.params == 431946 == sum(int(np.prod(p.shape)) for p in model.parameters())
    # Convs: 16*8*8*49*3 + 32*4*4*9*16 + 2*(32*4*4*9*32) + 64*2*2*9*32 + 128*9*64 + 2*128*9*128;
    # linears 128*128 + 128*10.
    assert s.macs == 150528 + 73728 + 2 * 147456 + 73728 + 73728 + 2 * 147456 + 16384 + 1280
    assert [r["name"] for r in s.rows][:4] == ["", "model", "model.0", "model.0.0"]
    assert s.rows[0]["output_shape"] == [(1, 10)]
    # The model is left as it was: train mode everywhere, no forward wrappers, stats untouched.
    assert all(m.training for _, m in model.named_modules())
    assert all("forward" not in m.__dict__ for _, m in model.named_modules())
    np.testing.assert_array_equal(bn.running_mean.numpy(), before[0])
    np.testing.assert_array_equal(bn.running_var.numpy(), before[1])
    model.eval()
    summary(model, (1, 3, 32, 32))
    assert not any(m.training for _, m in model.named_modules())


def test_summary_counts_a_reused_module_once():
    lin = nn.Linear(4, 4, device=ndl.cpu_numpy())
    s = summary(nn.Sequential(lin, nn.ReLU(), lin), (3, 4))
    linear_rows = [r for r in s.rows if r["type"] == "Linear"]
    assert [r["params"] for r in linear_rows] == [20, 0]
    assert [r["macs"] for r in linear_rows] == [48, 48]
    assert s.params == 20


# ------------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_identical_outputs(tmp_path, device):
    model = LeNet(device=device)
    x = ndl.Tensor(np.random.rand(3, 1, 28, 28), device=device)
    model.eval()
    expected = model(x).numpy()
    path = tmp_path / "ckpt.pkl"
    save_checkpoint(path, {"model": model.state_dict(), "epoch": 7,
                           "rng": np.random.get_state()})
    np.random.seed(123)  # a different init
    other = LeNet(device=device)
    other.eval()
    assert not np.allclose(other(x).numpy(), expected)
    ckpt = load_checkpoint(path)
    other.load_state_dict(ckpt["model"])
    np.testing.assert_array_equal(other(x).numpy(), expected)
    assert ckpt["epoch"] == 7 and ckpt["rng"][0] == "MT19937"


def test_checkpoint_corruption_is_a_clear_error(tmp_path):
    path = tmp_path / "ckpt.pkl"
    save_checkpoint(path, {"w": np.arange(100, dtype=np.float32)})
    raw = path.read_bytes()
    flipped = bytearray(raw)
    flipped[-20] ^= 0xFF
    for name, data, pattern in [
        ("flipped.pkl", bytes(flipped), "corrupted or truncated"),
        ("truncated.pkl", raw[: len(raw) - 50], "corrupted or truncated"),
        ("empty.pkl", b"", "not a needle checkpoint"),
        ("plain.pkl", pickle.dumps({"w": 1}), "not a needle checkpoint"),
    ]:
        bad = tmp_path / name
        bad.write_bytes(data)
        with pytest.raises(ValueError, match=f"{name}.*{pattern}"):
            load_checkpoint(bad)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pkl")


def test_checkpoint_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "ckpt.pkl"
    with pytest.raises(TypeError, match="save_checkpoint"):
        save_checkpoint(path, {"t": ndl.Tensor([1.0, 2.0], device=ndl.cpu_numpy())})
    with pytest.raises(TypeError, match="save_checkpoint"):
        save_checkpoint(path, {"f": lambda: 0})
    assert not os.listdir(tmp_path)  # nothing written, no temp file left
    # A well-formed file whose payload names another global is refused on load, not executed.
    import hashlib

    from needle import utils
    payload = pickle.dumps({"x": os.getcwd}, protocol=4)
    path.write_bytes(utils._MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    with pytest.raises(ValueError, match="not allowed"):
        load_checkpoint(path)


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "ckpt.pkl"
    save_checkpoint(path, {"epoch": 1})
    with pytest.raises(TypeError):
        save_checkpoint(path, {"epoch": 2, "bad": object()})
    assert load_checkpoint(path) == {"epoch": 1}
    assert os.listdir(tmp_path) == ["ckpt.pkl"]
