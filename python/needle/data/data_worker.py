"""DataLoader worker processes: batch fetching, per-batch seeding and the process pool.

Workers only index the dataset and run its transforms (numpy code); they send numpy batches
back, and the main process turns them into Tensors. Protocol, per worker:
    index queue  <- (epoch, batch_index, indices, seed) | None (exit)
    result queue -> (epoch, batch_index, batch, error)   (one result queue shared by all)
"""
import contextlib
import os
import pickle
import queue
import signal
import sys
import threading
import time
import traceback

import numpy as np

from ..autograd import Tensor

__all__ = ["WorkerPool", "fetch_batch", "seeded_global_stream"]

# How often a blocked main process checks that its workers are still alive (seconds).
_POLL_S = 0.1
# How long workers get to exit after the stop message before they are terminated (seconds).
_EXIT_GRACE_S = 2.0


@contextlib.contextmanager
def _ctrl_c_deferred():
    """Run the block with SIGINT held back; a Ctrl-C pressed meanwhile raises
    KeyboardInterrupt when the block ends. Only the main thread can install handlers."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    pressed = []
    signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if pressed:
        raise KeyboardInterrupt


@contextlib.contextmanager
def seeded_global_stream(seed):
    """Run the block with numpy's global stream seeded by `seed` (a pair of ints), restoring
    the caller's stream afterwards. seed None: the block uses the global stream as it is."""
    if seed is None:
        yield
        return
    saved = np.random.get_state()
    np.random.seed(list(seed))
    try:
        yield
    finally:
        np.random.set_state(saved)


def fetch_batch(dataset, indices, collate_fn):
    """The batch for `indices`: `collate_fn([dataset[i] for i in indices])` if given, else a
    tuple of numpy arrays (one per dataset field) from `dataset[indices]`, or from stacking the
    items when the dataset only takes single ints."""
    if collate_fn is not None:
        return collate_fn([dataset[int(i)] for i in indices])
    try:
        batch = dataset[indices]
    except TypeError:
        batch = None  # dataset only takes single ints: stack the items instead
    if batch is None:
        items = [dataset[int(i)] for i in indices]
        if not isinstance(items[0], tuple):
            return (np.stack([np.asarray(x) for x in items]),)
        return tuple(np.stack([np.asarray(item[k]) for item in items])
                     for k in range(len(items[0])))
    if not isinstance(batch, tuple):
        batch = (batch,)
    return tuple(field.numpy() if isinstance(field, Tensor) else np.asarray(field)
                 for field in batch)


class WorkerError:
    """A worker's exception, carried to the main process with its formatted traceback."""

    def __init__(self, worker_id: int, exc: BaseException):
        self.worker_id = worker_id
        self.exc_type = type(exc)
        try:
            pickle.dumps(self.exc_type)
        except Exception:  # noqa: BLE001 (any pickling failure, e.g. a class in a function)
            self.exc_type = RuntimeError
        self.text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))

    def reraise(self):
        msg = (f"Caught {self.exc_type.__name__} in DataLoader worker process "
               f"{self.worker_id}. Original traceback:\n{self.text}")
        try:
            err = self.exc_type(msg)
        except Exception:  # noqa: BLE001 (exception types whose constructor wants other args)
            err = RuntimeError(msg)
        raise err


def _worker_loop(dataset, collate_fn, index_queue, result_queue, worker_id, worker_init_fn,
                 parent_pid):
    # Ctrl-C goes to the whole process group; the main process handles it and stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if worker_init_fn is not None:
            worker_init_fn(worker_id)
        while True:
            try:
                task = index_queue.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != parent_pid:  # the main process died: exit quietly
                    return
                continue
            if task is None:
                return
            epoch, batch_index, indices, seed = task
            try:
                with seeded_global_stream(seed):
                    batch = fetch_batch(dataset, indices, collate_fn)
                result_queue.put((epoch, batch_index, batch, None))
            except Exception as e:  # noqa: BLE001 (every error goes back to the main process)
                result_queue.put((epoch, batch_index, None, WorkerError(worker_id, e)))
    except KeyboardInterrupt:
        pass
    finally:
        # Do not block process exit on flushing results nobody will read.
        result_queue.cancel_join_thread()


class WorkerPool:
    """`num_workers` processes serving batch requests; tasks go round-robin to the workers.

    `put(task)` sends one request, `get(timeout)` returns the next (epoch, index, batch) result,
    re-raising a worker's exception, and raising RuntimeError if a worker died (killed,
    segfault) or `timeout` seconds passed. `shutdown()` stops everything (idempotent).
    """

    def __init__(self, dataset, collate_fn, num_workers, context, worker_init_fn):
        self.closed = False
        self.next_worker = 0
        self.result_queue = context.Queue()
        self.index_queues, self.workers = [], []
        try:
            for worker_id in range(num_workers):
                index_queue = context.Queue()
                proc = context.Process(
                    target=_worker_loop, daemon=True,
                    args=(dataset, collate_fn, index_queue, self.result_queue, worker_id,
                          worker_init_fn, os.getpid()))
                proc.start()
                self.index_queues.append(index_queue)
                self.workers.append(proc)
        except BaseException:
            self.shutdown()
            raise

    def put(self, task) -> None:
        self.index_queues[self.next_worker].put(task)
        self.next_worker = (self.next_worker + 1) % len(self.workers)

    def get(self, timeout: float = 0):
        waited = 0.0
        while True:
            try:
                result = self.result_queue.get(timeout=_POLL_S)
                break
            except queue.Empty:
                waited += _POLL_S
                dead = [w for w in self.workers if not w.is_alive()]
                if dead:
                    codes = ", ".join(f"pid {w.pid} exit code {w.exitcode}" for w in dead)
                    self.shutdown()
                    raise RuntimeError(f"DataLoader worker(s) exited unexpectedly ({codes})")
                if timeout and waited >= timeout:
                    self.shutdown()
                    raise RuntimeError(f"DataLoader timed out after {timeout} s waiting for a "
                                       "batch from its workers")
        epoch, batch_index, batch, error = result
        if error is not None:
            self.shutdown()
            error.reraise()
        return epoch, batch_index, batch

    def shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        with _ctrl_c_deferred():  # a second Ctrl-C must not leave workers behind
            self._stop_workers()

    def _stop_workers(self) -> None:
        for q in self.index_queues:
            with contextlib.suppress(Exception):
                while True:  # drop requests not yet taken: a worker exits at once
                    q.get_nowait()
            with contextlib.suppress(Exception):
                q.put(None)
        deadline = time.monotonic() + _EXIT_GRACE_S  # one grace period for all workers
        for w in self.workers:
            w.join(timeout=max(0.0, deadline - time.monotonic()))
        for w in self.workers:
            if w.is_alive():  # stuck (in a slow __getitem__, or writing a result): stop it
                w.terminate()
                w.join(timeout=_EXIT_GRACE_S)
        for q in self.index_queues + [self.result_queue]:
            q.cancel_join_thread()
            q.close()

    def __del__(self):
        if sys is not None and not self.closed:  # not during interpreter teardown
            self.shutdown()
