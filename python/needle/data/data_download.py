"""Finding, downloading and checking the data files needle reads (MNIST, CIFAR-10).

The data directory is resolved by `find_data_dir` (argument, then $NEEDLE_DATA, then
~/.needle/data). Missing files are downloaded from the canonical sources, verified against the
published md5 checksums and moved into place atomically; without network access the error names
the folder to put the files in.
"""
import contextlib
import hashlib
import os
import tarfile
import tempfile
import urllib.request

from .data_basic import find_data_dir
from .data_mnist import mnist_files

__all__ = [
    "CIFAR10_FILES",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "DataUnavailableError",
    "atomic_open",
    "download_file",
    "ensure_cifar10",
    "ensure_mnist",
]

# Published checksums of the gzipped IDX files (as distributed by the MNIST mirrors).
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_FOLDER = "cifar-10-batches-py"
# Published checksums of the extracted python-pickle batches.
CIFAR10_FILES = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}


class DataUnavailableError(FileNotFoundError):
    """Data files are missing and could not be downloaded."""


def _copy(src, out=None, bar=None):
    """Stream file object `src` into `out` (if given; updating a tqdm `bar`); returns the md5
    hex digest of what was read."""
    h = hashlib.md5()
    for chunk in iter(lambda: src.read(1 << 20), b""):
        if out is not None:
            out.write(chunk)
        h.update(chunk)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return h.hexdigest()


def _md5(path):
    with open(path, "rb") as f:
        return _copy(f)


def _progress(total, desc):
    """A tqdm byte counter when tqdm is installed, else None (tqdm is an optional dependency)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total or None, unit="B", unit_scale=True, desc=desc, leave=False)


@contextlib.contextmanager
def atomic_open(path):
    """Context manager: a binary file that replaces `path` only when the block succeeds.

    Writes go to a temp file in the same folder, which is fsync'ed and moved over `path` with
    os.replace; on an exception the temp file is removed and `path` is left untouched.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".part",
                               dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def download_file(url, dest, md5=None, timeout=30):
    """Download `url` to `dest` atomically (see `atomic_open`), with a tqdm progress bar.

    Args:
        url: source URL.
        dest: destination path; its folder is created if needed.
        md5: expected hex md5 of the downloaded bytes, or None to skip the check.
        timeout: socket timeout in seconds.

    Returns:
        dest.

    Raises:
        OSError: when the download fails (urllib.error.URLError included).
        ValueError: when the checksum does not match. `dest` is never left half-written.
    """
    with atomic_open(dest) as out, urllib.request.urlopen(url, timeout=timeout) as resp:
        bar = _progress(int(resp.headers.get("Content-Length") or 0), os.path.basename(dest))
        digest = _copy(resp, out, bar)
        if md5 is not None and digest != md5:
            raise ValueError(f"download_file: {url} has md5 {digest}, expected {md5}")
    return dest


def _download_any(name, urls, dest, md5, hint):
    errors = []
    for url in urls:
        try:
            return download_file(url, dest, md5)
        except (OSError, ValueError) as e:
            errors.append(f"{url}: {e}")
    raise DataUnavailableError(
        f"{name} is missing and could not be downloaded (no network access?); put the files "
        f"in {hint}. Tried: " + "; ".join(errors))


def ensure_mnist(data_dir=None, splits=("train", "t10k"), download=True):
    """Locate the MNIST gzipped IDX files, downloading missing ones.

    Files are looked up in `<data_dir>/mnist/`, then `<data_dir>/` (`mnist_files`); missing ones
    are downloaded into `<data_dir>/mnist/` and checked against the published md5. Contents
    are validated when read (`parse_mnist` raises ValueError for truncated files).

    Args:
        data_dir: data folder (None: $NEEDLE_DATA, then ~/.needle/data).
        splits: any of "train", "t10k".
        download: allow downloading missing files.

    Returns:
        {split: (images_path, labels_path)}.

    Raises:
        DataUnavailableError: when files are missing and cannot be downloaded.
    """
    root = find_data_dir(data_dir)
    target = os.path.join(root, "mnist")
    paths = {}
    for split in splits:
        if split not in ("train", "t10k"):
            raise ValueError(f"ensure_mnist: unknown split {split!r} (use 'train' or 't10k')")
        try:
            paths[split] = mnist_files(root, split)
            continue
        except FileNotFoundError as e:
            if not download:
                raise DataUnavailableError(str(e)) from None
        for kind in ("images-idx3", "labels-idx1"):
            name = f"{split}-{kind}-ubyte.gz"
            if not os.path.isfile(os.path.join(target, name)):
                _download_any(f"MNIST file {name}", [m + name for m in MNIST_MIRRORS],
                              os.path.join(target, name), MNIST_FILES[name], target + "/")
        paths[split] = mnist_files(root, split)
    return paths


def _extract_cifar(archive, root):
    """Copy the six batches out of the archive into `<root>/cifar-10-batches-py/`, each one
    md5-checked and written atomically (only these known member names are read)."""
    folder = os.path.join(root, CIFAR10_FOLDER)
    with tarfile.open(archive, "r:gz") as tar:
        for name, md5 in CIFAR10_FILES.items():
            member = f"{CIFAR10_FOLDER}/{name}"
            try:
                src = tar.extractfile(member)
            except KeyError:
                src = None
            if src is None:
                raise ValueError(f"{archive}: {member} is missing from the archive")
            with atomic_open(os.path.join(folder, name)) as out:
                digest = _copy(src, out)
                if digest != md5:
                    raise ValueError(f"{archive}: {member} has md5 {digest}, expected {md5}")
    return folder


def ensure_cifar10(data_dir=None, download=True):
    """Locate (downloading and extracting if needed) the CIFAR-10 python-pickle batches.

    Args:
        data_dir: data folder (None: $NEEDLE_DATA, then ~/.needle/data).
        download: allow downloading the archive when batches are missing.

    Returns:
        the path of `<data_dir>/cifar-10-batches-py`, holding data_batch_1..5 and test_batch.

    Raises:
        DataUnavailableError: when batches are missing and cannot be downloaded.
        ValueError: when the archive fails its checksum.
    """
    root = find_data_dir(data_dir)
    folder = os.path.join(root, CIFAR10_FOLDER)
    missing = [n for n in CIFAR10_FILES if not os.path.isfile(os.path.join(folder, n))]
    if not missing:
        return folder
    if not download:
        raise DataUnavailableError(f"CIFAR-10 batches {missing} not found in {folder}/")
    archive = os.path.join(root, "cifar-10-python.tar.gz")
    if not os.path.isfile(archive) or _md5(archive) != CIFAR10_MD5:
        _download_any("CIFAR-10", [CIFAR10_URL], archive, CIFAR10_MD5,
                      f"{folder}/ (or the archive at {archive})")
    return _extract_cifar(archive, root)
