"""Recurrent modules and Embedding: numpy references, torch (when installed), gradient checks,
draw order and error messages."""
import needle as ndl
import numpy as np
import pytest
from needle import nn
from needle.testing import assert_close, gradient_check


def T(x, device, requires_grad=True):
    return ndl.Tensor(np.asarray(x, dtype=np.float32), device=device,
                      requires_grad=requires_grad)


# ---------------------------------------------------------------------------------------------
# numpy references (float64), weights in needle layout: W_ih (in, G), W_hh (hidden, G)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def cell_params(cell):
    """(W_ih, W_hh, bias_ih or None, bias_hh or None) of a cell as float64 numpy arrays."""
    def get(t):
        return None if t is None else t.numpy().astype(np.float64)
    return get(cell.W_ih), get(cell.W_hh), get(cell.bias_ih), get(cell.bias_hh)


def np_affine(x, h, W_ih, W_hh, b_ih, b_hh):
    out = x @ W_ih + h @ W_hh
    for b in (b_ih, b_hh):
        if b is not None:
            out = out + b.reshape(1, -1)
    return out


def np_rnn_cell(x, h, params, nonlinearity="tanh"):
    pre = np_affine(x, h, *params)
    return np.tanh(pre) if nonlinearity == "tanh" else np.maximum(pre, 0)


