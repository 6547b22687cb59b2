"""Image augmentations on single H x W x C numpy images.

Transforms hold no RNG of their own: each call makes exactly the numpy global-RNG draw listed
in the needle contract (flip: one `rand()`; crop: one `randint(size=2)`), whatever the inputs.
"""
import numpy as np

__all__ = ["RandomCrop", "RandomFlipHorizontal", "Transform"]


def _check_image(name: str, img) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise ValueError(f"{name}: expected an H x W x C (or H x W) image, got {img.shape}")
    return img


class Transform:
    """Base class: a callable taking one H x W x C numpy image and returning an image."""

    def __call__(self, x):
        raise NotImplementedError(f"{type(self).__name__}.__call__ is not implemented")


class RandomFlipHorizontal(Transform):
    """Reverse the image along W (axis 1) with probability p.

    One `np.random.rand()` draw per call, even when p is 0 or 1; flips iff draw < p.
    Shapes: H x W x C -> H x W x C.
    """

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomFlipHorizontal: p must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, img):
        img = _check_image("RandomFlipHorizontal", img)
        flip_img = np.random.rand() < self.p
        return img[:, ::-1] if flip_img else img


class RandomCrop(Transform):
    """Shift the image by up to `padding` pixels along H and W, filling with zeros.

    One `np.random.randint(low=-padding, high=padding + 1, size=2)` draw -> (shift_x, shift_y);
    out[i, j] = img[i + shift_x, j + shift_y] (0 outside the image). shift_x moves along H
    (axis 0), shift_y along W (axis 1). Shapes: H x W x C -> H x W x C.
    """

    def __init__(self, padding: int = 3):
        if padding < 0:
            raise ValueError(f"RandomCrop: padding must be >= 0, got {padding}")
        self.padding = int(padding)

    def __call__(self, img):
        img = _check_image("RandomCrop", img)
        p = self.padding
        shift_x, shift_y = np.random.randint(low=-p, high=p + 1, size=2)
        h, w = img.shape[:2]
        pad = ((p, p), (p, p)) + ((0, 0),) * (img.ndim - 2)
        padded = np.pad(img, pad)
        return padded[p + shift_x: p + shift_x + h, p + shift_y: p + shift_y + w]
