"""DataLoader beyond the contract: torch keywords (compared with torch.utils.data.DataLoader),
samplers, worker processes (same batches as num_workers=0, errors, crashes, early break,
Ctrl-C), generators and the torchvision-style transforms.

Anything that could hang runs under `_deadline` (SIGALRM) or in a subprocess with a timeout.
"""
import contextlib
import gc
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import needle as ndl
import numpy as np
import pytest
from needle import data

torch = pytest.importorskip("torch")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def _deadline(seconds=60):
    def fail(*_):
        raise TimeoutError(f"DataLoader test took more than {seconds} s (a hang?)")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


class AugmentedImages(data.Dataset):
    """N random 8 x 8 x 3 images with integer labels; random crop + flip per item."""

    def __init__(self, n=40, fail_at=None, crash_at=None):
        super().__init__([data.RandomCrop(2), data.RandomFlipHorizontal()])
        rng = np.random.RandomState(0)
        self.x = rng.rand(n, 8, 8, 3).astype(np.float32)
        self.y = np.arange(n) % 7
        self.fail_at, self.crash_at = fail_at, crash_at

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        i = int(i)  # single ints only: the loader stacks items
        if i == self.fail_at:
            raise ValueError(f"bad item {i}")
        if i == self.crash_at:
            os._exit(3)
        return self.apply_transforms(self.x[i]), self.y[i]


def _epoch(loader):
    return [tuple(t.numpy() for t in batch) for batch in loader]


def _same(a, b):
    return len(a) == len(b) and all(
        len(x) == len(y) and all(np.array_equal(u, v) for u, v in zip(x, y))
        for x, y in zip(a, b))


def test_workers_yield_exactly_the_in_process_batches():
    ds = AugmentedImages()
    with _deadline():
        runs = {}
        for workers in (0, 1, 2):
            g = ndl.Generator(11)
            loader = data.DataLoader(ds, 6, True, num_workers=workers, generator=g)
            runs[workers] = [_epoch(loader), _epoch(loader)]  # two epochs: new order, new seeds
    assert _same(runs[0][0], runs[1][0]) and _same(runs[0][0], runs[2][0])
    assert _same(runs[0][1], runs[2][1])
    assert not _same(runs[0][0], runs[0][1])
    # augmentations really happened: some crops/flips differ from the raw images
    xb, yb = runs[2][0][0]
    order = ndl.Generator(11).permutation(len(ds))[:6]
    np.testing.assert_array_equal(yb, ds.y[order])
    assert not np.array_equal(xb, ds.x[order])


def test_spawn_context_matches_fork():
    ds = AugmentedImages(n=12)
    with _deadline(120):
        spawned = _epoch(data.DataLoader(ds, 4, True, num_workers=2, generator=ndl.Generator(3),
                                         multiprocessing_context="spawn"))
    in_process = _epoch(data.DataLoader(ds, 4, True, generator=ndl.Generator(3)))
    assert _same(spawned, in_process)


def test_contract_call_keeps_global_stream_order_and_generator_leaves_it_alone():
    ds = AugmentedImages(n=10)
    np.random.seed(5)
    got = _epoch(data.DataLoader(ds, 4, True))
    np.random.seed(5)
    order = np.random.permutation(10)  # one permutation, then the transforms item by item
    x0 = ds.apply_transforms(ds.x[order[0]])
    np.testing.assert_array_equal(got[0][0][0], x0)
    state = np.random.get_state()[1].copy()
    _epoch(data.DataLoader(ds, 4, True, generator=ndl.Generator(1)))
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_persistent_workers_reuse_processes_and_match():
    ds = AugmentedImages(n=20)
    with _deadline():
        loader = data.DataLoader(ds, 5, True, num_workers=2, persistent_workers=True,
                                 generator=ndl.Generator(2))
        first = _epoch(loader)
        pids = [w.pid for w in loader._pool.workers]
        second = _epoch(loader)
        assert [w.pid for w in loader._pool.workers] == pids
        loader.shutdown_workers()
    g = ndl.Generator(2)
    ref = data.DataLoader(ds, 5, True, generator=g)
    assert _same(first, _epoch(ref)) and _same(second, _epoch(ref))


def test_worker_exception_reraises_with_traceback():
    loader = data.DataLoader(AugmentedImages(fail_at=13), 4, num_workers=2)
    with _deadline(), pytest.raises(ValueError) as info:
        _epoch(loader)
    msg = str(info.value)
    assert "bad item 13" in msg and "DataLoader worker process" in msg
    assert "__getitem__" in msg and "Traceback" in msg
    assert multiprocessing.active_children() == []