def np_lstm_cell(x, h, c, params):
    gates = np_affine(x, h, *params)
    i, f, g, o = np.split(gates, 4, axis=1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    return sigmoid(o) * np.tanh(c), c


def np_rnn(X, h0, cells, nonlinearity="tanh"):
    xs = list(X)
    h_n = []
    for layer, params in enumerate(cells):
        h = h0[layer]
        for t in range(len(xs)):
            h = np_rnn_cell(xs[t], h, params, nonlinearity)
            xs[t] = h
        h_n.append(h)
    return np.stack(xs), np.stack(h_n)


def np_lstm(X, h0, c0, cells):
    xs = list(X)
    h_n, c_n = [], []
    for layer, params in enumerate(cells):
        h, c = h0[layer], c0[layer]
        for t in range(len(xs)):
            h, c = np_lstm_cell(xs[t], h, c, params)
            xs[t] = h
        h_n.append(h)
        c_n.append(c)
    return np.stack(xs), np.stack(h_n), np.stack(c_n)


# ---------------------------------------------------------------------------------------------
# forward against numpy


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("bias", [True, False])
def test_rnn_cell_forward_numpy(device, nonlinearity, bias):
    cell = nn.RNNCell(3, 5, bias=bias, nonlinearity=nonlinearity, device=device)
    x = np.random.randn(4, 3)
    h = np.random.randn(4, 5)
    out = cell(T(x, device), T(h, device))
    assert out.shape == (4, 5) and out.device == device
    assert_close(out, np_rnn_cell(x, h, cell_params(cell), nonlinearity), 1e-5, 1e-5,
                 "RNNCell forward")
    zero_h = cell(T(x, device))  # h=None means a zero state
    assert_close(zero_h, np_rnn_cell(x, np.zeros((4, 5)), cell_params(cell), nonlinearity),
                 1e-5, 1e-5, "RNNCell forward with h=None")


@pytest.mark.parametrize("bias", [True, False])
def test_lstm_cell_forward_numpy(device, bias):
    cell = nn.LSTMCell(3, 4, bias=bias, device=device)
    x, h, c = np.random.randn(2, 3), np.random.randn(2, 4), np.random.randn(2, 4)
    h1, c1 = cell(T(x, device), (T(h, device), T(c, device)))
    eh, ec = np_lstm_cell(x, h, c, cell_params(cell))
    assert_close(h1, eh, 1e-5, 1e-5, "LSTMCell h'")
    assert_close(c1, ec, 1e-5, 1e-5, "LSTMCell c'")
    out = cell(T(x, device))
    assert type(out) is tuple and len(out) == 2
    eh, ec = np_lstm_cell(x, np.zeros((2, 4)), np.zeros((2, 4)), cell_params(cell))
    assert_close(out[0], eh, 1e-5, 1e-5, "LSTMCell h' (h=None)")
    assert_close(out[1], ec, 1e-5, 1e-5, "LSTMCell c' (h=None)")


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("with_h0", [True, False])
def test_rnn_forward_numpy(device, num_layers, with_h0):
    rnn = nn.RNN(3, 4, num_layers, nonlinearity="relu", device=device)
    X = np.random.randn(5, 2, 3)
    h0 = np.random.randn(num_layers, 2, 4) if with_h0 else np.zeros((num_layers, 2, 4))
    out, h_n = rnn(T(X, device), T(h0, device) if with_h0 else None)
    eo, eh = np_rnn(X, h0, [cell_params(c) for c in rnn.rnn_cells], "relu")
    assert out.shape == (5, 2, 4) and h_n.shape == (num_layers, 2, 4)
    assert_close(out, eo, 1e-5, 1e-5, "RNN output")
    assert_close(h_n, eh, 1e-5, 1e-5, "RNN h_n")


@pytest.mark.parametrize("num_layers", [1, 2])
def test_lstm_forward_numpy(device, num_layers):
    lstm = nn.LSTM(3, 4, num_layers, device=device)
    X = np.random.randn(5, 2, 3)
    h0, c0 = np.random.randn(2, num_layers, 2, 4)
    out, hc = lstm(T(X, device), (T(h0, device), T(c0, device)))
    assert type(hc) is tuple and len(hc) == 2
    eo, eh, ec = np_lstm(X, h0, c0, [cell_params(c) for c in lstm.lstm_cells])
    assert_close(out, eo, 1e-5, 1e-5, "LSTM output")
    assert_close(hc[0], eh, 1e-5, 1e-5, "LSTM h_n")
    assert_close(hc[1], ec, 1e-5, 1e-5, "LSTM c_n")
    out, (h_n, c_n) = lstm(T(X, device))
    zeros = np.zeros((num_layers, 2, 4))
    eo, eh, ec = np_lstm(X, zeros, zeros, [cell_params(c) for c in lstm.lstm_cells])
    assert_close(out, eo, 1e-5, 1e-5, "LSTM output (h=None)")
    assert_close(h_n, eh, 1e-5, 1e-5, "LSTM h_n (h=None)")
    assert_close(c_n, ec, 1e-5, 1e-5, "LSTM c_n (h=None)")


# ---------------------------------------------------------------------------------------------
# gradients: central differences on small cells (weights are passed in as inputs)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_cell_gradient_check(device, nonlinearity):
    cell = nn.RNNCell(3, 4, nonlinearity=nonlinearity, device=device)

    def f(x, h, W_ih, W_hh, b_ih, b_hh):
        cell.W_ih, cell.W_hh, cell.bias_ih, cell.bias_hh = W_ih, W_hh, b_ih, b_hh
        return cell(x, h)

    args = [T(np.random.randn(*s), device) for s in [(2, 3), (2, 4), (3, 4), (4, 4), (4,), (4,)]]
    gradient_check(f, *args, op_name=f"RNNCell({nonlinearity})")


def test_lstm_cell_gradient_check(device):
    cell = nn.LSTMCell(2, 3, device=device)

    def f(x, h, c, W_ih, W_hh, b_ih, b_hh):
        cell.W_ih, cell.W_hh, cell.bias_ih, cell.bias_hh = W_ih, W_hh, b_ih, b_hh
        h1, c1 = cell(x, (h, c))
        return h1 * 2.0 + c1  # both outputs reach the objective

    shapes = [(2, 2), (2, 3), (2, 3), (2, 12), (3, 12), (12,), (12,)]
    args = [T(np.random.randn(*s) * 0.5, device) for s in shapes]
    gradient_check(f, *args, op_name="LSTMCell")


def test_rnn_two_layer_gradient_check(device):
    rnn = nn.RNN(2, 3, num_layers=2, device=device)
    X = T(np.random.randn(3, 2, 2), device)
    h0 = T(np.random.randn(2, 2, 3), device)
    gradient_check(lambda x, h: rnn(x, h)[0], X, h0, op_name="RNN output")
    gradient_check(lambda x, h: rnn(x, h)[1], X, h0, op_name="RNN h_n")


def test_lstm_two_layer_gradient_check(device):
    lstm = nn.LSTM(2, 3, num_layers=2, device=device)
    X = T(np.random.randn(3, 2, 2), device)
    h0 = T(np.random.randn(2, 2, 3), device)
    c0 = T(np.random.randn(2, 2, 3), device)

    def f(x, h, c):
        out, (h_n, c_n) = lstm(x, (h, c))
        parts = [t for a in (out, h_n, c_n) for t in ndl.ops.split(a, 0).tuple()]
        return ndl.ops.stack(parts, 0)  # every output element reaches the objective

    gradient_check(f, X, h0, c0, op_name="LSTM")


# ---------------------------------------------------------------------------------------------
# against torch (weights copied per the contract: W_ih = weight_ih^T, biases 1-D)


def _torch():
    return pytest.importorskip("torch")


def _copy_cells_to_torch(torch, module, cells):
    with torch.no_grad():
        for layer, cell in enumerate(cells):
            sfx = "" if not hasattr(module, "num_layers") else f"_l{layer}"
            getattr(module, "weight_ih" + sfx).copy_(torch.tensor(cell.W_ih.numpy().T))
            getattr(module, "weight_hh" + sfx).copy_(torch.tensor(cell.W_hh.numpy().T))
            if cell.bias_ih is not None:
                getattr(module, "bias_ih" + sfx).copy_(torch.tensor(cell.bias_ih.numpy()))
                getattr(module, "bias_hh" + sfx).copy_(torch.tensor(cell.bias_hh.numpy()))


def _check_cell_grads_vs_torch(module, cells, what):
    for layer, cell in enumerate(cells):
        sfx = "" if not hasattr(module, "num_layers") else f"_l{layer}"
        assert_close(cell.W_ih.grad, getattr(module, "weight_ih" + sfx).grad.numpy().T,
                     1e-4, 1e-4, f"{what} layer {layer} W_ih.grad")
        assert_close(cell.W_hh.grad, getattr(module, "weight_hh" + sfx).grad.numpy().T,
                     1e-4, 1e-4, f"{what} layer {layer} W_hh.grad")
        if cell.bias_ih is not None:
            assert_close(cell.bias_ih.grad, getattr(module, "bias_ih" + sfx).grad.numpy(),
                         1e-4, 1e-4, f"{what} layer {layer} bias_ih.grad")
            assert_close(cell.bias_hh.grad, getattr(module, "bias_hh" + sfx).grad.numpy(),
                         1e-4, 1e-4, f"{what} layer {layer} bias_hh.grad")


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("bias", [True, False])
def test_rnn_cell_vs_torch(device, nonlinearity, bias):
    torch = _torch()
    x, h = np.random.randn(3, 4).astype(np.float32), np.random.randn(3, 5).astype(np.float32)
    cell = nn.RNNCell(4, 5, bias=bias, nonlinearity=nonlinearity, device=device)
    ref = torch.nn.RNNCell(4, 5, bias=bias, nonlinearity=nonlinearity)
    _copy_cells_to_torch(torch, ref, [cell])
    xt, ht = torch.tensor(x, requires_grad=True), torch.tensor(h, requires_grad=True)
    xn, hn = T(x, device), T(h, device)
    out, out_ref = cell(xn, hn), ref(xt, ht)
    assert_close(out, out_ref.detach().numpy(), 1e-5, 1e-5, "RNNCell vs torch")
    out.sum().backward()
    out_ref.sum().backward()
    assert_close(xn.grad, xt.grad.numpy(), 1e-4, 1e-4, "RNNCell x.grad")
    assert_close(hn.grad, ht.grad.numpy(), 1e-4, 1e-4, "RNNCell h.grad")
    _check_cell_grads_vs_torch(ref, [cell], "RNNCell")


def test_lstm_cell_vs_torch(device):
    torch = _torch()
    x = np.random.randn(3, 4).astype(np.float32)
    h, c = np.random.randn(2, 3, 5).astype(np.float32)
    cell = nn.LSTMCell(4, 5, device=device)
    ref = torch.nn.LSTMCell(4, 5)
    _copy_cells_to_torch(torch, ref, [cell])
    xt, ht, ct = (torch.tensor(a, requires_grad=True) for a in (x, h, c))
    xn, hn, cn = T(x, device), T(h, device), T(c, device)
    h1, c1 = cell(xn, (hn, cn))
    h1_ref, c1_ref = ref(xt, (ht, ct))
    assert_close(h1, h1_ref.detach().numpy(), 1e-5, 1e-5, "LSTMCell h' vs torch")
    assert_close(c1, c1_ref.detach().numpy(), 1e-5, 1e-5, "LSTMCell c' vs torch")
    (h1 * 2.0 + c1).sum().backward()
    (h1_ref * 2.0 + c1_ref).sum().backward()
    for got, want, name in [(xn, xt, "x"), (hn, ht, "h0"), (cn, ct, "c0")]:
        assert_close(got.grad, want.grad.numpy(), 1e-4, 1e-4, f"LSTMCell {name}.grad")
    _check_cell_grads_vs_torch(ref, [cell], "LSTMCell")


@pytest.mark.parametrize("num_layers,nonlinearity", [(1, "tanh"), (2, "relu"), (3, "tanh")])
def test_rnn_vs_torch(device, num_layers, nonlinearity):
    torch = _torch()
    X = np.random.randn(6, 3, 4).astype(np.float32)
    h0 = np.random.randn(num_layers, 3, 5).astype(np.float32)
    rnn = nn.RNN(4, 5, num_layers, nonlinearity=nonlinearity, device=device)
    ref = torch.nn.RNN(4, 5, num_layers, nonlinearity=nonlinearity)
    _copy_cells_to_torch(torch, ref, rnn.rnn_cells)
    Xt, ht = torch.tensor(X, requires_grad=True), torch.tensor(h0, requires_grad=True)
    Xn, hn = T(X, device), T(h0, device)
    out, h_n = rnn(Xn, hn)
    out_ref, h_ref = ref(Xt, ht)
    assert_close(out, out_ref.detach().numpy(), 1e-5, 1e-5, "RNN output vs torch")
    assert_close(h_n, h_ref.detach().numpy(), 1e-5, 1e-5, "RNN h_n vs torch")
    (out.sum() + (h_n * h_n).sum()).backward()
    (out_ref.sum() + (h_ref * h_ref).sum()).backward()
    assert_close(Xn.grad, Xt.grad.numpy(), 1e-4, 1e-4, "RNN X.grad")
    assert_close(hn.grad, ht.grad.numpy(), 1e-4, 1e-4, "RNN h0.grad")
    _check_cell_grads_vs_torch(ref, rnn.rnn_cells, "RNN")


@pytest.mark.parametrize("num_layers,bias", [(1, True), (2, True), (2, False)])
def test_lstm_vs_torch(device, num_layers, bias):
    torch = _torch()
    X = np.random.randn(6, 3, 4).astype(np.float32)
    h0, c0 = np.random.randn(2, num_layers, 3, 5).astype(np.float32)
    lstm = nn.LSTM(4, 5, num_layers, bias=bias, device=device)
    ref = torch.nn.LSTM(4, 5, num_layers, bias=bias)
    _copy_cells_to_torch(torch, ref, lstm.lstm_cells)
    Xt, ht, ct = (torch.tensor(a, requires_grad=True) for a in (X, h0, c0))
    Xn, hn, cn = T(X, device), T(h0, device), T(c0, device)
    out, (h_n, c_n) = lstm(Xn, (hn, cn))
    out_ref, (h_ref, c_ref) = ref(Xt, (ht, ct))
    for got, want, name in [(out, out_ref, "output"), (h_n, h_ref, "h_n"), (c_n, c_ref, "c_n")]:
        assert_close(got, want.detach().numpy(), 1e-5, 1e-5, f"LSTM {name} vs torch")
    (out.sum() + h_n.sum() * 0.5 + (c_n * c_n).sum()).backward()
    (out_ref.sum() + h_ref.sum() * 0.5 + (c_ref * c_ref).sum()).backward()
    for got, want, name in [(Xn, Xt, "X"), (hn, ht, "h0"), (cn, ct, "c0")]:
        assert_close(got.grad, want.grad.numpy(), 1e-4, 1e-4, f"LSTM {name}.grad")
    _check_cell_grads_vs_torch(ref, lstm.lstm_cells, "LSTM")


def test_embedding_vs_torch(device):
    torch = _torch()
    emb = nn.Embedding(7, 3, device=device)
    ref = torch.nn.Embedding(7, 3)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(emb.weight.numpy()))
    idx = np.array([[0, 6, 2], [2, 2, 5]])
    out = emb(T(idx, device, requires_grad=False))
    out_ref = ref(torch.tensor(idx))
    assert_close(out, out_ref.detach().numpy(), 1e-6, 1e-6, "Embedding vs torch")
    cot = np.random.randn(2, 3, 3).astype(np.float32)
    (out * T(cot, device, False)).sum().backward()
    (out_ref * torch.tensor(cot)).sum().backward()
    assert_close(emb.weight.grad, ref.weight.grad.numpy(), 1e-5, 1e-5, "Embedding weight.grad")


