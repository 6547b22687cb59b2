"""The three backends export one identical function table (docs/backends.md)."""
import importlib

import pytest

import needle.backend_ndarray as nd


def table(mod):
    """The public names of a backend: `__all__` for the Python spec, dir() for native modules."""
    names = getattr(mod, "__all__", None) or [n for n in dir(mod) if not n.startswith("_")]
    return sorted(set(names) | {"__tile_size__"} if hasattr(mod, "__tile_size__") else set(names))


def _native(name):
    try:
        return importlib.import_module(f"needle.backend_ndarray.{name}")
    except ImportError:
        return None


def test_cpu_table_matches_numpy_spec():
    from needle.backend_ndarray import ndarray_backend_cpu, ndarray_backend_numpy
    assert table(ndarray_backend_cpu) == table(ndarray_backend_numpy)


def test_cuda_table_matches_numpy_spec_when_built():
    from needle.backend_ndarray import ndarray_backend_numpy
    cuda = _native("ndarray_backend_cuda")
    if cuda is None:
        assert not nd.cuda().enabled()
        pytest.skip("CUDA backend not built on this machine")
    assert table(cuda) == table(ndarray_backend_numpy)


def test_emulated_cuda_table_matches_numpy_spec_when_built():
    from needle.backend_ndarray import ndarray_backend_numpy
    emu = _native("ndarray_backend_cuda_emu")  # (its ASan twin loads only with libasan preloaded)
    if emu is None:
        pytest.skip("ndarray_backend_cuda_emu not built (NEEDLE_CUDA_EMULATOR=ON at install)")
    assert table(emu) == table(ndarray_backend_numpy)


def test_spec_table_is_documented():
    """Every function of the numpy spec is named in docs/backends.md."""
    import pathlib
    from needle.backend_ndarray import ndarray_backend_numpy
    doc = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "backends.md").read_text()
    missing = [n for n in table(ndarray_backend_numpy) if n not in doc and n != "Array"]
    assert not missing, f"undocumented backend functions: {missing}"


def test_tile_sizes_agree():
    from needle.backend_ndarray import ndarray_backend_cpu, ndarray_backend_numpy
    assert ndarray_backend_cpu.__tile_size__ == ndarray_backend_numpy.__tile_size__
