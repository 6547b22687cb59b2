"""CIFAR-10 (python-pickle batches) and the per-channel Normalize transform."""
import hashlib
import os
import pickle

import numpy as np

from . import data_download
from .data_basic import Dataset
from .data_transforms import Transform

__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "CIFAR10Dataset", "Normalize"]

# Per-channel statistics of the CIFAR-10 training set (pixels in [0, 1]), in R, G, B order.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class Normalize(Transform):
    """Per-channel standardisation of one H x W x C image: (img - mean) / std.

    Args:
        mean, std: sequences of C floats (or scalars). Makes no random draws.

    Example:
        >>> Normalize(CIFAR10_MEAN, CIFAR10_STD)(np.zeros((32, 32, 3), np.float32)).shape
        (32, 32, 3)
    """

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        if self.mean.ndim > 1 or self.std.ndim > 1 or np.any(self.std == 0):
            raise ValueError(f"Normalize: mean {self.mean.shape} and std {self.std.shape} must be "
                             "scalars or 1-D per-channel sequences, std nonzero")

    def __call__(self, img):
        if self.mean.size > 1 and img.shape[-1] != self.mean.size:
            raise ValueError(f"Normalize: image of shape {img.shape} (H x W x C) does not have "
                             f"{self.mean.size} channels")
        return ((img - self.mean) / self.std).astype(np.float32)


def transform_chw(dataset, X):
    """Apply `dataset`'s transforms to C x H x W images (one, or a batch B x C x H x W).

    Transforms see H x W x C views, one image at a time, all transforms of an image in order
    before the next image (the RNG-order contract).
    """
    if X.ndim == 3:
        return dataset.apply_transforms(X.transpose(1, 2, 0)).transpose(2, 0, 1)
    return np.stack([dataset.apply_transforms(x.transpose(1, 2, 0)).transpose(2, 0, 1) for x in X])


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that builds only dicts, lists, tuples, bytes, str, numbers and numpy
    arrays. Any other global a pickle names (os.system, builtins.eval, ...) is refused before
    it is looked up, so a crafted batch cannot run code."""

    _ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol 2 spells bytes
    })

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        return super().find_class(module, name)


def _file_md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_batch(path, md5):
    """Read one CIFAR python-pickle batch -> (uint8 N x 3 x 32 x 32, int64 N).

    The file must have the md5 `md5` (checked before parsing); it is parsed with a restricted
    unpickler. ValueError naming the file if anything is wrong.
    """
    digest = _file_md5(path)
    if digest != md5:
        raise ValueError(f"CIFAR10Dataset: {path} has md5 {digest}, expected {md5}: it is not the "
                         f"published CIFAR-10 batch (delete it and download again)")
    try:
        with open(path, "rb") as f:
            d = _BatchUnpickler(f, encoding="bytes").load()
        data = np.asarray(d[b"data"])
        labels = np.asarray(d[b"labels"])
        if data.dtype != np.uint8 or labels.dtype.kind not in "iu":
            raise TypeError(f"data of dtype {data.dtype} and labels of dtype {labels.dtype}, "
                            f"expected uint8 and ints")
        labels = labels.astype(np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError,
            IndexError) as e:
        raise ValueError(f"CIFAR10Dataset: {path} is not a complete CIFAR-10 python batch "
                         f"({type(e).__name__}: {e})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
        raise ValueError(f"CIFAR10Dataset: {path} holds data of shape {data.shape} and labels of "
                         f"shape {labels.shape}; expected N x 3072 and (N,)")
    return data.reshape(-1, 3, 32, 32), labels


class CIFAR10Dataset(Dataset):
    """CIFAR-10 from the python-pickle batches in `base_folder`.

    Args:
        base_folder: folder holding `data_batch_1` ... `data_batch_5` and `test_batch`
            (see `needle.data.ensure_cifar10` to download it).
        train: read the five training batches (50,000 images) or the test batch (10,000).
        p: unused; kept for compatibility with the reference signature.
        transforms: list of transforms applied per image, in order, on H x W x C views.
        checksums: {file name: hex md5} each batch must match before it is parsed (None: the
            published checksums, `needle.data.data_download.CIFAR10_FILES`).

    Items: `ds[i]` -> (X float32 3 x 32 x 32 in [0, 1] before transforms, y int64 label);
    `ds[index_array or slice]` -> (X B x 3 x 32 x 32, y (B,)).
    Pixels are kept as uint8 (150 MB rather than 600 MB for the training set) and scaled on access.
    """

    def __init__(self, base_folder, train, p=0.5, transforms=None, checksums=None):
        super().__init__(transforms)
        names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        missing = [n for n in names if not os.path.isfile(os.path.join(base_folder, n))]
        if missing:
            raise FileNotFoundError(f"CIFAR10Dataset: {missing} not found in {base_folder}")
        checksums = data_download.CIFAR10_FILES if checksums is None else checksums
        unknown = [n for n in names if n not in checksums]
        if unknown:
            raise ValueError(f"CIFAR10Dataset: no md5 given for {unknown}")
        batches = [_read_batch(os.path.join(base_folder, n), checksums[n]) for n in names]
        self.images = np.concatenate([b[0] for b in batches])
        self.labels = np.concatenate([b[1] for b in batches])
        self.p = p

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, index):
        X = self.images[index].astype(np.float32) / np.float32(255)
        y = self.labels[index]
        if self.transforms:
            X = transform_chw(self, X)
        return np.ascontiguousarray(X, dtype=np.float32), y
