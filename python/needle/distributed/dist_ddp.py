"""DistributedDataParallel: one model replica per rank, gradients averaged during backward().

How a step goes, with R ranks each running forward and backward on its own share of the batch:

1. Construction: every rank checks that all ranks hold the same model (parameter and buffer
   names, shapes, order), then rank 0's parameters and buffers are broadcast, so replicas built
   from different seeds start equal.
2. The parameters are grouped, in reverse order (the order backward produces their
   gradients), into buckets of at most `bucket_mb` MiB, each with one flat host buffer.
3. backward(): a post-accumulate-grad hook on each parameter copies its `.grad` into its
   bucket's buffer. When a bucket is complete it is launched with a non-blocking `Iallreduce`,
   so communication overlaps the rest of backward. Buckets are always launched in index order,
   which keeps the collectives in the same order on every rank.
4. When backward ends (an autograd end-of-backward callback), the remaining buckets are launched
   (a parameter that got no gradient contributes its current `.grad`, or zeros), every request is
   waited for, and each `.grad` is replaced by the average over the ranks.

Gradients are staged through host memory (numpy buffers), also for GPU tensors.

Under ndl.jit (a jitted training step), the hooks only note the backward pass; at its end all
gradients are reduced by one `jit_capture.host_op` (read to the host, all-reduced, written into
device buffers the reducer keeps), which every replay runs again: no overlap with backward, the
same numbers as eager.
"""
import contextlib
import time

import numpy as np

from ..autograd import Tensor, queue_backward_end_callback
from ..jit_capture import JitError, capturing, host_op
from ..jit_live import guard, in_jit
from ..nn import Module
from .dist_comm import _world

__all__ = ["DistributedDataParallel"]


class _Bucket:
    """Parameters whose gradients are reduced together through one flat host buffer."""

    def __init__(self, params):
        self.params = params
        self.offsets = []
        total = 0
        for p in params:
            self.offsets.append(total)
            total += int(np.prod(p.shape))
        self.buffer = np.zeros(total, dtype=np.result_type(*[np.dtype(p.dtype) for p in params]))
        self.ready = set()
        self.request = None