# ---------------------------------------------------------------------------------------------
# contract details: draws, creation order, gradients everywhere, attribute replacement


def _uniform(shape, hidden):
    k = 1.0 / np.sqrt(hidden)
    return (np.random.rand(*shape).astype(np.float32) * (2 * k) - k)


def test_rnn_cell_draw_order(device):
    np.random.seed(3)
    cell = nn.RNNCell(3, 4, device=device)
    after = np.random.rand()
    np.random.seed(3)
    expected = [_uniform(s, 4) for s in [(3, 4), (4, 4), (4,), (4,)]]
    assert np.random.rand() == after  # exactly four draws
    params = cell.parameters()
    assert [p.shape for p in params] == [(3, 4), (4, 4), (4,), (4,)]
    assert params[0] is cell.W_ih and params[1] is cell.W_hh
    assert params[2] is cell.bias_ih and params[3] is cell.bias_hh
    for p, e, name in zip(params, expected, ["W_ih", "W_hh", "bias_ih", "bias_hh"]):
        assert isinstance(p, nn.Parameter)
        assert_close(p, e, 1e-6, 1e-7, f"RNNCell {name} from the draw")


def test_lstm_draw_order_layer_by_layer(device):
    np.random.seed(5)
    lstm = nn.LSTM(3, 2, num_layers=2, device=device)
    after = np.random.rand()
    np.random.seed(5)
    shapes = [(3, 8), (2, 8), (8,), (8,), (2, 8), (2, 8), (8,), (8,)]
    expected = [_uniform(s, 2) for s in shapes]
    assert np.random.rand() == after
    params = lstm.parameters()
    assert [p.shape for p in params] == shapes
    assert params[4] is lstm.lstm_cells[1].W_ih
    for i, (p, e) in enumerate(zip(params, expected)):
        assert_close(p, e, 1e-6, 1e-7, f"LSTM parameter {i} from the draw")


