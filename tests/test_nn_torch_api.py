"""The torch-style module API: containers, hooks, train(mode), apply, strict load_state_dict,
in-place nn.init, and loading torch checkpoints (LeNet, ResNet9) — each compared with torch.

Tests that compare numbers print `max|diff|`; run with `-s` to see them.
"""
import math

import needle as ndl
import numpy as np
import pytest
from needle import nn
from needle.utils import load_torch_state_dict

torch = pytest.importorskip("torch")


def _maxdiff(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# ------------------------------------------------------------------------------- containers
def test_module_list_and_dict_names_match_torch():
    ours = nn.ModuleList([nn.Linear(3, 4), nn.Linear(4, 2)])
    ref = torch.nn.ModuleList([torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)])
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert len(ours) == len(ref) == 2 and isinstance(ours[-1], nn.Linear)
    assert isinstance(ours[0:1], nn.ModuleList) and len(ours[0:1]) == 1
    ours.append(nn.ReLU())
    assert [type(m).__name__ for m in ours] == ["Linear", "Linear", "ReLU"]
    d = nn.ModuleDict({"enc": nn.Linear(3, 4), "dec": nn.Linear(4, 3)})
    td = torch.nn.ModuleDict({"enc": torch.nn.Linear(3, 4), "dec": torch.nn.Linear(4, 3)})
    assert [n for n, _ in d.named_parameters()] == [n for n, _ in td.named_parameters()]
    assert list(d.keys()) == ["enc", "dec"] and "enc" in d and d["dec"].out_features == 3

    class Net(nn.Module):  # a parent collects the containers' parameters
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])

        def forward(self, x):
            for b in self.blocks:
                x = b(x)
            return x

    assert [n for n, _ in Net().named_parameters()][:2] == ["blocks.0.weight", "blocks.0.bias"]
    assert len(Net().parameters()) == 6


def test_container_errors():
    with pytest.raises(TypeError, match="ModuleList: item 1"):
        nn.ModuleList([nn.ReLU(), 3])
    with pytest.raises(IndexError, match="ModuleList: index 5"):
        nn.ModuleList([nn.ReLU()])[5]
    with pytest.raises(TypeError, match="ModuleDict: keys must be str"):
        nn.ModuleDict({1: nn.ReLU()})
    with pytest.raises(ValueError, match="ModuleDict: key 'a.b'"):
        nn.ModuleDict({"a.b": nn.ReLU()})
    with pytest.raises(TypeError, match="Sequential: argument 1"):
        nn.Sequential(nn.ReLU(), "relu")
    with pytest.raises(IndexError, match="Sequential: index -4"):
        nn.Sequential(nn.ReLU(), nn.ReLU())[-4]
    with pytest.raises(TypeError, match="Module.train: mode must be a bool"):
        nn.ReLU().train("no")
    with pytest.raises(TypeError, match="register_forward_hook: hook must be callable"):
        nn.ReLU().register_forward_hook(3)


def test_sequential_len_index_iter_like_torch():
    layers = [nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)]
    seq = nn.Sequential(*layers)
    tseq = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    assert len(seq) == len(tseq) == 3
    assert seq[0] is layers[0] and seq[-1] is layers[2] and list(seq) == layers
    head = seq[:2]
    assert isinstance(head, nn.Sequential) and head.modules == layers[:2]
    assert type(tseq[:2]).__name__ == "Sequential"
    assert seq.modules[1] is layers[1]  # the contract attribute is kept
    x = ndl.Tensor(np.random.randn(5, 4).astype(np.float32))
    np.testing.assert_allclose(seq[1:](head[0](x)).numpy(), seq(x).numpy(), rtol=1e-6)


# ------------------------------------------------------------------------ structure walks
def _tree():
    return nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.ReLU(), nn.Dropout(0.5)),
                         nn.Linear(3, 1))


def test_children_named_modules_train_apply_match_torch():
    ours = _tree()
    ref = torch.nn.Sequential(torch.nn.Linear(2, 3),
                              torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Dropout(0.5)),
                              torch.nn.Linear(3, 1))
    assert [type(m).__name__ for m in ours.children()] == \
        [type(m).__name__ for m in ref.children()]
    assert [n for n, _ in ours.named_children()] == ["modules.0", "modules.1", "modules.2"]
    assert [type(m).__name__ for _, m in ours.named_modules()] == \
        [type(m).__name__ for _, m in ref.named_modules()]
    # modules() on a non-Sequential root (Sequential.modules is the contract's list)
    assert [type(m).__name__ for m in nn.Residual(ours).modules()][1:] == \
        [type(m).__name__ for m in _TorchResidual(ref).modules()][1:]
    for mode in (False, True):
        ours.train(mode)
        ref.train(mode)
        assert [m.training for _, m in ours.named_modules()] == \
            [m.training for _, m in ref.named_modules()]
    assert ours.train() is ours and ours.training and not ours.eval().training
    seen, tseen = [], []
    assert ours.apply(lambda m: seen.append(type(m).__name__)) is ours
    ref.apply(lambda m: tseen.append(type(m).__name__))
    assert seen == tseen  # children first, then the parent