def test_worker_crash_raises_instead_of_hanging():
    loader = data.DataLoader(AugmentedImages(crash_at=9), 4, num_workers=2)
    with _deadline(), pytest.raises(RuntimeError, match="exited unexpectedly .*exit code 3"):
        _epoch(loader)
    assert multiprocessing.active_children() == []


class Slow(data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        import time
        time.sleep(5)
        return np.zeros(2), 0


def test_timeout_raises_and_stops_the_workers():
    loader = data.DataLoader(Slow(), 2, num_workers=1, timeout=0.5)
    with _deadline(), pytest.raises(RuntimeError, match="DataLoader timed out after 0.5 s"):
        _epoch(loader)
    assert multiprocessing.active_children() == []


def test_early_break_stops_the_workers():
    loader = data.DataLoader(AugmentedImages(n=40), 2, num_workers=2)
    with _deadline():
        for i, _ in enumerate(loader):
            if i == 1:
                break
        gc.collect()
        assert multiprocessing.active_children() == []
        it = iter(loader)
        next(it)
        procs = list(it.pool.workers)
        it.close()
        assert not any(p.is_alive() for p in procs)


CTRL_C_SCRIPT = textwrap.dedent("""
    import multiprocessing, os, signal, sys, time
    import numpy as np
    from needle import data
    sys.path.insert(0, sys.argv[1])
    from test_dataloader_workers import AugmentedImages

    class Slow(AugmentedImages):
        def __getitem__(self, i):
            time.sleep(0.05)
            return super().__getitem__(i)

    loader = data.DataLoader(Slow(n=400), 4, num_workers=2)
    try:
        for i, batch in enumerate(loader):
            if i == 0:
                print("ready", flush=True)
    except KeyboardInterrupt:
        print("interrupted; children left:", len(multiprocessing.active_children()), flush=True)
        sys.exit(130)
""")


def test_ctrl_c_stops_main_and_workers():
    """SIGINT to the whole process group (what a terminal's Ctrl-C does)."""
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C_SCRIPT, os.path.join(REPO, "tests")],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        with _deadline(60):
            assert proc.stdout.readline().strip() == "ready"
        # CPython ignores a KeyboardInterrupt raised inside a finalizer (a Tensor's __del__
        # running as a batch is freed), as for any library: like a user at a terminal, press
        # Ctrl-C again while the process runs on (at most 5 times, 2 s apart).
        for _ in range(5):
            os.killpg(proc.pid, signal.SIGINT)
            try:
                out, err = proc.communicate(timeout=2)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "children left: 0" in out, out + err
    with pytest.raises(ProcessLookupError):  # nothing of the group survives
        for _ in range(50):
            os.killpg(proc.pid, 0)
            time.sleep(0.1)


def test_ctrl_c_during_worker_shutdown_is_held_until_the_workers_are_gone():
    from needle.data.data_worker import _ctrl_c_deferred
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finished = []
    with pytest.raises(KeyboardInterrupt):
        with _ctrl_c_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the signal is handled here, and must not raise yet
            finished.append(True)
    assert finished == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ------------------------------------------------------------ torch keyword semantics
class Plain(data.Dataset):
    def __init__(self, n=23):
        super().__init__()
        self.x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
        self.y = np.arange(n)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class TorchPlain(torch.utils.data.Dataset):
    def __init__(self, ours):
        self.ours = ours

    def __len__(self):
        return len(self.ours)

    def __getitem__(self, i):
        x, y = self.ours[i]
        return torch.tensor(x), int(y)


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("workers", [0, 2])
def test_sampler_and_drop_last_batches_equal_torch(drop_last, workers):
    ds = Plain()
    indices = list(np.random.RandomState(4).permutation(len(ds))[:17])
    ours = data.DataLoader(ds, 5, sampler=indices, drop_last=drop_last, num_workers=workers)
    ref = torch.utils.data.DataLoader(TorchPlain(ds), 5, sampler=indices, drop_last=drop_last)
    with _deadline():
        got = _epoch(ours)
    want = [(x.numpy(), y.numpy()) for x, y in ref]
    assert len(ours) == len(ref) == len(got) == len(want)
    diff = max(float(np.abs(a[0] - b[0]).max()) for a, b in zip(got, want))
    print(f"DataLoader(sampler, drop_last={drop_last}, workers={workers}): max|diff| = {diff}")
    assert diff == 0 and all(np.array_equal(a[1], b[1]) for a, b in zip(got, want))


