"""Downloads through pooch and the data folder, against an HTTP server on 127.0.0.1 in a thread
(no internet): checksums, mirrors, retries, atomic files, no empty folders left behind, the
platformdirs cache folder and NEEDLE_DATA."""
import functools
import hashlib
import http.server
import os
import sys
import tarfile
import threading

import numpy as np
import platformdirs
import pytest
from needle import data
from needle.data import CIFAR10Dataset, data_download
from test_cifar import NAMES, write_cifar_batches

REFUSED = "http://127.0.0.1:9/"  # the discard port: nothing listens, the connection is refused


def _md5(raw):
    return hashlib.md5(raw).hexdigest()


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the server's folder; answers 503 to the first `failures` requests."""

    def do_GET(self):
        server = self.server
        server.requests.append(self.path)
        if server.failures > 0:
            server.failures -= 1
            self.send_error(503, "try again")
            return
        super().do_GET()

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def server(tmp_path):
    """(base URL, served folder, server); the folder starts empty."""
    folder = tmp_path / "served"
    folder.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(folder)))
    httpd.requests, httpd.failures = [], 0
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/", folder, httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def no_retries(monkeypatch):
    """pooch waits 1 s, 2 s, ... between tries: tests that want retries ask for them."""
    monkeypatch.setattr(data_download, "DOWNLOAD_RETRIES", 0)


def test_download_file_verifies_and_is_atomic(server, tmp_path):
    url, served, _ = server
    raw = os.urandom(50_000)
    (served / "f.bin").write_bytes(raw)
    dest = tmp_path / "out" / "dest.bin"
    assert data_download.download_file(url + "f.bin", str(dest), md5=_md5(raw)) == str(dest)
    assert dest.read_bytes() == raw
    with pytest.raises(ValueError) as info:
        data_download.download_file(url + "f.bin", str(tmp_path / "out" / "bad.bin"),
                                    md5="0" * 32)
    message = str(info.value)  # names the file and both hashes
    assert "bad.bin" in message and "0" * 32 in message and _md5(raw) in message
    assert sorted(os.listdir(tmp_path / "out")) == ["dest.bin"]  # no partial file left


def test_failed_download_leaves_no_empty_folders(server, tmp_path):
    url, served, _ = server
    (served / "f.bin").write_bytes(b"needle")
    with pytest.raises(ValueError, match="does not match"):
        data_download.download_file(url + "f.bin", str(tmp_path / "a" / "b" / "f.bin"), "0" * 32)
    with pytest.raises(OSError):
        data_download.download_file(REFUSED + "f.bin", str(tmp_path / "c" / "f.bin"), "0" * 32)
    assert sorted(os.listdir(tmp_path)) == ["served"]


def test_unsupported_url_scheme_is_a_clear_error(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"needle")
    with pytest.raises(ValueError, match=r"download_file: file://.*protocol"):
        data_download.download_file(src.as_uri(), str(tmp_path / "out" / "x.bin"))
    assert not (tmp_path / "out").exists()


def test_retries_a_failing_server(server, tmp_path, monkeypatch):
    url, served, httpd = server
    (served / "f.bin").write_bytes(b"needle" * 100)
    httpd.failures = 1
    monkeypatch.setattr(data_download, "DOWNLOAD_RETRIES", 1)
    dest = tmp_path / "f.bin"
    data_download.download_file(url + "f.bin", str(dest), _md5(b"needle" * 100))
    assert dest.read_bytes() == b"needle" * 100 and len(httpd.requests) >= 2


def _mnist_like(served, names):
    """Small stand-ins for MNIST files, served; returns their md5 table."""
    table = {}
    for name in names:
        raw = name.encode() * 10
        (served / name).write_bytes(raw)
        table[name] = _md5(raw)
    return table


def test_mirror_list_falls_back_to_the_next_url(server, tmp_path, monkeypatch):
    url, served, httpd = server
    names = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    monkeypatch.setattr(data_download, "MNIST_FILES", _mnist_like(served, names))
    monkeypatch.setattr(data_download, "MNIST_MIRRORS", (REFUSED, url))
    found = data_download.ensure_mnist(str(tmp_path / "data"), ("t10k",))
    assert found["t10k"] == tuple(str(tmp_path / "data" / "mnist" / n) for n in names)
    assert sorted(httpd.requests) == ["/" + n for n in sorted(names)]


