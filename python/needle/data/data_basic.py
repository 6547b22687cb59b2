"""Dataset, NDArrayDataset, DataLoader and the data-directory lookup.

The DataLoader's only random draw is one `np.random.permutation(len(dataset))` per `__iter__`
call when shuffling (taken when `iter()` is called, not at the first batch).
"""
import os
from collections.abc import Iterator
from typing import Optional

import numpy as np

from ..autograd import Tensor
from ..backend_selection import cpu

__all__ = ["DataLoader", "Dataset", "NDArrayDataset", "find_data_dir"]


def find_data_dir(data_dir: Optional[str] = None, must_exist: bool = False) -> str:
    """Resolve the directory holding the datasets (MNIST files live in it or in `mnist/`).

    Order: the explicit `data_dir` argument, then the environment variable NEEDLE_DATA, then
    `~/.needle/data`; the first one given wins. With `must_exist=True` a resolved directory
    that does not exist raises FileNotFoundError naming where it came from.

    Example:
        >>> os.environ["NEEDLE_DATA"] = "/data"; find_data_dir()
        '/data'
    """
    for source, path in (
        ("argument data_dir", data_dir),
        ("environment variable NEEDLE_DATA", os.environ.get("NEEDLE_DATA")),
        ("default", os.path.join("~", ".needle", "data")),
    ):
        if path:
            path = os.path.expanduser(os.fspath(path))
            if must_exist and not os.path.isdir(path):
                raise FileNotFoundError(
                    f"find_data_dir: {path} (from the {source}) is not a directory; pass "
                    "data_dir= or set NEEDLE_DATA to the folder holding the datasets"
                )
            return path
    raise AssertionError("unreachable: the default path is always set")


class Dataset:
    """Abstract dataset: subclasses implement `__getitem__` and `__len__`.

    Args:
        transforms: optional list of callables applied in order by `apply_transforms`.
    """

    def __init__(self, transforms: Optional[list] = None):
        self.transforms = transforms

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__}.__getitem__ is not implemented")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__}.__len__ is not implemented")

    def apply_transforms(self, x):
        """Apply each transform of `self.transforms` to `x`, in list order."""
        if self.transforms is not None:
            for tform in self.transforms:
                x = tform(x)
        return x


class NDArrayDataset(Dataset):
    """A dataset over equally long arrays: `ds[i]` -> tuple(a[i] for a in arrays).

    `i` may be an int, a slice or an integer index array (used by the DataLoader).
    """

    def __init__(self, *arrays):
        super().__init__()
        if not arrays:
            raise ValueError("NDArrayDataset: needs at least one array")
        lengths = [len(a) for a in arrays]
        if len(set(lengths)) != 1:
            raise ValueError(f"NDArrayDataset: arrays have different lengths {lengths}")
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, i) -> tuple:
        return tuple(a[i] for a in self.arrays)


class DataLoader:
    """Iterate over a dataset in batches of Tensors.

    Args:
        dataset: indexable with an integer index array (returning a tuple of batched fields),
            or else with single ints (items are then stacked).
        batch_size: batch length; the last batch may be shorter.
        shuffle: draw one `np.random.permutation(len(dataset))` per epoch (per `iter()`).
        device: device of the batch Tensors (default `ndl.cpu()`).
        dtype: dtype of the batch Tensors (default None: float32 in NDArray mode, the array's
            own dtype in numpy mode).
        sampler: an iterable of dataset indices (e.g. `needle.distributed.DistributedSampler`)
            read afresh each epoch; batches are consecutive chunks of it. Not with shuffle=True.
    Yields:
        tuple of Tensors, one per dataset field; e.g. MNIST -> (X (B, 784), y (B,)).

    Example:
        >>> loader = DataLoader(NDArrayDataset(X, y), batch_size=32, shuffle=True)
        >>> for xb, yb in loader: ...
    """

    def __init__(self, dataset: Dataset, batch_size: int = 1, shuffle: bool = False,
                 device=None, dtype=None, sampler=None):
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler and shuffle=True are mutually exclusive "
                             "(the sampler decides the order; shuffle it there)")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.device = device if device is not None else cpu()
        self.dtype = dtype
        self.sampler = sampler
        n = len(dataset) if sampler is None else len(sampler)
        self.ordering = self._split(np.arange(n))  # with a sampler: only the batch count

    def _split(self, order: np.ndarray) -> list[np.ndarray]:
        n = len(order)
        if n == 0:
            return []
        return np.array_split(order, range(self.batch_size, n, self.batch_size))

    def __len__(self) -> int:
        """Number of batches per epoch."""
        return len(self.ordering)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        if self.sampler is not None:
            self.ordering = self._split(np.fromiter(iter(self.sampler), dtype=np.int64))
        elif self.shuffle:
            self.ordering = self._split(np.random.permutation(len(self.dataset)))
        # The permutation is drawn above, eagerly; the generator only walks the batches.
        return self._batches(list(self.ordering))

    def _batches(self, ordering):
        for indices in ordering:
            # from_host: the loss reads the labels back without a device round trip
            yield tuple(
                Tensor.from_host(field, device=self.device, dtype=self.dtype)
                for field in self._fetch(indices)
            )

    def _fetch(self, indices: np.ndarray) -> tuple:
        try:
            batch = self.dataset[indices]
        except TypeError:
            batch = None  # dataset only takes single ints: stack the items instead
        if batch is None:
            items = [self.dataset[int(i)] for i in indices]
            if not isinstance(items[0], tuple):
                return (np.stack([np.asarray(x) for x in items]),)
            return tuple(np.stack([np.asarray(item[k]) for item in items])
                         for k in range(len(items[0])))
        if not isinstance(batch, tuple):
            batch = (batch,)
        return tuple(np.asarray(field) if not isinstance(field, Tensor) else field
                     for field in batch)
