"""The training step of apps/train.py, jitted by default (ndl.jit; docs/jit.md)."""
import needle as ndl

__all__ = ["make_train_step"]


def make_train_step(model, opt, loss_fn, use_jit=True):
    """A function (X, y) -> (loss, logits) that runs one training step: forward, loss,
    backward (constant gradients) and the optimizer's update.

    With `use_jit` the step is wrapped in `ndl.jit`: after an eager call and two captures per
    batch shape, its backend calls are replayed without the Python in between (the last,
    smaller batch of an epoch is a second shape). Call it in training mode only."""
    def step(X, y):
        logits = model(X)
        loss = loss_fn(logits, y)
        opt.reset_grad()
        loss.backward(create_graph=False)
        opt.step()
        return loss, logits

    return ndl.jit(step) if use_jit else step
