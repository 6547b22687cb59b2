"""MNIST in the IDX format (gzipped, as distributed; plain IDX files are read too)."""
import gzip
import os
import struct
import zlib
from typing import Optional

import numpy as np

from .data_basic import Dataset

__all__ = ["MNISTDataset", "mnist_files", "parse_mnist"]

_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension


def _read_bytes(filename: str) -> bytes:
    with open(filename, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"MNIST: {filename} is not a valid gzip file ({e})") from None


def _read_idx(filename: str, magic: int, ndim: int) -> tuple[tuple[int, ...], np.ndarray]:
    raw = _read_bytes(filename)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"MNIST: {filename} is truncated: {len(raw)} bytes, header needs {header}")
    (found,) = struct.unpack(">I", raw[:4])
    if found != magic:
        raise ValueError(f"MNIST: {filename} has magic number {found}, expected {magic}")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    expected = int(np.prod(dims))
    body = len(raw) - header
    if body != expected:
        raise ValueError(
            f"MNIST: {filename} holds {body} data bytes, header {dims} needs {expected} "
            f"({'truncated' if body < expected else 'trailing bytes'})"
        )
    return dims, np.frombuffer(raw, dtype=np.uint8, offset=header)


def parse_mnist(image_filename: str, label_filename: str) -> tuple[np.ndarray, np.ndarray]:
    """Read an MNIST image/label file pair (gzipped IDX).

    Returns:
        X: float32 array N x (rows*cols) (N x 784 for MNIST) scaled to [0, 1].
        y: uint8 array (N,) of labels.
    Raises:
        ValueError naming the file for a bad magic number, a truncated or corrupt file, or
        image and label counts that differ.
    """
    (n, rows, cols), pixels = _read_idx(image_filename, _IMAGES_MAGIC, 3)
    (m,), labels = _read_idx(label_filename, _LABELS_MAGIC, 1)
    if n != m:
        raise ValueError(
            f"MNIST: {image_filename} has {n} images but {label_filename} has {m} labels"
        )
    X = pixels.reshape(n, rows * cols).astype(np.float32) / np.float32(255.0)
    return X, labels.copy()


def mnist_files(data_dir: str, split: str = "train") -> tuple[str, str]:
    """Paths of the (images, labels) files of `split` ("train" or "t10k") in `data_dir`.

    The files are looked up in `data_dir/mnist` and then in `data_dir`.
    """
    names = (f"{split}-images-idx3-ubyte.gz", f"{split}-labels-idx1-ubyte.gz")
    for folder in (os.path.join(data_dir, "mnist"), data_dir):
        paths = tuple(os.path.join(folder, name) for name in names)
        if all(os.path.exists(p) for p in paths):
            return paths
    raise FileNotFoundError(f"MNIST: {names[0]} / {names[1]} not found in "
                            f"{os.path.join(data_dir, 'mnist')} or {data_dir}")


class MNISTDataset(Dataset):
    """MNIST images and labels.

    `ds[i]` -> (image float32 (784,), label uint8); `ds[slice or index array]` ->
    (X (B, 784), y (B,)). With transforms, each image is viewed as 28 x 28 x 1 (H x W x C), the
    transforms run per image in list order, and the result is flattened back.
    """

    def __init__(self, image_filename: str, label_filename: str,
                 transforms: Optional[list] = None):
        super().__init__(transforms)
        self.images, self.labels = parse_mnist(image_filename, label_filename)
        side = round(float(np.sqrt(self.images.shape[1])))
        self.image_shape = (side, side, 1)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index):
        X, y = self.images[index], self.labels[index]
        if not self.transforms:
            return X, y
        if X.ndim == 1:
            return self._transform(X), y
        return np.stack([self._transform(x) for x in X]), y

    def _transform(self, x: np.ndarray) -> np.ndarray:
        out = self.apply_transforms(x.reshape(self.image_shape))
        return np.ascontiguousarray(out).reshape(-1)
