"""Dataset readers and acquisition: CIFAR-10 (on a fixture written here), Normalize, the
sklearn-digits dataset (downloads: test_data_download.py)."""
import hashlib
import os
import pickle

import needle as ndl
import numpy as np
import pytest
from needle.data import (
    CIFAR10Dataset,
    DataLoader,
    DigitsDataset,
    Normalize,
    RandomCrop,
    RandomFlipHorizontal,
    data_download,
    resize_bilinear,
)

N_PER_BATCH = 6
NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def write_cifar_batches(folder, seed=1):
    """Six CIFAR-format pickle batches (uint8 N x 3072, list of labels); returns their contents."""
    rng = np.random.RandomState(seed)
    os.makedirs(folder, exist_ok=True)
    contents = {}
    for name in NAMES:
        data = rng.randint(0, 256, (N_PER_BATCH, 3072)).astype(np.uint8)
        labels = [int(v) for v in rng.randint(0, 10, N_PER_BATCH)]
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, f)
        contents[name] = (data, labels)
    return contents


def _md5(data):
    return hashlib.md5(data).hexdigest()


def cifar_md5s(folder):
    """{name: md5} of the batches in `folder`: the checksum table for a fixture folder."""
    return {n: _md5(open(os.path.join(folder, n), "rb").read()) for n in NAMES
            if os.path.isfile(os.path.join(folder, n))}


@pytest.fixture
def cifar(tmp_path, monkeypatch):
    """A fixture folder whose md5s stand in for the published ones."""
    folder = tmp_path / "cifar-10-batches-py"
    contents = write_cifar_batches(str(folder))
    monkeypatch.setattr(data_download, "CIFAR10_FILES", cifar_md5s(str(folder)))
    return str(folder), contents


def test_cifar_train_and_test_contents(cifar):
    folder, contents = cifar
    train = CIFAR10Dataset(folder, train=True)
    test = CIFAR10Dataset(folder, train=False)
    assert len(train) == 5 * N_PER_BATCH and len(test) == N_PER_BATCH
    X, y = train[N_PER_BATCH + 2]  # third image of data_batch_2
    data, labels = contents["data_batch_2"]
    assert X.shape == (3, 32, 32) and X.dtype == np.float32
    # Rows are 1024 red, then 1024 green, then 1024 blue values, each plane row-major.
    np.testing.assert_array_equal(X, data[2].reshape(3, 32, 32).astype(np.float32) / 255)
    assert X[1, 0, 5] == np.float32(data[2][1024 + 5]) / 255
    assert y == labels[2]
    Xt, yt = test[np.array([0, 3])]
    assert Xt.shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(yt, np.array(contents["test_batch"][1])[[0, 3]])


def test_cifar_transforms_per_image_in_order(cifar):
    folder, _ = cifar
    tforms = [RandomCrop(4), RandomFlipHorizontal(0.5), Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))]
    ds = CIFAR10Dataset(folder, train=True, transforms=tforms)
    plain = CIFAR10Dataset(folder, train=True)
    idx = np.array([4, 0, 7])
    np.random.seed(3)
    X, _ = ds[idx]
    # Same draws by hand: crop then flip then normalise, image after image, on H x W x C views.
    np.random.seed(3)
    expected = []
    for img in plain[idx][0]:
        hwc = img.transpose(1, 2, 0)
        for t in tforms:
            hwc = t(hwc)
        expected.append(hwc.transpose(2, 0, 1))
    np.testing.assert_allclose(X, np.stack(expected), rtol=1e-6)
    assert X.shape == (3, 3, 32, 32) and X.dtype == np.float32


def test_cifar_dataloader_batches(cifar):
    folder, _ = cifar
    loader = DataLoader(CIFAR10Dataset(folder, train=True), batch_size=8, shuffle=True,
                        device=ndl.cpu_numpy())
    shapes = [tuple(X.shape) for X, _ in loader]
    assert shapes == [(8, 3, 32, 32)] * 3 + [(6, 3, 32, 32)]


def test_cifar_bad_files(cifar):
    folder, _ = cifar
    path = os.path.join(folder, "test_batch")
    with open(path, "rb") as f:
        raw = f.read()
    with open(path, "wb") as f:
        f.write(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="test_batch has md5"):
        CIFAR10Dataset(folder, train=False)
    with pytest.raises(ValueError, match="test_batch is not a complete"):
        CIFAR10Dataset(folder, train=False, checksums=cifar_md5s(folder))
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(ValueError, match=r"N x 3072"):
        CIFAR10Dataset(folder, train=False, checksums=cifar_md5s(folder))
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.float64), b"labels": [0, 1]}, f)
    with pytest.raises(ValueError, match=r"test_batch.*uint8"):
        CIFAR10Dataset(folder, train=False, checksums=cifar_md5s(folder))
    os.remove(path)
    with pytest.raises(FileNotFoundError, match="test_batch"):
        CIFAR10Dataset(folder, train=False)


