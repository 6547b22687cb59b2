"""needle-train --tensorboard DIR: scalars for TensorBoard, written with tensorboardX.

Per optimizer step: `step/loss` and `step/lr` (x = the global step). Per epoch: `epoch/train_loss`,
`epoch/train_acc`, `epoch/test_loss`, `epoch/test_acc` and `epoch/images_per_s` (x = the epoch).
A step's scalars are written when its epoch ends (or the run stops: --max-steps, Ctrl-C), from the
losses the app records anyway, so the training loop itself is untouched. A resumed run appends a
new event file to DIR; its steps continue the global numbering.
"""
__all__ = ["EPOCH_SCALARS", "NoLog", "TensorBoardLog", "open_log"]

EPOCH_SCALARS = ("train_loss", "train_acc", "test_loss", "test_acc", "images_per_s")


class NoLog:
    """Stands in for `TensorBoardLog` without --tensorboard: every call does nothing."""

    def log_steps(self, first_step, state, first_done, lr):
        pass

    def log_epoch(self, record):
        pass

    def close(self):
        pass


class TensorBoardLog(NoLog):
    """Writes the training app's scalars into event files in `logdir` (created if needed).

    Raises:
        ImportError: with the install command, when tensorboardX is not installed.
        OSError: naming `logdir` when it cannot be created or written.
    """

    def __init__(self, logdir):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ImportError("--tensorboard needs tensorboardX: pip install "
                              "'needle-dl[tensorboard]'") from None
        try:
            self.writer = SummaryWriter(logdir=str(logdir))
        except OSError as e:
            raise OSError(f"--tensorboard {logdir}: cannot write there ({e.strerror or e})") \
                from None

    def log_steps(self, first_step, state, first_done, lr):
        """The steps the epoch `state` (apps/train_checkpoint.new_epoch) took since it had
        `first_done` batches done, numbered first_step + 1, ...: their losses, and their
        learning rates (recorded per step with --schedule, else the constant `lr`)."""
        losses = state["losses"][first_done:]
        lrs = state.get("lrs", [])[first_done:] or [lr] * len(losses)
        for i, (loss, lr) in enumerate(zip(losses, lrs)):
            self.writer.add_scalar("step/loss", loss, first_step + 1 + i)
            self.writer.add_scalar("step/lr", lr, first_step + 1 + i)
        self.writer.flush()

    def log_epoch(self, record):
        """An epoch record of the app's metrics.json (its "epoch" is the x value)."""
        for key in EPOCH_SCALARS:
            self.writer.add_scalar(f"epoch/{key}", record[key], record["epoch"])
        self.writer.flush()

    def close(self):
        self.writer.close()


def open_log(logdir):
    """A `TensorBoardLog` writing to `logdir`, or a `NoLog` when `logdir` is None."""
    return NoLog() if logdir is None else TensorBoardLog(logdir)
