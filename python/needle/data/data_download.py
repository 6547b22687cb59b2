"""Finding, downloading and checking the data files needle reads (MNIST, CIFAR-10).

The data directory is resolved by `find_data_dir` (argument, then $NEEDLE_DATA, then the user
cache folder from platformdirs). Missing files are downloaded with pooch (retries, mirrors tried
in turn, published md5 checksums, atomic moves into place); without network access the error
names the folder to put the files in.
"""
import contextlib
import hashlib
import os
import tarfile
import tempfile

from .data_basic import find_data_dir
from .data_mnist import mnist_files

__all__ = [
    "CIFAR10_FILES",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "DOWNLOAD_RETRIES",
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


# A failed download is tried this many more times (pooch waits 1 s, then 2 s, ... between).
DOWNLOAD_RETRIES = 2


def _md5(path):
    """The md5 hex digest of a file (pooch.file_hash streams it in chunks)."""
    import pooch  # here, not at the top: it costs `import needle` ~45 ms

    return pooch.file_hash(os.fspath(path), alg="md5")


def _has_tqdm():
    """pooch draws its progress bar with tqdm, which is an optional dependency."""
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


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


@contextlib.contextmanager
def _no_new_empty_folders(folder):
    """On an exception, remove the folders up to `folder` that this block created and left
    empty (pooch creates the destination folder before it downloads)."""
    new, path = [], os.path.abspath(folder)
    while not os.path.exists(path):
        new.append(path)
        path = os.path.dirname(path)
    try:
        yield
    except BaseException:
        for path in new:  # deepest first
            with contextlib.suppress(OSError):
                os.rmdir(path)  # only succeeds when empty
        raise


def download_file(url, dest, md5=None, timeout=30):
    """Download `url` to `dest` with pooch: retried, md5-checked, moved into place atomically.

    pooch writes to a temp file beside `dest` and moves it there only when the checksum
    matches; a progress bar is shown when tqdm is installed. Folders created for `dest` are
    removed again when the download fails.

    Args:
        url: source URL (http, https or ftp).
        dest: destination path; its folder is created if needed.
        md5: expected hex md5 of the downloaded bytes, or None to skip the check.
        timeout: socket timeout in seconds.

    Returns:
        dest.

    Raises:
        OSError: when the download fails (requests' errors are OSErrors).
        ValueError: when the checksum does not match (naming the file and both hashes), or the
            URL scheme is not supported. `dest` is never left half-written.
    """
    import pooch

    folder, name = os.path.split(os.path.abspath(dest))
    fetcher = pooch.create(path=folder, base_url="", registry={name: md5 and f"md5:{md5}"},
                           urls={name: url}, retry_if_failed=DOWNLOAD_RETRIES)
    downloader = pooch.HTTPDownloader(progressbar=_has_tqdm(), timeout=timeout) \
        if url.startswith(("http://", "https://")) else None
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel("WARNING")  # pooch logs every attempt at INFO on stderr; tqdm shows progress
    with _no_new_empty_folders(folder):
        try:
            fetcher.fetch(name, downloader=downloader)
        except ValueError as e:
            raise ValueError(f"download_file: {url} -> {dest}: {e}") from None
        finally:
            logger.setLevel(level)
    return dest


def _download_any(name, urls, dest, md5, hint):
    """Try each mirror in turn; DataUnavailableError listing every failure when none works."""
    errors, offline = [], True
    for url in urls:
        try:
            return download_file(url, dest, md5)
        except (OSError, ValueError) as e:
            offline = offline and isinstance(e, OSError)
            errors.append(f"{url}: {e}")
    why = " (no network access?)" if offline else ""
    raise DataUnavailableError(
        f"{name} is missing and could not be downloaded{why}; put the files in {hint}. "
        f"Tried: " + "; ".join(errors))


def ensure_mnist(data_dir=None, splits=("train", "t10k"), download=True):
    """Locate the MNIST gzipped IDX files, downloading missing ones.

    Files are looked up in `<data_dir>/mnist/`, then `<data_dir>/` (`mnist_files`); missing ones
    are downloaded into `<data_dir>/mnist/` and checked against the published md5. Contents
    are validated when read (`parse_mnist` raises ValueError for truncated files).

    Args:
        data_dir: data folder (None: $NEEDLE_DATA, then the user cache folder: `find_data_dir`).
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
    md5-checked and written atomically (only these known member names are read).

    Hand-written rather than pooch.Untar, which extracts every member into `<archive>.untar/`
    without checking them one by one."""
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
                h = hashlib.md5()
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    out.write(chunk)
                    h.update(chunk)
                digest = h.hexdigest()
                if digest != md5:
                    raise ValueError(f"{archive}: {member} has md5 {digest}, expected {md5}")
    return folder


def ensure_cifar10(data_dir=None, download=True):
    """Locate (downloading and extracting if needed) the CIFAR-10 python-pickle batches.

    Args:
        data_dir: data folder (None: $NEEDLE_DATA, then the user cache folder: `find_data_dir`).
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