def test_rnn_same_seed_same_weights_and_bias_false_draws(device):
    np.random.seed(1)
    a = nn.RNN(2, 3, num_layers=2, device=device)
    np.random.seed(1)
    b = nn.RNN(2, 3, num_layers=2, device=device)
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa.numpy(), pb.numpy())
    assert len(a.parameters()) == 8
    assert [p.shape for p in a.parameters()][4:6] == [(3, 3), (3, 3)]
    # bias=False: only W_ih, W_hh exist and are drawn.
    np.random.seed(2)
    c = nn.RNNCell(2, 3, bias=False, device=device)
    after = np.random.rand()
    np.random.seed(2)
    _uniform((2, 3), 3), _uniform((3, 3), 3)
    assert np.random.rand() == after
    assert c.bias_ih is None and c.bias_hh is None and len(c.parameters()) == 2


def test_embedding_draw(device):
    np.random.seed(7)
    emb = nn.Embedding(5, 3, device=device)
    np.random.seed(7)
    expected = np.random.randn(5, 3).astype(np.float32)
    np.testing.assert_array_equal(emb.weight.numpy(), expected)
    assert emb.parameters() == [emb.weight] and isinstance(emb.weight, nn.Parameter)
    idx = np.array([[4, 0], [1, 1], [3, 4]])
    out = emb(T(idx, device, requires_grad=False))
    assert out.shape == (3, 2, 3)
    np.testing.assert_allclose(out.numpy(), expected[idx], rtol=1e-6, atol=1e-6)
    out.backward(T(np.ones((3, 2, 3)), device, False))
    counts = np.bincount(idx.ravel(), minlength=5).astype(np.float32)
    np.testing.assert_allclose(emb.weight.grad.numpy(), np.repeat(counts[:, None], 3, axis=1))


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_every_parameter_gets_a_gradient_seq_len_1(device, kind):
    mod = (nn.RNN if kind == "rnn" else nn.LSTM)(3, 4, num_layers=2, device=device)
    out = mod(T(np.random.randn(1, 2, 3), device))[0]
    out.sum().backward()
    for i, p in enumerate(mod.parameters()):
        assert p.grad is not None, f"{kind} parameter {i} got no gradient"
        assert p.grad.shape == p.shape
    cells = mod.rnn_cells if kind == "rnn" else mod.lstm_cells
    # h = None is a zero state, so the first layer's W_hh gradient is exactly zero.
    np.testing.assert_array_equal(cells[0].W_hh.grad.numpy(), 0.0)