def test_checksum_mismatch_on_every_mirror(server, tmp_path, monkeypatch):
    url, served, _ = server
    names = ("t10k-images-idx3-ubyte.gz",)
    table = _mnist_like(served, names)
    monkeypatch.setattr(data_download, "MNIST_FILES", {n: "f" * 32 for n in table})
    monkeypatch.setattr(data_download, "MNIST_MIRRORS", (url, url))
    with pytest.raises(data_download.DataUnavailableError) as info:
        data_download.ensure_mnist(str(tmp_path / "data"), ("t10k",))
    message = str(info.value)
    assert names[0] in message and "f" * 32 in message and table[names[0]] in message
    assert "no network access" not in message  # the server answered: a checksum problem
    assert not (tmp_path / "data").exists()


def test_ensure_cifar10_downloads_and_extracts(server, tmp_path, monkeypatch):
    url, served, _ = server
    contents = write_cifar_batches(str(tmp_path / "src" / "cifar-10-batches-py"))
    archive = served / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    files = {n: _md5((tmp_path / "src" / "cifar-10-batches-py" / n).read_bytes()) for n in NAMES}
    monkeypatch.setattr(data_download, "CIFAR10_URL", url + archive.name)
    monkeypatch.setattr(data_download, "CIFAR10_MD5", _md5(archive.read_bytes()))
    monkeypatch.setattr(data_download, "CIFAR10_FILES", files)
    root = tmp_path / "data"
    folder = data_download.ensure_cifar10(str(root))
    assert folder == str(root / "cifar-10-batches-py")
    ds = CIFAR10Dataset(folder, train=False)
    np.testing.assert_array_equal(ds.labels, contents["test_batch"][1])
    # Present files are used as they are (no second download).
    monkeypatch.setattr(data_download, "CIFAR10_URL", REFUSED + "none.tar.gz")
    assert data_download.ensure_cifar10(str(root)) == folder


def test_offline_errors_name_the_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(data_download, "MNIST_MIRRORS", (REFUSED,))
    monkeypatch.setattr(data_download, "CIFAR10_URL", REFUSED + "c.tar.gz")
    with pytest.raises(data_download.DataUnavailableError,
                       match=r"no network access\?.*" + str(tmp_path / "mnist")):
        data_download.ensure_mnist(str(tmp_path), ("t10k",))
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        data_download.ensure_cifar10(str(tmp_path))
    with pytest.raises(data_download.DataUnavailableError, match="not found"):
        data_download.ensure_mnist(str(tmp_path), ("train",), download=False)
    assert os.listdir(tmp_path) == []  # nothing half-written, no empty folder


def test_ensure_mnist_finds_both_layouts(tmp_path, mnist_dir):
    names = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    for folder in (tmp_path / "nested" / "mnist", tmp_path / "flat"):
        folder.mkdir(parents=True)
        for name in names:
            os.symlink(mnist_dir / name, folder / name)
    for root, folder in ((tmp_path / "nested", tmp_path / "nested" / "mnist"),
                         (tmp_path / "flat", tmp_path / "flat")):
        found = data_download.ensure_mnist(str(root), ("t10k",), download=False)
        assert found == {"t10k": tuple(str(folder / n) for n in names)}


def test_data_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NEEDLE_DATA", str(tmp_path))
    monkeypatch.setattr(data_download, "MNIST_MIRRORS", (REFUSED,))
    with pytest.raises(data_download.DataUnavailableError, match=str(tmp_path)):
        data_download.ensure_mnist(None, ("t10k",))


def test_default_data_dir_is_the_platformdirs_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("NEEDLE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    expected = platformdirs.user_cache_dir("needle", appauthor=False)
    assert expected.startswith(str(tmp_path))
    assert data.find_data_dir() == data.default_data_dir() == expected
    (tmp_path / "home" / ".needle" / "data").mkdir(parents=True)  # an earlier version's
    assert data.find_data_dir() == str(tmp_path / "home" / ".needle" / "data")
    monkeypatch.setenv("NEEDLE_DATA", str(tmp_path / "env"))
    assert data.find_data_dir() == str(tmp_path / "env")


def test_progress_bar_is_optional(server, tmp_path, monkeypatch):
    """Without tqdm the download runs all the same, with no bar."""
    url, served, _ = server
    (served / "f.bin").write_bytes(b"needle")
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now fails
    assert not data_download._has_tqdm()
    data_download.download_file(url + "f.bin", str(tmp_path / "f.bin"), _md5(b"needle"))
    assert (tmp_path / "f.bin").read_bytes() == b"needle"