class DistributedDataParallel(Module):
    """Wrap `module` for data-parallel training over the MPI world.

    Calls are forwarded to `module` (`ddp(x)` is `module(x)`); `ddp.module` is the wrapped
    model (save its `state_dict()`, not the wrapper's, whose names carry a `module.` prefix).

    Args:
        module: an nn.Module with at least one parameter, identical in structure on every rank.
        bucket_mb: bucket size in MiB (at least one parameter per bucket).
        sync_bn: replace every BatchNorm1d/2d in `module` with SyncBatchNorm first, so batch
            statistics are computed over the global batch (default False: per-rank statistics).
    Raises:
        ValueError: no trainable parameters, bucket_mb <= 0, or a model that differs across
            ranks (every rank raises the same message).
        RuntimeError: used under mpiexec before `needle.distributed.init()`.

    Example:
        >>> model = DistributedDataParallel(nn.Linear(4, 2))
        >>> loss = model(ndl.Tensor(np.ones((3, 4)))).sum(); loss.backward()  # grads averaged
    """

    def __init__(self, module, bucket_mb=25, sync_bn=False):
        super().__init__()
        state = _world("DistributedDataParallel")
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: expected an nn.Module, got "
                            f"{type(module).__name__}")
        if not bucket_mb > 0:
            raise ValueError(f"DistributedDataParallel: bucket_mb must be > 0, got {bucket_mb}")
        if sync_bn:
            from .dist_sync_batchnorm import convert_sync_batchnorm
            module = convert_sync_batchnorm(module)
        self.module = module
        named = _unique_trainable(module)
        if not named:
            raise ValueError(f"DistributedDataParallel: {type(module).__name__} has no trainable "
                             "parameters, so there is nothing to average")
        comm = None
        if state.comm is not None:
            _check_same_model(state.comm, module, named, bucket_mb)
            # Own communicator: the buckets' collectives never interleave with the user's.
            comm = state.comm.Dup()
            _broadcast_state(comm, module)
        # A plain object, not a Module attribute walk target: parameters() stays module's.
        self._reducer = _Reducer([p for _, p in named], bucket_mb, comm, state)

    @property
    def comm_wait_seconds(self):
        """Total time backward() spent waiting for gradient allreduces to finish."""
        return self._reducer.wait_seconds

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Inside this block backward() does not average gradients (for gradient accumulation).

        The gradients stay as this rank computed them; the first backward() outside the block
        averages whatever `.grad` holds then (with accumulating `.grad`, the sum of the local
        micro-batches), as torch's DDP does.
        """
        previous, self._reducer.sync = self._reducer.sync, False
        try:
            yield
        finally:
            self._reducer.sync = previous


class _Reducer:
    """The gradient averaging of one DDP: buckets, hooks and the end-of-backward wait."""

    def __init__(self, params, bucket_mb, comm, state):
        self.comm, self.mpi, self.size = comm, state.mpi, state.size
        self.buckets = _make_buckets(params[::-1], bucket_mb * 2**20)
        self.where = {id(p): (b, i) for b in self.buckets for i, p in enumerate(b.params)}
        self.sync = True
        self.in_backward = False
        self.next_launch = 0
        self.wait_seconds = 0.0
        self.launched_early = 0  # buckets launched before backward ended (overlap; for tests)
        self.handles = [p.register_post_accumulate_grad_hook(self.grad_ready) for p in params]
        self.grads = None  # under ndl.jit: {id(param): device array its averaged grad goes to}

    def make_jit_buffers(self):
        """Device arrays for ndl.jit: one per parameter for its averaged gradient, and zeros
        that a parameter without a gradient contributes (made before any capture, so that
        the captures and replays reuse them)."""
        params = [p for b in self.buckets for p in b.params]
        self.grads = {id(p): p.device.full(p.shape, 0.0, dtype=p.dtype) for p in params}
        largest = max(params, key=lambda p: int(np.prod(p.shape)))
        self.zeros = largest.device.full((int(np.prod(largest.shape)),), 0.0, dtype=largest.dtype)

    def finish_captured(self):
        """finish() inside an ndl.jit capture: one host_op reduces every gradient (a missing
        one contributes zeros) into the reducer's device arrays, which become the `.grad`s."""
        if self.grads is None:
            raise JitError("DistributedDataParallel: a jitted step was captured before its "
                           "eager call ran backward")
        params = [p for b in self.buckets for p in b.params]
        outs = [self.grads[id(p)] for p in params]
        grads = [self.zeros[:out.size].reshape(out.shape) if p.grad is None
                 else p.grad.realize_cached_data() for p, out in zip(params, outs)]
        host_op(self.reduce_on_host, grads, outs)
        for p, out in zip(params, outs):
            p.grad = Tensor.make_const(out)

    def reduce_on_host(self, *grads):
        """All-reduce host gradients (in bucket order) and average them, as finish() does."""
        values = iter(grads)
        for b in self.buckets:
            for p, off in zip(b.params, b.offsets):
                b.buffer[off:off + int(np.prod(p.shape))] = next(values).reshape(-1)
            b.request = self.comm.Iallreduce(self.mpi.IN_PLACE, b.buffer, op=self.mpi.SUM)
        start = time.perf_counter()
        self.mpi.Request.Waitall([b.request for b in self.buckets])
        self.wait_seconds += time.perf_counter() - start
        out = []
        for b in self.buckets:
            b.request = None
            np.divide(b.buffer, self.size, out=b.buffer, casting="unsafe")
            out += [b.buffer[off:off + int(np.prod(p.shape))] for p, off in zip(b.params,
                                                                                 b.offsets)]
        return out

    def grad_ready(self, param):
        guard(("ddp_sync", id(self)), lambda: self.sync)  # under ndl.jit: no_sync() recaptures
        if self.grads is None and in_jit() and not capturing():
            self.make_jit_buffers()  # a jitted step's eager call: before its captures
        if not self.sync or self.comm is None:
            return
        if not self.in_backward:  # first gradient of this backward pass
            self.in_backward = True
            self.next_launch = 0
            for b in self.buckets:
                b.ready.clear()
            queue_backward_end_callback(self.finish)
        if capturing():  # ndl.jit: every gradient is reduced at the end (finish_captured)
            return
        bucket, i = self.where[id(param)]
        _copy_grad(bucket, i, param)
        bucket.ready.add(i)
        self.launched_early += self.launch_ready()

    def launch_ready(self):
        """Launch complete buckets in index order (the same order on every rank); returns how
        many were launched."""
        first = self.next_launch
        while self.next_launch < len(self.buckets):
            b = self.buckets[self.next_launch]
            if len(b.ready) < len(b.params):
                break
            b.request = self.comm.Iallreduce(self.mpi.IN_PLACE, b.buffer, op=self.mpi.SUM)
            self.next_launch += 1
        # Open MPI progresses non-blocking collectives only inside MPI calls: nudge them.
        self.mpi.Request.Testall([b.request for b in self.buckets[:self.next_launch]])
        return self.next_launch - first

    def finish(self):
        """End of backward: launch what is left, wait, write the averaged gradients."""
        self.in_backward = False
        if capturing():
            self.finish_captured()
            return
        for b in self.buckets[self.next_launch:]:
            for i, p in enumerate(b.params):
                if i not in b.ready:  # no gradient this pass: contribute what .grad holds
                    _copy_grad(b, i, p)
                    b.ready.add(i)
        self.launch_ready()
        start = time.perf_counter()
        self.mpi.Request.Waitall([b.request for b in self.buckets])
        self.wait_seconds += time.perf_counter() - start
        for b in self.buckets:
            b.request = None
            np.divide(b.buffer, self.size, out=b.buffer, casting="unsafe")
            for p, off in zip(b.params, b.offsets):
                n = int(np.prod(p.shape))
                p.grad = Tensor(b.buffer[off:off + n].reshape(p.shape), device=p.device,
                                dtype=p.dtype, requires_grad=False)


