"""`python -m apps.train --distributed`: the data-parallel parts of the training app.

    mpiexec -n 2 python -m apps.train --distributed --model lenet --dataset digits --batch-size 64

--batch-size is the global batch: each of the R ranks trains on batch-size / R samples per step
(it must divide), drawn by a DistributedSampler seeded by --seed and the epoch, and
DistributedDataParallel averages the gradients, so one step is one step of the whole batch.
Only rank 0 prints and writes the checkpoint, metrics and curves; the printed train loss and
accuracy are rank 0's share, images/s is the whole job's, and every rank evaluates the whole test
split (the replicas are equal, so the figures are too). Every rank reads the
checkpoint on --resume (on several machines, --out must be on a shared file system). Each rank
runs the CPU kernels on NEEDLE_NUM_THREADS (else OMP_NUM_THREADS) threads (mpiexec binds each rank to its cores: see
docs/distributed.md).
"""
import sys

import needle.distributed as dist
import numpy as np


class DataParallel:
    """What --distributed changes in apps.train: the model called in training, this rank's share
    of each epoch's order, the per-epoch seeding, and which rank writes.

    Attributes:
        model: the DistributedDataParallel wrapper (train with it; save `.module`).
        size: the number of ranks; each trains on batch-size / size samples per step.
        is_main: True on rank 0, the only rank that prints and writes files.
    """

    def __init__(self, args, model, train_ds, device, error):
        dist.init()
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.is_main = self.rank == 0
        self.seed = args.seed
        if args.batch_size % self.size:
            if not self.is_main:
                sys.exit(2)  # rank 0 reports it: one error line for the job
            raise error(f"--batch-size {args.batch_size} must be divisible by the number of "
                        f"ranks ({self.size}) with --distributed: it is the global batch")
        self.model = dist.DistributedDataParallel(model)
        self.sampler = dist.DistributedSampler(train_ds, shuffle=True, seed=args.seed)

    def epoch_order(self, epoch):
        """This rank's indices for `epoch` (the DistributedSampler's), after seeding this rank's
        augmentations and dropout from (seed, epoch, rank), so a run resumed at an epoch
        boundary repeats them. (A run resumed inside an epoch repeats its batches, not its
        augmentation draws.)"""
        self.sampler.set_epoch(epoch)
        np.random.seed((self.seed * 1_000_003 + epoch * 1_009 + self.rank) % 2**32)
        return np.array(list(self.sampler), dtype=np.int64)


def setup(args, model, train_ds, device, error):
    """A DataParallel for --distributed, else None. `error` is the app's bad-input exception."""
    if not getattr(args, "distributed", False):
        return None
    return DataParallel(args, model, train_ds, device, error)
