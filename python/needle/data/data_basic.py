"""Dataset, NDArrayDataset and the data-directory lookup (the DataLoader is in data_loader)."""
import os
from typing import Optional

import platformdirs

__all__ = ["Dataset", "NDArrayDataset", "default_data_dir", "find_data_dir"]


def default_data_dir() -> str:
    """The data folder used when neither an argument nor $NEEDLE_DATA names one.

    `~/.needle/data` when that folder exists (where earlier versions downloaded to), else the
    user cache folder that platformdirs gives for "needle" (Linux: `$XDG_CACHE_HOME/needle`,
    by default `~/.cache/needle`; macOS: `~/Library/Caches/needle`).
    """
    legacy = os.path.expanduser(os.path.join("~", ".needle", "data"))
    if os.path.isdir(legacy):
        return legacy
    return platformdirs.user_cache_dir("needle", appauthor=False)


def find_data_dir(data_dir: Optional[str] = None, must_exist: bool = False) -> str:
    """Resolve the directory holding the datasets (MNIST files live in it or in `mnist/`).

    Order: the explicit `data_dir` argument, then the environment variable NEEDLE_DATA, then
    `default_data_dir()` (the user cache folder); the first one given wins. With
    `must_exist=True` a resolved directory that does not exist raises FileNotFoundError naming
    where it came from.

    Example:
        >>> os.environ["NEEDLE_DATA"] = "/data"; find_data_dir()
        '/data'
    """
    for source, path in (
        ("argument data_dir", data_dir),
        ("environment variable NEEDLE_DATA", os.environ.get("NEEDLE_DATA")),
        ("default", default_data_dir()),
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
