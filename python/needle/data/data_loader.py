"""DataLoader (contract §9 plus torch's keywords) and index samplers.

Randomness, in one place:
* Batch order. `shuffle=True` draws one permutation per `iter()`: `np.random.permutation(N)` from
  the global stream (the contract), or `generator.permutation(N)` when `generator=` is given.
  A `sampler` replaces this (and excludes `shuffle`).
* Augmentations. Transforms draw from numpy's global stream (the contract). With the
  contract's call (`num_workers=0`, no generator) they draw from it item by item, in order.
  Otherwise each epoch draws one base seed B (from `generator`, or from the global stream when
  there is no generator), and batch b is fetched with the global stream seeded by the pair
  (B, b) and restored afterwards. Batch b's items are therefore identical whichever process
  fetches it: `num_workers=0` and `num_workers=k` with the same `generator` seed yield the same
  batches, augmentations included.
"""
import multiprocessing
import sys
from collections.abc import Iterable, Iterator, Sized
from typing import Optional

import numpy as np

from ..autograd import Tensor
from ..backend_selection import cpu
from ..random import Generator, resolve_generator
from .data_worker import WorkerPool, fetch_batch, seeded_global_stream

__all__ = ["DataLoader", "RandomSampler", "Sampler", "SequentialSampler",
           "SubsetRandomSampler"]


class Sampler:
    """Base class: an iterable of dataset indices (one epoch per `iter()`), with `len`."""

    def __iter__(self) -> Iterator[int]:
        raise NotImplementedError(f"{type(self).__name__}.__iter__ is not implemented")