def test_replaced_attributes_are_used_and_get_gradients(device):
    rnn = nn.RNN(3, 4, device=device)
    cell = rnn.rnn_cells[0]
    W_ih = T(np.random.randn(3, 4), device)
    b_ih = T(np.random.randn(4), device)
    cell.W_ih, cell.bias_ih = W_ih, b_ih
    X = np.random.randn(2, 2, 3)
    out, _ = rnn(T(X, device))
    expected, _ = np_rnn(X, np.zeros((1, 2, 4)), [cell_params(cell)])
    assert_close(out, expected, 1e-5, 1e-5, "RNN with replaced W_ih / bias_ih")
    out.sum().backward()
    assert W_ih.grad is not None and W_ih.grad.shape == (3, 4)
    assert b_ih.grad is not None and b_ih.grad.shape == (4,)


def test_bias_false_applies_no_bias(device):
    lstm = nn.LSTM(2, 3, bias=False, device=device)
    assert len(lstm.parameters()) == 2
    X = np.random.randn(3, 2, 2)
    out, (_, c_n) = lstm(T(X, device))
    zeros = np.zeros((1, 2, 3))
    eo, _, ec = np_lstm(X, zeros, zeros, [cell_params(c) for c in lstm.lstm_cells])
    assert_close(out, eo, 1e-5, 1e-5, "LSTM bias=False output")
    assert_close(c_n, ec, 1e-5, 1e-5, "LSTM bias=False c_n")


