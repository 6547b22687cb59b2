"""Bad input to the public API: a ValueError, TypeError or IndexError whose message names the
op or class, never a silent result, a ZeroDivisionError or a pybind signature dump.

Each row is (name the message must contain, call taking the device). The sweep runs on every
backend through the `device` fixture.
"""
import needle as ndl
import needle.backend_ndarray as nd
import numpy as np
import pytest
from needle import init, nn, ops

BAD = (ValueError, TypeError, IndexError)


def _a(dev, *shape):
    return nd.array(np.ones(shape or (2, 3), dtype=np.float32), device=dev)


def _t(dev, *shape):
    return ndl.Tensor(np.ones(shape or (2, 3), dtype=np.float32), device=dev)


CASES = [
    # ---------------------------------------------------------------- NDArray construction
    ("full", lambda d: nd.full((-2, -3), 0.0, device=d)),
    ("full", lambda d: nd.full((2.5, 3), 0.0, device=d)),
    ("full", lambda d: nd.full("ab", 0.0, device=d)),
    ("full", lambda d: nd.full((2,), 0.0, dtype="float64", device=d)),
    ("empty", lambda d: nd.empty((2.5,), device=d)),
    ("empty", lambda d: nd.empty((-1,), device=d)),
    ("empty", lambda d: nd.empty((True, 2), device=d)),
    ("empty", lambda d: nd.empty(None, device=d)),
    ("empty", lambda d: nd.empty((2,), dtype="int32", device=d)),
    ("full", lambda d: nd.zeros((2,), dtype="float16", device=d)),
    ("NDArray", lambda d: nd.array(None, device=d)),
    ("NDArray", lambda d: nd.array("abc", device=d)),
    ("NDArray", lambda d: nd.array({"a": 1}, device=d)),
    ("NDArray", lambda d: nd.array([[1, 2], [3]], device=d)),
    ("array", lambda d: nd.array([1.0], dtype="int64", device=d)),
    ("astype", lambda d: _a(d).astype("float64")),
    ("one_hot", lambda d: d.one_hot(10, [1.5])),
    ("one_hot", lambda d: d.one_hot(10, [10])),
    ("one_hot", lambda d: d.one_hot(10, [-1])),
    ("one_hot", lambda d: d.one_hot(2.5, [1])),
    ("randn", lambda d: d.randn(2, dtype="float64")),
    # ---------------------------------------------------------------- views
    ("reshape", lambda d: _a(d).reshape((2.9, 3))),
    ("reshape", lambda d: _a(d).reshape((4, 2))),
    ("reshape", lambda d: _a(d).reshape((-1, -1))),
    ("reshape", lambda d: _a(d).reshape((-2, -3))),
    ("reshape", lambda d: _a(d).reshape((0, -1))),
    ("reshape", lambda d: _a(d).reshape("23")),
    ("reshape", lambda d: _a(d).reshape(None)),
    ("reshape", lambda d: _a(d).reshape((True, 6))),
    ("broadcast_to", lambda d: _a(d).broadcast_to((2.0, 3))),
    ("broadcast_to", lambda d: _a(d).broadcast_to((3,))),
    ("broadcast_to", lambda d: _a(d).broadcast_to((4, 3))),
    ("broadcast_to", lambda d: _a(d, 2, 1).broadcast_to((2, -3))),
    ("broadcast_to", lambda d: _a(d).broadcast_to(None)),
    ("as_strided", lambda d: _a(d).as_strided((2.5, 3), (3, 1))),
    ("as_strided", lambda d: _a(d).as_strided((2, 3), (3.0, 1))),
    ("as_strided", lambda d: _a(d).as_strided((2, 3), (3, 1), offset=0.5)),
    ("as_strided", lambda d: _a(d).as_strided((2, 3), (3,))),
    ("as_strided", lambda d: _a(d).as_strided((-2, 3), (3, 1))),
    ("as_strided", lambda d: _a(d).as_strided((3, 3), (3, 1))),
    ("as_strided", lambda d: _a(d).as_strided((2, 3), (-3, 1))),
    ("permute", lambda d: _a(d).permute((0,))),
    ("permute", lambda d: _a(d).permute((0, 0))),
    ("permute", lambda d: _a(d).permute((0, 2))),
    ("permute", lambda d: _a(d).permute((0.0, 1))),
    ("permute", lambda d: _a(d).permute((True, False))),
    ("flip", lambda d: _a(d).flip((2,))),
    ("flip", lambda d: _a(d).flip((0.5,))),
    ("pad", lambda d: _a(d).pad(((0, 0),))),
    ("pad", lambda d: _a(d).pad(((0, -1), (0, 0)))),
    ("stack", lambda d: nd.stack([])),
    ("stack", lambda d: nd.stack([_a(d), _a(d, 3, 2)])),
    ("stack", lambda d: nd.stack([_a(d)], axis=4)),
    ("split", lambda d: nd.split(_a(d), axis=3)),
    ("permute", lambda d: nd.transpose(_a(d), (1,))),
    # ---------------------------------------------------------------- indexing
    ("getitem", lambda d: _a(d)[True]),
    ("getitem", lambda d: _a(d)[np.bool_(False)]),
    ("getitem", lambda d: _a(d)[2]),
    ("getitem", lambda d: _a(d)[0, 3]),
    ("getitem", lambda d: _a(d)[-3]),
    ("getitem", lambda d: _a(d)[0, 0, 0]),
    ("getitem", lambda d: _a(d)[1.5]),
    ("getitem", lambda d: _a(d)["a"]),
    ("getitem", lambda d: _a(d)[None]),
    ("getitem", lambda d: _a(d)[::-1]),
    ("getitem", lambda d: _a(d)[::0]),
    ("getitem", lambda d: _a(d)[[0, 1]]),
    ("setitem", lambda d: _a(d).__setitem__(0, _a(d, 4))),
    ("setitem", lambda d: _a(d).__setitem__(True, 1.0)),
    ("setitem", lambda d: _a(d).__setitem__(0, "x")),
    ("scatter_add_", lambda d: _a(d).scatter_add_(np.ones(6))),
    ("scatter_add_", lambda d: _a(d).scatter_add_(_a(d, 5))),
    ("len", lambda d: len(nd.array(np.float32(1.0), device=d))),
    # ---------------------------------------------------------------- arithmetic
    ("add", lambda d: _a(d) + _a(d, 3, 2)),
    ("add", lambda d: _a(d) + "x"),
    ("add", lambda d: _a(d) + None),
    ("add", lambda d: _a(d) + np.ones(3)),
    ("mul", lambda d: _a(d) * _a(d, 3)),
    ("mul", lambda d: _a(d) * [1, 2]),
    ("div", lambda d: _a(d) / _a(d, 6)),
    ("div", lambda d: _a(d) / "x"),
    ("pow", lambda d: _a(d) ** _a(d, 1)),
    ("pow", lambda d: _a(d) ** "2"),
    ("maximum", lambda d: _a(d).maximum(_a(d, 3, 2))),
    ("maximum", lambda d: _a(d).maximum(None)),
    ("eq", lambda d: _a(d) == _a(d, 3)),
    ("eq", lambda d: _a(d) == "x"),
    ("ge", lambda d: _a(d) >= _a(d, 3)),
    ("ge", lambda d: _a(d) >= None),
    ("le", lambda d: _a(d) <= "x"),
    ("lt", lambda d: _a(d) < [1]),
    # ---------------------------------------------------------------- reductions, softmax
    ("sum", lambda d: _a(d).sum(axis=True)),
    ("sum", lambda d: _a(d).sum(axis=2)),
    ("sum", lambda d: _a(d).sum(axis=(0, 0))),
    ("sum", lambda d: _a(d).sum(axis=1.0)),
    ("sum", lambda d: _a(d).sum(axis="0")),
    ("max", lambda d: _a(d).max(axis=-3)),
    ("max", lambda d: _a(d, 0, 3).max(axis=0)),
    ("max", lambda d: _a(d).max(axis=False)),
    ("softmax", lambda d: _a(d).softmax(axis=2)),
    ("log_softmax", lambda d: _a(d).log_softmax(axis=True)),
    ("softmax_backward", lambda d: _a(d).softmax_backward(_a(d, 3, 2))),
    # ---------------------------------------------------------------- matmul
    ("matmul", lambda d: nd.linalg.matmul(_a(d), _a(d, 3, 2), transpose_a="yes")),
    ("matmul", lambda d: nd.linalg.matmul(_a(d), _a(d, 3, 2), transpose_b=1)),
    ("matmul", lambda d: _a(d) @ _a(d)),
    ("matmul", lambda d: _a(d) @ np.ones((3, 2))),
    ("matmul", lambda d: _a(d, 3) @ _a(d, 3, 2)),
    ("matmul", lambda d: _a(d, 4, 2, 3) @ _a(d, 3, 3, 2)),
    ("matmul_tiled", lambda d: _a(d, 8, 8).matmul_tiled(_a(d, 4, 8))),
    # ---------------------------------------------------------------- sgd_step, batch_norm
    ("sgd_step", lambda d: _a(d).sgd_step(_a(d, 3), None, 0.9, -0.1)),
    ("batch_norm", lambda d: _a(d).batch_norm(_a(d, 2), _a(d, 3))),
    ("batch_norm", lambda d: _a(d, 3).batch_norm(_a(d, 3), _a(d, 3))),
    ("batch_norm", lambda d: _a(d).batch_norm(_a(d, 3), _a(d, 2))),
    ("batch_norm_backward", lambda d: _a(d).batch_norm_backward(_a(d, 3, 2), _a(d, 3), _a(d, 3),
                                                                _a(d, 3))),
    # ---------------------------------------------------------------- Tensor construction
    ("Tensor", lambda d: ndl.Tensor(np.ones(3), device="cpu")),
    ("Tensor", lambda d: ndl.Tensor(np.ones(3), device=3)),
    ("Tensor", lambda d: ndl.Tensor(np.ones(3), device=d, dtype="float64")),
    ("NDArray", lambda d: ndl.Tensor(None, device=d)),
    ("NDArray", lambda d: ndl.Tensor("abc", device=d)),
    # ---------------------------------------------------------------- autograd ops
    ("Reshape", lambda d: ops.reshape(_t(d), (2.9, 3))),
    ("Reshape", lambda d: ops.reshape(_t(d), ("a", 3))),
    ("reshape", lambda d: ops.reshape(_t(d), (4, 2))),
    ("BroadcastTo", lambda d: ops.broadcast_to(_t(d), (2.0, 3))),
    ("BroadcastTo", lambda d: ops.broadcast_to(_t(d), (-2, 3))),
    ("broadcast_to", lambda d: ops.broadcast_to(_t(d), (4, 3))),
    ("Summation", lambda d: ops.summation(_t(d), axes=True)),
    ("Summation", lambda d: ops.summation(_t(d), axes=1.5)),
    ("sum", lambda d: ops.summation(_t(d), axes=2)),
    ("LogSumExp", lambda d: ops.logsumexp(_t(d), axes=(1.0,))),
    ("max", lambda d: ops.logsumexp(_t(d), axes=(5,))),
    ("Flip", lambda d: ops.flip(_t(d), (0.5,))),
    ("flip", lambda d: ops.flip(_t(d), (3,))),
    ("Dilate", lambda d: ops.dilate(_t(d), (0,), 1.5)),
    ("Dilate", lambda d: ops.dilate(_t(d), (0,), -1)),
    ("Dilate", lambda d: ops.dilate(_t(d), (0.5,), 1)),
    ("Undilate", lambda d: ops.undilate(_t(d), (0,), 1.5)),
    ("Undilate", lambda d: ops.undilate(_t(d), (0,), -2)),
    ("Transpose", lambda d: ops.transpose(_t(d), (0, 1, 2))),
    ("Transpose", lambda d: ops.transpose(_t(d), (0, 5))),
    ("Transpose", lambda d: ops.transpose(_t(d, 3))),
    ("matmul", lambda d: ops.matmul(_t(d), _t(d))),
    ("add", lambda d: ops.add(_t(d), _t(d, 3, 2))),
    ("mul", lambda d: ops.multiply(_t(d), _t(d, 3))),
    ("softmax", lambda d: ops.softmax(_t(d), axis=3)),
    ("log_softmax", lambda d: ops.log_softmax(_t(d), axis=-3)),
    ("LogSoftmax", lambda d: ops.logsoftmax(_t(d), axis=2)),
    ("stack", lambda d: ops.stack([], 0)),
    ("stack", lambda d: ops.stack([_t(d), _t(d, 3, 2)], 0)),
    ("split", lambda d: ops.split(_t(d), 2)),
    ("conv", lambda d: ops.conv(_t(d, 1, 4, 4, 2), _t(d, 3, 3, 3, 2))),
    ("conv", lambda d: ops.conv(_t(d, 4, 4, 2), _t(d, 3, 3, 2, 2))),
    ("conv", lambda d: ops.conv(_t(d, 1, 4, 4, 2), _t(d, 3, 3, 2, 2), stride=0)),
    ("conv", lambda d: ops.conv(_t(d, 1, 4, 4, 2), _t(d, 3, 3, 2, 2), padding=-1)),
    ("conv", lambda d: ops.conv(_t(d, 1, 4, 4, 2), _t(d, 3, 3, 2, 2), stride=1.5)),
    ("max_pool2d", lambda d: ops.max_pool2d(_t(d, 1, 2, 4, 4), 0)),
    ("max_pool2d", lambda d: ops.max_pool2d(_t(d, 2, 4, 4), 2)),
    ("avg_pool2d", lambda d: ops.avg_pool2d(_t(d, 1, 2, 4, 4), 2, stride=-1)),
    ("batch_norm", lambda d: ops.batch_norm(_t(d), _t(d, 2), _t(d, 3))),
    ("softmax_cross_entropy", lambda d: ops.softmax_cross_entropy(_t(d), np.array([0, 1, 2]))),
    # ---------------------------------------------------------------- init
    ("one_hot", lambda d: init.one_hot(10, [1.5], device=d)),
    ("one_hot", lambda d: init.one_hot(3, [3], device=d)),
    ("full", lambda d: init.zeros(-1, 2, device=d)),
    ("full", lambda d: init.ones(2.5, device=d)),
    ("kaiming", lambda d: init.kaiming_uniform(3, 4, nonlinearity="gelu", device=d)),
    # ---------------------------------------------------------------- nn constructors / forward
    ("Linear", lambda d: nn.Linear(0, 3, device=d)),
    ("Linear", lambda d: nn.Linear(3, 0, device=d)),
    ("Linear", lambda d: nn.Linear(2.5, 3, device=d)),
    ("Linear", lambda d: nn.Linear(-1, 3, device=d)),
    ("Linear", lambda d: nn.Linear(4, 3, device=d)(_t(d))),
    ("BatchNorm1d", lambda d: nn.BatchNorm1d(3, device=d)(_t(d, 1, 3))),
    ("BatchNorm1d", lambda d: nn.BatchNorm1d(3, eps=-1e-5, device=d)),
    ("BatchNorm1d", lambda d: nn.BatchNorm1d(3, eps=0.0, device=d)),
    ("BatchNorm1d", lambda d: nn.BatchNorm1d(3, momentum=-0.1, device=d)),
    ("BatchNorm1d", lambda d: nn.BatchNorm1d(3, momentum=1.5, device=d)),
    ("BatchNorm1d", lambda d: nn.BatchNorm1d(3, momentum=None, device=d)),
    ("BatchNorm1d", lambda d: nn.BatchNorm1d(3, eps=float("nan"), device=d)),
    ("BatchNorm1d", lambda d: nn.BatchNorm1d(4, device=d)(_t(d))),
    ("BatchNorm2d", lambda d: nn.BatchNorm2d(2, device=d)(_t(d, 1, 2, 1, 1))),
    ("BatchNorm2d", lambda d: nn.BatchNorm2d(2, eps=-1.0, device=d)),
    ("BatchNorm2d", lambda d: nn.BatchNorm2d(3, device=d)(_t(d, 2, 2, 3, 3))),
    ("LayerNorm1d", lambda d: nn.LayerNorm1d(3, eps=-1.0, device=d)),
    ("LayerNorm1d", lambda d: nn.LayerNorm1d(4, device=d)(_t(d))),
    ("Dropout", lambda d: nn.Dropout(1.5)),
    ("Dropout", lambda d: nn.Dropout(-0.1)),
    ("Conv", lambda d: nn.Conv(0, 3, 3, device=d)),
    ("Conv", lambda d: nn.Conv(3, 3, 0, device=d)),
    ("Conv", lambda d: nn.Conv(3, 3, 3, stride=0, device=d)),
    ("Conv", lambda d: nn.Conv(3, 4, 3, device=d)(_t(d, 1, 2, 5, 5))),
    ("pool2d", lambda d: nn.MaxPool2d(0)),
    ("pool2d", lambda d: nn.MaxPool2d(2, stride=0)),
    ("pool2d", lambda d: nn.MaxPool2d(2, padding=-1)),
    ("pool2d", lambda d: nn.AvgPool2d(0)),
    ("AdaptiveAvgPool2d", lambda d: nn.AdaptiveAvgPool2d((0, 1))),
    ("RNNCell", lambda d: nn.RNNCell(3, 4, nonlinearity="gelu", device=d)),
    ("RNN", lambda d: nn.RNN(3, 4, num_layers=0, device=d)),
    ("LSTM", lambda d: nn.LSTM(3, 4, num_layers=0, device=d)),
    ("Residual", lambda d: nn.Residual(3)),
    ("Sequential", lambda d: nn.Sequential(nn.ReLU(), 3)),
    ("SoftmaxLoss", lambda d: nn.SoftmaxLoss()(_t(d), _t(d, 3))),
    ("Flatten", lambda d: nn.Flatten()(ndl.Tensor(np.float32(1.0).reshape(()), device=d))),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{i}-{c[0]}" for i, c in enumerate(CASES)])
def test_bad_input_names_the_op(device, case):
    name, call = case
    with pytest.raises(BAD) as err:
        call(device)
    msg = str(err.value)
    assert name.lower() in msg.lower(), f"{type(err.value).__name__}: {msg!r} does not name {name!r}"
    assert "incompatible function arguments" not in msg and "incompatible constructor" not in msg


def test_sweep_is_broad():
    assert len(CASES) >= 200, len(CASES)