def test_collate_fn_output_is_yielded_as_is_like_torch():
    ds = Plain(6)

    def collate(items):
        return {"n": len(items), "first": float(items[0][0][0])}

    ours = list(data.DataLoader(ds, 4, collate_fn=collate))
    ref = list(torch.utils.data.DataLoader(TorchPlain(ds), 4, collate_fn=collate))
    assert ours == ref == [{"n": 4, "first": 0.0}, {"n": 2, "first": 8.0}]


def test_random_sampler_generator_and_lengths():
    ds = Plain(10)
    s1 = data.RandomSampler(ds, generator=ndl.Generator(0))
    s2 = data.RandomSampler(ds, generator=ndl.Generator(0))
    assert list(s1) == list(s2) != list(range(10)) and sorted(s1) == list(range(10))
    assert len(data.RandomSampler(ds, replacement=True, num_samples=25)) == 25
    tref = torch.utils.data.RandomSampler(range(10), replacement=True, num_samples=25)
    assert len(tref) == 25
    assert sorted(data.SubsetRandomSampler([3, 1, 7])) == [1, 3, 7]
    loader = data.DataLoader(ds, 3, sampler=data.RandomSampler(ds, generator=ndl.Generator(1)))
    seen = np.concatenate([y.numpy() for _, y in loader])
    assert sorted(seen.astype(int)) == list(range(10)) and len(loader) == 4


def test_dataloader_argument_errors():
    ds = Plain(4)
    with pytest.raises(ValueError, match="DataLoader: sampler option is mutually exclusive"):
        data.DataLoader(ds, 2, True, sampler=[0, 1])
    with pytest.raises(ValueError, match="DataLoader: num_workers must be an int >= 0"):
        data.DataLoader(ds, 2, num_workers=-1)
    with pytest.raises(ValueError, match="DataLoader: prefetch_factor"):
        data.DataLoader(ds, 2, num_workers=1, prefetch_factor=0)
    with pytest.raises(ValueError, match="DataLoader: persistent_workers needs"):
        data.DataLoader(ds, 2, persistent_workers=True)
    with pytest.raises(TypeError, match="DataLoader: generator must be"):
        data.DataLoader(ds, 2, generator=3)
    with pytest.raises(TypeError, match="DataLoader: collate_fn must be callable"):
        data.DataLoader(ds, 2, collate_fn="stack")
    with pytest.raises(ValueError, match="DataLoader: multiprocessing_context"):
        data.DataLoader(ds, 2, num_workers=1, multiprocessing_context="thread")
    with pytest.raises(TypeError, match="DataLoader: shuffle must be a bool"):
        data.DataLoader(ds, 2, "yes")
    with pytest.raises(ValueError, match="RandomSampler: num_samples"):
        data.RandomSampler(ds, num_samples=0)


NUMPY_MODE_LABELS = textwrap.dedent("""
    import numpy as np
    from needle import data
    X = np.random.rand(10, 3).astype(np.float32)
    y = np.arange(10, dtype=np.int64)
    for workers in (0, 2):
        xb, yb = next(iter(data.DataLoader(data.NDArrayDataset(X, y), 4, num_workers=workers)))
        assert yb.dtype == np.int64 and xb.dtype == np.float32, (yb.dtype, xb.dtype)
    print("labels stay int64")
""")


def test_labels_keep_integer_dtype_in_numpy_mode(run_numpy_mode):
    run_numpy_mode(NUMPY_MODE_LABELS, "labels stay int64", timeout=120)