def test_apply_initialises_like_torch_usage():
    model = _tree()

    def init_fn(m):
        if isinstance(m, nn.Linear):
            nn.init.constant_(m.weight, 0.5)
            nn.init.zeros_(m.bias)

    model.apply(init_fn)
    out = model.eval()(ndl.Tensor(np.ones((1, 2), np.float32))).numpy()
    assert _maxdiff(out, [[3 * 0.5 * (2 * 0.5)]]) == 0.0


# ------------------------------------------------------------------------------------ hooks
def test_forward_hooks_modify_input_and_output_like_torch():
    x = np.random.randn(4, 3).astype(np.float32)
    ours, ref = nn.Linear(3, 2), torch.nn.Linear(3, 2)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(ours.weight.numpy().T))
        ref.bias.copy_(torch.tensor(ours.bias.numpy().reshape(-1)))
    calls = []
    handles = []
    for m in (ours, ref):
        handles.append(m.register_forward_pre_hook(lambda mod, args: (args[0] * 2,)))
        handles.append(m.register_forward_hook(lambda mod, args, out: out + 1))
        handles.append(m.register_forward_hook(lambda mod, args, out: calls.append(out.shape)))
    a = ours(ndl.Tensor(x)).numpy()
    b = ref(torch.tensor(x)).detach().numpy()
    diff = _maxdiff(a, b)
    print(f"hooks: max|diff| = {diff:.3g}")
    assert diff < 1e-5 and len(calls) == 2
    for h in handles:
        h.remove()
        h.remove()  # idempotent, as torch
    a = ours(ndl.Tensor(x)).numpy()
    b = ref(torch.tensor(x)).detach().numpy()
    assert _maxdiff(a, b) < 1e-5 and len(calls) == 2
    assert _maxdiff(a, x @ ours.weight.numpy() + ours.bias.numpy()) < 1e-5


def test_pre_hook_may_return_a_single_value_and_hooks_do_not_become_children():
    m = nn.ReLU()
    h = m.register_forward_pre_hook(lambda mod, args: args[0] * -1)  # not a tuple: wrapped
    class Recorder(nn.Module):  # a Module as a hook: not a child / parameter owner
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(ndl.init.ones(1))

        def forward(self, mod, args, out):
            return None

    m.register_forward_hook(Recorder())
    assert m(ndl.Tensor(np.array([-2.0], np.float32))).numpy().tolist() == [2.0]
    assert list(m.children()) == [] and m.state_dict() == {}
    with h:
        pass
    assert m(ndl.Tensor(np.array([-2.0], np.float32))).numpy().tolist() == [0.0]


# ------------------------------------------------------------------------- load_state_dict
def test_load_state_dict_strict_and_non_strict_like_torch():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    sd = model.state_dict()
    del sd["modules.1.running_var"]
    sd["extra.weight"] = np.zeros(2)
    with pytest.raises(RuntimeError, match=r"missing keys \['modules.1.running_var'\], "
                                           r"unexpected keys \['extra.weight'\]"):
        model.load_state_dict(sd)
    result = model.load_state_dict(sd, strict=False)
    tmodel = torch.nn.Sequential(torch.nn.Linear(2, 2))
    tsd = tmodel.state_dict()
    tsd["extra.weight"] = torch.zeros(2)
    del tsd["0.bias"]
    tresult = tmodel.load_state_dict(tsd, strict=False)
    assert result.missing_keys == ["modules.1.running_var"]
    assert result.unexpected_keys == ["extra.weight"]
    assert (tresult.missing_keys, tresult.unexpected_keys) == (["0.bias"], ["extra.weight"])
    missing, _unexpected = result  # unpacks like torch's named tuple
    assert missing == result.missing_keys
    ok = model.load_state_dict(model.state_dict())
    assert ok.missing_keys == [] and ok.unexpected_keys == []
    with pytest.raises(TypeError, match="load_state_dict: expected a mapping"):
        model.load_state_dict([1, 2])


# ------------------------------------------------------------------------------- nn.init
@pytest.mark.parametrize("needle_shape, torch_shape", [((6, 4), (4, 6)),
                                                      ((3, 3, 5, 8), (8, 5, 3, 3))])