def _unique_trainable(module):
    """(name, Parameter) of each distinct parameter that requires grad, in parameters() order."""
    seen, out = set(), []
    for name, p in module.named_parameters():
        if id(p) not in seen and p.requires_grad:
            seen.add(id(p))
            out.append((name, p))
    return out


def _make_buckets(params, cap_bytes):
    buckets, current, size = [], [], 0
    for p in params:
        nbytes = int(np.prod(p.shape)) * np.dtype(p.dtype).itemsize
        if current and size + nbytes > cap_bytes:
            buckets.append(_Bucket(current))
            current, size = [], 0
        current.append(p)
        size += nbytes
    if current:
        buckets.append(_Bucket(current))
    return buckets


def _copy_grad(bucket, i, param):
    off, n = bucket.offsets[i], int(np.prod(param.shape))
    if param.grad is None:
        bucket.buffer[off:off + n] = 0
    else:
        bucket.buffer[off:off + n] = param.grad.numpy().reshape(-1)


def _signature(module, named):
    params = [(name, tuple(p.shape)) for name, p in named]
    buffers = [(name, tuple(b.shape)) for name, b in module.named_buffers()]
    return params, buffers


def _check_same_model(comm, module, named, bucket_mb):
    """Compare every rank's signature with rank 0's; all ranks raise the same ValueError."""
    signatures = comm.allgather(_signature(module, named))
    problems = []
    sizes = comm.allgather(bucket_mb)
    if len(set(sizes)) > 1:
        problems.append(f"bucket_mb differs: {sizes} on ranks 0..{len(sizes) - 1}")
    for rank, sig in enumerate(signatures[1:], start=1):
        for what, mine, ref in (("parameters", sig[0], signatures[0][0]),
                                ("buffers", sig[1], signatures[0][1])):
            if mine == ref:
                continue
            if len(mine) != len(ref):
                problems.append(f"rank {rank} has {len(mine)} {what}, rank 0 has {len(ref)}")
            diff = next(((a, b) for a, b in zip(mine, ref) if a != b), None)
            if diff is not None:
                problems.append(f"rank {rank} has {what[:-1]} {diff[0][0]!r} {diff[0][1]} "
                                f"where rank 0 has {diff[1][0]!r} {diff[1][1]}")
    if problems:
        raise ValueError("DistributedDataParallel: the model differs across ranks (names, "
                         "shapes and order must match): " + "; ".join(problems))


def _broadcast_state(comm, module):
    """Rank 0's parameters and buffers to every rank, as one flat message, written in place."""
    tensors = [p for p in module.parameters()] + [b for _, b in module.named_buffers()]
    arrays = [t.numpy() for t in tensors]
    flat = np.concatenate([a.reshape(-1).astype(np.float64) for a in arrays])
    comm.Bcast(flat, root=0)
    off = 0
    for t, a in zip(tensors, arrays):
        n = a.size
        value = flat[off:off + n].reshape(a.shape).astype(a.dtype)
        t.data = Tensor(value, device=t.device, dtype=t.dtype, requires_grad=False)
        off += n
