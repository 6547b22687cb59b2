"""Sequence modules: RNNCell, RNN, LSTMCell, LSTM and Embedding.

Layout follows torch with the weights stored transposed: `W_ih` = torch `weight_ih`^T
(input x hidden, or input x 4*hidden for the LSTM), `W_hh` = torch `weight_hh`^T, biases 1-D.
`forward` reads the weights from the attributes at call time, so users may swap in plain
Tensors. Draws (RNG contract): each cell draws `W_ih`, `W_hh`, then (with bias=True) `bias_ih`,
`bias_hh`, one `rand` each; RNN/LSTM build their cells layer by layer; Embedding draws one
`randn(num_embeddings, embedding_dim)`.
"""
import math

import numpy as np

from .. import init, ops
from ..autograd import Tensor
from .nn_basic import Module, Parameter

__all__ = ["LSTM", "RNN", "Embedding", "LSTMCell", "RNNCell"]

_ACTIVATIONS = {"tanh": ops.tanh, "relu": ops.relu}


def _uniform_param(*shape, bound, device, dtype):
    return Parameter(init.rand(*shape, low=-bound, high=bound, device=device, dtype=dtype,
                               requires_grad=True))


def _make_cell_params(cell, input_size, gate_size, hidden_size, bias, device, dtype):
    """W_ih, W_hh, bias_ih, bias_hh in that order, all U(-1/sqrt(hidden), 1/sqrt(hidden))."""
    if input_size < 1 or hidden_size < 1:
        raise ValueError(f"{type(cell).__name__}: input_size and hidden_size must be positive, "
                         f"got {input_size} and {hidden_size}")
    k = 1.0 / math.sqrt(hidden_size)
    kw = {"bound": k, "device": device, "dtype": dtype}
    cell.input_size = input_size
    cell.hidden_size = hidden_size
    cell.W_ih = _uniform_param(input_size, gate_size, **kw)
    cell.W_hh = _uniform_param(hidden_size, gate_size, **kw)
    # bias=False: no bias parameters at all (as torch), hence no draws for them.
    cell.bias_ih = _uniform_param(gate_size, **kw) if bias else None
    cell.bias_hh = _uniform_param(gate_size, **kw) if bias else None


def _affine(X, h, W_ih, W_hh, bias_ih, bias_hh):
    """X @ W_ih + bias_ih + h @ W_hh + bias_hh, biases (G,) or (1, G) broadcast over rows."""
    out = ops.matmul(X, W_ih) + ops.matmul(h, W_hh)
    gate_size = out.shape[1]
    for b in (bias_ih, bias_hh):
        if b is not None:
            out = out + ops.broadcast_to(ops.reshape(b, (1, gate_size)), out.shape)
    return out


def _check_step_input(name, X, input_size):
    if not isinstance(X, Tensor):
        raise TypeError(f"{name}: expected a Tensor input, got {type(X).__name__}")
    if len(X.shape) != 2 or X.shape[1] != input_size:
        raise ValueError(f"{name}: expected input (bs, {input_size}), got {tuple(X.shape)}")


def _check_state(name, what, t, shape):
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: {what} must be a Tensor of shape {shape}, got "
                        f"{type(t).__name__}")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name}: expected {what} of shape {tuple(shape)}, got {tuple(t.shape)}")


def _zeros_state(X, hidden_size):
    return init.zeros(X.shape[0], hidden_size, device=X.device, dtype=X.dtype)


class RNNCell(Module):
    """Elman RNN cell: h' = act(X @ W_ih + bias_ih + h @ W_hh + bias_hh).

    Args:
        input_size: features of X; hidden_size: features of h.
        bias: with False the cell has no biases (bias_ih = bias_hh = None) and applies none.
        nonlinearity: "tanh" or "relu".
    Parameters (creation order, each U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))):
        W_ih (input_size x hidden_size), W_hh (hidden_size x hidden_size),
        bias_ih (hidden_size,), bias_hh (hidden_size,).
    Shapes: forward(X (bs x input_size), h (bs x hidden_size) or None = zeros) -> bs x hidden_size.

    Example:
        >>> cell = nn.RNNCell(3, 5)
        >>> cell(ndl.init.ones(2, 3)).shape
        (2, 5)
    """

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None,
                 dtype="float32"):
        super().__init__()
        if nonlinearity not in _ACTIVATIONS:
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got "
                             f"{nonlinearity!r}")
        self.nonlinearity = nonlinearity
        _make_cell_params(self, input_size, hidden_size, hidden_size, bias, device, dtype)

    def extra_repr(self):
        return (f"{self.input_size}, {self.hidden_size}, bias={self.bias_ih is not None}, "
                f"nonlinearity={self.nonlinearity!r}")

    def forward(self, X, h=None):
        hidden = self.W_hh.shape[0]
        _check_step_input("RNNCell", X, self.W_ih.shape[0])
        if h is None:
            # A zero state, not a skipped term: W_hh still receives a (zero) gradient.
            h = _zeros_state(X, hidden)
        else:
            _check_state("RNNCell", "h", h, (X.shape[0], hidden))
        pre = _affine(X, h, self.W_ih, self.W_hh, self.bias_ih, self.bias_hh)
        return _ACTIVATIONS[self.nonlinearity](pre)


