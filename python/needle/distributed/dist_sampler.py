"""DistributedSampler: each rank's share of a data set's indices, the same split on every rank.

Semantics follow torch.utils.data.DistributedSampler:
- Each epoch, the index order is a permutation seeded by `seed + epoch` (identical on every rank
  without any communication), or 0..N-1 when `shuffle=False`.
- drop_last=False: the order is padded by repeating its first indices until its length divides
  the world size R, so every rank gets ceil(N / R) indices (a few samples are seen twice).
- drop_last=True: the tail is dropped so that every rank gets floor(N / R) indices.
- Rank r takes positions r, r + R, r + 2R, ... of that order.

The permutation comes from `np.random.RandomState(seed + epoch)`, never from numpy's global
RNG, so it draws nothing from the global stream (the RNG contract of the rest of needle is
untouched) and does not depend on what each rank drew before. It equals
`np.random.seed(seed + epoch); np.random.permutation(N)`.
"""
import math

import numpy as np

from .dist_comm import _world

__all__ = ["DistributedSampler"]


class DistributedSampler:
    """Yield this rank's indices into `dataset` for the current epoch.

    Args:
        dataset: anything with `len()`.
        num_replicas: number of ranks (default: the world size; see `needle.distributed.init`).
        rank: this rank (default: the world rank).
        shuffle: permute the indices each epoch (seeded by seed + epoch).
        seed: base seed, the same on every rank.
        drop_last: drop the tail instead of padding (see the module docstring).
    Raises:
        RuntimeError: num_replicas/rank left to default under mpiexec before `dist.init()`.
        ValueError: rank outside [0, num_replicas), or num_replicas < 1.

    Call `set_epoch(e)` at the start of each epoch, or every epoch repeats the same order.

    Example:
        >>> sampler = DistributedSampler(train_set, shuffle=True, seed=0)
        >>> loader = ndl.data.DataLoader(train_set, batch_size=32, sampler=sampler)
        >>> for epoch in range(3):
        ...     sampler.set_epoch(epoch)
        ...     for X, y in loader: ...
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0,
                 drop_last=False):
        if num_replicas is None or rank is None:
            state = _world("DistributedSampler")
            num_replicas = state.size if num_replicas is None else num_replicas
            rank = state.rank if rank is None else rank
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: need 0 <= rank < num_replicas, got rank "
                             f"{rank}, num_replicas {num_replicas}")
        self.dataset = dataset
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.epoch = 0
        n = len(dataset)
        if drop_last:
            self.num_samples = n // self.num_replicas
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch):
        """Use the permutation of this epoch (seed + epoch) from the next `iter()` on."""
        self.epoch = int(epoch)

    def indices(self):
        """This rank's indices for the current epoch, as an int64 numpy array."""
        n = len(self.dataset)
        if self.shuffle:
            order = np.random.RandomState(self.seed + self.epoch).permutation(n)
        else:
            order = np.arange(n)
        if self.drop_last:
            order = order[:self.total_size]
        elif self.total_size > n > 0:
            # pad by repeating the order from its start, as many times as needed
            order = np.resize(order, self.total_size)
        return order[self.rank:self.total_size:self.num_replicas].astype(np.int64)

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self):
        return self.num_samples
