"""The training step of apps/train.py, jitted by default (ndl.jit; docs/jit.md)."""
import needle as ndl

__all__ = ["make_train_step"]


def make_train_step(model, opt, loss_fn, use_jit=True):
    """A function step(X, y, check=None) -> (loss, logits) that runs one training step:
    forward, loss, backward (constant gradients) and the optimizer's update.

    `check(loss)` may raise to stop training (a NaN loss): eager, it runs before the update;
    jitted, after the whole step, since a replay cannot stop half way.

    With `use_jit` the step is wrapped in `ndl.jit`: after an eager call and two captures per
    batch shape, its backend calls are replayed without the Python in between (the last,
    smaller batch of an epoch is a second shape). Call it in training mode only."""
    def step(X, y, check=None):
        logits = model(X)
        loss = loss_fn(logits, y)
        opt.reset_grad()
        loss.backward(create_graph=False)
        if check is not None:
            check(loss)
        opt.step()
        return loss, logits

    if not use_jit:
        return step
    jitted = ndl.jit(step)

    def replayed_step(X, y, check=None):
        loss, logits = jitted(X, y)
        if check is not None:
            check(loss)
        return loss, logits

    return replayed_step
