"""Dataset, NDArrayDataset and the data-directory lookup (the DataLoader is in data_loader)."""
import os
from typing import Optional

__all__ = ["Dataset", "NDArrayDataset", "find_data_dir"]


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
