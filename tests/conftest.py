"""One device fixture for the whole suite: cpu_numpy, cpu, and cuda when a GPU (or the emulator) answers."""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import needle.backend_ndarray as nd

REPO = pathlib.Path(__file__).resolve().parents[1]

# cuda is the real GPU backend, or with NEEDLE_CUDA_EMULATOR=1 the same kernels on the CPU emulator
# (docs/cuda.md); without either it is skipped.
NO_CUDA = "no CUDA device (NEEDLE_CUDA_EMULATOR=1 runs these on the CPU emulator)"
_DEVICES = [
    pytest.param(nd.cpu_numpy, id="cpu_numpy"),
    pytest.param(nd.cpu, id="cpu"),
    pytest.param(nd.cuda, id="cuda", marks=pytest.mark.skipif(not nd.cuda().enabled(), reason=NO_CUDA)),
]


@pytest.fixture(params=_DEVICES)
def device(request):
    """Each NDArray device in turn (cuda only when enabled)."""
    return request.param()


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)


@pytest.fixture(scope="session")
def mnist_dir():
    """The shared MNIST test set: $NEEDLE_DATA/mnist, else ../shared/data/mnist beside the repo."""
    root = pathlib.Path(os.environ.get("NEEDLE_DATA", REPO.parent / "shared" / "data"))
    path = root / "mnist" if (root / "mnist").is_dir() else root
    if not (path / "t10k-images-idx3-ubyte.gz").exists():
        pytest.fail(f"MNIST files not found in {path}: set NEEDLE_DATA to the folder holding mnist/")
    return path


@pytest.fixture
def run_numpy_mode():
    """Run a script in a subprocess with NEEDLE_BACKEND=np (the mode is read once, at import).

    `run(script, marker, *argv)` asserts the script exits 0 and prints `marker`.
    """
    def run(script, marker, *argv, timeout=300):
        proc = subprocess.run([sys.executable, "-c", script, *argv], cwd=REPO, text=True,
                              env=dict(os.environ, NEEDLE_BACKEND="np"), capture_output=True,
                              timeout=timeout, check=False)
        assert proc.returncode == 0 and marker in proc.stdout, proc.stdout + proc.stderr
        return proc
    return run