def _split_layers(name, h0, num_layers, bs, hidden):
    """(num_layers x bs x hidden) Tensor or None -> list of per-layer (bs x hidden) or None."""
    if h0 is None:
        return [None] * num_layers
    _check_state(name, "initial state", h0, (num_layers, bs, hidden))
    return list(ops.split(h0, 0).tuple())


def _check_seq_input(name, X, input_size):
    if not isinstance(X, Tensor):
        raise TypeError(f"{name}: expected a Tensor input, got {type(X).__name__}")
    if len(X.shape) != 3 or X.shape[2] != input_size or X.shape[0] < 1:
        raise ValueError(f"{name}: expected input (seq_len >= 1, bs, {input_size}), got "
                         f"{tuple(X.shape)}")


class RNN(Module):
    """Multi-layer Elman RNN; layer l > 0 reads the hidden states of layer l - 1.

    Args:
        input_size, hidden_size, num_layers, bias, nonlinearity: as torch.nn.RNN.
    Cells: list attribute `rnn_cells` (layer 0 input_size -> hidden_size, the others
    hidden_size -> hidden_size), created layer by layer.
    Shapes: forward(X (seq_len x bs x input_size), h0 (num_layers x bs x hidden_size) or None)
        -> (output seq_len x bs x hidden_size = top-layer state at every step,
            h_n num_layers x bs x hidden_size = last state of every layer).

    Example:
        >>> rnn = nn.RNN(3, 5, num_layers=2)
        >>> out, h_n = rnn(ndl.init.ones(4, 2, 3))
        >>> out.shape, h_n.shape
        ((4, 2, 5), (2, 2, 5))
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, nonlinearity="tanh",
                 device=None, dtype="float32"):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"RNN: num_layers must be >= 1, got {num_layers}")
        self.rnn_cells = [
            RNNCell(input_size if layer == 0 else hidden_size, hidden_size, bias=bias,
                    nonlinearity=nonlinearity, device=device, dtype=dtype)
            for layer in range(num_layers)
        ]

    def forward(self, X, h0=None):
        cells = self.rnn_cells
        hidden = cells[0].W_hh.shape[0]
        _check_seq_input("RNN", X, cells[0].W_ih.shape[0])
        seq_len, bs, _ = X.shape
        states = _split_layers("RNN", h0, len(cells), bs, hidden)
        xs = list(ops.split(X, 0).tuple())
        h_n = []
        for cell, h in zip(cells, states):
            for t in range(seq_len):
                h = cell(xs[t], h)
                xs[t] = h  # becomes the input of the next layer
            h_n.append(h)
        return ops.stack(xs, 0), ops.stack(h_n, 0)


class LSTMCell(Module):
    """LSTM cell with torch's gate order i, f, g, o along the 4*hidden axis.

    gates = X @ W_ih + bias_ih + h @ W_hh + bias_hh, split into i, f, g, o (each bs x hidden);
    i, f, o = sigmoid, g = tanh; c' = f * c + i * g; h' = o * tanh(c').

    Args:
        input_size, hidden_size; bias: with False no biases exist or are applied.
    Parameters (creation order, each U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))):
        W_ih (input_size x 4*hidden_size), W_hh (hidden_size x 4*hidden_size),
        bias_ih (4*hidden_size,), bias_hh (4*hidden_size,).
    Shapes: forward(X (bs x input_size), h None or a tuple (h0, c0), each bs x hidden_size)
        -> Python tuple (h', c'), each bs x hidden_size.
    """

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype="float32"):
        super().__init__()
        _make_cell_params(self, input_size, 4 * hidden_size, hidden_size, bias, device, dtype)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias_ih is not None}"

    def forward(self, X, h=None):
        hidden = self.W_hh.shape[0]
        _check_step_input("LSTMCell", X, self.W_ih.shape[0])
        bs = X.shape[0]
        if h is None:
            h0, c0 = _zeros_state(X, hidden), _zeros_state(X, hidden)
        else:
            if not isinstance(h, (tuple, list)) or len(h) != 2:
                raise TypeError(f"LSTMCell: h must be None or a tuple (h0, c0), got "
                                f"{type(h).__name__}")
            h0, c0 = h
            _check_state("LSTMCell", "h0", h0, (bs, hidden))
            _check_state("LSTMCell", "c0", c0, (bs, hidden))
        gates = _affine(X, h0, self.W_ih, self.W_hh, self.bias_ih, self.bias_hh)
        i, f, g, o = ops.split(ops.reshape(gates, (bs, 4, hidden)), 1).tuple()
        i, f, g, o = ops.sigmoid(i), ops.sigmoid(f), ops.tanh(g), ops.sigmoid(o)
        c = f * c0 + i * g
        return o * ops.tanh(c), c


class LSTM(Module):
    """Multi-layer LSTM; layer l > 0 reads the hidden states of layer l - 1.

    Cells: list attribute `lstm_cells` (layer 0 input_size -> hidden_size, the others
    hidden_size -> hidden_size), created layer by layer.
    Shapes: forward(X (seq_len x bs x input_size), h None or a tuple (h0, c0), each
        num_layers x bs x hidden_size)
        -> (output seq_len x bs x hidden_size, (h_n, c_n) each num_layers x bs x hidden_size),
        real Python tuples.

    Example:
        >>> lstm = nn.LSTM(3, 5)
        >>> out, (h_n, c_n) = lstm(ndl.init.ones(4, 2, 3))
        >>> out.shape, c_n.shape
        ((4, 2, 5), (1, 2, 5))
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, device=None,
                 dtype="float32"):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"LSTM: num_layers must be >= 1, got {num_layers}")
        self.lstm_cells = [
            LSTMCell(input_size if layer == 0 else hidden_size, hidden_size, bias=bias,
                     device=device, dtype=dtype)
            for layer in range(num_layers)
        ]

    def forward(self, X, h=None):
        cells = self.lstm_cells
        hidden = cells[0].W_hh.shape[0]
        _check_seq_input("LSTM", X, cells[0].W_ih.shape[0])
        seq_len, bs, _ = X.shape
        if h is None:
            h0s = cs = [None] * len(cells)
        else:
            if not isinstance(h, (tuple, list)) or len(h) != 2:
                raise TypeError(f"LSTM: h must be None or a tuple (h0, c0), got "
                                f"{type(h).__name__}")
            h0s = _split_layers("LSTM", h[0], len(cells), bs, hidden)
            cs = _split_layers("LSTM", h[1], len(cells), bs, hidden)
        xs = list(ops.split(X, 0).tuple())
        h_n, c_n = [], []
        for cell, h_t, c_t in zip(cells, h0s, cs):
            state = None if h_t is None else (h_t, c_t)
            for t in range(seq_len):
                state = cell(xs[t], state)
                xs[t] = state[0]
            h_n.append(state[0])
            c_n.append(state[1])
        return ops.stack(xs, 0), (ops.stack(h_n, 0), ops.stack(c_n, 0))


