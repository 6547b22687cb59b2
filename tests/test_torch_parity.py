"""Differential test: small models trained side by side in needle and PyTorch, weights copied
across, the same batches; after 20 steps the parameters must agree.

Two paths:
  * float32, NDArray mode, in this process: within 1e-5 relative (atol 1e-6 for values near 0).
  * float64, numpy mode (NEEDLE_BACKEND=np) in a subprocess, against torch in float64: within
    1e-9, where float32 rounding could not hide a wrong factor or a missed term.

In float32 a discrete event (a ReLU input or two max-pool candidates within rounding of a
tie) can make the two runs part ways at one step; the default seed is one whose runs meet none
with torch on 1, 2 or 4 threads (seed 0 meets one at step 17 of the CNN on 1 thread).

Known, documented differences are checked as such rather than hidden: needle's BatchNorm
updates running_var with the biased batch variance (torch: unbiased), and needle's SGD default
momentum is dampened (so the runs here use momentum 0; the torch-style keywords are tested with
the optimizer).
"""
import copy
import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import needle as ndl  # noqa: E402
from needle import nn  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
STEPS = 20


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models: torch's thread pool only adds overhead (and contention in CI)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------------- models
def needle_model(kind, dtype):
    kw = dict(dtype=dtype)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(6, 8, **kw), nn.ReLU(), nn.Linear(8, 3, **kw))
    if kind == "bnmlp":
        return nn.Sequential(nn.Linear(6, 8, bias=False, **kw), nn.BatchNorm1d(8, **kw), nn.ReLU(),
                             nn.Linear(8, 3, **kw))
    if kind == "tied":  # encoder and decoder share one Parameter
        model = nn.Sequential(nn.Linear(6, 6, bias=False, **kw), nn.ReLU(),
                              nn.Linear(6, 6, bias=False, **kw), nn.Linear(6, 3, **kw))
        model.modules[2].weight = model.modules[0].weight
        return model
    # no bias before BatchNorm (here and in bnmlp): its gradient is 0 up to rounding, which
    # Adam would normalise into steps of pure noise
    block = nn.Sequential(nn.Conv(4, 4, 3, bias=False, **kw), nn.BatchNorm2d(4, **kw), nn.ReLU())
    return nn.Sequential(nn.Conv(2, 4, 3, bias=False, **kw), nn.BatchNorm2d(4, **kw), nn.ReLU(),
                         nn.Residual(block), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 3 * 3, 3, **kw))


class _Residual(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x) + x


def torch_model(kind, ours, dtype):
    """The torch twin of `ours`, with its weights copied (layouts converted)."""
    tnn = torch.nn
    if kind == "mlp":
        twin = tnn.Sequential(tnn.Linear(6, 8), tnn.ReLU(), tnn.Linear(8, 3))
    elif kind == "bnmlp":
        twin = tnn.Sequential(tnn.Linear(6, 8, bias=False), tnn.BatchNorm1d(8), tnn.ReLU(),
                              tnn.Linear(8, 3))
    elif kind == "tied":
        twin = tnn.Sequential(tnn.Linear(6, 6, bias=False), tnn.ReLU(),
                              tnn.Linear(6, 6, bias=False), tnn.Linear(6, 3))
        twin[2].weight = twin[0].weight
    else:
        block = tnn.Sequential(tnn.Conv2d(4, 4, 3, padding=1, bias=False), tnn.BatchNorm2d(4),
                               tnn.ReLU())
        twin = tnn.Sequential(tnn.Conv2d(2, 4, 3, padding=1, bias=False), tnn.BatchNorm2d(4),
                              tnn.ReLU(),
                              _Residual(block), tnn.MaxPool2d(2), tnn.Flatten(),
                              tnn.Linear(4 * 3 * 3, 3))
    twin = twin.to(dtype)
    with torch.no_grad():
        for ours_p, theirs in zip(ours.parameters(), twin.parameters()):
            theirs.copy_(torch.tensor(to_torch_layout(ours_p.numpy(), theirs.dim())))
    return twin


