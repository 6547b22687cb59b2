"""needle.data: DataLoader batching and draws, transforms, MNIST parsing and its errors."""
import gzip
import os
import struct
import textwrap

import numpy as np
import pytest

import needle as ndl
from needle import data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rng_after(seed, draw):
    """The next rand() after seeding with `seed` and making exactly the draws `draw()` makes."""
    np.random.seed(seed)
    draw()
    return np.random.rand()


# ---------------------------------------------------------------------------------------------
# DataLoader


def test_dataloader_unshuffled_batches(device):
    X = np.random.randn(10, 3, 2).astype(np.float32)
    y = np.arange(10).astype(np.float32)
    loader = data.DataLoader(data.NDArrayDataset(X, y), batch_size=4, device=device)
    assert len(loader) == 3
    state = np.random.get_state()[1].copy()
    batches = list(loader)
    assert np.array_equal(state, np.random.get_state()[1]), "no draws without shuffle"
    assert [b[0].shape for b in batches] == [(4, 3, 2), (4, 3, 2), (2, 3, 2)]
    assert [b[1].shape for b in batches] == [(4,), (4,), (2,)]
    for i, (xb, yb) in enumerate(batches):
        assert isinstance(xb, ndl.Tensor) and xb.device == device and xb.dtype == "float32"
        np.testing.assert_array_equal(xb.numpy(), X[4 * i:4 * i + 4])
        np.testing.assert_array_equal(yb.numpy(), y[4 * i:4 * i + 4])
    assert len(list(loader)) == 3, "each iter() is a fresh epoch"


def test_batches_read_back_without_the_device(device, monkeypatch):
    """A batch keeps its host copy: the loss reads the labels without a device read (on a GPU
    a sync in mid-step), and the copy is dropped once the data is replaced."""
    X = np.random.randn(6, 3).astype(np.float32)
    y = np.array([0, 2, 1, 1, 0, 2], dtype=np.uint8)  # not float32: converted like the upload
    xb, yb = next(iter(data.DataLoader(data.NDArrayDataset(X, y), batch_size=6, device=device)))
    reads = []
    real = device.to_numpy
    monkeypatch.setitem(device.__dict__, "to_numpy", lambda *a: reads.append(a) or real(*a))
    np.testing.assert_array_equal(yb.numpy(), y.astype(np.float32))
    loss = ndl.ops.softmax_cross_entropy(ndl.Tensor(np.zeros((6, 3)), device=device), yb)
    assert reads == []
    got = yb.numpy()
    got[0] = 99.0  # a copy each time
    np.testing.assert_array_equal(yb.numpy(), y.astype(np.float32))
    assert np.isclose(float(loss.numpy().reshape(-1)[0]), np.log(3.0), atol=1e-6)
    reads.clear()
    yb.data = ndl.Tensor(np.ones(6), device=device)
    np.testing.assert_array_equal(yb.numpy(), np.ones(6))  # the new data, from the device
    assert len(reads) == 1
    np.testing.assert_array_equal(xb.numpy(), X)


def test_from_host_copies_its_input(device):
    a = np.arange(4.0)
    t = ndl.Tensor.from_host(a, device=device)
    a[:] = -1.0
    np.testing.assert_array_equal(t.numpy(), np.arange(4.0))
    assert not t.requires_grad and t.op is None


def test_dataloader_default_device_is_cpu():
    loader = data.DataLoader(data.NDArrayDataset(np.zeros((3, 2))), batch_size=2)
    (xb,) = next(iter(loader))
    assert xb.device == ndl.cpu()


def test_dataloader_shuffle_draws_one_permutation_per_iter(device):
    n, bs = 11, 3
    X = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    loader = data.DataLoader(data.NDArrayDataset(X), batch_size=bs, shuffle=True, device=device)
    np.random.seed(5)
    it = iter(loader)
    marker = np.random.rand()  # drawn after iter(): the permutation must already be taken
    first = np.concatenate([b[0].numpy()[:, 0] for b in it])
    second = np.concatenate([b[0].numpy()[:, 0] for b in loader])
    np.random.seed(5)
    perm1 = np.random.permutation(n)
    assert marker == np.random.rand()
    perm2 = np.random.permutation(n)
    np.testing.assert_array_equal(first, perm1)
    np.testing.assert_array_equal(second, perm2)
    sizes = [b[0].shape[0] for b in loader]
    assert sizes == [3, 3, 3, 2]


def test_dataloader_stacks_items_of_int_only_datasets(device):
    class ListDataset(data.Dataset):
        def __init__(self):
            super().__init__()
            self.items = [(np.full(2, i, np.float32), float(i)) for i in range(5)]

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            return self.items[i]

    batches = list(data.DataLoader(ListDataset(), batch_size=2, device=device))
    assert [b[0].shape for b in batches] == [(2, 2), (2, 2), (1, 2)]
    np.testing.assert_array_equal(batches[1][1].numpy(), [2.0, 3.0])