class Embedding(Module):
    """Lookup table as a matmul: one_hot(x) @ weight.

    Args:
        num_embeddings: vocabulary size; embedding_dim: vector size.
    Parameters: weight (num_embeddings x embedding_dim) ~ N(0, 1), one `randn` draw.
    Shapes: forward(x (seq_len x bs) of integer-valued floats in [0, num_embeddings))
        -> seq_len x bs x embedding_dim (any index shape S gives S + (embedding_dim,)).

    Example:
        >>> emb = nn.Embedding(10, 4)
        >>> emb(ndl.Tensor([[1, 2], [3, 9]])).shape
        (2, 2, 4)
    """

    def __init__(self, num_embeddings, embedding_dim, device=None, dtype="float32"):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.weight = Parameter(init.randn(num_embeddings, embedding_dim, device=device,
                                           dtype=dtype, requires_grad=True))

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"

    def forward(self, x):
        num, dim = self.weight.shape
        idx = x.numpy() if isinstance(x, Tensor) else np.asarray(x)
        if idx.size and (not np.all(np.isfinite(idx)) or np.any(idx != np.round(idx))):
            raise ValueError(f"Embedding: indices must be integers, got non-integer values in "
                             f"an index array of shape {idx.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= num):
            raise IndexError(f"Embedding: indices must lie in [0, {num}) for weight {(num, dim)}, "
                             f"got range [{idx.min()}, {idx.max()}] in shape {idx.shape}")
        device = self.weight.device
        one_hot = init.one_hot(num, idx.astype(np.int64), device=device, dtype=self.weight.dtype)
        flat = ops.reshape(one_hot, (int(np.prod(idx.shape, dtype=np.int64)), num))
        return ops.reshape(ops.matmul(flat, self.weight), tuple(idx.shape) + (dim,))
