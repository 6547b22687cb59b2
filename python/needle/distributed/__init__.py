"""needle.distributed: data-parallel training over MPI through mpi4py.

    import needle.distributed as dist

    dist.init()                                   # no-op world of size 1 without mpiexec
    model = dist.DistributedDataParallel(model)   # same start on every rank, averaged grads
    sampler = dist.DistributedSampler(train_set)  # each rank's share of the data
    loader = ndl.data.DataLoader(train_set, batch_size=32, sampler=sampler)

Launch with `mpiexec -n 2 python train.py`; see docs/distributed.md. mpi4py is the optional
extra `needle-dl[distributed]`; it is imported only when the process was started by mpiexec.
"""
from .dist_comm import (
    all_reduce,
    barrier,
    broadcast,
    get_rank,
    get_world_size,
    init,
    is_initialized,
)
from .dist_ddp import DistributedDataParallel
from .dist_sampler import DistributedSampler
from .dist_sync_batchnorm import SyncBatchNorm, convert_sync_batchnorm

__all__ = [
    "DistributedDataParallel",
    "DistributedSampler",
    "SyncBatchNorm",
    "all_reduce",
    "barrier",
    "broadcast",
    "convert_sync_batchnorm",
    "get_rank",
    "get_world_size",
    "init",
    "is_initialized",
]