class _RunsCommand:
    """Pickles as a call to os.system (what a crafted batch does)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _write_crafted_batch(folder, marker):
    path = os.path.join(folder, "data_batch_1")
    with open(path, "wb") as f:
        pickle.dump({b"data": _RunsCommand(f"touch {marker}"), b"labels": [0]}, f)
    return path


def test_cifar_crafted_batch_fails_the_published_md5(cifar, tmp_path, monkeypatch):
    folder, _ = cifar
    marker = tmp_path / "ran"
    _write_crafted_batch(folder, marker)
    monkeypatch.setattr(data_download, "CIFAR10_FILES", dict(
        data_download.CIFAR10_FILES, data_batch_1="c99cafc152244af753f735de768cd75f"))
    with pytest.raises(ValueError, match=r"data_batch_1 has md5 [0-9a-f]{32}, expected c99caf"):
        CIFAR10Dataset(folder, train=True)
    assert not marker.exists()


def test_cifar_crafted_batch_with_matching_md5_does_not_run_code(cifar, tmp_path):
    """Even a table that vouches for the file does not let its pickle call os.system."""
    folder, _ = cifar
    marker = tmp_path / "ran"
    _write_crafted_batch(folder, marker)
    with pytest.raises(ValueError, match=r"data_batch_1 .*forbidden global (posix|os|nt)\.system"):
        CIFAR10Dataset(folder, train=True, checksums=cifar_md5s(folder))
    assert not marker.exists()


def test_cifar_reads_protocol_2_batches(tmp_path):
    """The published batches are protocol-2 pickles (bytes via _codecs, arrays via numpy)."""
    folder = str(tmp_path)
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    with open(os.path.join(folder, "test_batch"), "wb") as f:
        pickle.dump({b"batch_label": b"testing batch 1 of 1", b"labels": [3, 7], b"data": data,
                     b"filenames": [b"a.png", b"b.png"]}, f, protocol=2)
    ds = CIFAR10Dataset(folder, train=False, checksums=cifar_md5s(folder))
    np.testing.assert_array_equal(ds.images.reshape(2, 3072), data)
    np.testing.assert_array_equal(ds.labels, [3, 7])


def test_normalize():
    img = np.random.rand(4, 5, 3).astype(np.float32)
    out = Normalize((0.1, 0.2, 0.3), (0.5, 0.25, 2.0))(img)
    np.testing.assert_allclose(out, (img - [0.1, 0.2, 0.3]) / [0.5, 0.25, 2.0], rtol=1e-6)
    assert out.dtype == np.float32
    with pytest.raises(ValueError, match="Normalize.*channels"):
        Normalize((0.1, 0.2), (1, 1))(img)
    with pytest.raises(ValueError, match="Normalize"):
        Normalize(0.5, 0.0)


# ------------------------------------------------------------------------------ sklearn digits


def test_digits_dataset():
    train = DigitsDataset(train=True, image_size=28)
    test = DigitsDataset(train=False, image_size=32)
    assert len(train) + len(test) == 1797 and len(test) == 359
    X, y = train[np.arange(5)]
    assert X.shape == (5, 1, 28, 28) and X.dtype == np.float32
    assert test[0][0].shape == (1, 32, 32)
    assert 0 <= train.images.min() and train.images.max() <= 1
    np.testing.assert_array_equal(y, [0, 1, 2, 3, 4])  # sklearn's order starts 0..9
    assert set(np.unique(test.labels)) == set(range(10))
    native = DigitsDataset(train=True, image_size=8)
    from sklearn.datasets import load_digits
    np.testing.assert_allclose(native.images[:3, 0], load_digits().images[:3] / 16, rtol=1e-6)


def test_resize_bilinear():
    x = np.random.rand(2, 8, 8).astype(np.float32)
    np.testing.assert_allclose(resize_bilinear(x, 8), x, rtol=1e-6)
    up = resize_bilinear(x, (16, 12))
    assert up.shape == (2, 16, 12)
    # Half-pixel centres: a constant image stays constant, the mean is roughly preserved.
    np.testing.assert_allclose(resize_bilinear(np.full((1, 8, 8), 0.3), 28), 0.3, rtol=1e-6)
    with pytest.raises(ValueError, match="resize_bilinear"):
        resize_bilinear(np.zeros((8, 8)), 4)


def test_resize_bilinear_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.random.rand(3, 8, 8).astype(np.float32)
    for size in ((28, 28), (32, 32), (5, 3), (11, 13), (8, 20)):
        ref = torch.nn.functional.interpolate(torch.tensor(x)[:, None], size=size,
                                              mode="bilinear", align_corners=False)
        np.testing.assert_allclose(resize_bilinear(x, size), ref[:, 0].numpy(), atol=1e-6)


def test_digits_resize_matches_torch_scipy_and_pillow_on_every_image():
    """All 1,797 sklearn digits at the sizes the models use: the hand-written resize gives
    torch's, scipy.ndimage.zoom's and Pillow's bilinear images (why it stays: docs/data.md)."""
    torch = pytest.importorskip("torch")
    from PIL import Image  # with matplotlib
    from scipy import ndimage  # with scikit-learn
    from sklearn.datasets import load_digits
    images = load_digits().images.astype(np.float32) / np.float32(16)
    for size in (28, 32):
        ours = resize_bilinear(images, size)
        ref = torch.nn.functional.interpolate(torch.tensor(images)[:, None], size=size,
                                              mode="bilinear", align_corners=False)
        np.testing.assert_allclose(ours, ref[:, 0].numpy(), atol=1e-6)
        zoomed = ndimage.zoom(images, (1, size / 8, size / 8), order=1, grid_mode=True,
                              mode="nearest")
        np.testing.assert_allclose(ours, zoomed, atol=1e-6)
        pil = [np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR))
               for im in images[:200]]
        np.testing.assert_allclose(ours[:200], np.stack(pil), atol=1e-6)