def test_dataloader_rejects_bad_batch_size():
    with pytest.raises(ValueError, match="DataLoader: batch_size"):
        data.DataLoader(data.NDArrayDataset(np.zeros(3)), batch_size=0)


def test_ndarray_dataset():
    a, b = np.arange(12).reshape(6, 2), np.arange(6)
    ds = data.NDArrayDataset(a, b)
    assert len(ds) == 6
    xa, xb = ds[np.array([4, 1])]
    np.testing.assert_array_equal(xa, a[[4, 1]])
    np.testing.assert_array_equal(xb, [4, 1])
    with pytest.raises(ValueError, match="different lengths"):
        data.NDArrayDataset(a, np.arange(5))


def test_dataset_apply_transforms_in_order():
    ds = data.Dataset(transforms=[lambda x: x + 1, lambda x: x * 10])
    assert ds.apply_transforms(1) == 20
    assert data.Dataset().apply_transforms(3) == 3


# ---------------------------------------------------------------------------------------------
# Transforms


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_flip_horizontal_one_draw_along_w(p):
    img = np.random.randn(4, 5, 3)
    np.random.seed(2)
    outs = [data.RandomFlipHorizontal(p)(img) for _ in range(6)]
    np.random.seed(2)
    draws = [np.random.rand() for _ in range(6)]
    assert np.random.rand() == rng_after(2, lambda: [data.RandomFlipHorizontal(p)(img)
                                                     for _ in range(6)])
    for out, d in zip(outs, draws):
        np.testing.assert_array_equal(out, img[:, ::-1, :] if d < p else img)


def crop_ref(img, padding, sx, sy):
    h, w = img.shape[:2]
    out = np.zeros_like(img)
    for i in range(h):
        for j in range(w):
            if 0 <= i + sx < h and 0 <= j + sy < w:
                out[i, j] = img[i + sx, j + sy]
    return out


@pytest.mark.parametrize("padding", [0, 1, 3, 8])
def test_random_crop_matches_draw(padding):
    img = np.random.randn(5, 6, 2)
    np.random.seed(7)
    outs = [data.RandomCrop(padding)(img) for _ in range(5)]
    np.random.seed(7)
    for out in outs:
        sx, sy = np.random.randint(low=-padding, high=padding + 1, size=2)
        assert out.shape == img.shape
        np.testing.assert_array_equal(out, crop_ref(img, padding, sx, sy))


def test_random_crop_shift_x_is_along_h():
    img = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    seed = next(s for s in range(100)
                if tuple(np.random.RandomState(s).randint(-1, 2, size=2)) == (1, 0))
    np.random.seed(seed)
    out = data.RandomCrop(1)(img)
    np.testing.assert_array_equal(out[:3, :, 0], img[1:, :, 0])
    np.testing.assert_array_equal(out[3, :, 0], 0)


# ---------------------------------------------------------------------------------------------
# MNIST


@pytest.fixture(scope="module")
def mnist_paths(mnist_dir):
    return (os.path.join(mnist_dir, "t10k-images-idx3-ubyte.gz"),
            os.path.join(mnist_dir, "t10k-labels-idx1-ubyte.gz"))


@pytest.fixture(scope="module")
def mnist(mnist_paths):
    return data.MNISTDataset(*mnist_paths)


