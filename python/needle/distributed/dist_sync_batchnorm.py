"""SyncBatchNorm: batch normalisation with statistics over the global batch of all ranks.

Plain BatchNorm normalises each rank's share of the batch with that share's statistics. With
small per-rank batches those statistics are noisy, and the model no longer computes what one
process would on the whole batch. SyncBatchNorm sums the per-channel statistics over the ranks:

    M    = sum over ranks of the per-rank count (N*H*W)
    mean = allreduce(sum x) / M
    var  = allreduce(sum (x - mean)^2) / M          (biased, two passes for accuracy)
    y    = weight * (x - mean) / sqrt(var + eps) + bias

The allreduce is an autograd op (`AllReduceSum`) whose gradient is again an allreduce-sum, so
backward() through this composition gives each rank d(sum of all ranks' losses)/dx, the same
rule as torch's SyncBatchNorm. With DDP averaging the parameter gradients, R ranks on B samples
each match one process on the R*B samples to float32 round-off.

In a world of size 1 (or in eval mode) it is exactly BatchNorm (the fused op).
"""
import numpy as np

from ..autograd import Tensor, TensorOp
from ..backend_selection import array_api
from ..nn import BatchNorm1d, Module
from ..ops import broadcast_to, power_scalar, reshape, summation
from ..jit_capture import capturing, host_op
from .dist_comm import _world

__all__ = ["AllReduceSum", "SyncBatchNorm", "convert_sync_batchnorm"]


class AllReduceSum(TensorOp):
    """y = the sum of x over all ranks (a new array; x unchanged). Gradient: allreduce-sum.

    Every rank must run it on same-shaped x in the same order (forward and backward alike).
    """

    def __init__(self, comm, mpi):
        self.comm, self.mpi = comm, mpi

    def compute(self, x):
        if capturing():  # ndl.jit: a host_op tape entry, so every replay all-reduces again
            out = x.device.empty(x.shape)
            host_op(_HostAllReduce(self.comm, self.mpi), [x], [out])
            return out
        # staged through host memory (a numpy copy), also for GPU arrays
        host = np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x.numpy()
        host = host.copy() if host is x else host
        self.comm.Allreduce(self.mpi.IN_PLACE, host, op=self.mpi.SUM)
        if isinstance(x, np.ndarray):
            return host
        return array_api.array(host, device=x.device)

    def gradient(self, out_grad, node):
        return AllReduceSum(self.comm, self.mpi)(out_grad)


class _HostAllReduce:
    """AllReduceSum's host function for a jit host_op; two over the same communicator are
    equal (ndl.jit compares the host functions of its two captures)."""

    def __init__(self, comm, mpi):
        self.comm, self.mpi = comm, mpi

    def __eq__(self, other):
        return isinstance(other, _HostAllReduce) and other.comm is self.comm

    __hash__ = None

    def __call__(self, host):
        host = np.array(host, dtype=np.float32)  # a copy: the input's host values stay its own
        self.comm.Allreduce(self.mpi.IN_PLACE, host, op=self.mpi.SUM)
        return [host]


class SyncBatchNorm(BatchNorm1d):
    """BatchNorm over channel axis 1 of an N x C or N x C x H x W input, with statistics over
    every rank's batch (training mode); eval mode uses the running statistics as BatchNorm.

    Args / parameters / buffers: as `nn.BatchNorm1d(dim, eps, momentum)`; the running statistics
    are updated with the global mean and the global biased variance, so they are equal on
    every rank.
    Shapes: x (N, C, ...) -> same shape. The per-rank N may differ.

    Example:
        >>> bn = SyncBatchNorm(16)            # or DistributedDataParallel(model, sync_bn=True)
        >>> bn(ndl.Tensor(np.ones((8, 16, 4, 4)))).shape
        (8, 16, 4, 4)
    """

    def forward(self, x: Tensor) -> Tensor:
        if len(x.shape) < 2 or x.shape[1] != self.dim:
            raise ValueError(f"SyncBatchNorm: expected input (N, {self.dim}, ...), got "
                             f"{tuple(x.shape)}")
        return self._normalize(x)

    def _normalize(self, x: Tensor) -> Tensor:
        state = _world("SyncBatchNorm")
        if not self.training or state.comm is None:
            return super()._normalize(x)
        shape = tuple(x.shape)
        axes = (0,) + tuple(range(2, len(shape)))
        cshape = (1, self.dim) + (1,) * (len(shape) - 2)
        count = state.comm.allreduce(int(np.prod(shape)) // self.dim)
        if count == 0:
            raise ValueError("SyncBatchNorm: the global batch is empty")
        reduce = AllReduceSum(state.comm, state.mpi)

        def per_channel(t):
            return broadcast_to(reshape(t, cshape), shape)

        mean = reduce(summation(x, axes=axes)) / count
        centered = x - per_channel(mean)
        var = AllReduceSum(state.comm, state.mpi)(summation(centered * centered, axes=axes)) / count
        scale = reshape(self.weight, (self.dim,)) * power_scalar(var + self.eps, -0.5)
        self._update_running_stats(mean.realize_cached_data().reshape((self.dim,)),
                                   var.realize_cached_data().reshape((self.dim,)))
        return centered * per_channel(scale) + per_channel(reshape(self.bias, (self.dim,)))


def convert_sync_batchnorm(module, _seen=None):
    """Replace every BatchNorm1d / BatchNorm2d inside `module` by a SyncBatchNorm that shares its
    parameters and running statistics (so an optimizer built earlier still holds them).

    Returns `module` (or the replacement, if `module` itself is a BatchNorm).
    """
    if isinstance(module, BatchNorm1d) and not isinstance(module, SyncBatchNorm):
        sync = SyncBatchNorm(module.dim, eps=module.eps, momentum=module.momentum,
                             device=module.weight.device, dtype=module.weight.dtype)
        sync.weight, sync.bias = module.weight, module.bias
        sync.running_mean, sync.running_var = module.running_mean, module.running_var
        sync.training = module.training
        return sync
    seen = set() if _seen is None else _seen
    if id(module) in seen:  # a module referring back to a parent
        return module
    seen.add(id(module))
    for key, value in list(module.__dict__.items()):
        module.__dict__[key] = _convert_value(value, seen)
    return module


def _convert_value(value, seen):
    if isinstance(value, Module):
        return convert_sync_batchnorm(value, seen)
    if isinstance(value, list):
        value[:] = [_convert_value(v, seen) for v in value]
        return value
    if isinstance(value, tuple):
        return tuple(_convert_value(v, seen) for v in value)
    if isinstance(value, dict):
        for k in list(value):
            value[k] = _convert_value(value[k], seen)
        return value
    return value