def test_inplace_init_fans_and_bounds_match_torch(needle_shape, torch_shape):
    """needle (.., in, out) layouts give the fans torch computes for (out, in, ..) weights."""
    # seeded: the std checks below hold for most draws of 24 values, not all (torch's global
    # generator otherwise depends on which tests ran before)
    torch.manual_seed(0)
    np.random.seed(0)
    w = nn.Parameter(ndl.init.zeros(*needle_shape))
    tw = torch.empty(torch_shape)
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(tw)
    cases = [
        ("kaiming_uniform_", {}, math.sqrt(6 / ((1 + 0) * fan_in))),
        ("kaiming_uniform_", {"a": math.sqrt(5)}, math.sqrt(6 / ((1 + 5) * fan_in))),
        ("kaiming_uniform_", {"mode": "fan_out", "nonlinearity": "relu"}, math.sqrt(6 / fan_out)),
        ("xavier_uniform_", {"gain": 2.0}, 2.0 * math.sqrt(6 / (fan_in + fan_out))),
    ]
    for name, kw, bound in cases:
        getattr(torch.nn.init, name)(tw, **kw)
        ident = id(w)
        out = getattr(nn.init, name)(w, **kw)
        assert out is w and id(w) == ident
        vals = w.numpy()
        print(f"{name}{kw}: bound {bound:.4f}, needle max {np.abs(vals).max():.4f}, "
              f"torch max {tw.abs().max().item():.4f}")
        assert np.abs(vals).max() <= bound + 1e-6 and np.abs(vals).max() > 0.7 * bound
        assert tw.abs().max().item() <= bound + 1e-6
    nn.init.kaiming_normal_(w, nonlinearity="relu")
    torch.nn.init.kaiming_normal_(tw, nonlinearity="relu")
    expected = math.sqrt(2) / math.sqrt(fan_in)
    assert abs(w.numpy().std() - expected) < 0.25 * expected
    assert abs(tw.std().item() - expected) < 0.25 * expected


def test_inplace_init_constant_normal_uniform_and_generator():
    w = nn.Parameter(ndl.init.zeros(50, 40))
    assert nn.init.ones_(w).numpy().min() == 1.0
    assert nn.init.constant_(w, 0.25).numpy().max() == 0.25
    g1, g2 = ndl.Generator(5), ndl.Generator(5)
    state = np.random.get_state()[1].copy()
    a = nn.init.normal_(w, 1.0, 0.1, generator=g1).numpy().copy()
    b = nn.init.normal_(nn.Parameter(ndl.init.zeros(50, 40)), 1.0, 0.1, generator=g2).numpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global stream untouched
    tw = torch.empty(50, 40)
    torch.nn.init.normal_(tw, 1.0, 0.1)
    assert abs(a.mean() - 1.0) < 0.02 and abs(a.std() - tw.std().item()) < 0.02
    u = nn.init.uniform_(w, -2, 3).numpy()
    assert u.min() >= -2 and u.max() <= 3
    with pytest.raises(ValueError, match="kaiming_uniform_: fan in and fan out need"):
        nn.init.kaiming_uniform_(nn.Parameter(ndl.init.zeros(3)))
    with pytest.raises(ValueError, match="kaiming_uniform_: mode"):
        nn.init.kaiming_uniform_(w, mode="fan")
    with pytest.raises(TypeError, match="zeros_: expected a Tensor"):
        nn.init.zeros_(np.zeros(3))
    with pytest.raises(ValueError, match="calculate_gain: unsupported"):
        nn.init.calculate_gain("swish")
    assert nn.init.calculate_gain("leaky_relu", 0.2) == torch.nn.init.calculate_gain(
        "leaky_relu", 0.2)


# ------------------------------------------------------------------- torch checkpoints
class _TorchResidual(torch.nn.Module):  # for the modules() order check
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x) + x


def _randomise_bn_stats(model):
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


@pytest.mark.parametrize("arch", ["lenet", "resnet9", "resnet18"])
def test_load_torch_state_dict_matches_torch_outputs(arch):
    from test_models import BUILDERS, _torch_twin  # the torch twins of apps.models

    torch.manual_seed(0)
    build, shape = BUILDERS[arch]
    ours, ref = build(ndl.cpu()), _torch_twin(arch)
    _randomise_bn_stats(ref)
    x = np.random.rand(*shape).astype(np.float32)
    ref.eval()
    ours.eval()
    with torch.no_grad():
        expected = ref(torch.tensor(x)).numpy()
    before = _maxdiff(ours(ndl.Tensor(x, device=ndl.cpu())).numpy(), expected)
    result = load_torch_state_dict(ours, ref.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    got = ours(ndl.Tensor(x, device=ndl.cpu())).numpy()
    diff = _maxdiff(got, expected)
    print(f"load_torch_state_dict {arch}: max|diff| = {diff:.3g} (before loading {before:.3g}, "
          f"max|out| {np.abs(expected).max():.3g})")
    assert before > 1e-2  # the comparison can fail: unloaded weights give other outputs
    assert diff < 1e-4 * max(1.0, np.abs(expected).max())


def test_load_torch_state_dict_errors():
    from test_models import _torch_twin

    from apps import models

    lenet = models.LeNet(device=ndl.cpu())
    with pytest.raises(ValueError, match="the needle model has 5 modules with parameters, "
                                         "the state_dict 6"):
        load_torch_state_dict(lenet, torch.nn.Sequential(
            _torch_twin("lenet"), torch.nn.Linear(2, 2)).state_dict())
    sd = _torch_twin("lenet").state_dict()
    sd["7.weight"] = torch.zeros(120, 401)
    with pytest.raises(ValueError, match=r"7.weight has shape \(120, 401\)"):
        load_torch_state_dict(lenet, sd)
    with pytest.raises(TypeError, match="load_torch_state_dict: model must be"):
        load_torch_state_dict(_torch_twin("lenet"), sd)