def to_torch_layout(a, torch_ndim):
    if a.ndim == 4:  # conv (k, k, in, out) -> (out, in, k, k)
        return a.transpose(3, 2, 0, 1)
    if a.ndim == 2 and torch_ndim == 1:  # Linear bias (1, out)
        return a.reshape(-1)
    if a.ndim == 2:  # Linear weight (in, out) -> (out, in)
        return a.T
    return a


def from_torch_layout(t):
    a = t.detach().numpy()
    if a.ndim == 4:
        return a.transpose(2, 3, 1, 0)
    if a.ndim == 2:
        return a.T
    return a


# ---------------------------------------------------------------------------------- training
def make_optimizers(opt, ours, twin):
    if opt == "sgd":
        return (ndl.optim.SGD(ours.parameters(), lr=0.1),
                torch.optim.SGD(twin.parameters(), lr=0.1))
    if opt == "sgd_wd":
        return (ndl.optim.SGD(ours.parameters(), lr=0.1, weight_decay=0.01),
                torch.optim.SGD(twin.parameters(), lr=0.1, weight_decay=0.01))
    # needle's Adam puts weight decay in the gradient: torch's Adam(weight_decay=), not AdamW
    return (ndl.optim.Adam(ours.parameters(), lr=0.01, weight_decay=0.01),
            torch.optim.Adam(twin.parameters(), lr=0.01, weight_decay=0.01))


def train_side_by_side(kind, opt, dtype="float32", accumulate=1, eval_every=5, seed=1):
    """Train both for STEPS steps; returns the report dict (worst relative differences)."""
    np_dtype = np.dtype(dtype)
    tdtype = torch.float64 if np_dtype == np.float64 else torch.float32
    np.random.seed(seed)
    ours = needle_model(kind, dtype)
    twin = torch_model(kind, ours, tdtype)
    ours_opt, twin_opt = make_optimizers(opt, ours, twin)
    rng = np.random.default_rng(seed)
    shape = (8, 2, 6, 6) if kind == "cnn" else (8, 6)
    report = {"params": 0.0, "eval": 0.0, "loss": 0.0}
    loss_fn = nn.SoftmaxLoss()
    for step in range(STEPS):
        x = rng.standard_normal(shape).astype(np_dtype)
        y = rng.integers(0, 3, shape[0])
        ours_opt.reset_grad()
        twin_opt.zero_grad()
        for part in np.array_split(np.arange(shape[0]), accumulate):  # gradient accumulation
            xb = ndl.Tensor(x[part], dtype=dtype, requires_grad=False)
            yb = ndl.Tensor(y[part].astype(np_dtype), dtype=dtype, requires_grad=False)
            loss = loss_fn(ours(xb), yb) / float(accumulate)
            loss.backward()
            twin_loss = torch.nn.functional.cross_entropy(
                twin(torch.tensor(x[part])), torch.tensor(y[part])) / accumulate
            twin_loss.backward()
            report["loss"] = max(report["loss"], rel(loss.numpy(), twin_loss.detach().numpy()))
        ours_opt.step()
        twin_opt.step()
        if eval_every and step % eval_every == eval_every - 1:
            report["eval"] = max(report["eval"], compare_eval(ours, twin, x, dtype))
    for ours_p, theirs in zip(ours.parameters(), twin.parameters()):
        report["params"] = max(report["params"], rel(ours_p.numpy(), from_torch_layout(theirs)))
    report["n_params"] = (len(ours.parameters()), len(list(twin.parameters())))
    # values per channel in one BatchNorm batch: the part's rows (x 6 x 6 pixels for the CNN)
    per_channel = shape[0] // accumulate * (36 if kind == "cnn" else 1)
    report.update(running_stats(ours, twin, per_channel))
    return report


def compare_eval(ours, twin, x, dtype):
    """Eval mode under no_grad: same outputs, nothing recorded, training state untouched."""
    ours.eval()
    twin.eval()
    with ndl.no_grad():
        out = ours(ndl.Tensor(x, dtype=dtype, requires_grad=False))
    assert not out.requires_grad and out.op is None
    with torch.no_grad():
        want = twin(torch.tensor(x)).numpy()
    ours.train()
    twin.train()
    # eval uses the running statistics; needle's running_var differs from torch's (see
    # running_stats), so compare through a torch copy holding needle's statistics
    if _bn_pairs(ours, twin):
        want = eval_with_needle_stats(ours, twin, x)
    return rel(out.numpy(), want)