class SequentialSampler(Sampler):
    """0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source: Sized):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """A random permutation of the indices per epoch (one `permutation(N)` draw from
    `generator`, or the global stream), or `num_samples` draws with replacement
    (one `randint(0, N, num_samples)`)."""

    def __init__(self, data_source: Sized, replacement: bool = False, num_samples: Optional[int] = None,
                 generator=None):
        if not isinstance(replacement, bool):
            raise TypeError(f"RandomSampler: replacement must be a bool, got {replacement!r}")
        if num_samples is not None and (isinstance(num_samples, bool) or
                                        not isinstance(num_samples, (int, np.integer))
                                        or num_samples < 1):
            raise ValueError(f"RandomSampler: num_samples must be a positive int, got "
                             f"{num_samples!r}")
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = resolve_generator(generator, "RandomSampler")

    def __len__(self):
        return len(self.data_source) if self._num_samples is None else int(self._num_samples)

    def __iter__(self):
        n = len(self.data_source)
        if self.replacement:
            return iter(self.generator.randint(0, n, size=len(self)).tolist())
        order = self.generator.permutation(n)
        return iter(order[:len(self)].tolist())


class SubsetRandomSampler(Sampler):
    """The given indices in a random order per epoch (one `permutation(len(indices))`)."""

    def __init__(self, indices, generator=None):
        self.indices = list(indices)
        self.generator = resolve_generator(generator, "SubsetRandomSampler")

    def __len__(self):
        return len(self.indices)

    def __iter__(self):
        return iter([self.indices[i] for i in self.generator.permutation(len(self.indices))])


def _positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"DataLoader: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _default_context() -> str:
    # fork: workers start in milliseconds and the dataset is not pickled. The CPU backend's
    # thread pool starts afresh in a forked child (src/cpu_threads.h), so the usual
    # fork-after-threads hazard is not hit.
    return "fork" if sys.platform.startswith("linux") else "spawn"


class DataLoader:
    """Iterate over a dataset in batches of Tensors (torch's keywords, needle's contract).

    Args:
        dataset: indexable with an integer index array (returning a tuple of batched fields),
            or else with single ints (items are then stacked).
        batch_size: batch length; the last batch may be shorter (unless `drop_last`).
        shuffle: a new random order per epoch (see the module doc for which stream).
        sampler: an iterable of indices (e.g. `RandomSampler`) replacing the default order;
            excludes `shuffle=True`.
        drop_last: drop the last batch if it is shorter than `batch_size`.
        collate_fn: `collate_fn(list_of_items) -> batch`; its result is yielded as is.
            Default: a tuple of Tensors, one per dataset field.
        num_workers: 0 fetches in this process; k > 0 uses k worker processes.
        pin_memory: accepted for torch compatibility; needle has no pinned host memory (no-op).
        prefetch_factor: batches requested ahead per worker (num_workers > 0).
        persistent_workers: keep the worker processes between epochs.
        generator: an `ndl.Generator` for the shuffle order and the augmentation seeds.
        device, dtype: of the batch Tensors (default `ndl.cpu()`; dtype None = float32 in
            NDArray mode, the array's own dtype, e.g. int64 labels, in numpy mode).
        multiprocessing_context: "fork" (default on Linux), "spawn" or "forkserver".
        worker_init_fn: called as `worker_init_fn(worker_id)` in each worker at start.
        timeout: seconds to wait for a worker's batch before raising (0: no limit).
    Yields:
        tuple of Tensors, one per dataset field; e.g. MNIST -> (X (B, 784), y (B,)).

    Example:
        >>> loader = DataLoader(NDArrayDataset(X, y), batch_size=32, shuffle=True)
        >>> for xb, yb in loader: ...
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, *, sampler=None,
                 drop_last: bool = False, collate_fn=None, num_workers: int = 0,
                 pin_memory: bool = False, prefetch_factor: int = 2,
                 persistent_workers: bool = False, generator=None, device=None, dtype=None,
                 multiprocessing_context=None, worker_init_fn=None, timeout: float = 0):
        self.batch_size = _positive_int("batch_size", batch_size)
        for name, flag in (("shuffle", shuffle), ("drop_last", drop_last),
                           ("pin_memory", pin_memory), ("persistent_workers", persistent_workers)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"DataLoader: {name} must be a bool, got {flag!r}")
        if sampler is not None:
            if shuffle:
                raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
            if not isinstance(sampler, Iterable):
                raise TypeError(f"DataLoader: sampler must be an iterable of indices, got "
                                f"{type(sampler).__name__}")
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError("DataLoader: collate_fn must be callable")
        if worker_init_fn is not None and not callable(worker_init_fn):
            raise TypeError("DataLoader: worker_init_fn must be callable")
        self.num_workers = _positive_int("num_workers", num_workers, minimum=0)
        self.prefetch_factor = _positive_int("prefetch_factor", prefetch_factor)
        if persistent_workers and self.num_workers == 0:
            raise ValueError("DataLoader: persistent_workers needs num_workers > 0")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
            raise ValueError(f"DataLoader: timeout must be a number >= 0, got {timeout!r}")
        if generator is not None and not isinstance(generator, Generator):
            resolve_generator(generator, "DataLoader")  # raises TypeError for a wrong type
        if isinstance(multiprocessing_context, str) and \
                multiprocessing_context not in multiprocessing.get_all_start_methods():
            raise ValueError(f"DataLoader: multiprocessing_context must be one of "
                             f"{multiprocessing.get_all_start_methods()}, got "
                             f"{multiprocessing_context!r}")
        self.dataset = dataset
        self.shuffle = bool(shuffle)
        self.sampler = sampler
        self.drop_last = bool(drop_last)
        self.collate_fn = collate_fn
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers)
        self.generator = None if generator is None else resolve_generator(generator, "DataLoader")
        self.device = device if device is not None else cpu()
        self.dtype = dtype
        self.multiprocessing_context = multiprocessing_context or _default_context()
        self.worker_init_fn = worker_init_fn
        self.timeout = timeout
        self._pool = None
        self._epoch = 0
        # The contract's precomputed unshuffled split (replaced by each shuffled epoch). A
        # sampler is only iterated per epoch: iterating it here could draw random numbers.
        self.ordering = self._split(np.arange(len(dataset))) if sampler is None else None

    def _split(self, order: np.ndarray) -> list[np.ndarray]:
        n = len(order)
        if n == 0:
            return []
        batches = np.array_split(order, range(self.batch_size, n, self.batch_size))
        if self.drop_last and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def __len__(self) -> int:
        """Number of batches per epoch."""
        if self.sampler is None:
            return len(self.ordering)
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _epoch_order(self) -> np.ndarray:
        if self.sampler is not None:
            return np.asarray(list(self.sampler), dtype=np.int64)
        if not self.shuffle:
            return np.arange(len(self.dataset))
        if self.generator is None:
            return np.random.permutation(len(self.dataset))  # the contract's single draw
        return self.generator.permutation(len(self.dataset))

    def __iter__(self) -> Iterator:
        if self.shuffle or self.sampler is not None:
            self.ordering = self._split(self._epoch_order())
        # Per-batch seeds, unless this is the contract's plain call (see the module doc).
        base = None
        if self.generator is not None or self.num_workers > 0:
            stream = self.generator if self.generator is not None else np.random
            base = int(stream.randint(0, 2 ** 31 - 1))
        self._epoch += 1
        batches = list(self.ordering)
        if self.num_workers == 0:
            return self._in_process(batches, base)
        return _WorkerIterator(self, batches, base, self._epoch)

    def _in_process(self, batches, base):
        for b, indices in enumerate(batches):
            with seeded_global_stream(None if base is None else (base, b)):
                batch = fetch_batch(self.dataset, indices, self.collate_fn)
            yield self._to_tensors(batch)

    def _to_tensors(self, batch):
        if self.collate_fn is not None:
            return batch
        # from_host: the loss reads the labels back without a device round trip
        return tuple(Tensor.from_host(field, device=self.device, dtype=self.dtype)
                     for field in batch)

    def _make_pool(self) -> WorkerPool:
        ctx = self.multiprocessing_context
        context = multiprocessing.get_context(ctx) if isinstance(ctx, str) else ctx
        return WorkerPool(self.dataset, self.collate_fn, self.num_workers, context,
                          self.worker_init_fn)

    def shutdown_workers(self) -> None:
        """Stop persistent workers now (they also stop when the loader is garbage collected)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __del__(self):
        if getattr(self, "_pool", None) is not None:
            self.shutdown_workers()


class _WorkerIterator:
    """One epoch over worker processes: keeps prefetch_factor * num_workers batches in flight
    and yields them in order. Stops its workers when exhausted, on error (Ctrl-C included), on
    `close()` and when garbage collected after an early `break` (persistent pools excepted)."""

    def __init__(self, loader: DataLoader, batches, base, epoch):
        self.loader, self.batches, self.base, self.epoch = loader, batches, base, epoch
        self.sent = self.received = 0
        self.ready = {}
        if loader.persistent_workers:
            if loader._pool is None or loader._pool.closed:
                loader._pool = loader._make_pool()
            self.pool, self.owns_pool = loader._pool, False
        else:
            self.pool, self.owns_pool = loader._make_pool(), True
        try:
            for _ in range(loader.prefetch_factor * loader.num_workers):
                self._send()
        except BaseException:
            self.pool.shutdown()
            raise

    def _send(self):
        if self.sent < len(self.batches):
            self.pool.put((self.epoch, self.sent, self.batches[self.sent], (self.base, self.sent)))
            self.sent += 1

    def __iter__(self):
        return self

    def __next__(self):
        if self.received >= len(self.batches):
            self.close()
            raise StopIteration
        # Any error stops the workers here and now: the traceback keeps this frame, and so
        # this iterator, alive, so __del__ would come too late for a Ctrl-C handler.
        try:
            while self.received not in self.ready:
                epoch, index, batch = self.pool.get(self.loader.timeout)
                if epoch == self.epoch:  # a persistent pool may still return an old epoch's
                    self.ready[index] = batch
            batch = self.ready.pop(self.received)
            self.received += 1
            self._send()
            return self.loader._to_tensors(batch)
        except BaseException:  # worker error, dead worker, Ctrl-C
            self.pool.shutdown()
            raise

    def close(self):
        if self.owns_pool:
            self.pool.shutdown()

    def __del__(self):
        if sys is not None and getattr(self, "owns_pool", False):
            self.close()