def test_mnist_dataset_real_file(mnist, mnist_paths):
    assert len(mnist) == 10000
    x, y = mnist[0]
    assert x.shape == (784,) and x.dtype == np.float32 and y == 7
    with gzip.open(mnist_paths[0]) as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(10000, 784)
    np.testing.assert_allclose(mnist.images, raw / 255.0, rtol=1e-6)
    assert mnist.labels.dtype == np.uint8
    np.testing.assert_array_equal(mnist.labels[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    X, Y = mnist[np.array([3, 1, 2])]
    assert X.shape == (3, 784) and Y.shape == (3,)
    np.testing.assert_array_equal(Y, [0, 2, 1])


def test_mnist_through_dataloader(mnist, device):
    xb, yb = next(iter(data.DataLoader(mnist, batch_size=32, device=device)))
    assert xb.shape == (32, 784) and yb.shape == (32,)
    np.testing.assert_array_equal(yb.numpy(), mnist.labels[:32])


def test_mnist_transforms_per_image_in_order(mnist_paths):
    tf = [data.RandomCrop(2), data.RandomFlipHorizontal(0.5)]
    ds = data.MNISTDataset(*mnist_paths, transforms=tf)
    np.random.seed(9)
    X, _ = ds[np.arange(3)]
    assert X.shape == (3, 784)
    np.random.seed(9)
    for i in range(3):  # crop then flip, image by image
        img = ds.images[i].reshape(28, 28, 1)
        sx, sy = np.random.randint(-2, 3, size=2)
        img = crop_ref(img, 2, sx, sy)
        if np.random.rand() < 0.5:
            img = img[:, ::-1]
        np.testing.assert_array_equal(X[i], img.reshape(-1))


def write_idx(path, magic, dims, payload, compress=True):
    raw = struct.pack(">I", magic) + struct.pack(">" + "I" * len(dims), *dims) + payload
    with open(path, "wb") as f:
        f.write(gzip.compress(raw) if compress else raw)
    return str(path)


def test_parse_small_files_gzip_and_plain(tmp_path):
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8) * 10
    for compress in (True, False):
        img = write_idx(tmp_path / f"i{compress}", 2051, (2, 3, 3), pixels.tobytes(), compress)
        lbl = write_idx(tmp_path / f"l{compress}", 2049, (2,), bytes([3, 9]), compress)
        X, y = data.parse_mnist(img, lbl)
        assert X.shape == (2, 9) and X.dtype == np.float32 and y.dtype == np.uint8
        np.testing.assert_allclose(X.reshape(-1), pixels / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(y, [3, 9])


def test_mnist_truncated_copy_of_real_file(tmp_path, mnist_paths):
    with gzip.open(mnist_paths[0]) as f:
        raw = f.read()
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(raw[:-1000], compresslevel=1))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz holds .* \(truncated\)"):
        data.MNISTDataset(str(bad), mnist_paths[1])
    cut = tmp_path / "cut.gz"
    with open(mnist_paths[0], "rb") as f:
        cut.write_bytes(f.read()[:5000])  # a broken gzip stream
    with pytest.raises(ValueError, match="cut.gz is not a valid gzip file"):
        data.MNISTDataset(str(cut), mnist_paths[1])


def test_mnist_bad_magic_and_count_mismatch(tmp_path):
    img = write_idx(tmp_path / "img.gz", 2049, (1, 2, 2), bytes(4))
    lbl = write_idx(tmp_path / "lbl.gz", 2049, (1,), bytes(1))
    with pytest.raises(ValueError, match=r"img.gz has magic number 2049, expected 2051"):
        data.MNISTDataset(img, lbl)
    img = write_idx(tmp_path / "img2.gz", 2051, (2, 2, 2), bytes(8))
    with pytest.raises(ValueError, match=r"img2.gz has 2 images but .*lbl.gz has 1 labels"):
        data.MNISTDataset(img, lbl)
    tiny = tmp_path / "tiny.gz"
    tiny.write_bytes(gzip.compress(b"\x00\x00"))
    with pytest.raises(ValueError, match="tiny.gz is truncated"):
        data.parse_mnist(str(tiny), lbl)


def test_mnist_files_lookup(tmp_path):
    (tmp_path / "mnist").mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / "mnist" / name).write_bytes(b"")
    imgs, _ = data.mnist_files(str(tmp_path), "t10k")
    assert imgs == str(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        data.mnist_files(str(tmp_path), "train")


def test_find_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NEEDLE_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.find_data_dir(str(tmp_path)) == str(tmp_path)
    assert data.find_data_dir() == str(tmp_path / "env")
    monkeypatch.delenv("NEEDLE_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data.find_data_dir() == str(tmp_path / "cache" / "needle")  # test_data_download.py
    with pytest.raises(FileNotFoundError, match=r"from the default\) is not a directory"):
        data.find_data_dir(must_exist=True)
    assert data.find_data_dir(str(tmp_path), must_exist=True) == str(tmp_path)


NP_MODE_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import needle as ndl
    from needle import data
    assert ndl.BACKEND == "np"
    images, labels = sys.argv[1], sys.argv[2]
    ds = data.MNISTDataset(images, labels, transforms=[data.RandomFlipHorizontal(0.5)])
    loader = data.DataLoader(ds, batch_size=100, shuffle=True)
    xb, yb = next(iter(loader))
    assert isinstance(xb.cached_data, np.ndarray) and xb.dtype == np.float32, xb.dtype
    assert yb.dtype == np.uint8 and xb.shape == (100, 784) and yb.shape == (100,)
    (a,) = next(iter(data.DataLoader(data.NDArrayDataset(np.zeros((5, 10, 10))), 2)))
    assert a.shape == (2, 10, 10) and a.dtype == np.float64
    print("np-mode data OK")
""")


def test_numpy_mode_subprocess(mnist_paths, run_numpy_mode):
    run_numpy_mode(NP_MODE_SCRIPT, "np-mode data OK", *mnist_paths)