def _bn_pairs(ours, twin):
    ours_bn = [m for _, m in ours.named_modules() if isinstance(m, nn.BatchNorm1d)]
    twin_bn = [m for m in twin.modules()
               if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]
    return list(zip(ours_bn, twin_bn))


def eval_with_needle_stats(ours, twin, x):
    twin = copy.deepcopy(twin).eval()
    with torch.no_grad():
        for ours_bn, twin_bn in _bn_pairs(ours, twin):
            twin_bn.running_mean.copy_(torch.tensor(ours_bn.running_mean.numpy()))
            twin_bn.running_var.copy_(torch.tensor(ours_bn.running_var.numpy()))
        return twin(torch.tensor(x)).numpy()


def running_stats(ours, twin, n):
    """running_mean as torch's; running_var the biased-variance version of torch's: with
    momentum 0.1 from 1, (torch - 0.9^t) = (needle - 0.9^t) * n / (n - 1) per channel."""
    out = {"running_mean": 0.0, "running_var": 0.0}
    for ours_bn, twin_bn in _bn_pairs(ours, twin):
        t = int(twin_bn.num_batches_tracked)
        start = 0.9 ** t
        out["running_mean"] = max(out["running_mean"], rel(ours_bn.running_mean.numpy(),
                                                           twin_bn.running_mean.numpy()))
        want = start + (ours_bn.running_var.numpy() - start) * n / (n - 1)
        out["running_var"] = max(out["running_var"], rel(want, twin_bn.running_var.numpy()))
    return out


def rel(a, b):
    """max |a - b| / max |b|: the error relative to the tensor's scale."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64).reshape(np.shape(a))
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


CASES = [
    ("mlp", "sgd", 1), ("mlp", "sgd_wd", 1), ("mlp", "adam", 1), ("mlp", "sgd", 2),
    ("bnmlp", "sgd", 1), ("bnmlp", "adam", 2),
    ("cnn", "sgd", 1), ("cnn", "adam", 1), ("cnn", "sgd_wd", 2),
    ("tied", "sgd", 1), ("tied", "adam", 2),
]
NUMPY_MODE_CASES = [c for c in CASES if c[0] != "cnn"]  # conv and pooling are NDArray-only
IDS = [f"{k}-{o}" + ("-accumulate2" if a > 1 else "") for k, o, a in CASES]


# ---------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("kind,opt,accumulate", CASES, ids=IDS)
def test_float32_training_matches_torch(kind, opt, accumulate):
    report = train_side_by_side(kind, opt, "float32", accumulate)
    n_ours, n_twin = report["n_params"]
    assert n_ours == n_twin, "tied weights must be listed once, as torch does"
    # the loss is one scalar that shrinks as training goes: 1e-4 of it is float32 rounding
    tolerances = {"params": 1e-5, "running_mean": 1e-5, "running_var": 1e-5, "eval": 1e-5,
                  "loss": 1e-4}
    for key, tol in tolerances.items():
        assert report[key] <= tol, f"{kind}/{opt}: {key} differs from torch by {report[key]:.2e}"


def test_float64_training_matches_torch_in_numpy_mode(run_numpy_mode):
    script = f"""
import sys
sys.path.insert(0, {str(HERE)!r})
import test_torch_parity as p
worst = 0.0
for kind, opt, accumulate in p.NUMPY_MODE_CASES:
    report = p.train_side_by_side(kind, opt, "float64", accumulate)
    assert report["n_params"][0] == report["n_params"][1], (kind, report)
    for key in ("loss", "eval", "params", "running_mean", "running_var"):
        assert report[key] <= 1e-9, (kind, opt, accumulate, key, report[key])
        worst = max(worst, report[key])
print("float64 parity OK", worst)
"""
    run_numpy_mode(script, "float64 parity OK")