def test_positional_constructor_orders():
    rnn = nn.RNN(3, 4, 2, False, nonlinearity="relu")
    assert len(rnn.rnn_cells) == 2 and rnn.rnn_cells[1].bias_ih is None
    assert rnn.rnn_cells[0].nonlinearity == "relu"
    lstm = nn.LSTM(3, 4, 3, True)
    assert len(lstm.lstm_cells) == 3 and lstm.lstm_cells[2].W_ih.shape == (4, 16)


# ---------------------------------------------------------------------------------------------
# errors


def test_errors_name_module_and_shapes(device):
    cell = nn.RNNCell(3, 4, device=device)
    with pytest.raises(ValueError, match=r"RNNCell.*\(bs, 3\).*\(2, 5\)"):
        cell(T(np.zeros((2, 5)), device))
    with pytest.raises(ValueError, match=r"RNNCell.*\(2, 4\).*\(3, 4\)"):
        cell(T(np.zeros((2, 3)), device), T(np.zeros((3, 4)), device))
    with pytest.raises(ValueError, match="RNNCell.*nonlinearity"):
        nn.RNNCell(3, 4, nonlinearity="sigmoid")
    rnn = nn.RNN(3, 4, 2, device=device)
    with pytest.raises(ValueError, match=r"RNN: expected input .*\(2, 3\)"):
        rnn(T(np.zeros((2, 3)), device))
    with pytest.raises(ValueError, match=r"RNN.*\(2, 1, 4\).*\(1, 1, 4\)"):
        rnn(T(np.zeros((5, 1, 3)), device), T(np.zeros((1, 1, 4)), device))
    with pytest.raises(ValueError, match="num_layers"):
        nn.RNN(3, 4, 0)
    lstm = nn.LSTM(3, 4, device=device)
    with pytest.raises(TypeError, match="LSTM.*tuple"):
        lstm(T(np.zeros((5, 1, 3)), device), T(np.zeros((1, 1, 4)), device))
    with pytest.raises(ValueError, match=r"LSTM.*c0|LSTM.*\(1, 1, 4\)"):
        lstm(T(np.zeros((5, 1, 3)), device),
             (T(np.zeros((1, 1, 4)), device), T(np.zeros((1, 2, 4)), device)))
    with pytest.raises(ValueError, match=r"LSTMCell.*\(bs, 3\).*\(4,\)"):
        nn.LSTMCell(3, 4, device=device)(T(np.zeros(4), device))
    emb = nn.Embedding(5, 2, device=device)
    with pytest.raises(IndexError, match=r"Embedding.*\[0, 5\)"):
        emb(T([[5.0]], device))
    with pytest.raises(ValueError, match="Embedding.*integer"):
        emb(T([[1.5]], device))