# ---------------------------------------------------------------- transforms vs torch
def test_to_tensor_and_normalize_match_torch():
    img = np.random.RandomState(0).randint(0, 256, (6, 5, 3)).astype(np.uint8)
    mean, std = [0.4914, 0.4822, 0.4465], [0.247, 0.243, 0.261]
    chw = data.ToTensor()(img)
    ours = data.Compose([data.ToTensor(layout="HWC"), data.Normalize(mean, std),
                         data.ToTensor()])(img)
    t = torch.tensor(img).permute(2, 0, 1).float() / 255  # torchvision's ToTensor
    ref = ((t - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]).numpy()
    diff = max(float(np.abs(ours - ref).max()), float(np.abs(chw - t.numpy()).max()))
    print(f"ToTensor + Normalize: max|diff| = {diff:.3g}")
    assert ours.shape == chw.shape == (3, 6, 5) and ours.dtype == np.float32 and diff < 1e-6
    np.testing.assert_array_equal(data.ToTensor()(img[:, :, 0]), chw[:1])  # H x W -> 1 x H x W
    with pytest.raises(ValueError, match="ToTensor: layout"):
        data.ToTensor("NCHW")
    with pytest.raises(TypeError, match="Compose: transform 1"):
        data.Compose([data.ToTensor(), 3])


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_random_crop_pad_matches_torch_pad_then_crop(mode):
    img = np.random.RandomState(1).rand(8, 7, 3).astype(np.float32)
    crop = data.RandomCropPad((8, 7), padding=3, padding_mode=mode)
    np.random.seed(9)
    ours = crop(img)
    np.random.seed(9)
    i, j = np.random.randint(0, 8 + 6 - 8 + 1), np.random.randint(0, 7 + 6 - 7 + 1)
    torch_mode = {"edge": "replicate"}.get(mode, mode)
    padded = torch.nn.functional.pad(torch.tensor(img).permute(2, 0, 1)[None], (3, 3, 3, 3),
                                     mode=torch_mode)[0]
    ref = padded[:, i:i + 8, j:j + 7].permute(1, 2, 0).numpy()
    diff = float(np.abs(ours - ref).max())
    print(f"RandomCropPad({mode}): max|diff| = {diff}")
    assert ours.shape == (8, 7, 3) and diff == 0
    with pytest.raises(ValueError, match="RandomCropPad: padding_mode"):
        data.RandomCropPad(4, padding_mode="wrap")
    with pytest.raises(ValueError, match="RandomCropPad: crop"):
        data.RandomCropPad(20)(img)


# ------------------------------------------------------------------------- randomness
def test_generator_and_manual_seed_follow_torch_conventions():
    g = ndl.Generator()
    assert g.manual_seed(3) is g  # torch: Generator().manual_seed(s) returns the generator
    assert isinstance(torch.Generator().manual_seed(3), torch.Generator)
    assert ndl.manual_seed(3) is ndl.random.default_generator
    a = ndl.init.rand(4, generator=ndl.Generator(3)).numpy()
    ndl.manual_seed(3)
    np.testing.assert_array_equal(ndl.init.rand(4).numpy(), a)  # same numbers as the global
    # like torch: a private generator is unaffected by the global seed, and vice versa
    t1 = torch.rand(3, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(99)
    t2 = torch.rand(3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(t1, t2)
    d1 = ndl.nn.Dropout(0.5, generator=ndl.Generator(1))
    d2 = ndl.nn.Dropout(0.5, generator=ndl.Generator(1))
    x = ndl.Tensor(np.ones((20, 20), np.float32))
    ndl.manual_seed(99)
    m1 = d1(x).numpy()
    np.random.rand(7)
    np.testing.assert_array_equal(m1, d2(x).numpy())
    with pytest.raises(TypeError, match="manual_seed: seed must be an int"):
        ndl.manual_seed(1.5)
    with pytest.raises(ValueError, match="Generator: seed must lie in"):
        ndl.Generator(-1)
    with pytest.raises(TypeError, match="init.rand: generator must be"):
        ndl.init.rand(2, generator="seed")


IMPORT_ALL = textwrap.dedent("""
    import importlib, pkgutil, sys
    import numpy as np
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    import needle
    names = [m.name for m in pkgutil.walk_packages(needle.__path__, "needle.")]
    for name in names:
        importlib.import_module(name)
    assert np.array_equal(np.random.get_state()[1], before), "a needle module reseeded"
    sys.path.insert(0, ".")
    np.random.seed(0)
    zero = np.random.get_state()[1].copy()
    np.random.seed(123)
    import apps.models
    assert np.array_equal(np.random.get_state()[1], zero), "apps.models must seed 0 (contract)"
    np.random.seed(123)
    import apps.mlp_resnet
    assert np.array_equal(np.random.get_state()[1], zero), "apps.mlp_resnet must seed 0"
    # the other course modules reseed only through their first import of apps.models (above)
    np.random.seed(123)
    import apps.simple_ml, apps.train
    assert np.array_equal(np.random.get_state()[1], before), "apps.simple_ml/train reseeded"
    print("imported", len(names), "modules")
""")


def test_imports_do_not_reseed_except_the_contract_apps():
    proc = subprocess.run([sys.executable, "-c", IMPORT_ALL], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0 and "imported" in proc.stdout, proc.stdout + proc.stderr
