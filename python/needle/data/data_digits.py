"""scikit-learn's bundled 8x8 handwritten digits, resized: an offline dataset needing no download.

This is the "sklearn-digits" dataset (1,797 images by 43 writers, UCI ML digits), *not* MNIST.
"""
import numpy as np

from .data_basic import Dataset
from .data_cifar import transform_chw

__all__ = ["DigitsDataset", "resize_bilinear"]


def resize_bilinear(images, size):
    """Bilinear resize with half-pixel centres (as PIL / torch `align_corners=False`).

    Args:
        images: numpy array N x H x W.
        size: output side S (int) or (S_h, S_w).

    Returns:
        float32 array N x S_h x S_w.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3:
        raise ValueError(f"resize_bilinear: expected N x H x W images, got shape {images.shape}")
    out_h, out_w = (size, size) if np.isscalar(size) else size
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"resize_bilinear: output size {(out_h, out_w)} must be positive")

    def coords(n_in, n_out):
        x = (np.arange(n_out, dtype=np.float64) + 0.5) * n_in / n_out - 0.5
        x = np.clip(x, 0, n_in - 1)
        lo = np.floor(x).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (x - lo).astype(np.float32)

    h0, h1, fh = coords(images.shape[1], out_h)
    w0, w1, fw = coords(images.shape[2], out_w)
    rows = images[:, h0] * (1 - fh)[None, :, None] + images[:, h1] * fh[None, :, None]
    return (rows[:, :, w0] * (1 - fw) + rows[:, :, w1] * fw).astype(np.float32)


class DigitsDataset(Dataset):
    """The sklearn-digits dataset as 1 x S x S images in [0, 1], for offline training and demos.

    The split is fixed and draws no random numbers: the last `test_fraction` of the 1,797
    images (in sklearn's order) is the test set, the rest the training set.

    Args:
        train: training (1,438 images with the default split) or test (359) part.
        image_size: output side S (8 keeps the original resolution; 28 or 32 suit LeNet).
        test_fraction: share of images held out for testing.
        transforms: list of transforms applied per image (on S x S x 1 views), in order.

    Items: `ds[i]` -> (X float32 1 x S x S, y int64); `ds[index_array]` -> (X B x 1 x S x S, y (B,)).

    Example:
        >>> ds = DigitsDataset(train=True, image_size=28)
        >>> image, label = ds[0]
        >>> image.shape
        (1, 28, 28)
    """

    def __init__(self, train=True, image_size=28, test_fraction=0.2, transforms=None):
        super().__init__(transforms)
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise ImportError("DigitsDataset needs scikit-learn: pip install 'needle-dl[apps]'") from None
        if not 0 < test_fraction < 1:
            raise ValueError(f"DigitsDataset: test_fraction {test_fraction} must be in (0, 1)")
        digits = load_digits()
        n_test = round(len(digits.target) * test_fraction)
        part = slice(None, -n_test) if train else slice(-n_test, None)
        images = digits.images[part].astype(np.float32) / np.float32(16)  # pixels are 0..16
        if image_size != images.shape[-1]:
            images = resize_bilinear(images, image_size)
        self.images = images[:, None]
        self.labels = digits.target[part].astype(np.int64)

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, index):
        X, y = self.images[index], self.labels[index]
        if self.transforms:
            X = transform_chw(self, X)
        return np.ascontiguousarray(X, dtype=np.float32), y
