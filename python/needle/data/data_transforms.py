"""Image augmentations on single H x W x C numpy images.

Transforms hold no RNG of their own: each call makes exactly the numpy global-RNG draw listed
in the needle contract (flip: one `rand()`; crop: one `randint(size=2)`), whatever the inputs;
the extensions below list theirs (RandomCropPad: two `randint`; Compose, ToTensor: none).
"""
import numpy as np

__all__ = ["Compose", "RandomCrop", "RandomCropPad", "RandomFlipHorizontal", "ToTensor",
           "Transform"]


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


# ---------------------------------------------------------------------------------------------
# torchvision-style transforms (extensions). needle's transforms, Normalize (data_cifar)
# included, work on H x W x C images, so the torchvision idiom reads
#   Compose([RandomCropPad(32, padding=4), RandomFlipHorizontal(), ToTensor(layout="HWC"),
#            Normalize(mean, std)])
# and a final ToTensor() switches to C x H x W when the dataset does not do that itself.


class Compose(Transform):
    """Apply `transforms` in order: Compose([t1, t2])(x) = t2(t1(x))."""

    def __init__(self, transforms):
        if isinstance(transforms, (str, bytes)) or not hasattr(transforms, "__iter__"):
            raise TypeError(f"Compose: expected a list of transforms, got "
                            f"{type(transforms).__name__}")
        self.transforms = list(transforms)
        for i, t in enumerate(self.transforms):
            if not callable(t):
                raise TypeError(f"Compose: transform {i} ({type(t).__name__}) is not callable")

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self):
        return "Compose(" + ", ".join(type(t).__name__ for t in self.transforms) + ")"


class ToTensor(Transform):
    """H x W x C image -> float32 array, as torchvision's ToTensor: uint8 values are scaled by
    1/255, other dtypes keep their values. (It stays a numpy array: the DataLoader turns whole
    batches into Tensors.)

    Args:
        layout: "CHW" (torchvision's result: C x H x W; an H x W image becomes 1 x H x W) or
            "HWC" (keep channels last, for the transforms that follow and for datasets such as
            CIFAR10Dataset that transpose images themselves).
    """

    def __init__(self, layout: str = "CHW"):
        if layout not in ("CHW", "HWC"):
            raise ValueError(f"ToTensor: layout must be 'CHW' or 'HWC', got {layout!r}")
        self.layout = layout

    def __call__(self, img):
        img = _check_image("ToTensor", img)
        if img.ndim == 2:
            img = img[:, :, None]
        scale = np.float32(1.0 / 255 if img.dtype == np.uint8 else 1.0)
        if self.layout == "CHW":
            img = img.transpose(2, 0, 1)
        return np.ascontiguousarray(img, dtype=np.float32) * scale


class RandomCropPad(Transform):
    """torchvision's RandomCrop on an H x W x C image: pad by `padding`, then cut a random
    `size` window. (The contract's `RandomCrop(padding)` is a zero-filled shift instead.)

    Args:
        size: output (h, w), or an int for a square.
        padding: pixels added on every side (int), or (left/right, top/bottom), or
            (left, top, right, bottom), as torchvision.
        fill: value of constant padding.
        padding_mode: "constant", "edge", "reflect" or "symmetric".
    Draws: one `np.random.randint(0, H' - h + 1)` (top), then one
    `np.random.randint(0, W' - w + 1)` (left), H' x W' being the padded size.
    """

    _MODES = ("constant", "edge", "reflect", "symmetric")

    def __init__(self, size, padding=0, fill=0.0, padding_mode: str = "constant"):
        size = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
        if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer))
                                 or s < 1 for s in size):
            raise ValueError(f"RandomCropPad: size must be a positive int or (h, w), got {size}")
        pad = (padding,) if isinstance(padding, (int, np.integer)) else tuple(padding)
        if len(pad) not in (1, 2, 4) or any(isinstance(p, bool) or
                                            not isinstance(p, (int, np.integer)) or p < 0
                                            for p in pad):
            raise ValueError(f"RandomCropPad: padding must be ints >= 0 (1, 2 or 4 of them), "
                             f"got {padding}")
        if padding_mode not in self._MODES:
            raise ValueError(f"RandomCropPad: padding_mode must be one of {self._MODES}, got "
                             f"{padding_mode!r}")
        left, top, right, bottom = {1: pad * 4, 2: pad * 2, 4: pad}[len(pad)]
        self.size = tuple(int(s) for s in size)
        self.pads = (int(top), int(bottom), int(left), int(right))
        self.fill = fill
        self.padding_mode = padding_mode

    def __call__(self, img):
        img = _check_image("RandomCropPad", img)
        top, bottom, left, right = self.pads
        widths = ((top, bottom), (left, right)) + ((0, 0),) * (img.ndim - 2)
        if self.padding_mode == "constant":
            padded = np.pad(img, widths, mode="constant", constant_values=self.fill)
        else:
            padded = np.pad(img, widths, mode=self.padding_mode)
        h, w = self.size
        ph, pw = padded.shape[:2]
        if h > ph or w > pw:
            raise ValueError(f"RandomCropPad: crop {self.size} is larger than the padded image "
                             f"{(ph, pw)}")
        i = np.random.randint(0, ph - h + 1)
        j = np.random.randint(0, pw - w + 1)
        return padded[i:i + h, j:j + w]
